//! Grouped seat holds (`hold_seats_batch`, migration 0013; `reservations::batch`): a batch decides
//! exactly what `hold_seats` decides for its requests one after the other, and the HTTP path with
//! grouping on keeps one winner per seat.

use std::collections::HashMap;

use chrono::Utc;
use futures::future::join_all;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use sqlx::PgPool;
use tiketi_service::{
    queue::Verdict,
    reservations::db::{self, HoldOutcome, HoldRequest},
};
use uuid::Uuid;

use crate::common::{TestApp, fresh_database, refusal};

/// One case's world, created with the same ids in every database it is compared on.
struct World {
    users: Vec<Uuid>,
    /// Not a row of `users`.
    ghost: Uuid,
    /// On sale now.
    event: Uuid,
    /// Its sale opens tomorrow.
    closed: Uuid,
    /// Seats of `event`: the last two cost 1.5 billion each (two together overflow the total).
    seats: Vec<Uuid>,
    /// Seats of `closed`.
    closed_seats: Vec<Uuid>,
}

impl World {
    fn new() -> Self {
        Self::with_seats(8)
    }

    fn with_seats(n: usize) -> Self {
        Self {
            users: (0..5).map(|_| Uuid::new_v4()).collect(),
            ghost: Uuid::new_v4(),
            event: Uuid::new_v4(),
            closed: Uuid::new_v4(),
            seats: (0..n).map(|_| Uuid::new_v4()).collect(),
            closed_seats: (0..2).map(|_| Uuid::new_v4()).collect(),
        }
    }

    async fn create(&self, db: &PgPool) {
        for u in &self.users {
            sqlx::query("INSERT INTO users (id, email, password_hash, name) VALUES ($1, $1::TEXT || '@t', 'x', 'u')")
                .bind(u)
                .execute(db)
                .await
                .unwrap();
        }
        for (event, opens) in [(self.event, "-1 hour"), (self.closed, "+1 day")] {
            sqlx::query(
                "INSERT INTO events (id, title, venue, event_date, sale_start_date, sale_end_date, status)
                 VALUES ($1, 't', 'v', now() + interval '10 days', now() + $2::INTERVAL, now() + interval '2 days', 'on_sale')",
            )
            .bind(event)
            .bind(opens)
            .execute(db)
            .await
            .unwrap();
        }
        let n = self.seats.len();
        for (i, seat) in self.seats.iter().enumerate() {
            let price = if i >= n - 2 {
                1_500_000_000
            } else {
                1000 * (i as i32 + 1)
            };
            insert_seat(db, *seat, self.event, i, price).await;
        }
        for (i, seat) in self.closed_seats.iter().enumerate() {
            insert_seat(db, *seat, self.closed, i, 500).await;
        }
    }

    /// The seats, reservations and items of the world's events, in a comparable order.
    async fn state(&self, db: &PgPool) -> Vec<String> {
        let events = vec![self.event, self.closed];
        let seats: Vec<(Uuid, String, Option<Uuid>)> = sqlx::query_as(
            "SELECT id, status::TEXT, held_by FROM seats WHERE event_id = ANY ($1) ORDER BY id",
        )
        .bind(&events)
        .fetch_all(db)
        .await
        .unwrap();
        let reservations: Vec<(Uuid, Uuid, String, i32, String)> = sqlx::query_as(
            "SELECT id, user_id, reservation_number::TEXT, total_amount, status::TEXT
             FROM reservations WHERE event_id = ANY ($1) ORDER BY id",
        )
        .bind(&events)
        .fetch_all(db)
        .await
        .unwrap();
        let items: Vec<(Uuid, Option<Uuid>, i32, i32, i32)> = sqlx::query_as(
            "SELECT ri.reservation_id, ri.seat_id, ri.quantity, ri.unit_price, ri.subtotal
             FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
             WHERE r.event_id = ANY ($1) ORDER BY ri.reservation_id, ri.seat_id",
        )
        .bind(&events)
        .fetch_all(db)
        .await
        .unwrap();
        let mut out: Vec<String> = seats.iter().map(|s| format!("seat {s:?}")).collect();
        out.extend(reservations.iter().map(|r| format!("reservation {r:?}")));
        out.extend(items.iter().map(|i| format!("item {i:?}")));
        out
    }
}

