//! Drives the real socket.io-client (the frontend's library, npm 4.8.1) through `tests/node/client.mjs`:
//! commands go to its stdin as JSON lines, everything its sockets see comes back the same way.

#![allow(dead_code)]

use std::{process::Stdio, time::Duration};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

use crate::common::TestApp;

#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    pub id: String,
    pub event: String,
    pub data: Value,
}

pub struct Clients {
    _child: Child,
    stdin: ChildStdin,
    rx: mpsc::UnboundedReceiver<Seen>,
    pub seen: Vec<Seen>,
}

const WAIT: Duration = Duration::from_secs(15);

impl Clients {
    pub fn start() -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
        let mut child = Command::new("node")
            .arg(format!("{dir}/client.mjs"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs tests/node/client.mjs (make test installs its packages)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(seen) = serde_json::from_str::<Seen>(&line) {
                    let _ = tx.send(seen);
                }
            }
        });
        Clients {
            _child: child,
            stdin,
            rx,
            seen: Vec::new(),
        }
    }

    pub async fn send(&mut self, cmd: Value) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("write to node");
        self.stdin.flush().await.expect("flush");
    }

    /// Connects socket `id` to `app` with `token`, emitting `join` from its connect handler (as the
    /// frontend does), and waits for the connection.
    pub async fn connect(&mut self, id: &str, app: &TestApp, token: &str, join: Value) {
        self.send(
            json!({ "op": "connect", "id": id, "url": app.base, "token": token, "join": join }),
        )
        .await;
        self.expect(id, "connect", |_| true).await;
    }

    /// [`Clients::connect`] starting on HTTP long-polling, upgrading to a WebSocket (what a
    /// browser does when the default transports are kept, and what a proxy without WebSocket gets).
    pub async fn connect_polling(&mut self, id: &str, app: &TestApp, token: &str, join: Value) {
        self.send(json!({
            "op": "connect", "id": id, "url": app.base, "token": token, "join": join,
            "transports": ["polling", "websocket"],
        }))
        .await;
        self.expect(id, "connect", |_| true).await;
    }

    pub async fn emit(&mut self, id: &str, event: &str, data: Value) {
        self.send(json!({ "op": "emit", "id": id, "event": event, "data": data }))
            .await;
    }

    pub async fn disconnect(&mut self, id: &str) {
        self.send(json!({ "op": "disconnect", "id": id })).await;
    }

    fn pump(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.seen.push(s);
        }
    }

    /// Waits until socket `id` has seen `event` with data matching `pred`; returns that data.
    /// Each returned message is consumed, so the next call waits for a new one.
    pub async fn expect(&mut self, id: &str, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        match self.within(id, event, pred, WAIT).await {
            Some(data) => data,
            None => panic!(
                "socket {id} never saw {event}; it saw: {:?}",
                self.seen.iter().filter(|s| s.id == id).collect::<Vec<_>>()
            ),
        }
    }

    /// Like `expect`, but gives up after `wait` and returns `None`.
    pub async fn within(
        &mut self,
        id: &str,
        event: &str,
        pred: impl Fn(&Value) -> bool,
        wait: Duration,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.pump();
            if let Some(i) = self
                .seen
                .iter()
                .position(|s| s.id == id && s.event == event && pred(&s.data))
            {
                return Some(self.seen.remove(i).data);
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(s)) => self.seen.push(s),
                _ => return None,
            }
        }
    }

    /// How many `event`s socket `id` has seen so far (and not consumed by `expect`).
    pub fn count(&mut self, id: &str, event: &str) -> usize {
        self.pump();
        self.seen
            .iter()
            .filter(|s| s.id == id && s.event == event)
            .count()
    }
}
