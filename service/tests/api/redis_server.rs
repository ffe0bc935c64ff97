//! A private redis-server on a free port, for tests that stop Redis or change its configuration
//! without disturbing the shared one.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::eventually;

/// Killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts redis-server on a free port with `args` (e.g. `--maxmemory-policy allkeys-lru`) and
    /// waits until it listens.
    pub async fn start(args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port, args).await
    }

    /// Starts redis-server on `port` (e.g. again after [`RedisServer::stop`]).
    pub async fn start_on(port: u16, args: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/deps.sh installs it)");
        let up = eventually(Duration::from_secs(10), || async move {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "redis-server did not start on {port}");
        RedisServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private Redis Cluster of three primaries (no replicas), each node started with its own extra
/// arguments; killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: TempDir,
}

/// A directory removed when dropped (each node keeps its `nodes.conf` in its own).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisCluster {
    /// Three primaries sharing the slots; `args[i]` go to node i.
    pub async fn start(args: [&[&str]; 3]) -> Self {
        let dir = TempDir(
            std::env::temp_dir().join(format!("tiketi-cluster-{}", uuid::Uuid::new_v4().simple())),
        );
        let mut nodes = Vec::new();
        for (i, extra) in args.iter().enumerate() {
            let node_dir = dir.0.join(i.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let bus = free_port().to_string();
            let node_dir = node_dir.to_string_lossy().into_owned();
            let mut all = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--dir",
                &node_dir,
                "--cluster-node-timeout",
                "1000",
            ];
            all.extend_from_slice(extra);
            nodes.push(RedisServer::start(&all).await);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        let first = nodes[0].port;
        let ok = eventually(Duration::from_secs(10), || async move {
            Command::new("redis-cli")
                .args(["-p", &first.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        })
        .await;
        assert!(ok, "the private cluster did not reach cluster_state:ok");
        RedisCluster { nodes, _dir: dir }
    }

    /// The `redis-cluster://` URL fred reads (one seed node, the others as `node=`).
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
}
