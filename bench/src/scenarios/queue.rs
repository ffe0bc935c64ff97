//! queue: a burst of waiting-room joins (`POST /api/queue/check/:id`, distinct users) while
//! socket clients wait in the queue room; then Redis is read directly to prove no position was
//! lost or duplicated, and the waiters' `queue-updated` arrivals give the update latency, measured
//! from the change each update reports (the join that made the queue that long), not from the
//! server's own timestamp in the payload.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::Result;
use fred::prelude::*;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tiketi_core::keys::Keys;

use crate::{
    Ctx,
    agent::{self, Job},
    fixtures,
    report::Figure,
    servers::{CpuSplit, Kind, Stack},
    stats::Latencies,
    wait,
};

/// Admitted users before newcomers queue; low so nearly the whole burst waits.
const THRESHOLD: i32 = 100;
/// How long the waiters listen to position updates after the burst.
const LISTEN: Duration = Duration::from_secs(5);

pub struct Answer {
    pub status: u16,
    pub position: Option<i64>,
    pub took: Duration,
    /// When the answer arrived (µs since the epoch): the queue had changed by then.
    pub at_us: i64,
}

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let (j, w) = (ctx.args.queue_joins, ctx.args.queue_waiters);
    println!("\n== queue: {j} joins, {w} waiters listening for position updates");
    let (event, _) = fixtures::seat_event(&ctx.db, "queue", 0, THRESHOLD).await?;
    let users = fixtures::users(&ctx.db, "queuer", j + w).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
    let stack = Stack::start(Kind::Tiketi, &ctx.env, 1, ctx.args.port).await?;

    let job = Job {
        servers: stack.addrs(),
        sources: ctx.sources.clone(),
        tokens: tokens[j..].to_vec(),
        joins: vec![("join-queue".into(), json!({ "eventId": event }))],
        record: vec!["queue-updated".into()],
        key_field: "queueSize".into(),
        concurrency: 256,
    };
    let procs = w.div_ceil(ctx.args.clients_per_process.max(1));
    let (agents, ready) = agent::start_all(&job, procs).await?;
    println!("   {} waiters connected", ready.connected);
    wait::idle(&stack.pids(), Duration::from_secs(30)).await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(ctx.args.concurrency)
        .build()?;
    let url = format!("{}/api/queue/check/{event}", stack.base_url());
    let cpu_before = CpuSplit::now(&stack.pids());
    let started = Instant::now();
    let answers: Vec<Answer> = stream::iter(0..j)
        .map(|i| check(&http, &url, &tokens[i]))
        .buffered(ctx.args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = CpuSplit::now(&stack.pids()).since(cpu_before);
    tokio::time::sleep(LISTEN).await;
    let done = agent::finish_all(agents).await?;

    let v = verify(
        &ctx.args.redis_url,
        &ctx.env.redis_prefix,
        event,
        &users,
        &answers,
    )
    .await?;
    let Verified {
        ok,
        lost,
        twice,
        moved_back,
        refused,
        waiting,
        admitted,
        lat,
    } = v;
    let s = lat.summary();
    println!(
        "   {ok} of {j} joined in {elapsed:.2} s ({:.0}/s), p99 {:.1} ms; {} waiting, {} admitted; lost {lost}, both {twice}, moved back {moved_back}, non-200 {refused}",
        ok as f64 / elapsed,
        s.p99_ms,
        waiting,
        admitted
    );
    ctx.report.add(
        Figure::new("queue", &format!("join rate ({j} distinct users)"), "/s")
            .tiketi(ok as f64 / elapsed)
            .higher_is_better()
            .target("100k joins in 10 s (≥ 10,000/s)", 10_000.0),
    );
    ctx.report
        .add(Figure::new("queue", "join latency p99", "ms").tiketi(s.p99_ms));
    // where a join's CPU goes, as for the holds (the waiters' agents are not counted: they only
    // receive the position updates)
    ctx.report.add_cpu_per_op("queue", "join", cpu, ok);
    ctx.report.add(
        Figure::new("queue", "positions lost, duplicated or moved back", "")
            .tiketi((lost + twice + moved_back) as f64)
            .check(
                "none, and every join answered 200",
                lost + twice + moved_back == 0 && refused == 0,
            ),
    );

    // Each update says "the queue is S long". During the burst the queue only grows and a queued
    // join's position is the length it made, so the change an update reports first is the join
    // right after the previous update's length: its answer time is when the news began to wait.
    let mut changed_at: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    for a in &answers {
        if let Some(p) = a.position {
            changed_at.entry(p).or_insert(a.at_us);
        }
    }
    let mut sizes: Vec<(i64, &Vec<i64>)> = done
        .arrivals
        .get("queue-updated")
        .map(|by_size| {
            by_size
                .iter()
                .filter_map(|(k, v)| Some((k.parse::<i64>().ok()?, v)))
                .collect()
        })
        .unwrap_or_default();
    sizes.sort_unstable_by_key(|(size, _)| *size);
    let mut updates = Latencies::default();
    let mut distinct = 0usize;
    let mut reported = 0i64;
    let mut delivered = 0usize;
    for (size, arrivals) in &sizes {
        distinct += 1;
        delivered += arrivals.len();
        // the oldest change in this update; sizes reached before the burst (none) have no join
        let Some(oldest) = (reported + 1..=*size).find_map(|p| changed_at.get(&p)) else {
            reported = *size;
            continue;
        };
        for at in *arrivals {
            updates.record_us(at - oldest);
        }
        reported = *size;
    }
    let u = updates.summary();
    println!(
        "   {distinct} position updates, {} deliveries to {} waiters: p50 {:.1} p99 {:.1} max {:.1} ms",
        u.count, ready.connected, u.p50_ms, u.p99_ms, u.max_ms
    );
    ctx.report.add(
        Figure::new(
            "queue",
            &format!("position update to all {w} waiters, from the change, max"),
            "ms",
        )
        .tiketi(u.max_ms)
        .target("≤ 1 s", 1000.0),
    );
    ctx.report.add(
        Figure::new("queue", "position updates received by every waiter", "")
            .tiketi(distinct as f64)
            .check(
                "each update reached every waiter",
                distinct > 0 && delivered == distinct * ready.connected,
            ),
    );
    stack.stop().await;
    Ok(())
}

