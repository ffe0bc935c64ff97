//! Client processes. A process may open at most ~20,000 files here, so large runs spread their
//! sockets over several agent processes (`tiketi-bench agent`). The driver sends each agent a job
//! as one JSON line on stdin; the agent connects its clients, answers `ready`, records arrivals of
//! the named events until it reads `stop`, then answers `done` with every arrival time.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    process::Stdio,
    sync::Arc,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use futures::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{Semaphore, watch},
};

use crate::sio;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Client i talks to `servers[i % len]` from `sources[i % len]`.
    pub servers: Vec<SocketAddr>,
    pub sources: Vec<IpAddr>,
    pub tokens: Vec<String>,
    /// Emitted by every client right after its CONNECT is acknowledged.
    pub joins: Vec<(String, Value)>,
    /// Events whose arrivals are timed, keyed by the payload field `key_field`.
    pub record: Vec<String>,
    pub key_field: String,
    /// Connects in flight at once.
    pub concurrency: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    pub connected: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub elapsed_ms: u64,
}

/// event → key → arrival times (µs since the epoch), one per receiving client.
pub type Arrivals = HashMap<String, HashMap<String, Vec<i64>>>;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Done {
    pub arrivals: Arrivals,
    /// Clients whose connection ended before `stop`.
    pub dropped: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Ready(Ready),
    Done(Done),
}

/// The agent process: `tiketi-bench agent`.
pub async fn run() -> Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin.next_line().await?.context("no job on stdin")?;
    let job: Job = serde_json::from_str(&line).context("job")?;
    let job = Arc::new(job);
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(job.concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let mut clients = Vec::with_capacity(job.tokens.len());
    for i in 0..job.tokens.len() {
        let (job, gate, ready, stop) =
            (job.clone(), gate.clone(), ready_tx.clone(), stop_rx.clone());
        clients.push(tokio::spawn(async move {
            client(i, &job, &gate, &ready, stop).await
        }));
    }
    drop(ready_tx);
    let mut ready = Ready::default();
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(()) => ready.connected += 1,
            Err(e) => {
                ready.failed += 1;
                ready.first_error.get_or_insert(e);
            }
        }
        if ready.connected + ready.failed == job.tokens.len() {
            break;
        }
    }
    ready.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    reply(&Reply::Ready(ready)).await?;

    while let Some(line) = stdin.next_line().await? {
        if line.trim() == "stop" {
            break;
        }
    }
    stop_tx.send(true).ok();
    let mut done = Done::default();
    for c in clients {
        let (records, dropped) = c.await.unwrap_or_default();
        done.dropped += usize::from(dropped);
        for (event, key, at) in records {
            done.arrivals
                .entry(event)
                .or_default()
                .entry(key)
                .or_default()
                .push(at);
        }
    }
    reply(&Reply::Done(done)).await
}

async fn reply(r: &Reply) -> Result<()> {
    let mut out = tokio::io::stdout();
    out.write_all(serde_json::to_string(r)?.as_bytes()).await?;
    out.write_all(b"\n").await?;
    out.flush().await?;
    Ok(())
}

type Record = (String, String, i64);

/// One client: connect and join (under the gate), then record until told to stop. Returns the
/// records and whether the connection ended early.
async fn client(
    i: usize,
    job: &Job,
    gate: &Semaphore,
    ready: &tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> (Vec<Record>, bool) {
    let server = job.servers[i % job.servers.len()];
    let source = job.sources[i % job.sources.len()];
    let opened = async {
        let _permit = gate.acquire().await?;
        let mut ws = sio::connect(server, source, &job.tokens[i]).await?;
        for (name, payload) in &job.joins {
            ws.send(sio::event_frame(name, payload)).await?;
        }
        anyhow::Ok(ws)
    }
    .await;
    let mut ws = match opened {
        Ok(ws) => {
            ready.send(Ok(())).ok();
            ws
        }
        Err(e) => {
            ready.send(Err(format!("{e:#}"))).ok();
            return (Vec::new(), false);
        }
    };
    let mut records = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return (records, false),
            frame = sio::next_frame(&mut ws) => {
                let at = sio::now_us();
                let text = match frame {
                    sio::Frame::Text(t) => t,
                    sio::Frame::Closed | sio::Frame::Dropped(_) => {
                        // wait for stop so the driver sees the drop in the totals
                        stop.changed().await.ok();
                        return (records, true);
                    }
                };
                if let Some((name, payload)) = sio::parse_event(&text, &job.record) {
                    let key = payload.get(&job.key_field).map(|k| match k {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    records.push((name.to_string(), key.unwrap_or_default(), at));
                }
            }
        }
    }
}

/// The driver's side of one agent process.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Agent {
    /// Starts an agent process with `job`.
    pub async fn start(job: &Job) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("agent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start agent")?;
        let mut stdin = child.stdin.take().context("agent stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("agent stdout")?).lines();
        stdin
            .write_all(format!("{}\n", serde_json::to_string(job)?).as_bytes())
            .await?;
        stdin.flush().await?;
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    pub async fn ready(&mut self) -> Result<Ready> {
        match self.next().await? {
            Reply::Ready(r) => Ok(r),
            Reply::Done(_) => bail!("agent answered done before ready"),
        }
    }

    /// Stops recording and returns the arrivals; the agent process exits.
    pub async fn finish(mut self) -> Result<Done> {
        self.stdin.write_all(b"stop\n").await?;
        self.stdin.flush().await?;
        let done = match self.next().await? {
            Reply::Done(d) => d,
            Reply::Ready(_) => bail!("agent answered ready twice"),
        };
        self.child.kill().await.ok();
        Ok(done)
    }

    async fn next(&mut self) -> Result<Reply> {
        let line = self
            .stdout
            .next_line()
            .await?
            .context("agent exited early")?;
        Ok(serde_json::from_str(&line)?)
    }
}

/// Spreads `job`'s clients over `procs` agents and waits until all are connected.
pub async fn start_all(job: &Job, procs: usize) -> Result<(Vec<Agent>, Ready)> {
    let procs = procs.clamp(1, job.tokens.len().max(1));
    let per = job.tokens.len().div_ceil(procs);
    let started = Instant::now();
    let mut agents = Vec::new();
    for (p, tokens) in job.tokens.chunks(per.max(1)).enumerate() {
        let mut part = job.clone();
        part.tokens = tokens.to_vec();
        // rotate so every agent uses every server and source address
        part.servers
            .rotate_left((p * per) % job.servers.len().max(1));
        agents.push(Agent::start(&part).await?);
    }
    let mut total = Ready::default();
    for a in &mut agents {
        let r = a.ready().await?;
        total.connected += r.connected;
        total.failed += r.failed;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    total.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok((agents, total))
}

/// Stops every agent and merges their arrivals.
pub async fn finish_all(agents: Vec<Agent>) -> Result<Done> {
    let mut all = Done::default();
    for a in agents {
        let d = a.finish().await?;
        all.dropped += d.dropped;
        for (event, keys) in d.arrivals {
            let e = all.arrivals.entry(event).or_default();
            for (k, mut times) in keys {
                e.entry(k).or_default().append(&mut times);
            }
        }
    }
    Ok(all)
}
