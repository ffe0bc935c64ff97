//! `tiketi-bench`: the load generator and benchmark driver (docs/design.md §6). It starts the
//! servers itself (TIKETI release binary, and the Node socket.io reference for side-by-side
//! ratios), seeds PostgreSQL, drives raw Engine.IO/Socket.IO clients from several agent processes
//! and loopback source addresses, and prints a table (and JSON) of figures against the targets.

mod agent;
mod fixtures;
mod report;
mod scenarios;
mod servers;
mod sio;
mod stats;
mod wait;

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use sqlx::PgPool;

use crate::{report::Report, servers::Env};

#[derive(Parser)]
#[command(
    name = "tiketi-bench",
    about = "Benchmarks TIKETI against docs/design.md §6 and a Node socket.io reference"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
}

#[derive(Subcommand)]
enum Command {
    /// Internal: one client process, driven over stdin/stdout.
    #[command(hide = true)]
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N clients connect, authenticate and join rooms: connect rate and server RSS per socket.
    Connections,
    /// Seat holds broadcast to every client of one room, one replica and across replicas.
    Fanout,
    /// Seat-hold storm on distinct seats, then racers per seat.
    Holds,
    /// An opening: most buyers click a few hot seats of a large map; won and lost answers.
    Hotseats,
    /// Waiting-room join burst, admission and position updates.
    Queue,
    /// GET /api/events and /api/events/:id throughput and latency.
    Rest,
    /// Anonymous readers of the largest seat map while holds run: reads/s, holds' p99.
    Herd,
    /// Messages each of 3 replicas receives with a Redis channel per event room and with one.
    Rooms,
    /// Waiting-room joins while the Redis Cluster primary of the sale is SIGKILLed: the gap, no
    /// place lost.
    Failover,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "connections,fanout,holds,hotseats,queue,rest,herd,rooms,failover"
    )]
    pub scenarios: Vec<Scenario>,
    /// Socket.IO clients for connections and fanout.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// At most this many clients per agent process (a process may open ~20,000 files here).
    #[arg(long, default_value_t = 9_500)]
    pub clients_per_process: usize,
    /// Keep the connections scenario's clients connected this long after the idle RSS reading,
    /// so that a heap profiler wrapped around the service (`--service-bin`) can stop it while
    /// every socket is live.
    #[arg(long, default_value_t = 0)]
    pub idle_linger_secs: u64,
    /// Loopback source addresses 127.0.0.2.. to spread client ports over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Broadcasts per fan-out run (spaced, then the same number as one burst).
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// Gap between spaced broadcasts.
    #[arg(long, default_value_t = 300)]
    pub spacing_ms: u64,
    /// Replicas for the cross-replica fan-out run.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Holds on distinct seats.
    #[arg(long, default_value_t = 20_000)]
    pub holds: usize,
    /// Seats raced for, each by `racers` buyers.
    #[arg(long, default_value_t = 1_000)]
    pub race_seats: usize,
    #[arg(long, default_value_t = 10)]
    pub racers: usize,
    /// Holds of the hot-seat scenario, each by a distinct buyer (90 % on 3 % of the seats).
    #[arg(long, default_value_t = 20_000)]
    pub hot_holds: usize,
    /// Seats of the hot-seat scenario's map.
    #[arg(long, default_value_t = 20_000)]
    pub hot_map_seats: usize,
    /// HTTP requests in flight for holds (every scenario) and queue joins.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Waiting-room joins in the burst.
    #[arg(long, default_value_t = 100_000)]
    pub queue_joins: usize,
    /// Socket clients in the waiting room receiving position updates.
    #[arg(long, default_value_t = 5_000)]
    pub queue_waiters: usize,
    /// Holds alone, then as many beside the seat-map readers (herd).
    #[arg(long, default_value_t = 1_000)]
    pub herd_holds: usize,
    /// Seat-map readers looping during the herd's holds.
    #[arg(long, default_value_t = 64)]
    pub herd_readers: usize,
    /// Seconds per REST endpoint.
    #[arg(long, default_value_t = 10)]
    pub rest_seconds: u64,
    /// Connections for the REST run.
    #[arg(long, default_value_t = 64)]
    pub rest_connections: usize,
    /// Skip the Node reference server.
    #[arg(long)]
    pub no_node: bool,
    #[arg(long, default_value = "target/release/tiketi-service")]
    pub service_bin: PathBuf,
    #[arg(long, default_value = "bench/node")]
    pub node_dir: PathBuf,
    /// Where the JSON results go (a markdown table goes beside it).
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// A PostgreSQL URL the benchmark may create its database next to (`make bench` sets it).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:56379")]
    pub redis_url: String,
    /// A Redis Cluster (`redis-cluster://…`) the queue joins also run on, with and without
    /// `REDIS_WAIT_REPLICAS=1` (`make bench` starts one: scripts/redis-cluster.sh). Unset: skipped.
    #[arg(long, env = "REDIS_CLUSTER_URL")]
    pub redis_cluster_url: Option<String>,
    /// Extra settings for the TIKETI replicas, e.g. `--service-env DB_POOL_MAX=20` (repeatable).
    #[arg(long = "service-env", value_parser = parse_setting)]
    pub service_env: Vec<(String, String)>,
    /// First port for the servers under test.
    #[arg(long, default_value_t = 3400)]
    pub port: u16,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// What every scenario shares.