async fn insert_seat(db: &PgPool, id: Uuid, event: Uuid, i: usize, price: i32) {
    sqlx::query(
        "INSERT INTO seats (id, event_id, section, row_number, seat_number, seat_label, price)
         VALUES ($1, $2, 'A', 1, $3::INT, 'A-' || $3::INT, $4)",
    )
    .bind(id)
    .bind(event)
    .bind(i as i32 + 1)
    .bind(price)
    .execute(db)
    .await
    .unwrap();
}

fn hold(user: Uuid, event: Uuid, seats: Vec<Uuid>, cap: i32, number: String) -> HoldRequest {
    HoldRequest {
        user_id: user,
        event_id: event,
        seat_ids: seats,
        reservation_id: Uuid::new_v4(),
        number,
        hold_secs: 300.0,
        cap,
        admission: Verdict::Admitted {
            until_ms: Utc::now().timestamp_millis() + 3_600_000,
        },
        fair_window_secs: 0.0,
    }
}

/// A random request of `w`: mostly admitted buyers of a few hot seats under a cap, and now and then
/// every way a hold is refused.
fn random_request(rng: &mut StdRng, w: &World, number: String) -> HoldRequest {
    let now = Utc::now().timestamp_millis();
    let user = if rng.random_ratio(1, 20) {
        w.ghost
    } else {
        w.users[rng.random_range(0..w.users.len())]
    };
    let event = match rng.random_range(0..20) {
        0 => w.closed,
        1 => Uuid::new_v4(),
        _ => w.event,
    };
    let mut seats = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        seats.push(match rng.random_range(0..20) {
            0 => Uuid::new_v4(),
            1 => w.closed_seats[rng.random_range(0..w.closed_seats.len())],
            2 if !seats.is_empty() => seats[0],
            _ => w.seats[rng.random_range(0..w.seats.len())],
        });
    }
    let admission = match rng.random_range(0..12) {
        0 => Verdict::NotAdmitted,
        1 => Verdict::Unproven,
        2 => Verdict::AtGate {
            until_ms: now + 60_000,
        },
        3 => Verdict::Admitted {
            until_ms: now - 1000,
        },
        4 => Verdict::BeforeOpen,
        _ => Verdict::Admitted {
            until_ms: now + 60_000,
        },
    };
    HoldRequest {
        user_id: user,
        event_id: event,
        seat_ids: seats,
        reservation_id: Uuid::new_v4(),
        number,
        hold_secs: 300.0,
        cap: [0, 2, 3, 3][rng.random_range(0..4)],
        admission,
        fair_window_secs: if rng.random_ratio(1, 4) { 7200.0 } else { 0.0 },
    }
}

/// An outcome without its expiry instant (each database has its own `now()`).
fn comparable(o: &HoldOutcome) -> String {
    match o {
        HoldOutcome::Held { seats, expires_at } => {
            let left = (*expires_at - Utc::now()).num_seconds();
            assert!(
                (240..=300).contains(&left),
                "a hold of 300 s ends in {left} s"
            );
            let mut s: Vec<_> = seats
                .iter()
                .map(|s| (s.id, &s.seat_label, s.price))
                .collect();
            s.sort();
            format!("held {s:?}")
        }
        other => format!("{other:?}"),
    }
}

