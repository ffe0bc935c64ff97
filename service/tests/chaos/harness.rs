//! Real processes for the chaos suite: a private redis-server or Redis Cluster, `tiketi-service` replicas built by
//! cargo, a migrated database, users with tokens, and an HTTP client that tallies every answer.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fred::prelude::{Builder, ClientLike, Config as RedisConfig, HashesInterface};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use sqlx::PgPool;
use tiketi_core::keys::Keys;
use tiketi_service::auth::jwt::JwtKeys;
use uuid::Uuid;

use crate::common::{database_url, eventually};

pub const PREFIX: &str = "chaos";
const BIN: &str = env!("CARGO_BIN_EXE_tiketi-service");

/// The cargo target directory (the binary lives in `<target>/<profile>/`), so reports and logs land
/// beside the build even with CARGO_TARGET_DIR set.
pub fn target_dir() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `sh -c` that execs `program` (keeping its pid, so SIGKILL reaches it) after starting a watchdog
/// that SIGKILLs it once this test process is gone. Drop handles normal ends and panics; the watchdog
/// covers a test binary that is itself killed, so no replica or redis-server outlives the suite.
fn guarded(program: &str) -> Command {
    const WATCHDOG: &str = r#"self=$$
( while kill -0 "$CHAOS_PARENT_PID" 2>/dev/null; do kill -0 "$self" 2>/dev/null || exit 0; sleep 1; done
  kill -9 "$self" ) </dev/null >/dev/null 2>&1 &
exec "$0" "$@""#;
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(WATCHDOG)
        .arg(program)
        .env("CHAOS_PARENT_PID", std::process::id().to_string())
        .stdin(Stdio::null());
    c
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        c.kill().ok(); // SIGKILL
        c.wait().ok();
    }
}

async fn listening(port: u16, within: Duration) -> bool {
    eventually(within, || async move {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// `--save "" --appendonly no`: everything lives in memory only.
    None,
    /// `--appendonly yes --appendfsync always`: every write is in the AOF before Redis replies.
    Aof,
}

/// A private redis-server on a free loopback port with its data in `dir`.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    persistence: Persistence,
    child: Option<Child>,
}

impl Redis {
    pub async fn start(dir: &Path, persistence: Persistence) -> anyhow::Result<Self> {
        let mut r = Redis {
            port: free_port(),
            dir: dir.join("redis"),
            persistence,
            child: None,
        };
        std::fs::create_dir_all(&r.dir)?;
        r.restart().await?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown save, no AOF rewrite; only what is already on disk survives.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts (again) on the same port and data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut cmd = guarded("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(&self.dir);
        match self.persistence {
            Persistence::None => cmd.args(["--appendonly", "no"]),
            Persistence::Aof => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let log = File::create(self.dir.join("redis.log"))?;
        cmd.stdout(log.try_clone()?).stderr(log);
        self.child = Some(cmd.spawn().context("redis-server is installed")?);
        if !listening(self.port, Duration::from_secs(10)).await {
            bail!("redis-server did not listen on {}", self.port);
        }
        Ok(())
    }
}

/// A fresh client of the Redis (or Redis Cluster) at `url`.
pub async fn client(url: &str) -> anyhow::Result<fred::clients::Client> {
    let client = Builder::from_config(RedisConfig::from_url(url)?).build()?;
    client.init().await?;
    Ok(client)
}

/// The realtime session hash of `user` (what a reconnect restores) in the Redis at `url`.
pub async fn session(url: &str, user: Uuid) -> anyhow::Result<HashMap<String, String>> {
    let c = client(url).await?;
    let map = c.hgetall(Keys::new(PREFIX).session(user)).await;
    c.quit().await.ok();
    Ok(map?)
}

/// Starts a redis-server node of `dir` (its log appended to `dir/redis.log`) and waits until it
/// listens on `port`.
async fn start_node(mut cmd: Command, dir: &Path, port: u16) -> anyhow::Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))?;
    cmd.stdout(log.try_clone()?).stderr(log);
    let child = cmd.spawn().context("redis-server is installed")?;
    if !listening(port, Duration::from_secs(10)).await {
        bail!("redis-server did not listen on {port}");
    }
    Ok(child)
}

/// `redis-cli -p port args…`: its output, or `None` when it failed.
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `kill -SIG` of a running node (SIGSTOP/SIGCONT: a replica that lags).
fn signal(child: &Option<Child>, sig: &str) {
    if let Some(c) = child {
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
    }
}

