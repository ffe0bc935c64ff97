//! Scenario 2: Redis is SIGKILLed during a sale and restarted on the same port, once with AOF
//! (`appendonly yes`, `appendfsync always`) and once without persistence.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    common::eventually,
    harness::{Http, Persistence, Redis, Replica, users},
    report::Rec,
    sio::Clients,
    steps::{
        Buying, Sale, close_sale, connect, connect_front, fill_waiting_room, home, keep_reading,
        never_crashed, ok, open_sale,
    },
};

pub const TITLE_AOF: &str = "2a. SIGKILL and restart Redis during a sale, AOF (appendfsync always)";
pub const TITLE_NONE: &str = "2b. SIGKILL and restart Redis during a sale, no persistence";
const SETUP: &str = "Three replicas, one database, one private redis-server. Waiting-room threshold \
3: three buyers are admitted, twelve users queue (spread over the replicas); the first three in line \
have socket.io-client sockets in the queue room. Throughout, the buyers hold and pay seats through \
all three replicas and a reader polls event and queue status. Redis is SIGKILLed, every replica is \
probed (queue check, queue status, health), and Redis is restarted on the same port and data \
directory.";
pub const SETUP_AOF: &str = SETUP;
pub const SETUP_NONE: &str = SETUP;

const THRESHOLD: usize = 3;
const WAITERS: usize = 12;
const FRONT: usize = 3;
const HOLD_SECS: u64 = 5;

