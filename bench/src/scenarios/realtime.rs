//! connections + fanout: N raw Socket.IO clients connect, authenticate and join the event and
//! seat rooms of one event; then seat holds are broadcast to all of them (spaced, then as one
//! burst), on one replica and across replicas through Redis. The same clients and rooms run against
//! the Node socket.io reference.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use uuid::Uuid;

use crate::{
    Ctx, Scenario,
    agent::{self, Done, Job, Ready},
    fixtures,
    report::Figure,
    servers::{Env, Kind, Stack, cpu_seconds},
    sio::now_us,
    stats::Latencies,
    wait,
};

/// What one run measured.
#[derive(Default)]
struct Run {
    ready: Ready,
    rss_per_socket_kib: f64,
    /// The same after the fan-out (read once the server is idle again).
    rss_after_traffic_kib: f64,
    /// Server CPU (user + system) per delivered broadcast packet, spaced and burst phases.
    cpu_us_spaced: f64,
    cpu_us_burst: f64,
    spaced: Latencies,
    burst: Latencies,
    delivered: u64,
    expected: u64,
    dropped: usize,
}

/// Seat holds that trigger broadcasts: who holds which seat.
struct Triggers {
    event: Uuid,
    seats: Vec<Uuid>,
    tokens: Vec<String>,
    users: Vec<Uuid>,
    next: usize,
}

impl Triggers {
    fn take(&mut self, n: usize) -> Vec<(Uuid, String, Uuid)> {
        let out = (self.next..self.next + n)
            .map(|i| (self.seats[i], self.tokens[i].clone(), self.users[i]))
            .collect();
        self.next += n;
        out
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.args.clients;
    let m = ctx.args.messages;
    println!("\n== connections / fanout: {n} clients, {m} broadcasts spaced + {m} in a burst");
    let listeners = fixtures::users(&ctx.db, "listener", n).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &listeners)?;
    // two kinds × two topologies × (spaced + burst), and TIKETI's replicas on a Redis Cluster
    let holds = 2 * 2 * 2 * m + 2 * m;
    let (event, seats) = fixtures::seat_event(&ctx.db, "fan-out", holds, 1_000_000).await?;
    let buyers = fixtures::users(&ctx.db, "buyer", holds).await?;
    let mut triggers = Triggers {
        event,
        seats,
        tokens: fixtures::tokens(&ctx.env.jwt_secret, &buyers)?,
        users: buyers,
        next: 0,
    };
    let kinds: &[Kind] = if ctx.args.no_node {
        &[Kind::Tiketi]
    } else {
        &[Kind::Tiketi, Kind::Node]
    };
    let fanout = ctx.wants(Scenario::Fanout);
    let mut one: HashMap<Kind, Run> = HashMap::new();
    let mut many: HashMap<Kind, Run> = HashMap::new();
    let mut clustered: HashMap<Kind, Run> = HashMap::new();
    let env = ctx.env.clone();
    for &kind in kinds {
        one.insert(
            kind,
            measure(ctx, &env, kind, 1, &tokens, &mut triggers, fanout).await?,
        );
        if fanout && ctx.args.replicas > 1 {
            let r = ctx.args.replicas;
            many.insert(
                kind,
                measure(ctx, &env, kind, r, &tokens, &mut triggers, true).await?,
            );
        }
    }
    if let (true, Some(url)) = (fanout && ctx.args.replicas > 1, &ctx.args.redis_cluster_url) {
        let mut env = ctx.env.clone();
        env.redis_url = url.clone();
        let r = ctx.args.replicas;
        clustered.insert(
            Kind::Tiketi,
            measure(ctx, &env, Kind::Tiketi, r, &tokens, &mut triggers, true).await?,
        );
    }
    let t = &one[&Kind::Tiketi];
    let node = one.get(&Kind::Node);
    let nf = |f: fn(&Run) -> f64| node.map(f);
    ctx.report.add(
        Figure::new(
            "connections",
            &format!("clients connected, authenticated, joined (of {n})"),
            "",
        )
        .tiketi(t.ready.connected as f64)
        .node(nf(|r| r.ready.connected as f64))
        .higher_is_better()
        .check("all", t.ready.connected == n),
    );
    ctx.report.add(
        Figure::new("connections", "connect + auth + join rate", "/s")
            .tiketi(rate(&t.ready))
            .node(nf(|r| rate(&r.ready)))
            .higher_is_better(),
    );
    ctx.report.add(
        Figure::new("connections", "server RSS per idle joined socket", "KiB")
            .tiketi(t.rss_per_socket_kib)
            .node(nf(|r| r.rss_per_socket_kib))
            .target("≤ 9 KiB", 9.0),
    );
    if !fanout {
        return Ok(());
    }
    let connected = t.ready.connected as f64;
    for (label, runs) in [
        ("1 replica", &one),
        ("replicas", &many),
        ("cluster", &clustered),
    ] {
        let Some(t) = runs.get(&Kind::Tiketi) else {
            continue;
        };
        let node = runs.get(&Kind::Node);
        let label = match label {
            "replicas" => format!("{} replicas via Redis", ctx.args.replicas),
            "cluster" => format!(
                "{} replicas via a Redis Cluster (3 primaries)",
                ctx.args.replicas
            ),
            _ => label.to_string(),
        };
        ctx.report.add(
            Figure::new(
                "fanout",
                &format!("{label}: deliveries (of {})", t.expected),
                "",
            )
            .tiketi(t.delivered as f64)
            .node(node.map(|r| r.delivered as f64))
            .higher_is_better()
            .check("all delivered", t.delivered == t.expected && t.dropped == 0),
        );
        ctx.report.add(
            Figure::new("fanout", &format!("{label}: spaced p50"), "ms")
                .tiketi(t.spaced.summary().p50_ms)
                .node(node.map(|r| r.spaced.summary().p50_ms)),
        );
        let p99 = Figure::new("fanout", &format!("{label}: spaced p99"), "ms")
            .tiketi(t.spaced.summary().p99_ms)
            .node(node.map(|r| r.spaced.summary().p99_ms));
        let p99 = if label == "1 replica" {
            p99.target(
                format!("≤ 8 µs × N = {:.0} ms", 0.008 * connected),
                0.008 * connected,
            )
        } else {
            let base = one[&Kind::Tiketi].spaced.summary().p99_ms;
            p99.target(
                format!("≤ 1.3 × one replica = {:.0} ms", 1.3 * base),
                1.3 * base,
            )
        };
        ctx.report.add(p99);
        if label == "1 replica" {
            ctx.report.add(
                Figure::new(
                    "fanout",
                    "server RSS per joined socket after the fan-out",
                    "KiB",
                )
                .tiketi(t.rss_after_traffic_kib)
                .node(node.map(|r| r.rss_after_traffic_kib))
                .target("≤ 9 KiB", 9.0),
            );
        }
        for (phase, f) in [
            ("spaced", (|r: &Run| r.cpu_us_spaced) as fn(&Run) -> f64),
            ("burst", |r: &Run| r.cpu_us_burst),
        ] {
            ctx.report.add(
                Figure::new(
                    "fanout",
                    &format!("{label}: server CPU per packet, {phase}"),
                    "µs",
                )
                .tiketi(f(t))
                .node(node.map(f)),
            );
        }
        ctx.report.add(
            Figure::new("fanout", &format!("{label}: burst of {m} p99"), "ms")
                .tiketi(t.burst.summary().p99_ms)
                .node(node.map(|r| r.burst.summary().p99_ms))
                .target(
                    format!("≤ 15 µs × N = {:.0} ms", 0.015 * connected),
                    0.015 * connected,
                ),
        );
    }
    Ok(())
}