pub async fn check(http: &reqwest::Client, url: &str, token: &str) -> Answer {
    let started = Instant::now();
    let res = http.post(url).bearer_auth(token).send().await;
    let (status, body) = match res {
        Ok(r) => (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        ),
        Err(_) => (0, Value::Null),
    };
    Answer {
        status,
        position: body.get("position").and_then(Value::as_i64),
        took: started.elapsed(),
        at_us: chrono::Utc::now().timestamp_micros(),
    }
}

/// What Redis holds after a burst of joins, against what the joins were told.
pub struct Verified {
    pub ok: usize,
    pub lost: usize,
    pub twice: usize,
    pub moved_back: usize,
    pub refused: usize,
    pub waiting: usize,
    pub admitted: usize,
    pub lat: Latencies,
}

/// Every user that got 200 is either waiting or admitted, exactly once, and never behind the place
/// it was told.
pub async fn verify(
    redis_url: &str,
    prefix: &str,
    event: uuid::Uuid,
    users: &[uuid::Uuid],
    answers: &[Answer],
) -> Result<Verified> {
    let redis = Builder::from_config(Config::from_url(redis_url)?).build()?;
    redis.init().await?;
    let keys = Keys::new(prefix);
    let waiting: Vec<String> = redis
        .zrange(keys.queue(event), 0, -1, None, false, None, false)
        .await?;
    let admitted: Vec<String> = redis
        .zrange(keys.active(event), 0, -1, None, false, None, false)
        .await?;
    redis.quit().await.ok();
    let rank: std::collections::HashMap<&str, i64> = waiting
        .iter()
        .enumerate()
        .map(|(r, u)| (u.as_str(), i64::try_from(r).unwrap_or(i64::MAX)))
        .collect();
    let admitted_set: HashSet<&str> = admitted.iter().map(String::as_str).collect();
    let (mut ok, mut lost, mut twice, mut moved_back, mut refused) = (0, 0, 0, 0, 0);
    let mut lat = Latencies::default();
    for (i, a) in answers.iter().enumerate() {
        lat.record_us(i64::try_from(a.took.as_micros()).unwrap_or(i64::MAX));
        if a.status != 200 {
            refused += 1;
            continue;
        }
        ok += 1;
        let user = users[i].to_string();
        let (queued, active) = (
            rank.get(user.as_str()),
            admitted_set.contains(user.as_str()),
        );
        match (queued, active) {
            (None, false) => lost += 1,
            (Some(_), true) => twice += 1,
            // positions only move forward: the place now is never behind the one announced
            (Some(r), false) if a.position.is_some_and(|p| r + 1 > p) => moved_back += 1,
            _ => {}
        }
    }
    Ok(Verified {
        ok,
        lost,
        twice,
        moved_back,
        refused,
        waiting: waiting.len(),
        admitted: admitted.len(),
        lat,
    })
}

