//! rest: the hot read path, `GET /api/events` and `GET /api/events/:id`, driven by wrk when it is
//! installed (C, far cheaper per request than a Rust client sharing the same 2 cores), else by a
//! keep-alive loop of our own. Then `GET /api/events/:id` again, of a seat event that buyers hold
//! seats of at the same time: every hold invalidates that page's cache, as in a sale.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::future::join_all;

use crate::{
    Ctx, fixtures,
    report::Figure,
    servers::{Kind, Stack},
    stats::Latencies,
};

struct Measured {
    rps: f64,
    p99_ms: f64,
    non_2xx: u64,
    tool: &'static str,
}

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let secs = ctx.args.rest_seconds;
    let conns = ctx.args.rest_connections;
    println!("\n== rest: {secs} s per endpoint, {conns} connections");
    let events = fixtures::catalogue(&ctx.db, 30).await?;
    let started = Instant::now();
    let stack = Stack::start(Kind::Tiketi, &ctx.env, 1, ctx.args.port).await?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("   service answered /health 200 {ready_ms:.0} ms after its process started");
    ctx.report.add(
        Figure::new(
            "start-up",
            "process start → /health 200 (polled every 50 ms)",
            "ms",
        )
        .tiketi(ready_ms)
        .target("≤ 1 s", 1000.0),
    );
    let base = stack.base_url();
    for (label, path) in [
        ("GET /api/events", "/api/events".to_string()),
        ("GET /api/events/:id", format!("/api/events/{}", events[0])),
    ] {
        let m = measure(&format!("{base}{path}"), secs, conns).await?;
        println!(
            "   {label}: {:.0} req/s, p99 {:.2} ms, {} non-2xx ({})",
            m.rps, m.p99_ms, m.non_2xx, m.tool
        );
        report_reads(ctx, label, &m);
        ctx.report.add(
            Figure::new("rest", &format!("{label} non-2xx answers"), "")
                .tiketi(m.non_2xx as f64)
                .check("none", m.non_2xx == 0),
        );
    }
    during_holds(ctx, &stack, secs, conns).await?;
    stack.stop().await;
    Ok(())
}

/// Holds per second while the event page is read (a steady sale, not a storm: the storm's own
/// figures are the holds scenario's).
const HOLDS_PER_SEC: u64 = 500;

/// `GET /api/events/:id` while `HOLDS_PER_SEC` distinct buyers hold seats of that event.
async fn during_holds(ctx: &mut Ctx, stack: &Stack, secs: u64, conns: usize) -> Result<()> {
    let n = usize::try_from(HOLDS_PER_SEC * (secs + 2)).unwrap_or(usize::MAX);
    let (event, seats) = fixtures::seat_event(&ctx.db, "rest-holds", n, 1_000_000).await?;
    let users = fixtures::users(&ctx.db, "rest-holder", n).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let hold_url = format!("{}/api/seats/reserve", stack.base_url());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / HOLDS_PER_SEC));
            let mut inflight = tokio::task::JoinSet::new();
            for (token, seat) in tokens.into_iter().zip(seats) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let (http, url) = (http.clone(), hold_url.clone());
                inflight.spawn(async move {
                    super::holds::hold(&http, &url, &token, event, seat)
                        .await
                        .status
                });
            }
            let (mut ok, mut other) = (0u64, 0u64);
            while let Some(status) = inflight.join_next().await {
                match status {
                    Ok(201) => ok += 1,
                    _ => other += 1,
                }
            }
            (ok, other)
        })
    };
    let m = measure(
        &format!("{}/api/events/{event}", stack.base_url()),
        secs,
        conns,
    )
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (held, refused) = holder.await?;
    let label = format!("GET /api/events/:id while {HOLDS_PER_SEC} seats/s are held");
    println!(
        "   {label}: {:.0} req/s, p99 {:.2} ms, {} non-2xx ({}); {held} holds meanwhile ({refused} not 201)",
        m.rps, m.p99_ms, m.non_2xx, m.tool
    );
    report_reads(ctx, &label, &m);
    ctx.report.add(
        Figure::new(
            "rest",
            &format!("{label}, holds not 201 or reads not 2xx"),
            "",
        )
        .tiketi((refused + m.non_2xx) as f64)
        .check("none", refused == 0 && m.non_2xx == 0),
    );
    Ok(())
}

/// Reads of `url` for `secs` over `conns` connections: wrk when installed, else our own client.
async fn measure(url: &str, secs: u64, conns: usize) -> Result<Measured> {
    match wrk(url, secs, conns).await {
        Ok(m) => Ok(m),
        Err(e) => {
            println!("   wrk unavailable ({e:#}); using the built-in client");
            builtin(url, secs, conns).await
        }
    }
}

/// The throughput and p99 figures of one read measurement.
fn report_reads(ctx: &mut Ctx, label: &str, m: &Measured) {
    ctx.report.add(
        Figure::new("rest", &format!("{label} throughput ({})", m.tool), "req/s")
            .tiketi(m.rps)
            .higher_is_better()
            .target("≥ 20,000 req/s", 20_000.0),
    );
    ctx.report.add(
        Figure::new("rest", &format!("{label} p99"), "ms")
            .tiketi(m.p99_ms)
            .target("≤ 20 ms", 20.0),
    );
}

async fn wrk(url: &str, secs: u64, conns: usize) -> Result<Measured> {
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .context("run wrk")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// Reads `Requests/sec`, the `99%` latency line and `Non-2xx` count from wrk's report.
fn parse_wrk(text: &str) -> Result<Measured> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(str::trim).map(str::to_string))
    };
    let rps: f64 = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p99 = field("99%").context("no 99% line (wrk --latency)")?;
    let non_2xx = field("Non-2xx or 3xx responses:").map_or(Ok(0), |v| v.parse())?;
    Ok(Measured {
        rps,
        p99_ms: duration_ms(&p99)?,
        non_2xx,
        tool: "wrk",
    })
}

fn duration_ms(v: &str) -> Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .context("duration unit")?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        other => bail!("unknown unit {other}"),
    })
}

async fn builtin(url: &str, secs: u64, conns: usize) -> Result<Measured> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers = (0..conns).map(|_| {
        let (http, url) = (http.clone(), url.to_string());
        async move {
            let (mut lat, mut bad) = (Latencies::default(), 0u64);
            while Instant::now() < deadline {
                let started = Instant::now();
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.ok();
                    }
                    _ => bad += 1,
                }
                lat.record_us(i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX));
            }
            (lat, bad)
        }
    });
    let started = Instant::now();
    let mut all = Latencies::default();
    let mut non_2xx = 0;
    for (lat, bad) in join_all(workers).await {
        all.merge(&lat);
        non_2xx += bad;
    }
    let s = all.summary();
    Ok(Measured {
        rps: s.count as f64 / started.elapsed().as_secs_f64(),
        p99_ms: s.p99_ms,
        non_2xx,
        tool: "built-in client",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let text = "Running 10s test @ http://127.0.0.1:3400/api/events
  2 threads and 64 connections
  Latency Distribution
     50%    2.10ms
     75%    3.00ms
     90%    4.50ms
     99%  812.00us
  250000 requests in 10.00s, 1.00GB read
  Non-2xx or 3xx responses: 3
Requests/sec:  24999.50
Transfer/sec:    100.00MB
";
        let m = parse_wrk(text).expect("parses");
        assert!((m.rps - 24999.5).abs() < 0.01);
        assert!((m.p99_ms - 0.812).abs() < 1e-9);
        assert_eq!(m.non_2xx, 3);
    }
}