fn rate(r: &Ready) -> f64 {
    r.connected as f64 / (r.elapsed_ms.max(1) as f64 / 1000.0)
}

async fn measure(
    ctx: &Ctx,
    env: &Env,
    kind: Kind,
    replicas: usize,
    tokens: &[String],
    triggers: &mut Triggers,
    fanout: bool,
) -> Result<Run> {
    println!("-- {} × {replicas}", kind.label());
    let stack = Stack::start(kind, env, replicas, ctx.args.port).await?;
    wait::idle(&stack.pids(), Duration::from_secs(10)).await;
    let rss_before: u64 = stack.rss_kib()?.iter().sum();
    let job = Job {
        servers: stack.addrs(),
        sources: ctx.sources.clone(),
        tokens: tokens.to_vec(),
        joins: vec![
            ("join-event".into(), json!({ "eventId": triggers.event })),
            (
                "join-seat-selection".into(),
                json!({ "eventId": triggers.event }),
            ),
        ],
        record: vec!["seat-locked".into()],
        key_field: "seatId".into(),
        concurrency: 256,
    };
    let procs = tokens.len().div_ceil(ctx.args.clients_per_process.max(1));
    let (agents, ready) = agent::start_all(&job, procs).await?;
    println!(
        "   {} connected, {} failed in {} ms{}",
        ready.connected,
        ready.failed,
        ready.elapsed_ms,
        ready
            .first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
    wait::idle(&stack.pids(), Duration::from_secs(60)).await;
    let rss_after: u64 = stack.rss_kib()?.iter().sum();
    let mut run = Run {
        rss_per_socket_kib: (rss_after.saturating_sub(rss_before)) as f64
            / ready.connected.max(1) as f64,
        ready,
        ..Run::default()
    };
    println!("   RSS {rss_before} → {rss_after} KiB");
    if ctx.args.idle_linger_secs > 0 {
        println!(
            "   idle, every client connected: lingering {} s",
            ctx.args.idle_linger_secs
        );
        tokio::time::sleep(Duration::from_secs(ctx.args.idle_linger_secs)).await;
    }
    if !fanout {
        agent::finish_all(agents).await?;
        stack.stop().await;
        return Ok(run);
    }
    let http = reqwest::Client::new();
    let base = stack.base_url();
    let m = ctx.args.messages;
    let cpu = |stack: &Stack| -> f64 {
        stack
            .pids()
            .iter()
            .filter_map(|p| cpu_seconds(*p).ok())
            .sum()
    };
    let cpu0 = cpu(&stack);
    let mut spaced_t0 = HashMap::new();
    for (seat, token, user) in triggers.take(m) {
        spaced_t0.insert(seat.to_string(), now_us());
        trigger(&http, kind, &base, triggers.event, seat, &token, user).await?;
        tokio::time::sleep(Duration::from_millis(ctx.args.spacing_ms)).await;
    }
    wait::idle(&stack.pids(), Duration::from_secs(30)).await;
    let cpu1 = cpu(&stack);
    let burst = triggers.take(m);
    let mut burst_t0 = HashMap::new();
    let started = now_us();
    let sends = burst.iter().map(|(seat, token, user)| {
        burst_t0.insert(seat.to_string(), started);
        trigger(&http, kind, &base, triggers.event, *seat, token, *user)
    });
    for r in futures::future::join_all(sends.collect::<Vec<_>>()).await {
        r?;
    }
    wait::idle(&stack.pids(), Duration::from_secs(60)).await;
    let cpu2 = cpu(&stack);
    let rss_traffic: u64 = stack.rss_kib()?.iter().sum();
    run.rss_after_traffic_kib =
        rss_traffic.saturating_sub(rss_before) as f64 / run.ready.connected.max(1) as f64;
    let done = agent::finish_all(agents).await?;
    stack.stop().await;
    tally(&done, &spaced_t0, &mut run.spaced, &mut run.delivered);
    tally(&done, &burst_t0, &mut run.burst, &mut run.delivered);
    run.expected = (run.ready.connected * 2 * m) as u64;
    run.dropped = done.dropped;
    // every seat-locked delivery came with a seat-selected one (Node: the same two packets)
    let packets = (run.ready.connected * 2 * m).max(1) as f64;
    run.cpu_us_spaced = (cpu1 - cpu0) * 1e6 / packets;
    run.cpu_us_burst = (cpu2 - cpu1) * 1e6 / packets;
    println!(
        "   RSS after traffic {rss_traffic} KiB ({:.2} KiB per socket); server CPU per packet: spaced {:.2} µs, burst {:.2} µs",
        run.rss_after_traffic_kib, run.cpu_us_spaced, run.cpu_us_burst
    );
    let (s, b) = (run.spaced.summary(), run.burst.summary());
    println!(
        "   spaced p50 {:.1} p99 {:.1} ms; burst p99 {:.1} ms; {} of {} delivered, {} dropped",
        s.p50_ms, s.p99_ms, b.p99_ms, run.delivered, run.expected, run.dropped
    );
    Ok(run)
}

fn tally(done: &Done, t0: &HashMap<String, i64>, into: &mut Latencies, delivered: &mut u64) {
    let Some(arrivals) = done.arrivals.get("seat-locked") else {
        return;
    };
    for (seat, sent) in t0 {
        for at in arrivals.get(seat).map(Vec::as_slice).unwrap_or_default() {
            into.record_us(at - sent);
            *delivered += 1;
        }
    }
}

/// One broadcast: a real seat hold through REST on TIKETI; the reference's bare emit on Node.
async fn trigger(
    http: &reqwest::Client,
    kind: Kind,
    base: &str,
    event: Uuid,
    seat: Uuid,
    token: &str,
    user: Uuid,
) -> Result<()> {
    let res = match kind {
        Kind::Tiketi => {
            http.post(format!("{base}/api/seats/reserve"))
                .bearer_auth(token)
                .json(&json!({ "eventId": event, "seatIds": [seat] }))
                .send()
                .await
        }
        Kind::Node => {
            http.post(format!("{base}/bench/hold"))
                .json(&json!({ "eventId": event, "seatId": seat, "userId": user }))
                .send()
                .await
        }
    }
    .context("trigger request")?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    ensure!(status.as_u16() == 201, "hold answered {status}: {body}");
    Ok(())
}