/// A private Redis Cluster: three primaries, each with one replica, on free loopback ports (the
/// cluster bus on its own free port), AOF off. A primary SIGKILLed is replaced by its replica after
/// `cluster-node-timeout` (1 s).
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    port: u16,
    bus: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ClusterNode {
    /// Starts the node (again: same ports and directory, so its `nodes.conf` brings it back into
    /// the cluster).
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = guarded("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &self.bus.to_string()])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--cluster-replica-validity-factor", "0"])
            // a new replica syncs at once (the default waits 5 s for more replicas)
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&self.dir);
        self.child = Some(start_node(cmd, &self.dir, self.port).await?);
        Ok(())
    }
}

impl RedisCluster {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for i in 0..6 {
            let dir = dir.join(format!("redis-{i}"));
            std::fs::create_dir_all(&dir)?;
            let mut node = ClusterNode {
                port: free_port(),
                bus: free_port(),
                dir,
                child: None,
            };
            node.spawn().await?;
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .context("redis-cli is installed")?;
        anyhow::ensure!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        let ok = eventually(Duration::from_secs(15), || async {
            (0..6).all(|i| cluster.state_ok(i))
        })
        .await;
        anyhow::ensure!(
            ok,
            "the cluster did not reach cluster_state:ok on every node"
        );
        Ok(cluster)
    }

    /// The `redis-cluster://` URL fred reads: every node as a seed, so a client still finds the
    /// cluster with one of them dead.
    pub fn url(&self) -> String {
        let others: Vec<String> = self.nodes[1..]
            .iter()
            .map(|n| format!("node=127.0.0.1:{}", n.port))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.nodes[0].port,
            others.join("&")
        )
    }

    fn cli(&self, node: usize, args: &[&str]) -> Option<String> {
        redis_cli(self.nodes[node].port, args)
    }

    fn state_ok(&self, node: usize) -> bool {
        self.cli(node, &["cluster", "info"])
            .is_some_and(|i| i.contains("cluster_state:ok"))
    }

    /// The node serving `key` as primary, as node `asked` (alive) sees the cluster now.
    fn primary_of_as_seen_by(&self, asked: usize, key: &str) -> Option<usize> {
        let slot: u16 = self
            .cli(asked, &["cluster", "keyslot", key])?
            .trim()
            .parse()
            .ok()?;
        let nodes = self.cli(asked, &["cluster", "nodes"])?;
        nodes.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags) = (f.get(1)?, f.get(2)?);
            let serves = flags.contains("master")
                && !flags.contains("fail")
                && f[8..].iter().any(|r| match r.split_once('-') {
                    Some((lo, hi)) => {
                        lo.parse().is_ok_and(|lo: u16| lo <= slot)
                            && hi.parse().is_ok_and(|hi: u16| slot <= hi)
                    }
                    None => r.parse() == Ok(slot),
                });
            let port: u16 = addr.split(['@', ':']).nth(1)?.parse().ok()?;
            serves
                .then(|| self.nodes.iter().position(|n| n.port == port))
                .flatten()
        })
    }

    pub fn primary_of(&self, key: &str) -> Option<usize> {
        let asked = self.nodes.iter().position(|n| n.child.is_some())?;
        self.primary_of_as_seen_by(asked, key)
    }

    /// The replica of primary `primary`, as `primary` sees it.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        let me = self.cli(primary, &["cluster", "myid"])?;
        let nodes = self.cli(primary, &["cluster", "nodes"])?;
        nodes.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(3) == Some(&me.trim())).then_some(())?;
            let port: u16 = f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            self.nodes.iter().position(|n| n.port == port)
        })
    }

    /// SIGKILL of node `i`: what its replica has not received yet is lost.
    pub fn kill(&mut self, i: usize) {
        kill_child(&mut self.nodes[i].child);
    }

    /// Starts node `i` again after a kill, as a pod restarts: it rejoins as a replica of whoever took
    /// its slots over.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].spawn().await
    }

    /// Drops the replication links of primary `i` (`CLIENT KILL TYPE replica`): with its replica
    /// frozen, nothing the primary writes from now on reaches it.
    pub fn cut_replicas(&self, i: usize) -> bool {
        self.cli(i, &["client", "kill", "type", "replica"])
            .is_some()
    }

    /// SIGSTOP (`freeze`) and SIGCONT (`thaw`) of node `i`: a replica that lags behind its primary.
    pub fn freeze(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    pub fn thaw(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        signal(&self.nodes[i].child, sig);
    }

    /// Until a live node other than `dead` serves `key` as primary and every live node says the
    /// cluster is ok: that node, or `None` after `within`.
    pub async fn failed_over(&self, key: &str, dead: usize, within: Duration) -> Option<usize> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        let done = eventually(within, || async {
            live.iter().all(|&i| {
                self.state_ok(i)
                    && self
                        .primary_of_as_seen_by(i, key)
                        .is_some_and(|p| p != dead)
            })
        })
        .await;
        done.then(|| self.primary_of(key)).flatten()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            kill_child(&mut n.child);
        }
    }
}

