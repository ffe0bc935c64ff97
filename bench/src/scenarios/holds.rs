//! holds: a seat-hold storm on distinct seats (throughput and latency of the real
//! `POST /api/seats/reserve`), then `racers` buyers firing at once at each seat: exactly one may
//! win, which both the answers and PostgreSQL must show.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, stream};
use rand::seq::SliceRandom;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Ctx, fixtures,
    report::Figure,
    servers::{CpuSplit, Kind, Stack},
    stats::Latencies,
    wait,
};

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    let (h, s, r) = (ctx.args.holds, ctx.args.race_seats, ctx.args.racers);
    println!("\n== holds: {h} on distinct seats, then {s} seats × {r} racers");
    let (event, seats) = fixtures::seat_event(&ctx.db, "holds", h + s, 1_000_000).await?;
    let users = fixtures::users(&ctx.db, "holder", h + s * r).await?;
    let tokens = fixtures::tokens(&ctx.env.jwt_secret, &users)?;
    let stack = Stack::start(Kind::Tiketi, &ctx.env, 1, ctx.args.port).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(ctx.args.concurrency)
        .build()?;
    let url = format!("{}/api/seats/reserve", stack.base_url());

    // storm on distinct seats
    let mut order: Vec<usize> = (0..h).collect();
    order.shuffle(&mut rand::rng());
    let cpu_before = CpuSplit::now(&stack.pids());
    let started = Instant::now();
    let results = storm(
        &http,
        &url,
        event,
        order.iter().map(|&i| (tokens[i].as_str(), seats[i])),
        ctx.args.concurrency,
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = CpuSplit::now(&stack.pids()).since(cpu_before);
    let mut lat = Latencies::default();
    let mut ok = 0usize;
    let mut errors = std::collections::BTreeMap::<u16, usize>::new();
    for a in &results {
        lat.record(a.took);
        if a.status == 201 {
            ok += 1;
        } else {
            *errors.entry(a.status).or_default() += 1;
        }
    }
    let s_lat = lat.summary();
    println!(
        "   {ok} of {h} held in {elapsed:.2} s ({:.0}/s), p50 {:.1} ms p99 {:.1} ms, other answers {errors:?}",
        ok as f64 / elapsed,
        s_lat.p50_ms,
        s_lat.p99_ms
    );
    ctx.report.add(
        Figure::new(
            "holds",
            &format!("successful holds on distinct seats (of {h})"),
            "",
        )
        .tiketi(ok as f64)
        .higher_is_better()
        .check("all succeed", ok == h),
    );
    ctx.report.add(
        Figure::new(
            "holds",
            &format!("hold throughput, {} in flight", ctx.args.concurrency),
            "/s",
        )
        .tiketi(ok as f64 / elapsed)
        .higher_is_better()
        .target("≥ 5,000/s", 5000.0),
    );
    // where a hold's CPU goes: on 2 shared cores the rate is at most 2 s / (the sum) per second
    ctx.report.add_cpu_per_op("holds", "hold", cpu, ok);
    ctx.report
        .add(Figure::new("holds", "hold latency p50", "ms").tiketi(s_lat.p50_ms));
    ctx.report
        .add(Figure::new("holds", "hold latency p99", "ms").tiketi(s_lat.p99_ms));

    // racers: all buyers of one seat fire together; seats proceed `concurrency / racers` at a time
    wait::idle(&stack.pids(), Duration::from_secs(10)).await;
    let race_seats: Vec<Uuid> = seats[h..].to_vec();
    let per_seat: Vec<(usize, Vec<u16>)> = stream::iter(race_seats.iter().enumerate())
        .map(|(k, seat)| {
            let (http, url, tokens) = (&http, &url, &tokens);
            async move {
                let racers = (0..r).map(|j| hold(http, url, &tokens[h + k * r + j], event, *seat));
                let answers = futures::future::join_all(racers).await;
                (k, answers.into_iter().map(|a| a.status).collect())
            }
        })
        .buffer_unordered((ctx.args.concurrency / r.max(1)).max(1))
        .collect()
        .await;
    let wrong_answers = per_seat
        .iter()
        .filter(|(_, a)| a.iter().filter(|s| **s == 201).count() != 1)
        .count();
    let server_errors = per_seat
        .iter()
        .flat_map(|(_, a)| a.iter())
        .filter(|s| **s >= 500)
        .count();
    let (db_wrong,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (
           SELECT s.id FROM seats s
           LEFT JOIN reservation_items i ON i.seat_id = s.id
           LEFT JOIN reservations r ON r.id = i.reservation_id AND r.status IN ('pending', 'confirmed')
           WHERE s.id = ANY($1)
           GROUP BY s.id
           HAVING count(r.id) <> 1 OR bool_or(s.status <> 'locked')
         ) wrong",
    )
    .bind(&race_seats)
    .fetch_one(&ctx.db)
    .await?;
    println!(
        "   race: {wrong_answers} seats without exactly one 201, {db_wrong} seats wrong in PostgreSQL, {server_errors} 5xx"
    );
    ctx.report.add(
        Figure::new(
            "holds",
            &format!("{s} seats × {r} racers: seats with ≠ 1 winner"),
            "",
        )
        .tiketi((wrong_answers as i64 + db_wrong) as f64)
        .check(
            "exactly one winner per seat (answers and PostgreSQL), no 5xx",
            wrong_answers == 0 && db_wrong == 0 && server_errors == 0,
        ),
    );
    stack.stop().await;
    Ok(())
}

/// Sends every (buyer's token, seat) hold, `concurrency` in flight; the answers in the holds' order.
pub async fn storm<'a>(
    http: &reqwest::Client,
    url: &str,
    event: Uuid,
    holds: impl Iterator<Item = (&'a str, Uuid)>,
    concurrency: usize,
) -> Vec<Answer> {
    let mut answers: Vec<(usize, Answer)> = stream::iter(holds.enumerate())
        .map(|(i, (token, seat))| async move { (i, hold(http, url, token, event, seat).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    answers.sort_unstable_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, a)| a).collect()
}

/// One answer to a hold.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 0 if no answer came.
    pub status: u16,
    /// The `code` of a refusal's body (e.g. `SEAT_TAKEN`).
    pub code: Option<String>,
    pub took: Duration,
}

/// One `POST /api/seats/reserve` of one seat.
pub async fn hold(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    event: Uuid,
    seat: Uuid,
) -> Answer {
    let started = Instant::now();
    let sent = http
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "eventId": event, "seatIds": [seat] }))
        .send()
        .await;
    let (status, code) = match sent {
        // read the body so the connection goes back to the pool
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap_or_default();
            let code = (status >= 400)
                .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
                .flatten()
                .and_then(|v| v.get("code")?.as_str().map(str::to_string));
            (status, code)
        }
        Err(_) => (0, None),
    };
    Answer {
        status,
        code,
        took: started.elapsed(),
    }
}