pub struct Ctx {
    pub args: Args,
    pub env: Env,
    pub db: PgPool,
    pub sources: Vec<IpAddr>,
    pub report: Report,
}

impl Ctx {
    pub fn wants(&self, s: Scenario) -> bool {
        self.args.scenarios.contains(&s)
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // every socket is a file: lift the soft limit to the hard one
    rlimit::increase_nofile_limit(u64::MAX).context("raise the open-files limit")?;
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::Agent) => runtime.block_on(agent::run()),
        None => runtime.block_on(drive(cli.args)),
    }
}

async fn drive(args: Args) -> Result<()> {
    let run = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let database_url = fixtures::fresh_database(&args.database_url).await?;
    let env = Env {
        service_bin: args.service_bin.clone(),
        node_dir: args.node_dir.clone(),
        database_url: database_url.clone(),
        redis_url: args.redis_url.clone(),
        redis_prefix: format!("tiketi-bench-{run}"),
        jwt_secret: format!("bench-secret-{run}-{}", uuid::Uuid::new_v4().simple()),
        service_env: args.service_env.clone(),
    };
    let migrate = tokio::process::Command::new(&env.service_bin)
        .arg("migrate")
        .env("DATABASE_URL", &database_url)
        .status()
        .await
        .with_context(|| {
            format!(
                "run {} migrate (build it: cargo build --release -p tiketi-service)",
                env.service_bin.display()
            )
        })?;
    anyhow::ensure!(migrate.success(), "migrations failed");
    let db = PgPool::connect(&database_url).await?;
    let sources = (0..args.sources.max(1))
        .map(|i| IpAddr::from([127, 0, 0, 2 + i]))
        .collect();
    let out = args.out.clone();
    let mut ctx = Ctx {
        args,
        env,
        db,
        sources,
        report: Report {
            machine: report::Machine::here(),
            previous: report::previous_rows(&out),
            ..Report::default()
        },
    };
    println!(
        "tiketi-bench on {} cpus: {:?}",
        ctx.report.machine.cpus, ctx.args.scenarios
    );
    if ctx.wants(Scenario::Connections) || ctx.wants(Scenario::Fanout) {
        scenarios::realtime::run(&mut ctx).await?;
    }
    if ctx.wants(Scenario::Holds) {
        scenarios::holds::run(&mut ctx).await?;
    }
    if ctx.wants(Scenario::Hotseats) {
        scenarios::hotseats::run(&mut ctx).await?;
    }
    if ctx.wants(Scenario::Queue) {
        scenarios::queue::run(&mut ctx).await?;
        if let Some(cluster) = ctx.args.redis_cluster_url.clone() {
            scenarios::queue::on_cluster(&mut ctx, &cluster).await?;
        }
    }
    if ctx.wants(Scenario::Rest) {
        scenarios::rest::run(&mut ctx).await?;
    }
    if ctx.wants(Scenario::Herd) {
        scenarios::herd::run(&mut ctx).await?;
    }
    if ctx.wants(Scenario::Rooms) {
        scenarios::rooms::run(&mut ctx).await?;
    }
    if ctx.wants(Scenario::Failover) {
        scenarios::failover::run(&mut ctx).await?;
    }
    let table = ctx.report.table();
    println!("\n{table}");
    ctx.report.write_json(&ctx.args.out)?;
    std::fs::write(ctx.args.out.with_extension("md"), &table)?;
    println!(
        "results: {} and {}",
        ctx.args.out.display(),
        ctx.args.out.with_extension("md").display()
    );
    Ok(())
}