/// A Redis whose primary can fail over to a replica, as the failover scenario drives it (nodes are
/// numbered by the implementation).
pub trait Failover {
    /// What the replicas' `REDIS_URL` is.
    fn url(&self) -> String;
    /// The node serving `key` as primary now.
    fn primary_of(&self, key: &str) -> Option<usize>;
    /// The replica of primary `primary`.
    fn replica_of(&self, primary: usize) -> Option<usize>;
    /// SIGKILL of node `i`.
    fn kill(&mut self, i: usize);
    /// Starts node `i` again after a kill, as a pod restarts: it comes back as a replica of the
    /// node that took over.
    async fn restart(&mut self, i: usize) -> anyhow::Result<()>;
    /// Drops the replication links of primary `i`: with its replica frozen, nothing the primary
    /// writes from now on reaches it.
    fn cut_replicas(&self, i: usize) -> bool;
    /// SIGSTOP of node `i`: a replica that lags behind its primary.
    fn freeze(&self, i: usize);
    /// SIGCONT of node `i`.
    fn thaw(&self, i: usize);
    /// Until a live node other than `dead` serves `key` as primary: that node, or `None` after
    /// `within`.
    async fn failed_over(&mut self, key: &str, dead: usize, within: Duration) -> Option<usize>;
}

impl Failover for RedisCluster {
    fn url(&self) -> String {
        RedisCluster::url(self)
    }
    fn primary_of(&self, key: &str) -> Option<usize> {
        RedisCluster::primary_of(self, key)
    }
    fn replica_of(&self, primary: usize) -> Option<usize> {
        RedisCluster::replica_of(self, primary)
    }
    fn kill(&mut self, i: usize) {
        RedisCluster::kill(self, i)
    }
    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        RedisCluster::restart(self, i).await
    }
    fn cut_replicas(&self, i: usize) -> bool {
        RedisCluster::cut_replicas(self, i)
    }
    fn freeze(&self, i: usize) {
        RedisCluster::freeze(self, i)
    }
    fn thaw(&self, i: usize) {
        RedisCluster::thaw(self, i)
    }
    async fn failed_over(&mut self, key: &str, dead: usize, within: Duration) -> Option<usize> {
        RedisCluster::failed_over(self, key, dead, within).await
    }
}

/// One Redis with one replica behind a stable address, the way a platform runs a single Redis that
/// can fail over: the replicas reach it through a TCP forwarder (a Kubernetes Service, a VIP), and
/// `failed_over` plays the failover agent (Sentinel, an operator): it promotes the replica with
/// `REPLICAOF NO ONE` and points the address at it, ending the connections to the old primary.
pub struct PrimaryReplica {
    nodes: [PairNode; 2],
    primary: usize,
    address: Forwarder,
}

struct PairNode {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PairNode {
    async fn spawn(&mut self, replica_of: Option<u16>) -> anyhow::Result<()> {
        let mut cmd = guarded("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--save", "", "--appendonly", "no"])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&self.dir);
        if let Some(primary) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        self.child = Some(start_node(cmd, &self.dir, self.port).await?);
        Ok(())
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, args)
    }

    fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }
}

impl PrimaryReplica {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut nodes = [0, 1].map(|i| PairNode {
            port: free_port(),
            dir: dir.join(format!("redis-{i}")),
            child: None,
        });
        for n in &nodes {
            std::fs::create_dir_all(&n.dir)?;
        }
        let primary_port = nodes[0].port;
        nodes[0].spawn(None).await?;
        nodes[1].spawn(Some(primary_port)).await?;
        let pair = PrimaryReplica {
            address: Forwarder::start(primary_port).await?,
            nodes,
            primary: 0,
        };
        let synced = eventually(Duration::from_secs(15), || async {
            pair.nodes[0]
                .cli(&["info", "replication"])
                .is_some_and(|i| i.contains("state=online"))
        })
        .await;
        anyhow::ensure!(synced, "the replica did not get in sync with its primary");
        Ok(pair)
    }
}