/// The same joins (no waiters) on a Redis Cluster: one replica, then one waiting for a Redis replica
/// to have each place (`REDIS_WAIT_REPLICAS=1`): the cost of a place that survives a failover.
pub async fn on_cluster(ctx: &mut Ctx, cluster_url: &str) -> Result<()> {
    let j = ctx.args.queue_joins;
    for (wait, label) in [
        (false, "on a Redis Cluster (3 primaries, 3 replicas)"),
        (
            true,
            "on the cluster, each place on a replica first (REDIS_WAIT_REPLICAS=1)",
        ),
    ] {
        println!("\n== queue {label}: {j} joins");
        let (event, _) = fixtures::seat_event(&ctx.db, "queue-cluster", 0, THRESHOLD).await?;
        let users = fixtures::users(&ctx.db, "clusterqueuer", j).await?;
        let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
        let mut env = ctx.env.clone();
        env.redis_url = cluster_url.to_string();
        if wait {
            env.service_env
                .push(("REDIS_WAIT_REPLICAS".into(), "1".into()));
        }
        let stack = Stack::start(Kind::Tiketi, &env, 1, ctx.args.port).await?;
        wait::idle(&stack.pids(), Duration::from_secs(30)).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(ctx.args.concurrency)
            .build()?;
        let url = format!("{}/api/queue/check/{event}", stack.base_url());
        let started = Instant::now();
        let answers: Vec<Answer> = stream::iter(0..j)
            .map(|i| check(&http, &url, &tokens[i]))
            .buffered(ctx.args.concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        stack.stop().await;
        let v = verify(cluster_url, &env.redis_prefix, event, &users, &answers).await?;
        let s = v.lat.summary();
        println!(
            "   {} of {j} joined in {elapsed:.2} s ({:.0}/s), p50 {:.1} p99 {:.1} ms; lost {}, both {}, moved back {}, non-200 {}",
            v.ok,
            v.ok as f64 / elapsed,
            s.p50_ms,
            s.p99_ms,
            v.lost,
            v.twice,
            v.moved_back,
            v.refused
        );
        ctx.report.add(
            Figure::new("queue", &format!("join rate {label}"), "/s")
                .tiketi(v.ok as f64 / elapsed)
                .higher_is_better(),
        );
        ctx.report
            .add(Figure::new("queue", &format!("join latency p99 {label}"), "ms").tiketi(s.p99_ms));
        ctx.report.add(
            Figure::new(
                "queue",
                &format!("positions lost, duplicated or moved back {label}"),
                "",
            )
            .tiketi((v.lost + v.twice + v.moved_back) as f64)
            .check(
                "none, and every join answered 200",
                v.lost + v.twice + v.moved_back == 0 && v.refused == 0,
            ),
        );
    }
    Ok(())
}
