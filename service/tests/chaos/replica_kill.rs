//! Scenario 1: one of three replicas is SIGKILLed mid-sale, with users queued, seats held and payments
//! in flight. Its socket clients reconnect to the survivors (as a load balancer would send them).

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::Context;
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::{
    harness::{Http, Persistence, Redis},
    report::Rec,
    sio::Clients,
    steps::{
        Sale, connect, fill_waiting_room, holds_settled, home, ok, open_sale, sale_invariants,
        session_saved,
    },
};

pub const TITLE: &str = "1. SIGKILL one of three replicas during a sale";
pub const SETUP: &str = "Three replicas (A, B, C), one database, one Redis. Waiting-room threshold 6: \
six buyers are admitted and nine users wait in the queue; every user has a socket.io-client socket \
on its replica (round-robin). Buyers hold one seat each and race for four shared seats from all three \
replicas at once; then each buyer pays its own hold (buyers on A and B pay twice at once, through \
both survivors) with a 1.5–2.5 s provider delay, and C is SIGKILLed while those payments are in \
flight. A REST reader keeps polling seat maps and queue status (dropping a replica from its rotation \
at its first connection error, like a load balancer). C's sockets reconnect to A and B. Holds last \
10 s; the expiry sweep runs every second.";

const THRESHOLD: usize = 6;
const WAITERS: usize = 9;
const CONTESTED: usize = 4;
const HOLD_SECS: u64 = 10;
/// The replica that dies (C); its users are those with `home(i) == KILLED`.
const KILLED: usize = 2;

struct Hold {
    buyer: usize,
    reservation: Uuid,
}