impl Failover for PrimaryReplica {
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.address.port)
    }
    fn primary_of(&self, _key: &str) -> Option<usize> {
        Some(self.primary)
    }
    fn replica_of(&self, primary: usize) -> Option<usize> {
        Some(1 - primary)
    }
    fn kill(&mut self, i: usize) {
        kill_child(&mut self.nodes[i].child);
    }
    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let primary = self.nodes[self.primary].port;
        self.nodes[i].spawn(Some(primary)).await
    }
    fn cut_replicas(&self, i: usize) -> bool {
        self.nodes[i]
            .cli(&["client", "kill", "type", "replica"])
            .is_some()
    }
    fn freeze(&self, i: usize) {
        self.nodes[i].signal("-STOP");
    }
    fn thaw(&self, i: usize) {
        self.nodes[i].signal("-CONT");
    }
    async fn failed_over(&mut self, _key: &str, dead: usize, within: Duration) -> Option<usize> {
        let next = 1 - dead;
        let promoted = eventually(within, || async {
            self.nodes[next].cli(&["replicaof", "no", "one"]).is_some()
                && self.nodes[next]
                    .cli(&["info", "replication"])
                    .is_some_and(|i| i.contains("role:master"))
        })
        .await;
        if !promoted {
            return None;
        }
        self.primary = next;
        self.address.point_at(self.nodes[next].port);
        Some(next)
    }
}

impl Drop for PrimaryReplica {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            kill_child(&mut n.child);
        }
    }
}

