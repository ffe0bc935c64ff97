//! herd: anonymous readers of the largest seat map (`GET /api/seats/events/:id`, 4,900 seats) while
//! holds run on the same event, as at an opening. Holds alone first (their p99 without the herd);
//! then `herd_readers` readers alone on the unchanged map, fetching it whole, then revalidating
//! with the last `ETag` they got, as a browser does with a `no-cache` response (304s); then the
//! same number of holds with the revalidating readers looping on the map: the reads per second
//! (full maps and 304s apart) and the holds' p99 beside the no-herd p99. The map is served from a
//! snapshot per event, so the herd costs PostgreSQL one read per change, not one per request.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use reqwest::{
    StatusCode,
    header::{ETAG, HeaderValue, IF_NONE_MATCH},
};
use uuid::Uuid;

use super::holds::storm;
use crate::{
    Ctx, fixtures,
    report::Figure,
    servers::{Kind, Stack},
    stats::{Latencies, Summary},
    wait,
};

/// Seats of the largest layout (`sports_stadium`).
const SEATS: usize = 4_900;

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let (h, readers) = (ctx.args.herd_holds.min(SEATS / 2), ctx.args.herd_readers);
    println!("\n== herd: {h} holds alone, then {h} holds beside {readers} seat-map readers");
    let (event, seats) = fixtures::seat_event(&ctx.db, "herd", SEATS, 1_000_000).await?;
    let users = fixtures::users(&ctx.db, "herd", 2 * h).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
    let stack = Stack::start(Kind::Tiketi, &ctx.env, 1, ctx.args.port).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(ctx.args.concurrency + readers)
        .build()?;
    let base = stack.base_url();
    let reserve = format!("{base}/api/seats/reserve");
    let map = format!("{base}/api/seats/events/{event}");
    let first = http.get(&map).send().await?.bytes().await?;
    println!("   map of {} KiB", first.len() / 1024);

    let alone = holds(ctx, &http, &reserve, &tokens[..h], event, &seats[..h]).await;
    wait::idle(&stack.pids(), Duration::from_secs(10)).await;

    // the map unchanged: what the readers alone get, full maps, then revalidated
    let quiet = Herd::start(&http, &map, readers, false);
    let quiet_full = quiet.rate(QUIET).await;
    let quiet_failed = quiet.stop().await[2];
    let herd = Herd::start(&http, &map, readers, true);
    let quiet_304 = herd.rate(QUIET).await;

    let metrics = format!("{base}/metrics");
    let builds_before = snapshot_builds(&http, &metrics).await;
    let (before, started) = (herd.tally.now(), Instant::now());
    let beside = holds(ctx, &http, &reserve, &tokens[h..], event, &seats[h..2 * h]).await;
    let after = herd.tally.now();
    let [full, unchanged, _]: [usize; 3] = std::array::from_fn(|i| after[i] - before[i]);
    let secs = started.elapsed().as_secs_f64();
    let builds = snapshot_builds(&http, &metrics).await - builds_before;
    // every failed read of either herd, whenever it came
    let failed = quiet_failed + herd.stop().await[2];
    let reads = full + unchanged;
    let (read_rate, full_rate, unchanged_rate) = (
        reads as f64 / secs,
        full as f64 / secs,
        unchanged as f64 / secs,
    );
    println!(
        "   map unchanged: {:.0} full reads/s without If-None-Match, {:.0} 304s/s with it",
        quiet_full[0], quiet_304[1]
    );
    println!(
        "   alone: {} held, p99 {:.1} ms; with the herd: {} held, p99 {:.1} ms, {read_rate:.0} map reads/s ({full} × 200 = {full_rate:.0}/s, {unchanged} × 304 = {unchanged_rate:.0}/s, {builds:.0} PostgreSQL reads of the map), {failed} failed reads",
        alone.0, alone.1.p99_ms, beside.0, beside.1.p99_ms
    );
    ctx.report.add(
        Figure::new("herd", "PostgreSQL reads of the map per 100 map reads", "")
            .tiketi(100.0 * builds / reads.max(1) as f64)
            .check("at most one per hold", builds <= h as f64 + 1.0),
    );
    ctx.report.add(
        Figure::new(
            "herd",
            &format!(
                "seat-map reads ({} KiB, If-None-Match) by {readers} readers during holds",
                first.len() / 1024
            ),
            "/s",
        )
        .tiketi(read_rate)
        .higher_is_better()
        .target("≥ 5,000/s", 5000.0),
    );
    ctx.report.add(
        Figure::new("herd", "of which 200 (the map changed since)", "/s")
            .tiketi(full_rate)
            .higher_is_better(),
    );
    ctx.report.add(
        Figure::new("herd", "of which 304 (unchanged)", "/s")
            .tiketi(unchanged_rate)
            .higher_is_better(),
    );
    ctx.report.add(
        Figure::new(
            "herd",
            "map unchanged, no holds: full reads (200, no If-None-Match)",
            "/s",
        )
        .tiketi(quiet_full[0])
        .higher_is_better(),
    );
    ctx.report.add(
        Figure::new("herd", "map unchanged, no holds: revalidations (304)", "/s")
            .tiketi(quiet_304[1])
            .higher_is_better(),
    );
    ctx.report.add(
        Figure::new("herd", "seat-map reads not answered 200 or 304", "")
            .tiketi(failed as f64)
            .check("none", failed == 0),
    );
    ctx.report
        .add(Figure::new("herd", "hold latency p99 without a herd", "ms").tiketi(alone.1.p99_ms));
    ctx.report.add(
        Figure::new("herd", "hold latency p99 beside the herd", "ms")
            .tiketi(beside.1.p99_ms)
            .target(
                format!("≤ 1.5 × without = {:.0} ms", 1.5 * alone.1.p99_ms),
                1.5 * alone.1.p99_ms,
            ),
    );
    ctx.report.add(
        Figure::new("herd", &format!("holds not 201 (of {})", 2 * h), "")
            .tiketi((2 * h - alone.0 - beside.0) as f64)
            .check("every hold succeeds", alone.0 == h && beside.0 == h),
    );
    stack.stop().await;
    Ok(())
}