/// Runs `pre` one by one on both databases, then ages some of those holds past their end and
/// confirms others, the same way on both.
async fn prepare(dbs: [&PgPool; 2], pre: &[HoldRequest], rng: &mut StdRng) {
    let expire: Vec<Uuid> = pre
        .iter()
        .filter(|_| rng.random_ratio(1, 3))
        .map(|r| r.reservation_id)
        .collect();
    let confirm: Vec<Uuid> = pre
        .iter()
        .filter(|_| rng.random_ratio(1, 3))
        .map(|r| r.reservation_id)
        .collect();
    for db in dbs {
        for r in pre {
            db::hold_seats(db, r).await.unwrap();
        }
        sqlx::query(
            "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = ANY ($1)",
        )
        .bind(&expire)
        .execute(db)
        .await
        .unwrap();
        sqlx::query("UPDATE reservations SET status = 'confirmed', payment_status = 'completed' WHERE id = ANY ($1) AND NOT id = ANY ($2)")
            .bind(&confirm)
            .bind(&expire)
            .execute(db)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_holds_decide_what_one_by_one_holds_decide() {
    let (one, two) = tokio::join!(fresh_database(), fresh_database());
    let (batched, sequential) = (
        PgPool::connect(&one).await.unwrap(),
        PgPool::connect(&two).await.unwrap(),
    );
    let seed: u64 = std::env::var("GROUPED_HOLDS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7ce7_1d5e);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut held = 0;
    let mut refused: HashMap<String, usize> = HashMap::new();
    for case in 0..150 {
        let w = World::new();
        w.create(&batched).await;
        w.create(&sequential).await;
        let pre: Vec<HoldRequest> = (0..rng.random_range(0..3))
            .map(|i| {
                let user = w.users[rng.random_range(0..w.users.len())];
                let seat = w.seats[rng.random_range(0..w.seats.len() - 2)];
                hold(user, w.event, vec![seat], 0, format!("P{case}-{i}"))
            })
            .collect();
        prepare([&batched, &sequential], &pre, &mut rng).await;

        let requests: Vec<HoldRequest> = (0..rng.random_range(1..=30))
            .map(|i| random_request(&mut rng, &w, format!("B{case}-{i}")))
            .collect();
        let together = db::hold_seats_batch(&batched, &requests).await.unwrap();
        let mut alone = Vec::new();
        for r in &requests {
            alone.push(db::hold_seats(&sequential, r).await.unwrap());
        }
        assert_eq!(together.len(), requests.len());
        for (i, (t, a)) in together.iter().zip(&alone).enumerate() {
            assert_eq!(
                comparable(t),
                comparable(a),
                "seed {seed}, case {case}, request {i} of {}",
                requests.len()
            );
            match t {
                HoldOutcome::Held { .. } => held += 1,
                other => {
                    let kind = format!("{other:?}");
                    let kind = kind.split('(').next().unwrap_or_default().to_string();
                    *refused.entry(kind).or_default() += 1;
                }
            }
        }
        assert_eq!(
            w.state(&batched).await,
            w.state(&sequential).await,
            "seed {seed}, case {case}: the databases differ"
        );
    }
    // the cases reach every outcome, so the comparison above is about all of them
    assert!(held > 100, "only {held} holds won");
    for kind in [
        "NoEvent",
        "NotOnSale",
        "NotAdmitted",
        "Unproven",
        "OverCap",
        "SeatNotFound",
        "SeatTaken",
        "AmountTooLarge",
        "UserGone",
    ] {
        assert!(
            refused.get(kind).is_some_and(|n| *n > 0),
            "no {kind} among {refused:?}"
        );
    }
}

#[tokio::test]
async fn grouped_holds_give_a_seat_to_one_buyer_of_the_batch() {
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    let w = World::new();
    w.create(&db).await;
    let seat = w.seats[0];
    let requests: Vec<HoldRequest> = w
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| hold(*u, w.event, vec![seat], 0, format!("R{i}")))
        .collect();
    let outcomes = db::hold_seats_batch(&db, &requests).await.unwrap();
    assert!(matches!(outcomes[0], HoldOutcome::Held { .. }));
    for o in &outcomes[1..] {
        assert_eq!(*o, HoldOutcome::SeatTaken("A-1".into()));
    }
    let holders: Vec<Uuid> = sqlx::query_scalar(
        "SELECT r.id FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
         WHERE ri.seat_id = $1",
    )
    .bind(seat)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(holders, vec![requests[0].reservation_id]);
    let held_by: Option<Uuid> = sqlx::query_scalar("SELECT held_by FROM seats WHERE id = $1")
        .bind(seat)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(held_by, Some(requests[0].reservation_id));
}

#[tokio::test]
async fn grouped_holds_count_the_batchs_earlier_holds_against_the_cap() {
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    let w = World::new();
    w.create(&db).await;
    let (capped, other) = (w.users[0], w.users[1]);
    // one seat held before, cap 2: one more in the batch, never two
    let before = hold(capped, w.event, vec![w.seats[0]], 2, "R0".into());
    assert!(matches!(
        db::hold_seats(&db, &before).await.unwrap(),
        HoldOutcome::Held { .. }
    ));
    let requests = vec![
        hold(capped, w.event, vec![w.seats[1]], 2, "R1".into()),
        hold(other, w.event, vec![w.seats[2]], 2, "R2".into()),
        hold(capped, w.event, vec![w.seats[3]], 2, "R3".into()),
        hold(
            capped,
            w.event,
            vec![w.seats[4], w.seats[5]],
            2,
            "R4".into(),
        ),
    ];
    let outcomes = db::hold_seats_batch(&db, &requests).await.unwrap();
    assert!(matches!(outcomes[0], HoldOutcome::Held { .. }));
    assert!(matches!(outcomes[1], HoldOutcome::Held { .. }));
    assert_eq!(outcomes[2], HoldOutcome::OverCap);
    assert_eq!(outcomes[3], HoldOutcome::OverCap);
    let seats_of_capped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
         WHERE r.user_id = $1 AND r.event_id = $2",
    )
    .bind(capped)
    .bind(w.event)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(seats_of_capped, 2);
}

/// Two replicas' writers deciding the same seats in opposite orders: both batches complete (their
/// locks are taken in one order, so neither waits for the other in a cycle) and each seat has one
/// winner between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_holds_of_two_writers_on_the_same_seats_never_deadlock() {
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    for round in 0..10 {
        let w = World::with_seats(202);
        w.create(&db).await;
        let seats = &w.seats[..200];
        let batch = |tag: &str, order: Vec<usize>| -> Vec<HoldRequest> {
            order
                .into_iter()
                .map(|i| {
                    let user = w.users[i % w.users.len()];
                    hold(
                        user,
                        w.event,
                        vec![seats[i]],
                        0,
                        format!("{tag}{round}-{i}"),
                    )
                })
                .collect()
        };
        let a = batch("A", (0..seats.len()).collect());
        let b = batch("B", (0..seats.len()).rev().collect());
        let (one, two) = tokio::join!(db::hold_seats_batch(&db, &a), db::hold_seats_batch(&db, &b));
        let (one, two) = (one.expect("batch A"), two.expect("batch B"));
        let won = |o: &[HoldOutcome]| {
            o.iter()
                .filter(|o| matches!(o, HoldOutcome::Held { .. }))
                .count()
        };
        assert_eq!(won(&one) + won(&two), seats.len(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_holds_over_http_have_one_winner_per_seat() {
    let app = TestApp::spawn_with(|c| {
        c.hold_batch_window_ms = 5;
        c.hold_batch_max = 16;
    })
    .await;
    let (event, _) = app.seat_event().await;
    let labels = ["VIP-1-1", "VIP-1-2", "VIP-1-3", "VIP-1-4", "VIP-1-5"];
    let mut seats = Vec::new();
    for l in labels {
        seats.push(app.seat_id(event, l).await);
    }
    let users = app.users(60).await;
    // every user tries one seat; twelve buyers per seat, interleaved
    let results = join_all(
        users
            .iter()
            .enumerate()
            .map(|(i, u)| app.hold(&u.token, event, seats[i % seats.len()])),
    )
    .await;
    let mut winners: HashMap<usize, Vec<String>> = HashMap::new();
    for (i, (status, body)) in results.iter().enumerate() {
        let seat = i % seats.len();
        if *status == StatusCode::CREATED {
            winners
                .entry(seat)
                .or_default()
                .push(body["reservation"]["id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            let message = format!("이미 예약된 좌석입니다. ({})", labels[seat]);
            assert_eq!(*body, refusal("SEAT_TAKEN", &message));
        }
    }
    for (seat, label) in labels.iter().enumerate() {
        assert_eq!(winners.get(&seat).map(Vec::len), Some(1), "seat {label}");
    }
    let live: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT ri.seat_id, r.id FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
         WHERE r.event_id = $1 ORDER BY ri.seat_id",
    )
    .bind(event)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(live.len(), seats.len());
    for (seat, reservation) in live {
        let i = seats.iter().position(|s| *s == seat).unwrap();
        assert_eq!(winners[&i], vec![reservation.to_string()]);
        assert_eq!(app.seat_status(seat).await, "locked");
    }
}

/// What a seat writer does to reservation `r` (its seats `hi`, `lo`) inside `tx`.
#[derive(Clone, Copy, Debug)]
enum SeatWriter {
    /// A payment marks them sold.
    Sell,
    /// A cancellation or the expiry sweep frees them.
    Release,
    /// A one-hold statement (`hold_seats`, grouping off) takes them (free seats, no `r`).
    OneHold,
}

/// A payment, a release or a one-hold statement on seats a grouped hold is deciding: the hold took the
/// lower seat id and will take the higher next (`hold_seats_batch` locks in id order). The writer
/// must wait for the lower seat without holding the higher one, or the two deadlock and PostgreSQL
/// aborts one of them (a hold answered with an error, or a payment refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_holds_and_the_seat_writers_take_seats_in_one_order() {
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    for writer in [SeatWriter::Sell, SeatWriter::Release, SeatWriter::OneHold] {
        // the higher seat id first on disk (and among `r`'s items), so a writer that locks rows in
        // the order it meets them takes `hi` first
        let mut w = World::with_seats(4);
        w.seats.sort_by(|a, b| b.cmp(a));
        w.create(&db).await;
        let (hi, lo) = (w.seats[0], w.seats[1]);
        let r = Uuid::new_v4();
        if !matches!(writer, SeatWriter::OneHold) {
            held_by(&db, &w, r, [hi, lo]).await;
        }

        // the grouped hold's first lock
        let mut grouped = db.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM seats WHERE id = $1 FOR UPDATE")
            .bind(lo)
            .execute(&mut *grouped)
            .await
            .unwrap();

        let mut tx = db.begin().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let one_hold = hold(w.users[1], w.event, vec![hi, lo], 0, format!("one-{r}"));
        let write = tokio::spawn(async move {
            let done = match writer {
                SeatWriter::Sell => db::set_seats_sold(&mut tx, r, true).await.map(|_| ()),
                SeatWriter::Release => db::release_seats(&mut tx, &[r]).await.map(|_| ()),
                SeatWriter::OneHold => db::hold_seats(&mut *tx, &one_hold).await.map(|_| ()),
            };
            tx.commit().await.and(done)
        });
        // until the writer waits for a lock
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let waiting: bool = sqlx::query_scalar(
                    "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
                )
                .bind(pid)
                .fetch_one(&db)
                .await
                .unwrap();
                if waiting {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the writer waits for the hold's lock");

        // the grouped hold's second lock: free, since the writer waits for `lo` holding nothing
        let second = sqlx::query("SELECT 1 FROM seats WHERE id = $1 FOR UPDATE NOWAIT")
            .bind(hi)
            .execute(&mut *grouped)
            .await;
        let refused = second.as_ref().err().map(|e| e.to_string());
        grouped.rollback().await.ok();
        write.await.unwrap().expect("the writer finishes");
        assert_eq!(
            refused, None,
            "{writer:?} holds the higher seat while it waits for the lower one"
        );
    }
}

/// Reservation `r` of `w`'s first user holds `seats`, written to disk and to its items in that
/// order.
async fn held_by(db: &PgPool, w: &World, r: Uuid, seats: [Uuid; 2]) {
    sqlx::query(
        "INSERT INTO reservations (id, user_id, event_id, reservation_number, total_amount, expires_at)
         VALUES ($1, $2, $3, $1::TEXT, 3000, now() + interval '5 minutes')",
    )
    .bind(r)
    .bind(w.users[0])
    .bind(w.event)
    .execute(db)
    .await
    .unwrap();
    for seat in seats {
        sqlx::query("UPDATE seats SET status = 'locked', held_by = $1 WHERE id = $2")
            .bind(r)
            .bind(seat)
            .execute(db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO reservation_items (reservation_id, seat_id, quantity, unit_price, subtotal)
             VALUES ($1, $2, 1, 1000, 1000)",
        )
        .bind(r)
        .bind(seat)
        .execute(db)
        .await
        .unwrap();
    }
}