/// A loopback TCP forwarder to a switchable port: what a Service address does when its endpoint
/// changes (new connections go to the new target; the old target's connections end).
struct Forwarder {
    port: u16,
    target: Arc<std::sync::atomic::AtomicU16>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let target = Arc::new(std::sync::atomic::AtomicU16::new(target));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let (target, conns) = (target.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let to = target.load(std::sync::atomic::Ordering::SeqCst);
                    let conn = tokio::spawn(async move {
                        if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                    let mut open = conns.lock().expect("conns");
                    open.retain(|c| !c.is_finished());
                    open.push(conn.abort_handle());
                }
            })
        };
        Ok(Self {
            port,
            target,
            conns,
            accept,
        })
    }

    /// New connections go to `port`; the open ones are closed (their clients reconnect).
    fn point_at(&self, port: u16) {
        self.target.store(port, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("conns").drain(..) {
            c.abort();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().expect("conns").drain(..) {
            c.abort();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings shared by every replica of one scenario.
#[derive(Clone)]
pub struct Cluster {
    pub database_url: String,
    pub redis_url: String,
    pub jwt_secret: String,
    pub env: Vec<(&'static str, String)>,
    pub logs: PathBuf,
}

/// A fresh database named like the API tests' (so `make test` drops it with theirs), migrated by the
/// real binary's `migrate` command.
pub async fn fresh_database(logs: &Path) -> anyhow::Result<String> {
    let name = tiketi_testkit::test_database_name("chaos_");
    let url = tiketi_testkit::create_database(&database_url(), &name, false).await?;
    let log = File::create(logs.join("migrate.log"))?;
    let status = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("LOG_FORMAT", "pretty")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    if !status.success() {
        bail!("tiketi-service migrate failed: {status}");
    }
    Ok(url)
}

impl Cluster {
    pub fn new(database_url: String, redis_url: String, logs: PathBuf) -> Self {
        Cluster {
            database_url,
            redis_url,
            jwt_secret: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            env: Vec::new(),
            logs,
        }
    }

    pub fn set(mut self, name: &'static str, value: impl ToString) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    pub fn jwt(&self) -> JwtKeys {
        JwtKeys::new(self.jwt_secret.as_bytes())
    }

    /// Starts replica `name` and waits until it answers `/health`.
    pub async fn replica(&self, name: &str) -> anyhow::Result<Replica> {
        let port = free_port();
        let log_path = self.logs.join(format!("replica-{name}.log"));
        let log = File::create(&log_path)?;
        let mut cmd = guarded(BIN);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CHAOS_PARENT_PID", std::process::id().to_string())
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("REDIS_PREFIX", PREFIX)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("JWT_SECRET", &self.jwt_secret)
            .env("UPLOAD_DIR", self.logs.join("uploads"))
            .env("DB_POOL_MAX", "8")
            .env("RESERVE_RATE_LIMIT_PER_MINUTE", "100000")
            .env("QUEUE_CHECK_RATE_LIMIT_PER_MINUTE", "100000")
            .env("RESERVE_RATE_LIMIT_PER_IP_PER_MINUTE", "0")
            .env("QUEUE_CHECK_RATE_LIMIT_PER_IP_PER_MINUTE", "0")
            .env("MAX_SEATS_PER_USER_PER_EVENT", "0")
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("start tiketi-service")?;
        let mut replica = Replica {
            base: format!("http://127.0.0.1:{port}"),
            log: log_path,
            child: Some(child),
        };
        let probe = reqwest::Client::builder().no_proxy().build()?;
        let up = eventually(Duration::from_secs(30), || {
            let (probe, url) = (&probe, format!("{}/health", replica.base));
            async move {
                probe
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            }
        })
        .await;
        if !up || !replica.alive() {
            bail!(
                "replica {name} did not become healthy (log: {})",
                replica.log.display()
            );
        }
        Ok(replica)
    }
}

pub struct Replica {
    pub base: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// SIGKILL, as the OOM killer or a lost node would: no draining, no cleanup.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Still running (never exited, never crashed).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Lines of the log that report a panic.
    pub fn panics(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().filter(|l| l.contains("panicked")).count())
            .unwrap_or(0)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// `n` users inserted directly (no per-user password hashing) with tokens the replicas accept.
pub async fn users(db: &PgPool, jwt: &JwtKeys, n: usize) -> anyhow::Result<Vec<User>> {
    let rows =
        tiketi_testkit::insert_users(db, "카오스", tiketi_service::auth::password::DUMMY_HASH, n)
            .await?;
    rows.into_iter()
        .map(|(id, email)| {
            Ok(User {
                token: jwt.issue(id, &email, "user")?,
                id,
            })
        })
        .collect()
}

/// An event on sale now with the small_theater seat map and waiting-room `threshold`; returns the
/// event and its seats in map order.
pub async fn seat_event(db: &PgPool, threshold: i32) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    let event =
        tiketi_testkit::insert_sale(db, "카오스 공연", Some("small_theater"), threshold, 1).await?;
    let layout: Uuid =
        sqlx::query_scalar("SELECT id FROM seat_layouts WHERE name = 'small_theater'")
            .fetch_one(db)
            .await?;
    let mut tx = db.begin().await?;
    tiketi_service::seats::db::insert_layout_seats(&mut tx, event, layout).await?;
    tx.commit().await?;
    Ok((event, tiketi_testkit::seats_of(db, event).await?))
}

/// Requests sent and answers seen, by status (or transport failure).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub outcomes: BTreeMap<String, u64>,
    /// API (not `/health*`) 503 answers that did not say when to retry.
    pub unavailable_without_retry_after: u64,
}

impl Tally {
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.outcomes
            .iter()
            .filter(|(k, _)| !k.starts_with('2'))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

pub type Meter = Arc<Mutex<Tally>>;

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<String>,
    pub took: Duration,
}

/// An HTTP client that counts every request and its outcome into the scenario's tally.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    pub meter: Meter,
}

impl Http {
    pub fn new(meter: Meter) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("http client");
        Http { client, meter }
    }

    fn count(&self, outcome: String, retry_after: bool, url: &str) {
        let mut t = self.meter.lock().expect("tally");
        t.sent += 1;
        // health probes report state to orchestrators; API clients are the ones told when to retry
        if outcome == "503" && !retry_after && !url.contains("/health") {
            t.unavailable_without_retry_after += 1;
        }
        *t.outcomes.entry(outcome).or_default() += 1;
    }

    /// One request; `Err` is a transport failure (refused, reset, timeout), already counted.
    pub async fn call(
        &self,
        method: Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let mut r = self.client.request(method, &url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let started = Instant::now();
        let resp = match r.send().await {
            Ok(resp) => resp,
            Err(e) => {
                let kind = if e.is_connect() {
                    "connection refused"
                } else if e.is_timeout() {
                    "timeout"
                } else {
                    "connection reset"
                };
                self.count(kind.into(), false, &url);
                return Err(format!("{kind}: {e}"));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        let took = started.elapsed();
        self.count(status.as_u16().to_string(), retry_after.is_some(), &url);
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
            took,
        })
    }

    pub async fn get(&self, base: &str, path: &str, token: Option<&str>) -> Result<Answer, String> {
        self.call(Method::GET, format!("{base}{path}"), token, None)
            .await
    }

    pub async fn post(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Answer, String> {
        self.call(Method::POST, format!("{base}{path}"), token, Some(body))
            .await
    }
}
