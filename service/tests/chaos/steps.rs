//! Steps the scenarios share: filling the waiting room, connecting the frontend's socket client,
//! buyers buying and a reader reading through every replica, and the PostgreSQL invariants of a sale.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tiketi_service::auth::jwt::JwtKeys;
use uuid::Uuid;

use crate::{
    common::eventually,
    harness::{Answer, Cluster, Http, Replica, User, fresh_database, seat_event, session, users},
    report::Rec,
    sio::Clients,
};

/// A sale on three replicas (a, b, c) sharing one fresh database and `redis`: where both
/// scenarios start.
pub struct Sale {
    pub db: PgPool,
    pub jwt: JwtKeys,
    pub replicas: [Replica; 3],
    pub bases: Vec<String>,
    pub event: Uuid,
    pub seats: Vec<Uuid>,
    /// `threshold` users who will be admitted, and `waiters` who will queue behind them.
    pub buyers: Vec<User>,
    pub waiters: Vec<User>,
}

pub async fn open_sale(
    redis_url: &str,
    logs: &Path,
    settings: &[(&'static str, u64)],
    threshold: usize,
    waiters: usize,
) -> anyhow::Result<Sale> {
    let db_url = fresh_database(logs).await?;
    let db = PgPool::connect(&db_url).await?;
    let cluster = settings.iter().fold(
        Cluster::new(db_url, redis_url.to_string(), logs.to_path_buf()),
        |c, (k, v)| c.set(k, v),
    );
    let (event, seats) = seat_event(&db, threshold as i32).await?;
    let (a, b, c) = tokio::try_join!(
        cluster.replica("a"),
        cluster.replica("b"),
        cluster.replica("c")
    )?;
    let replicas = [a, b, c];
    let bases = replicas.iter().map(|r| r.base.clone()).collect();
    let jwt = cluster.jwt();
    let buyers = users(&db, &jwt, threshold).await?;
    let waiters = users(&db, &jwt, waiters).await?;
    Ok(Sale {
        db,
        jwt,
        replicas,
        bases,
        event,
        seats,
        buyers,
        waiters,
    })
}

pub fn ok(r: Result<Answer, String>) -> anyhow::Result<Answer> {
    r.map_err(anyhow::Error::msg)
}

/// The replica user `i` uses (users are spread round-robin, as a load balancer would).
pub fn home(i: usize, replicas: usize) -> usize {
    i % replicas
}

/// Admits `admitted` (the room has space for exactly them), then queues `waiting` one after another;
/// returns each waiter's position as `/api/queue/status` reports it.
pub async fn fill_waiting_room(
    http: &Http,
    bases: &[String],
    event: Uuid,
    admitted: &[User],
    waiting: &[User],
) -> anyhow::Result<Vec<i64>> {
    let path = format!("/api/queue/check/{event}");
    for (users, queued, what) in [(admitted, false, "admission"), (waiting, true, "queueing")] {
        for (i, u) in users.iter().enumerate() {
            let a = ok(http
                .post(
                    &bases[home(i, bases.len())],
                    &path,
                    Some(&u.token),
                    json!({}),
                )
                .await)?;
            ensure!(
                a.status == 200 && a.body["queued"] == queued,
                "{what} {i}: {} {}",
                a.status,
                a.body
            );
        }
    }
    let mut positions = Vec::new();
    for (i, u) in waiting.iter().enumerate() {
        let a = ok(http
            .get(
                &bases[home(i, bases.len())],
                &format!("/api/queue/status/{event}"),
                Some(&u.token),
            )
            .await)?;
        ensure!(a.status == 200, "status {i}: {} {}", a.status, a.body);
        positions.push(a.body["position"].as_i64().context("position")?);
    }
    let mut sorted = positions.clone();
    sorted.sort();
    ensure!(
        sorted == (1..=waiting.len() as i64).collect::<Vec<_>>(),
        "positions are not 1..n: {positions:?}"
    );
    Ok(positions)
}

/// Connects socket `id` (the real socket.io-client) to `base`, emitting `joins` from its connect
/// handler as the frontend does.
pub async fn connect(
    io: &mut Clients,
    id: &str,
    base: &str,
    token: &str,
    joins: Value,
) -> anyhow::Result<()> {
    io.send(json!({ "op": "connect", "id": id, "url": base, "token": token, "join": joins }))
        .await;
    if io
        .within(id, "connect", |_| true, Duration::from_secs(15))
        .await
        .is_none()
    {
        bail!("socket {id} did not connect to {base}");
    }
    Ok(())
}

/// Sockets (the frontend's client) for the first `front` waiters in line, in the event's and the
/// queue's rooms through each waiter's home replica, named `w<index>`; returns once Redis holds each
/// one's session.
pub async fn connect_front(
    io: &mut Clients,
    bases: &[String],
    waiters: &[User],
    positions: &[i64],
    front: usize,
    event: Uuid,
    redis_url: &str,
) -> anyhow::Result<()> {
    for p in 1..=front as i64 {
        let i = positions
            .iter()
            .position(|x| *x == p)
            .context("a waiter at each place")?;
        let joins =
            json!([["join-event", { "eventId": event }], ["join-queue", { "eventId": event }]]);
        connect(
            io,
            &format!("w{i}"),
            &bases[home(i, bases.len())],
            &waiters[i].token,
            joins,
        )
        .await?;
        ensure!(
            session_saved(redis_url, waiters[i].id, &["eventId", "queueEventId"]).await,
            "the session of waiter {i} was not saved"
        );
    }
    Ok(())
}

/// Waits until the user's realtime session in Redis holds `fields` (the join handlers save it after
/// answering, so a client cannot tell on its own).
pub async fn session_saved(redis_url: &str, user: Uuid, fields: &[&str]) -> bool {
    eventually(Duration::from_secs(10), || async {
        session(redis_url, user)
            .await
            .is_ok_and(|m| fields.iter().all(|f| m.contains_key(*f)))
    })
    .await
}

/// What the buyers bought, and what they were refused, while a scenario ran.
#[derive(Default)]
pub struct Sold {
    pub holds: Vec<Uuid>,
    pub paid: Vec<Uuid>,
    /// Holds and payments that were not 201/200, as answered.
    pub refused: Vec<String>,
    /// The slowest answers (an outage slows the Redis steps: rate limits fail open, the waiting-room
    /// gate answers from remembered admissions or refuses with 503 `QUEUE_UNAVAILABLE`).
    pub slowest_hold: Duration,
    pub slowest_payment: Duration,
}

/// The buyers holding and paying one seat after another through every replica, until finished.
pub struct Buying {
    sold: Arc<Mutex<Sold>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Buying {
    pub fn start(
        http: &Http,
        bases: &[String],
        buyers: &[User],
        seats: &[Uuid],
        event: Uuid,
    ) -> Self {
        let sold = Arc::new(Mutex::new(Sold::default()));
        // the buyers stop between purchases (an abort could drop a hold the server already stored)
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (http, bases, sold, stop) =
                (http.clone(), bases.to_vec(), sold.clone(), stop.clone());
            let (tokens, seats): (Vec<String>, Vec<Uuid>) = (
                buyers.iter().map(|u| u.token.clone()).collect(),
                seats.to_vec(),
            );
            tokio::spawn(async move {
                for (n, seat) in seats.iter().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (token, base) = (&tokens[n % tokens.len()], &bases[n % bases.len()]);
                    let body = json!({ "eventId": event, "seatIds": [seat] });
                    let Ok(a) = http
                        .post(base, "/api/seats/reserve", Some(token), body)
                        .await
                    else {
                        continue;
                    };
                    {
                        let mut sold = sold.lock().expect("sold");
                        sold.slowest_hold = sold.slowest_hold.max(a.took);
                    }
                    if a.status != StatusCode::CREATED {
                        sold.lock()
                            .expect("sold")
                            .refused
                            .push(format!("hold {}: {}", a.status, a.body));
                        continue;
                    }
                    let Some(id) = a.body["reservation"]["id"]
                        .as_str()
                        .and_then(|s| s.parse::<Uuid>().ok())
                    else {
                        continue;
                    };
                    sold.lock().expect("sold").holds.push(id);
                    let pay = json!({ "reservationId": id, "paymentMethod": "naver_pay" });
                    let via = &bases[(n + 1) % bases.len()];
                    let answer = http
                        .post(via, "/api/payments/process", Some(token), pay)
                        .await;
                    if let Ok(a) = &answer {
                        let mut sold = sold.lock().expect("sold");
                        sold.slowest_payment = sold.slowest_payment.max(a.took);
                    }
                    match answer {
                        Ok(a) if a.status == StatusCode::OK => {
                            sold.lock().expect("sold").paid.push(id)
                        }
                        Ok(a) => sold
                            .lock()
                            .expect("sold")
                            .refused
                            .push(format!("payment {}: {}", a.status, a.body)),
                        Err(e) => sold
                            .lock()
                            .expect("sold")
                            .refused
                            .push(format!("payment: {e}")),
                    }
                }
            })
        };
        Buying { sold, stop, task }
    }

    /// Purchases paid so far.
    pub fn paid(&self) -> usize {
        self.sold.lock().expect("sold").paid.len()
    }

    /// Stops after the purchase under way; what was sold.
    pub async fn finish(self) -> Sold {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.sold.lock().expect("sold"))
    }
}