/// How long the readers run alone on an unchanged map, per measurement.
const QUIET: Duration = Duration::from_secs(2);

/// The herd's answers so far: full maps (200), revalidated (304), failed.
#[derive(Default)]
struct Reads([AtomicUsize; 3]);

impl Reads {
    fn add(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
    fn now(&self) -> [usize; 3] {
        self.0.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

/// `readers` looping on the map until stopped.
struct Herd {
    stop: Arc<AtomicBool>,
    tally: Arc<Reads>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Herd {
    fn start(http: &reqwest::Client, map: &str, readers: usize, revalidate: bool) -> Self {
        let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Reads::default()));
        let readers = (0..readers)
            .map(|_| {
                let (http, map) = (http.clone(), map.to_string());
                let (stop, tally) = (stop.clone(), tally.clone());
                tokio::spawn(async move { reader(http, map, revalidate, stop, tally).await })
            })
            .collect();
        Self {
            stop,
            tally,
            readers,
        }
    }

    /// Lets the readers arrive (each one's first read is a full map), then counts their answers
    /// over `window`: 200s and 304s per second.
    async fn rate(&self, window: Duration) -> [f64; 2] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (before, started) = (self.tally.now(), Instant::now());
        tokio::time::sleep(window).await;
        let (after, secs) = (self.tally.now(), started.elapsed().as_secs_f64());
        [
            (after[0] - before[0]) as f64 / secs,
            (after[1] - before[1]) as f64 / secs,
        ]
    }

    /// Stops the readers; the answers they got.
    async fn stop(self) -> [usize; 3] {
        self.stop.store(true, Ordering::Relaxed);
        for r in self.readers {
            r.await.ok();
        }
        self.tally.now()
    }
}

/// One reader. Revalidating, it is a browser on the seat page: it keeps the last map's `ETag` and
/// sends it in `If-None-Match` (the map is `Cache-Control: no-cache`), so an unchanged map costs
/// a 304; otherwise every read is a full map.
async fn reader(
    http: reqwest::Client,
    map: String,
    revalidate: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Reads>,
) {
    let mut etag: Option<HeaderValue> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut req = http.get(&map);
        if let Some(tag) = &etag {
            req = req.header(IF_NONE_MATCH, tag.clone());
        }
        let kind = match req.send().await {
            Ok(r) if r.status() == StatusCode::NOT_MODIFIED => 1,
            Ok(r) if r.status() == StatusCode::OK => {
                let tag = r.headers().get(ETAG).cloned();
                if r.bytes().await.is_ok() {
                    etag = tag.filter(|_| revalidate);
                    0
                } else {
                    2
                }
            }
            _ => 2,
        };
        tally.add(kind);
    }
}

/// Holds each seat with its own buyer, `concurrency` in flight: (how many succeeded, latencies).
async fn holds(
    ctx: &Ctx,
    http: &reqwest::Client,
    url: &str,
    tokens: &[String],
    event: Uuid,
    seats: &[Uuid],
) -> (usize, Summary) {
    let answers = storm(
        http,
        url,
        event,
        tokens.iter().map(String::as_str).zip(seats.iter().copied()),
        ctx.args.concurrency,
    )
    .await;
    let mut lat = Latencies::default();
    for a in &answers {
        lat.record(a.took);
    }
    let ok = answers.iter().filter(|a| a.status == 201).count();
    (ok, lat.summary())
}

/// `tiketi_seatmap_snapshot_builds_total` of the service (0 when absent).
async fn snapshot_builds(http: &reqwest::Client, url: &str) -> f64 {
    let Ok(resp) = http.get(url).send().await else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("tiketi_seatmap_snapshot_builds_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