pub async fn run(rec: Rec, logs: PathBuf) -> anyhow::Result<()> {
    let redis = Redis::start(&logs, Persistence::None).await?;
    let settings = [
        ("HOLD_SECONDS", HOLD_SECS),
        ("HOLD_SWEEP_SECONDS", 1),
        ("PAYMENT_DELAY_MIN_MS", 1500),
        ("PAYMENT_DELAY_MAX_MS", 2500),
    ];
    let Sale {
        db,
        mut replicas,
        bases,
        event,
        seats,
        buyers,
        waiters,
        ..
    } = open_sale(&redis.url(), &logs, &settings, THRESHOLD, WAITERS).await?;
    let http = Http::new(rec.meter.clone());

    let positions = fill_waiting_room(&http, &bases, event, &buyers, &waiters).await?;
    rec.note(format!(
        "waiting room: {THRESHOLD} admitted, {WAITERS} queued at positions {positions:?}"
    ));

    // every user's socket, on its own replica, joined as the frontend's pages do
    let mut io = Clients::start();
    for (i, w) in waiters.iter().enumerate() {
        let joins =
            json!([["join-event", { "eventId": event }], ["join-queue", { "eventId": event }]]);
        connect(
            &mut io,
            &format!("w{i}"),
            &bases[home(i, 3)],
            &w.token,
            joins,
        )
        .await?;
    }
    for (i, u) in buyers.iter().enumerate() {
        let joins = json!([
            ["join-event", { "eventId": event }],
            ["join-seat-selection", { "eventId": event }],
            ["seat-selection-changed", { "eventId": event, "seats": [seats[i]] }],
        ]);
        connect(
            &mut io,
            &format!("b{i}"),
            &bases[home(i, 3)],
            &u.token,
            joins,
        )
        .await?;
    }
    let mut saved = 0;
    for w in &waiters {
        saved += usize::from(session_saved(&redis.url(), w.id, &["eventId", "queueEventId"]).await);
    }
    for u in &buyers {
        saved += usize::from(
            session_saved(
                &redis.url(),
                u.id,
                &["eventId", "seatEventId", "selectedSeats"],
            )
            .await,
        );
    }
    rec.check(
        "every socket's rooms are saved in its Redis session before the kill",
        saved == WAITERS + THRESHOLD,
        format!("{saved} of {} sessions", WAITERS + THRESHOLD),
    );

    // a reader polling the survivors throughout, as the frontend's pages do
    let reader = {
        let (http, bases, tokens) = (
            http.clone(),
            bases.clone(),
            waiters.iter().map(|w| w.token.clone()).collect::<Vec<_>>(),
        );
        tokio::spawn(async move {
            let mut rotation = vec![0, 1, 2];
            for n in 0usize.. {
                if rotation.is_empty() {
                    break;
                }
                let r = rotation[n % rotation.len()];
                let path = if n % 2 == 0 {
                    format!("/api/seats/events/{event}")
                } else {
                    format!("/api/queue/status/{event}")
                };
                if http
                    .get(&bases[r], &path, Some(&tokens[n % tokens.len()]))
                    .await
                    .is_err()
                {
                    rotation.retain(|x| *x != r);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // holds: one own seat per buyer, then every buyer races for each shared seat from its replica
    let mut holds: Vec<Hold> = Vec::new();
    for (i, u) in buyers.iter().enumerate() {
        let a = ok(http
            .post(
                &bases[home(i, 3)],
                "/api/seats/reserve",
                Some(&u.token),
                json!({ "eventId": event, "seatIds": [seats[i]] }),
            )
            .await)?;
        anyhow::ensure!(a.status == 201, "own hold {i}: {} {}", a.status, a.body);
        holds.push(Hold {
            buyer: i,
            reservation: reservation_of(&a.body)?,
        });
    }
    let mut winners = Vec::new();
    for seat in &seats[THRESHOLD..THRESHOLD + CONTESTED] {
        let answers = join_all(buyers.iter().enumerate().map(|(i, u)| {
            http.post(
                &bases[home(i, 3)],
                "/api/seats/reserve",
                Some(&u.token),
                json!({ "eventId": event, "seatIds": [seat] }),
            )
        }))
        .await;
        let won: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| a.as_ref().is_ok_and(|a| a.status == 201))
            .map(|(i, _)| i)
            .collect();
        for &i in &won {
            let body = &answers[i].as_ref().expect("answered").body;
            holds.push(Hold {
                buyer: i,
                reservation: reservation_of(body)?,
            });
        }
        winners.push(won.len());
    }
    rec.check(
        "a seat raced from three replicas at once has exactly one winner",
        winners.iter().all(|w| *w == 1),
        format!("winners per shared seat: {winners:?}"),
    );

    // payments in flight: each buyer's own hold; A's and B's buyers pay twice at once via A and B
    let mut payments = Vec::new();
    for (i, u) in buyers.iter().enumerate() {
        let id = holds[i].reservation;
        let mut via = vec![home(i, 3)];
        if home(i, 3) != KILLED {
            via.push(1 - home(i, 3));
        }
        for r in via {
            let (http, base, token) = (http.clone(), bases[r].clone(), u.token.clone());
            let task = tokio::spawn(async move {
                http.post(
                    &base,
                    "/api/payments/process",
                    Some(&token),
                    json!({ "reservationId": id, "paymentMethod": "kakao_pay" }),
                )
                .await
            });
            payments.push((i, r, id, task));
        }
    }
    // no observable "request reached the provider call" signal exists; 300 ms is well inside the
    // 1.5 s minimum provider delay, so C dies with its payments in flight
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicas[KILLED].kill();
    rec.note("replica C SIGKILLed with payments in flight");

    // C's sockets drop; each reconnects to a survivor and gets its session back
    let orphans: Vec<(String, Uuid, serde_json::Value)> = waiters
        .iter()
        .enumerate()
        .filter(|(i, _)| home(*i, 3) == KILLED)
        .map(|(i, w)| {
            (
                format!("w{i}"),
                w.id,
                json!({ "eventId": event, "queueEventId": event, "seatEventId": null, "selectedSeats": null }),
            )
        })
        .chain(
            buyers
                .iter()
                .enumerate()
                .filter(|(i, _)| home(*i, 3) == KILLED)
                .map(|(i, u)| {
                    (
                        format!("b{i}"),
                        u.id,
                        json!({ "eventId": event, "queueEventId": null, "seatEventId": event, "selectedSeats": [seats[i]] }),
                    )
                }),
        )
        .collect();
    let tokens: HashMap<Uuid, String> = waiters
        .iter()
        .chain(&buyers)
        .map(|u| (u.id, u.token.clone()))
        .collect();
    let (mut dropped, mut restored) = (0, 0);
    let mut restored_on = HashMap::new();
    for (n, (id, user, expected)) in orphans.iter().enumerate() {
        if io
            .within(id, "disconnect", |_| true, Duration::from_secs(10))
            .await
            .is_some()
        {
            dropped += 1;
        }
        let survivor = n % 2;
        let again = format!("{id}-again");
        connect(&mut io, &again, &bases[survivor], &tokens[user], json!([])).await?;
        rec.reconnected();
        restored_on.insert(id.clone(), survivor);
        let got = io
            .within(
                &again,
                "session-restored",
                |_| true,
                Duration::from_secs(10),
            )
            .await;
        if got.as_ref() == Some(expected) {
            restored += 1;
        } else {
            rec.note(format!(
                "{id}: session-restored {got:?}, expected {expected}"
            ));
        }
    }
    rec.check(
        "the killed replica's sockets see the disconnect",
        dropped == orphans.len(),
        format!("{dropped} of {}", orphans.len()),
    );
    rec.check(
        "each reconnect to a survivor gets session-restored with its rooms and seat selection",
        restored == orphans.len(),
        format!("{restored} of {} reconnects restored", orphans.len()),
    );

    // the queue itself lives in Redis: every waiter keeps its place, asked through a survivor
    let mut kept = 0;
    for (i, w) in waiters.iter().enumerate() {
        let a = http
            .get(
                &bases[i % 2],
                &format!("/api/queue/status/{event}"),
                Some(&w.token),
            )
            .await;
        if a.is_ok_and(|a| {
            a.status == 200
                && a.body["position"] == positions[i]
                && a.body["queueSize"] == WAITERS as i64
        }) {
            kept += 1;
        }
    }
    rec.check(
        "queue positions after the kill equal those before (asked through a survivor)",
        kept == WAITERS,
        format!("{kept} of {WAITERS} positions unchanged"),
    );

    // the restored rooms work: a hold through one survivor reaches a restored buyer on the other
    let (orphan, _, _) = orphans
        .iter()
        .find(|(id, _, _)| id.starts_with('b'))
        .context("a buyer on the killed replica")?;
    let survivor = restored_on[orphan];
    let fresh = seats[THRESHOLD + CONTESTED];
    let a = ok(http
        .post(
            &bases[1 - survivor],
            "/api/seats/reserve",
            Some(&buyers[0].token),
            json!({ "eventId": event, "seatIds": [fresh] }),
        )
        .await)?;
    if a.status == 201 {
        holds.push(Hold {
            buyer: 0,
            reservation: reservation_of(&a.body)?,
        });
    }
    let seen = io
        .within(
            &format!("{orphan}-again"),
            "seat-locked",
            |d| d["seatId"] == json!(fresh),
            Duration::from_secs(10),
        )
        .await;
    rec.check(
        "a restored socket receives seat-locked from the other survivor",
        a.status == 201 && seen.is_some(),
        format!("hold {} through replica {}", a.status, 1 - survivor),
    );

    // payment outcomes
    let mut paid: HashMap<Uuid, usize> = HashMap::new();
    let (mut pairs_ok, mut pairs, mut cut) = (0, 0, 0);
    let mut by_buyer: HashMap<usize, Vec<u16>> = HashMap::new();
    for (i, via, id, task) in payments {
        match task.await? {
            Ok(a) => {
                if a.status == 200 {
                    *paid.entry(id).or_default() += 1;
                }
                by_buyer.entry(i).or_default().push(a.status.as_u16());
            }
            Err(_) => {
                anyhow::ensure!(via == KILLED, "payment via a survivor failed to answer");
                cut += 1;
            }
        }
    }
    for (i, statuses) in &by_buyer {
        if home(*i, 3) != KILLED {
            pairs += 1;
            let mut s = statuses.clone();
            s.sort();
            pairs_ok += usize::from(s == [200, 400]);
        }
    }
    rec.check(
        "no reservation paid twice (two payments at once through A and B: one 200, one 400)",
        paid.values().all(|n| *n == 1) && pairs_ok == pairs,
        format!(
            "{pairs_ok} of {pairs} double payments settled once; {cut} payments cut by the kill"
        ),
    );

    // the killed replica's unpaid holds expire through the survivors' sweeper
    let expired_all = holds_settled(&db, event, Duration::from_secs(HOLD_SECS + 15)).await;
    let orphan_holds: Vec<Uuid> = holds
        .iter()
        .filter(|h| home(h.buyer, 3) == KILLED && !paid.contains_key(&h.reservation))
        .map(|h| h.reservation)
        .collect();
    let orphan_expired: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations r
         WHERE r.id = ANY($1) AND r.status = 'expired' AND r.payment_status = 'failed'
           AND NOT EXISTS (SELECT 1 FROM reservation_items ri JOIN seats s ON s.id = ri.seat_id
                           WHERE ri.reservation_id = r.id AND s.status <> 'available')",
    )
    .bind(&orphan_holds)
    .fetch_one(&db)
    .await?;
    rec.check(
        "the killed replica's unpaid holds expire via the survivors' sweeper (seats back on sale)",
        expired_all && orphan_expired == orphan_holds.len() as i64,
        format!(
            "{orphan_expired} of {} expired/failed with their seats available",
            orphan_holds.len()
        ),
    );

    let hold_ids: Vec<Uuid> = holds.iter().map(|h| h.reservation).collect();
    let paid_ids: Vec<Uuid> = paid.keys().copied().collect();
    sale_invariants(&rec, &db, event, &hold_ids, &paid_ids).await?;

    reader.abort();
    let _ = reader.await;
    let survivors_up = replicas[..2].iter_mut().all(|r| r.alive());
    let panics: usize = replicas.iter().map(|r| r.panics()).sum();
    let server_errors: u64 = rec
        .meter
        .lock()
        .expect("tally")
        .outcomes
        .iter()
        .filter(|(k, _)| k.starts_with('5'))
        .map(|(_, v)| v)
        .sum();
    rec.check(
        "survivors keep running; no 5xx answer and no panic anywhere",
        survivors_up && server_errors == 0 && panics == 0,
        format!("survivors alive: {survivors_up}; 5xx: {server_errors}; panics logged: {panics}"),
    );
    Ok(())
}

fn reservation_of(body: &serde_json::Value) -> anyhow::Result<Uuid> {
    body["reservation"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no reservation id in {body}"))
}