/// A reader polling the event page and a waiter's queue status through the replicas, every 50 ms,
/// until aborted.
pub fn keep_reading(
    http: &Http,
    bases: &[String],
    waiters: &[User],
    event: Uuid,
) -> tokio::task::JoinHandle<()> {
    let (http, bases) = (http.clone(), bases.to_vec());
    let tokens: Vec<String> = waiters.iter().map(|u| u.token.clone()).collect();
    tokio::spawn(async move {
        for n in 0usize.. {
            let base = &bases[n % bases.len()];
            let path = if n % 2 == 0 {
                format!("/api/events/{event}")
            } else {
                format!("/api/queue/status/{event}")
            };
            let _ = http.get(base, &path, Some(&tokens[n % tokens.len()])).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// The sale's PostgreSQL invariants, recorded in `rec`; `holds` are the reservation ids that were
/// answered 201 and `paid` those whose payment was answered 200.
pub async fn sale_invariants(
    rec: &Rec,
    db: &PgPool,
    event: Uuid,
    holds: &[Uuid],
    paid: &[Uuid],
) -> anyhow::Result<()> {
    let double: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT ri.seat_id, count(*) FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
         WHERE r.event_id = $1 AND r.status IN ('pending', 'confirmed') AND ri.seat_id IS NOT NULL
         GROUP BY ri.seat_id HAVING count(*) > 1",
    )
    .bind(event)
    .fetch_all(db)
    .await?;
    rec.check(
        "each seat has at most one live (pending or confirmed) reservation",
        double.is_empty(),
        format!("{} seats held twice", double.len()),
    );

    let (total, sold, locked, sold_by_confirmed): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'reserved'), count(*) FILTER (WHERE status = 'locked'),
                (SELECT count(DISTINCT ri.seat_id) FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
                 WHERE r.event_id = $1 AND r.status = 'confirmed')
         FROM seats WHERE event_id = $1",
    )
    .bind(event)
    .fetch_one(db)
    .await?;
    rec.check(
        "seats sold <= seats, and every sold seat belongs to a confirmed reservation",
        sold <= total && sold == sold_by_confirmed,
        format!("{sold} sold of {total}; {sold_by_confirmed} seats in confirmed reservations"),
    );
    rec.check(
        "no seat left locked once every hold is paid or expired",
        locked == 0,
        format!("{locked} locked"),
    );

    let states: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, status, payment_status FROM reservations WHERE event_id = $1")
            .bind(event)
            .fetch_all(db)
            .await?;
    let found = |id: &Uuid| states.iter().find(|(r, _, _)| r == id);
    let lost = holds.iter().filter(|h| found(h).is_none()).count();
    let phantom = states.len() - (holds.len() - lost);
    rec.check(
        "no hold lost or invented: every 201 hold is in PostgreSQL, and nothing else",
        lost == 0 && phantom == 0,
        format!(
            "{} holds answered 201, {} reservations stored, {lost} missing",
            holds.len(),
            states.len()
        ),
    );
    let unsettled = states
        .iter()
        .filter(|(_, s, p)| {
            !matches!(
                (s.as_str(), p.as_str()),
                ("confirmed", "completed") | ("expired", "failed")
            )
        })
        .count();
    rec.check(
        "every hold ended paid (confirmed/completed) or expired (expired/failed)",
        unsettled == 0,
        format!("{unsettled} in another state"),
    );
    let unpaid = paid
        .iter()
        .filter(|id| found(id).is_none_or(|(_, s, p)| s != "confirmed" || p != "completed"))
        .count();
    rec.check(
        "every payment answered 200 is completed",
        unpaid == 0,
        format!(
            "{} payments answered 200, {unpaid} not completed",
            paid.len()
        ),
    );
    let completed = states.iter().filter(|(_, _, p)| p == "completed").count();
    rec.check(
        "no payment completed without a 200 answer",
        completed == paid.len(),
        format!("{completed} completed, {} answered 200", paid.len()),
    );
    Ok(())
}

/// Until the event has no pending hold left (each paid or expired by the sweeper), at most `within`.
pub async fn holds_settled(db: &PgPool, event: Uuid, within: Duration) -> bool {
    eventually(within, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM reservations WHERE event_id = $1 AND status = 'pending'",
        )
        .bind(event)
        .fetch_one(db)
        .await
        .is_ok_and(|n| n == 0)
    })
    .await
}

