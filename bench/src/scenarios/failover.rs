//! failover: waiting-room joins on the Redis Cluster with `REDIS_WAIT_REPLICAS=1` while the primary
//! serving the sale's slot is SIGKILLed; its replica takes the slot over and the killed node comes
//! back as that replica's replica, as a restarted pod would. Reports the gap (the longest time
//! without a join answered) and proves, from Redis afterwards, that no place told to a user was lost,
//! duplicated or moved back. Needs the bench's cluster (`scripts/redis-cluster.sh`, as `make bench`
//! starts it): the node is killed and restarted through that script's files.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, stream};
use tiketi_core::keys::Keys;

use super::queue::{Answer, check, verify};
use crate::{
    Ctx, fixtures,
    report::Figure,
    servers::{Kind, Stack},
    wait,
};

/// Users joining, each once (retried until placed).
const JOINS: usize = 4_000;
/// Joins in flight.
const CONCURRENCY: usize = 16;
/// Places told before the kill.
const BEFORE_KILL: usize = 1_000;
/// A join still refused after this long is given up (and counted as not placed).
const GIVE_UP: Duration = Duration::from_secs(30);

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let Some(cluster_url) = ctx.args.redis_cluster_url.clone() else {
        ctx.report.note(
            "failover: skipped (no --redis-cluster-url; make bench starts one unless TIKETI_BENCH_CLUSTER=0)",
        );
        return Ok(());
    };
    println!(
        "\n== failover: {JOINS} joins on the Redis Cluster (REDIS_WAIT_REPLICAS=1), the sale's primary SIGKILLed after {BEFORE_KILL}"
    );
    let first_port = cluster_port(&cluster_url)?;
    let (event, _) = fixtures::seat_event(&ctx.db, "failover", 0, 100).await?;
    let users = fixtures::users(&ctx.db, "failover", JOINS).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
    let mut env = ctx.env.clone();
    env.redis_url = cluster_url.clone();
    env.service_env
        .push(("REDIS_WAIT_REPLICAS".into(), "1".into()));
    let stack = Stack::start(Kind::Tiketi, &env, 1, ctx.args.port).await?;
    wait::idle(&stack.pids(), Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/queue/check/{event}", stack.base_url());
    let queue_key = Keys::new(&env.redis_prefix).queue(event);

    let told = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let joining = {
        let (told, retried) = (told.clone(), retried.clone());
        let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
        tokio::spawn(async move {
            stream::iter(0..JOINS)
                .map(|i| {
                    let (http, url, token) = (http.clone(), url.clone(), tokens[i].clone());
                    let (told, retried) = (told.clone(), retried.clone());
                    async move {
                        let started = Instant::now();
                        loop {
                            let a = check(&http, &url, &token).await;
                            if a.status == 200 || started.elapsed() > GIVE_UP {
                                if a.status == 200 {
                                    told.fetch_add(1, Relaxed);
                                }
                                return a;
                            }
                            retried.fetch_add(1, Relaxed);
                            // a person reloading: the answer said come back (503 + Retry-After)
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
                .buffered(CONCURRENCY)
                .collect::<Vec<Answer>>()
                .await
        })
    };
    while told.load(Relaxed) < BEFORE_KILL {
        ensure!(!joining.is_finished(), "the joins ended before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let primary = primary_of(first_port, &queue_key)?;
    let killed_at_us = chrono::Utc::now().timestamp_micros();
    kill(primary)?;
    let killed = Instant::now();
    // the replica takes the slot over; then the killed node restarts (a pod would) and rejoins
    let promoted = loop {
        if let Ok(p) = primary_of(first_port_other_than(first_port, primary), &queue_key)
            && p != primary
        {
            break p;
        }
        ensure!(
            killed.elapsed() < Duration::from_secs(30),
            "no replica took over the slot of {queue_key} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let promoted_after = killed.elapsed();
    restart_cluster(first_port)?;
    let restarted_after = killed.elapsed();
    // WAIT counts a replica once it is in sync with the new primary
    let synced_after = loop {
        let info = Command::new("redis-cli")
            .args(["-p", &promoted.to_string(), "info", "replication"])
            .output()
            .context("redis-cli info replication")?;
        let info = String::from_utf8_lossy(&info.stdout);
        if info
            .lines()
            .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        {
            break killed.elapsed();
        }
        ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "the restarted node never got in sync with {promoted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let answers = joining.await?;
    stack.stop().await;
    let v = verify(&cluster_url, &env.redis_prefix, event, &users, &answers).await?;
    let gap = longest_gap_around(&answers, killed_at_us);
    let retried = retried.load(Relaxed);
    println!(
        "   node {primary} killed; node {promoted} took its slots {} ms later; node {primary} back as its replica, every slot served, {} ms after the kill, in sync {} ms after; {} of {JOINS} placed ({retried} answers retried); longest time without a place told: {:.2} s; lost {}, both {}, moved back {}",
        promoted_after.as_millis(),
        restarted_after.as_millis(),
        synced_after.as_millis(),
        v.ok,
        gap,
        v.lost,
        v.twice,
        v.moved_back
    );
    ctx.report.add(
        Figure::new(
            "failover",
            "longest time without a join answered, a primary SIGKILLed (REDIS_WAIT_REPLICAS=1)",
            "s",
        )
        .tiketi(gap)
        .target("≤ 10 s", 10.0),
    );
    ctx.report.add(
        Figure::new(
            "failover",
            &format!(
                "places told across the failover (of {JOINS}): lost, duplicated or moved back"
            ),
            "",
        )
        .tiketi((v.lost + v.twice + v.moved_back) as f64)
        .check(
            format!("none, and all {JOINS} placed ({} placed)", v.ok),
            v.lost + v.twice + v.moved_back == 0 && v.ok == JOINS,
        ),
    );
    Ok(())
}

/// The longest time between two answered joins (200) around `at_us`, in seconds.
fn longest_gap_around(answers: &[Answer], at_us: i64) -> f64 {
    let mut times: Vec<i64> = answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.at_us)
        .collect();
    times.sort_unstable();
    times
        .windows(2)
        .filter(|w| w[1] >= at_us)
        .map(|w| (w[1] - w[0].max(at_us)) as f64 / 1e6)
        .fold(0.0, f64::max)
}

/// The first node's port of a `redis-cluster://127.0.0.1:PORT?node=…` URL.
fn cluster_port(url: &str) -> Result<u16> {
    let rest = url
        .strip_prefix("redis-cluster://")
        .context("not a redis-cluster:// URL")?;
    let host_port = rest.split(['?', '/']).next().unwrap_or_default();
    let port = host_port.rsplit(':').next().unwrap_or_default();
    port.parse().with_context(|| format!("no port in {url}"))
}

/// The port of another node of the cluster, to ask while `down` is dead.
fn first_port_other_than(first: u16, down: u16) -> u16 {
    if first == down { first + 1 } else { first }
}

fn script(first_port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("scripts/redis-cluster.sh")
        .args(args)
        .env("TIKETI_CLUSTER_PORT", first_port.to_string())
        .output()
        .context("run scripts/redis-cluster.sh (the bench runs from the repository root)")?;
    if !out.status.success() {
        bail!(
            "scripts/redis-cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The port of the primary serving `key`, asked of the node on `ask_port`.
fn primary_of(ask_port: u16, key: &str) -> Result<u16> {
    let port = script(ask_port, &["primary-of", key])?;
    port.parse()
        .with_context(|| format!("primary-of {key}: {port:?}"))
}

fn kill(port: u16) -> Result<()> {
    let pid_file = format!(".dev/redis-cluster/{port}/redis.pid");
    let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("read {pid_file}"))?;
    let status = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .context("kill")?;
    ensure!(status.success(), "kill -9 {} failed", pid.trim());
    Ok(())
}

/// Starts the cluster's missing node again and waits until every slot is served.
fn restart_cluster(first_port: u16) -> Result<()> {
    script(first_port, &["start"]).map(|_| ())
}