pub async fn run(rec: Rec, logs: PathBuf, mode: Persistence) -> anyhow::Result<()> {
    let mut redis = Redis::start(&logs, mode).await?;
    let settings = [
        ("HOLD_SECONDS", HOLD_SECS),
        ("HOLD_SWEEP_SECONDS", 1),
        ("PAYMENT_DELAY_MIN_MS", 50),
        ("PAYMENT_DELAY_MAX_MS", 200),
    ];
    let Sale {
        db,
        jwt,
        mut replicas,
        bases,
        event,
        seats,
        buyers,
        waiters,
    } = open_sale(&redis.url(), &logs, &settings, THRESHOLD, WAITERS).await?;
    let http = Http::new(rec.meter.clone());
    let newcomers = users(&db, &jwt, 3).await?;
    let positions = fill_waiting_room(&http, &bases, event, &buyers, &waiters).await?;
    let at = |p: i64| {
        positions
            .iter()
            .position(|x| *x == p)
            .expect("a waiter at p")
    };

    let mut io = Clients::start();
    connect_front(
        &mut io,
        &bases,
        &waiters,
        &positions,
        FRONT,
        event,
        &redis.url(),
    )
    .await?;

    // the sale goes on: buyers hold and pay through every replica; a reader polls
    let buying = Buying::start(&http, &bases, &buyers, &seats, event);
    let reading = keep_reading(&http, &bases, &waiters, event);
    let selling = eventually(Duration::from_secs(15), || async { buying.paid() >= 3 }).await;
    anyhow::ensure!(selling, "the sale did not get going");

    // the outage
    redis.kill();
    let down_at = Instant::now();
    rec.note(format!(
        "redis-server SIGKILLed with {} seats sold so far",
        buying.paid()
    ));
    let probes = join_all(replicas.iter().enumerate().map(|(r, replica)| {
        let (http, base) = (http.clone(), replica.base.clone());
        let (newcomer, waiter) = (newcomers[r].token.clone(), waiters[at(1)].token.clone());
        async move {
            let check = http
                .post(
                    &base,
                    &format!("/api/queue/check/{event}"),
                    Some(&newcomer),
                    json!({}),
                )
                .await;
            let status = http
                .get(&base, &format!("/api/queue/status/{event}"), Some(&waiter))
                .await;
            let health = http.get(&base, "/health/redis", None).await;
            let detail = http.get(&base, &format!("/api/events/{event}"), None).await;
            (check, status, health, detail)
        }
    }))
    .await;
    let (mut refused, mut reads) = (0, 0);
    // slowest 503 of the check (rate limit first) and of the status (queue only)
    let mut slowest = [Duration::ZERO; 2];
    for (check, status, health, detail) in &probes {
        for (k, a) in [check, status].into_iter().enumerate() {
            if let Ok(a) = a
                && a.status == StatusCode::SERVICE_UNAVAILABLE
                && a.retry_after.is_some()
                && a.body["success"] == false
            {
                refused += 1;
                slowest[k] = slowest[k].max(a.took);
            }
        }
        refused += usize::from(
            health
                .as_ref()
                .is_ok_and(|a| a.status == StatusCode::SERVICE_UNAVAILABLE),
        );
        reads += usize::from(detail.as_ref().is_ok_and(|a| a.status == StatusCode::OK));
    }
    rec.check(
        "during the outage, queue check and status answer 503 + Retry-After and /health/redis 503, on every replica",
        refused == 9,
        format!(
            "{refused} of 9 probes; slowest 503: check {} ms, status {} ms",
            slowest[0].as_millis(),
            slowest[1].as_millis()
        ),
    );
    rec.check(
        "during the outage, event pages are still served from PostgreSQL",
        reads == 3,
        format!("{reads} of 3 replicas answered 200"),
    );
    let alive = replicas.iter_mut().all(Replica::alive);
    rec.check(
        "no replica crashes while Redis is down",
        alive,
        format!("all alive: {alive}"),
    );

    redis.restart().await?;
    let outage = down_at.elapsed();
    let restarted_at = Instant::now();
    let recovered = eventually(Duration::from_secs(20), || async {
        join_all(bases.iter().map(|b| http.get(b, "/health/redis", None)))
            .await
            .iter()
            .all(|a| a.as_ref().is_ok_and(|a| a.status == StatusCode::OK))
    })
    .await;
    rec.check(
        "every replica reconnects to the restarted Redis (/health/redis 200)",
        recovered,
        format!(
            "outage {} ms; all healthy {} ms after the restart",
            outage.as_millis(),
            restarted_at.elapsed().as_millis()
        ),
    );

    // what the restarted Redis still knows, asked through a different replica than each user's own
    let mut after = Vec::new();
    for (i, w) in waiters.iter().enumerate() {
        let a = ok(http
            .get(
                &bases[(home(i, 3) + 1) % 3],
                &format!("/api/queue/status/{event}"),
                Some(&w.token),
            )
            .await)?;
        after.push(a.body);
    }
    let front = format!("w{}", at(1));
    let again = format!("{front}-again");
    io.disconnect(&front).await;
    connect(
        &mut io,
        &again,
        &bases[(home(at(1), 3) + 1) % 3],
        &waiters[at(1)].token,
        json!([]),
    )
    .await?;
    rec.reconnected();

    match mode {
        Persistence::Aof => {
            let kept = after
                .iter()
                .zip(&positions)
                .filter(|(a, p)| a["position"] == **p && a["queueSize"] == WAITERS as i64)
                .count();
            rec.check(
                "AOF: every queue position is exactly what it was before the kill",
                kept == WAITERS,
                format!("{kept} of {WAITERS} positions and queue sizes unchanged"),
            );
            let mut admitted = 0;
            for (i, u) in buyers.iter().enumerate() {
                let a = ok(http
                    .post(
                        &bases[(i + 2) % 3],
                        &format!("/api/queue/check/{event}"),
                        Some(&u.token),
                        json!({}),
                    )
                    .await)?;
                admitted += usize::from(a.status == StatusCode::OK && a.body["queued"] == false);
            }
            rec.check(
                "AOF: admitted users are still admitted",
                admitted == THRESHOLD,
                format!("{admitted} of {THRESHOLD}"),
            );
            let mut behind = Vec::new();
            for (i, u) in newcomers.iter().enumerate() {
                let a = ok(http
                    .post(
                        &bases[i % 3],
                        &format!("/api/queue/check/{event}"),
                        Some(&u.token),
                        json!({}),
                    )
                    .await)?;
                behind.push(a.body["position"].as_i64().unwrap_or(0));
            }
            let expected: Vec<i64> = (1..=3).map(|k| (WAITERS + k) as i64).collect();
            rec.check(
                "AOF: newcomers queue behind the preserved line",
                behind == expected,
                format!("positions {behind:?}"),
            );
            let restored = io
                .within(
                    &again,
                    "session-restored",
                    |_| true,
                    Duration::from_secs(10),
                )
                .await;
            rec.check(
                "AOF: a reconnecting socket gets its session back",
                restored
                    .as_ref()
                    .is_some_and(|s| s["queueEventId"] == json!(event)),
                format!("{restored:?}"),
            );
        }
        Persistence::None => {
            // the buyers still buying re-take their places as they buy (the gate is open, nobody
            // waits): the admitted set is rebuilt from the users actually buying, never above the
            // threshold
            let gone = after
                .iter()
                .filter(|a| {
                    a["queued"] == false
                        && a["queueSize"] == 0
                        && a["currentUsers"]
                            .as_i64()
                            .is_some_and(|c| c <= THRESHOLD as i64)
                })
                .count();
            rec.check(
                "no persistence: the queue and the admitted set are gone after the restart (documented loss)",
                gone == WAITERS,
                format!(
                    "{gone} of {WAITERS} waiters no longer queued; queueSize 0, currentUsers {} (buyers back at their places)",
                    after.first().map_or(json!(null), |a| a["currentUsers"].clone())
                ),
            );
            let restored = io
                .within(&again, "session-restored", |_| true, Duration::from_secs(3))
                .await;
            rec.check(
                "no persistence: a reconnecting socket gets no session back (documented loss)",
                restored.is_none(),
                format!("{restored:?}"),
            );
        }
    }

    reading.abort();
    let _ = reading.await;
    let sold = buying.finish().await;

    // the waiting room works again: in the AOF run the line moves on from where it was; without
    // persistence it is rebuilt in the order users check again
    match mode {
        Persistence::Aof => {
            let left = ok(http
                .post(
                    &bases[0],
                    &format!("/api/queue/leave/{event}"),
                    Some(&buyers[0].token),
                    json!({}),
                )
                .await)?;
            let allowed = io
                .within(
                    &again,
                    "queue-entry-allowed",
                    |_| true,
                    Duration::from_secs(10),
                )
                .await;
            rec.check(
                "AOF: admission resumes: a buyer leaves and the first in line is admitted (queue-entry-allowed)",
                left.status == StatusCode::OK && allowed.is_some(),
                format!("leave {}; queue-entry-allowed {}", left.status, allowed.is_some()),
            );
        }
        Persistence::None => {
            // places the returning buyers re-took by buying (their admissions outlive the buying)
            let taken = ok(http
                .get(
                    &bases[0],
                    &format!("/api/queue/status/{event}"),
                    Some(&waiters[0].token),
                )
                .await)?
            .body["currentUsers"]
                .as_i64()
                .unwrap_or(0) as usize;
            let free = THRESHOLD.saturating_sub(taken);
            let mut rebuilt = Vec::new();
            for (i, w) in waiters.iter().enumerate().rev() {
                let a = ok(http
                    .post(
                        &bases[home(i, 3)],
                        &format!("/api/queue/check/{event}"),
                        Some(&w.token),
                        json!({}),
                    )
                    .await)?;
                rebuilt.push((
                    a.status,
                    a.body["queued"] == true,
                    a.body["position"].as_i64(),
                ));
            }
            let expected: Vec<(StatusCode, bool, Option<i64>)> = (0..WAITERS)
                .map(|k| match k {
                    k if k < free => (StatusCode::OK, false, None),
                    k => (StatusCode::OK, true, Some((k - free + 1) as i64)),
                })
                .collect();
            rec.check(
                "no persistence: the waiting room works again, rebuilt in the order users check again",
                rebuilt == expected,
                format!(
                    "{} of {WAITERS} re-checks admitted at once ({taken} places re-taken by buyers), the rest queued 1..{}",
                    rebuilt.iter().filter(|r| !r.1).count(),
                    WAITERS - free
                ),
            );
        }
    }

    // PostgreSQL never depended on Redis: the sale's invariants hold across the outage
    close_sale(&rec, &db, event, sold, HOLD_SECS).await?;
    never_crashed(&rec, &mut replicas);
    Ok(())
}