/// The end of a sale that ran through a fault: every hold settles within `hold_secs` (+ 15 s), what
/// was sold is noted, and the sale's PostgreSQL invariants are checked.
pub async fn close_sale(
    rec: &Rec,
    db: &PgPool,
    event: Uuid,
    sold: Sold,
    hold_secs: u64,
) -> anyhow::Result<()> {
    let settled = holds_settled(db, event, Duration::from_secs(hold_secs + 15)).await;
    ensure!(
        settled,
        "holds still pending {hold_secs} s after the sale stopped"
    );
    rec.note(format!(
        "{} seats held and {} paid through the replicas during the scenario; slowest hold {} ms, \
         slowest payment {} ms",
        sold.holds.len(),
        sold.paid.len(),
        sold.slowest_hold.as_millis(),
        sold.slowest_payment.as_millis()
    ));
    for r in &sold.refused {
        rec.note(format!("refused during the sale: {r}"));
    }
    sale_invariants(rec, db, event, &sold.holds, &sold.paid).await
}

/// The service never crashed: every replica alive, no panic logged, and no 5xx answer but 503 with
/// `Retry-After`.
pub fn never_crashed(rec: &Rec, replicas: &mut [Replica]) {
    let alive = replicas.iter_mut().all(Replica::alive);
    let panics: usize = replicas.iter().map(Replica::panics).sum();
    let tally = rec.meter.lock().expect("tally").clone();
    let other_5xx: u64 = tally
        .outcomes
        .iter()
        .filter(|(k, _)| k.starts_with('5') && k.as_str() != "503")
        .map(|(_, v)| v)
        .sum();
    rec.check(
        "the service never crashes: only 503 (each with Retry-After) as 5xx, no panic, all replicas alive",
        alive && panics == 0 && other_5xx == 0 && tally.unavailable_without_retry_after == 0,
        format!(
            "alive {alive}; panics {panics}; other 5xx {other_5xx}; 503 without Retry-After {}",
            tally.unavailable_without_retry_after
        ),
    );
}
