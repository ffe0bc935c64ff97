//! The servers under test, started and stopped by the benchmark itself: TIKETI service replicas
//! (the release binary) or the Node socket.io reference (bench/node/server.js), each on its own
//! loopback port, sharing one PostgreSQL database and one Redis.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Tiketi,
    Node,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Tiketi => "tiketi (Rust)",
            Kind::Node => "node socket.io",
        }
    }
}

/// Where the servers find their dependencies.
#[derive(Debug, Clone)]
pub struct Env {
    pub service_bin: PathBuf,
    pub node_dir: PathBuf,
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub jwt_secret: String,
    /// Extra `KEY=VALUE` settings for the service (e.g. DB_POOL_MAX=20).
    pub service_env: Vec<(String, String)>,
}

struct Server {
    addr: SocketAddr,
    child: Child,
}

/// A set of replicas of one kind. Dropping it kills them.
pub struct Stack {
    servers: Vec<Server>,
}

impl Stack {
    pub async fn start(kind: Kind, env: &Env, replicas: usize, first_port: u16) -> Result<Self> {
        let mut servers = Vec::new();
        for r in 0..replicas {
            let port = first_port + u16::try_from(r)?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let child = match kind {
                Kind::Tiketi => tiketi(env, port)?,
                Kind::Node => node(env, port, replicas > 1)?,
            };
            servers.push(Server { addr, child });
        }
        let stack = Self { servers };
        for s in &stack.servers {
            wait_healthy(s.addr).await?;
        }
        Ok(stack)
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.servers[0].addr)
    }

    /// Resident set size of each replica, in KiB.
    pub fn rss_kib(&self) -> Result<Vec<u64>> {
        self.servers
            .iter()
            .map(|s| rss_kib(s.child.id().context("server exited")?))
            .collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().filter_map(|s| s.child.id()).collect()
    }

    pub async fn stop(mut self) {
        for s in &mut self.servers {
            s.child.kill().await.ok();
        }
    }
}

fn tiketi(env: &Env, port: u16) -> Result<Child> {
    let mut cmd = Command::new(&env.service_bin);
    cmd.arg("serve")
        .env("DATABASE_URL", &env.database_url)
        .env("REDIS_URL", &env.redis_url)
        .env("REDIS_PREFIX", &env.redis_prefix)
        .env("JWT_SECRET", &env.jwt_secret)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("TIKETI_DEMO_DATA", "false")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        // every simulated user comes from the loopback: per-IP limits would measure themselves
        .env("RESERVE_RATE_LIMIT_PER_IP_PER_MINUTE", "0")
        .env("QUEUE_CHECK_RATE_LIMIT_PER_IP_PER_MINUTE", "0")
        .env("SOCKET_HANDSHAKES_PER_ADDRESS_PER_MINUTE", "0");
    for (k, v) in &env.service_env {
        cmd.env(k, v);
    }
    spawn(cmd, &env.service_bin)
}

fn node(env: &Env, port: u16, with_redis: bool) -> Result<Child> {
    let mut cmd = Command::new("node");
    cmd.arg(env.node_dir.join("server.js"))
        .env("PORT", port.to_string())
        .env("JWT_SECRET", &env.jwt_secret);
    if with_redis {
        cmd.env("REDIS_URL", &env.redis_url);
    }
    spawn(cmd, Path::new("node"))
}

fn spawn(mut cmd: Command, what: &Path) -> Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", what.display()))
}

async fn wait_healthy(addr: SocketAddr) -> Result<()> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = http.get(format!("http://{addr}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server on {addr} not healthy after 30 s")
}

pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}

/// CPU time (user + system) of a process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the command name (which may contain spaces) start after the last ')'
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> Result<f64> { Ok(fields.get(i).context("stat field")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds used so far by every process whose command name is `comm` (e.g. all `postgres`
/// backends), as far as they are still alive.
pub fn cpu_seconds_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .filter_map(|pid| cpu_seconds(pid).ok())
        .sum()
}

/// CPU used by the service, PostgreSQL, Redis and this load generator between two readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub service: f64,
    pub postgres: f64,
    pub redis: f64,
    pub client: f64,
}

impl CpuSplit {
    pub fn now(service_pids: &[u32]) -> Self {
        Self {
            service: service_pids
                .iter()
                .filter_map(|p| cpu_seconds(*p).ok())
                .sum(),
            postgres: cpu_seconds_of("postgres"),
            redis: cpu_seconds_of("redis-server"),
            client: cpu_seconds(std::process::id()).unwrap_or(0.0),
        }
    }

    pub fn since(self, before: Self) -> Self {
        Self {
            service: self.service - before.service,
            postgres: self.postgres - before.postgres,
            redis: self.redis - before.redis,
            client: self.client - before.client,
        }
    }
}
