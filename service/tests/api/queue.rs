//! Waiting room REST endpoints (admission from the queue is exercised by the realtime tests).

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn queue_threshold_admits_then_queues_fifo_and_keeps_places() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    app.set_queue_threshold(event, 2).await;
    let (a, b, c, d) = (
        app.user().await,
        app.user().await,
        app.user().await,
        app.user().await,
    );
    let check = |t: String| {
        let app = &app;
        async move {
            app.post(&format!("/api/queue/check/{event}"), Some(&t), json!({}))
                .await
        }
    };

    assert_eq!(
        check(a.token.clone()).await,
        (
            StatusCode::OK,
            json!({ "queued": false, "currentUsers": 0, "threshold": 2 })
        )
    );
    assert_eq!(
        check(b.token.clone()).await.1,
        json!({ "queued": false, "currentUsers": 1, "threshold": 2 })
    );
    let (_, queued) = check(c.token.clone()).await;
    assert_eq!(
        crate::capacity::without_eta(&queued),
        json!({ "queued": true, "position": 1, "threshold": 2, "currentUsers": 2 })
    );
    // the room is full and nobody left yet: the place opens when a hold in front of it expires
    crate::capacity::assert_hold_expiry_eta(&queued);
    assert_eq!(check(d.token.clone()).await.1["position"], 2);
    // a refresh keeps the place; an admitted user stays admitted
    assert_eq!(check(c.token.clone()).await.1["position"], 1);
    assert_eq!(check(a.token.clone()).await.1["queued"], false);

    // the frontend's double-prefixed path is served too
    for path in [
        format!("/api/queue/status/{event}"),
        format!("/api/api/queue/status/{event}"),
    ] {
        let (status, body) = app.get(&path, Some(&d.token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            crate::capacity::without_eta(&body),
            json!({ "queued": true, "position": 2, "queueSize": 2, "currentUsers": 2, "threshold": 2 })
        );
        crate::capacity::assert_hold_expiry_eta(&body);
    }

    let (status, body) = app
        .post(
            &format!("/api/api/queue/leave/{event}"),
            Some(&c.token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({ "message": "대기열에서 나왔습니다." })
        )
    );
    assert_eq!(
        app.get(&format!("/api/queue/status/{event}"), Some(&d.token))
            .await
            .1["position"],
        1
    );
}

#[tokio::test]
async fn queue_admin_routes_need_the_admin_role() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    let user = app.user().await;
    let admin = app.admin().await;
    app.post(
        &format!("/api/queue/check/{event}"),
        Some(&user.token),
        json!({}),
    )
    .await;

    let info = format!("/api/queue/admin/{event}");
    let clear = format!("/api/queue/admin/clear/{event}");
    assert_eq!(
        app.get(&info, Some(&user.token)).await,
        (
            StatusCode::FORBIDDEN,
            json!({ "error": "관리자 권한이 필요합니다.", "code": "ADMIN_ONLY" })
        )
    );
    assert_eq!(
        app.post(&clear, Some(&user.token), json!({})).await.0,
        StatusCode::FORBIDDEN
    );

    let (status, body) = app.get(&info, Some(&admin.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "eventId": event, "queueSize": 0, "currentUsers": 1, "threshold": 1000, "available": 999 })
    );
    assert_eq!(
        app.post(&clear, Some(&admin.token), json!({})).await,
        (
            StatusCode::OK,
            json!({ "message": "대기열이 초기화되었습니다." })
        )
    );
    assert_eq!(
        app.get(&info, Some(&admin.token)).await.1["currentUsers"],
        0
    );
}

#[tokio::test]
async fn queue_rejects_bad_ids_and_unknown_events() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    assert_eq!(
        app.post("/api/queue/check/not-a-uuid", Some(&user.token), json!({}))
            .await,
        (
            StatusCode::BAD_REQUEST,
            json!({ "error": "Invalid event ID format", "code": "INVALID_ID" })
        )
    );
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(
        app.post(
            &format!("/api/queue/check/{unknown}"),
            Some(&user.token),
            json!({})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(&format!("/api/queue/check/{unknown}"), None, json!({}))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn queue_threshold_never_exceeds_the_published_capacity() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    let (a, b) = (app.user().await, app.user().await);
    // the operator publishes this event's share of the ready capacity
    crate::capacity::publish(&app, event, 1, 0).await;
    let check = |t: String| {
        let app = &app;
        async move {
            app.post(&format!("/api/queue/check/{event}"), Some(&t), json!({}))
                .await
                .1
        }
    };
    assert_eq!(
        check(a.token.clone()).await,
        json!({ "queued": false, "currentUsers": 0, "threshold": 1 })
    );
    assert_eq!(check(b.token.clone()).await["position"], 1);
}

#[tokio::test]
async fn queue_is_enforced_on_holds_and_bookings_whenever_the_gate_is_closed() {
    let app = TestApp::spawn().await;
    // a second replica: admission is Redis state, the same on every replica
    let other = app.replica().await;
    let (event, seats) = app.seat_event().await;
    let ticket_type: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity) VALUES ($1, '일반석', 1000, 10, 10) RETURNING id",
    )
    .bind(event)
    .fetch_one(&app.db)
    .await
    .unwrap();
    app.set_queue_threshold(event, 1).await;
    let (admitted, waiting, bot) = (app.user().await, app.user().await, app.user().await);
    let check = |t: String| {
        let app = &app;
        async move {
            app.post(&format!("/api/queue/check/{event}"), Some(&t), json!({}))
                .await
                .1
        }
    };
    assert_eq!(check(admitted.token.clone()).await["queued"], false);
    assert_eq!(check(waiting.token.clone()).await["queued"], true);

    let refused = (
        StatusCode::FORBIDDEN,
        json!({ "error": "대기열 순서를 기다려주세요. 입장이 허용된 후 예매할 수 있습니다.", "code": "QUEUE_NOT_ADMITTED" }),
    );
    // a script that skips the queue, and a user still waiting, are refused; nothing is held or sold
    for user in [&bot, &waiting] {
        assert_eq!(app.hold(&user.token, event, seats[0]).await, refused);
        assert_eq!(other.hold(&user.token, event, seats[0]).await, refused);
        let booking =
            json!({ "eventId": event, "items": [{ "ticketTypeId": ticket_type, "quantity": 1 }] });
        assert_eq!(
            app.post("/api/reservations", Some(&user.token), booking)
                .await,
            refused
        );
    }
    assert_eq!(app.seat_status(seats[0]).await, "available");
    // the admitted user buys normally, here through the other replica
    assert_eq!(
        other.hold(&admitted.token, event, seats[0]).await.0,
        StatusCode::CREATED
    );

    let leave = |t: String| {
        let app = &app;
        async move {
            app.post(&format!("/api/queue/leave/{event}"), Some(&t), json!({}))
                .await
                .0
        }
    };
    // nobody waits any more, but the one place is still taken: the gate stays closed for a script
    // calling the reserve API directly (it passed here before: enforcement ended with the queue)
    assert_eq!(leave(waiting.token.clone()).await, StatusCode::OK);
    assert_eq!(app.hold(&bot.token, event, seats[1]).await, refused);
    assert_eq!(other.hold(&bot.token, event, seats[1]).await, refused);
    assert_eq!(app.seat_status(seats[1]).await, "available");

    // the place frees: a direct buyer takes it as a check would, so the next checker queues
    assert_eq!(leave(admitted.token.clone()).await, StatusCode::OK);
    assert_eq!(
        app.hold(&bot.token, event, seats[1]).await.0,
        StatusCode::CREATED
    );
    assert_eq!(check(waiting.token.clone()).await["queued"], true);
}

#[tokio::test]
async fn queue_concurrent_arrivals_keep_their_order_and_announced_places() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    app.set_queue_threshold(event, 1).await;
    let check = |t: String| {
        let app = &app;
        async move {
            app.post(&format!("/api/queue/check/{event}"), Some(&t), json!({}))
                .await
        }
    };
    // one admitted user fills the event, so nobody is admitted while the others arrive
    let first = app.user().await;
    assert_eq!(check(first.token).await.1["queued"], false);

    // many arrivals in the same milliseconds: each is placed behind everyone before it
    let users = app.users(150).await;
    let answers = futures::future::join_all(users.iter().map(|u| check(u.token.clone()))).await;
    let mut announced: Vec<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["position"].as_i64().expect("queued with a position")
        })
        .collect();
    for (u, place) in users.iter().zip(&announced) {
        let (_, now) = app
            .get(&format!("/api/queue/status/{event}"), Some(&u.token))
            .await;
        assert_eq!(
            now["position"], *place,
            "a later arrival pushed this one back"
        );
    }
    announced.sort_unstable();
    assert_eq!(announced, (1..=150).collect::<Vec<i64>>());
}

fn not_admitted() -> (StatusCode, serde_json::Value) {
    (
        StatusCode::FORBIDDEN,
        json!({ "error": "대기열 순서를 기다려주세요. 입장이 허용된 후 예매할 수 있습니다.", "code": "QUEUE_NOT_ADMITTED" }),
    )
}

/// A replica whose clock is behind still thinks the sale has not opened while PostgreSQL's clock is
/// inside the opening lottery: if it waved holds through ("PostgreSQL's sale window will answer"),
/// PostgreSQL, seeing the sale open, would sell the seat to whoever never queued. One whose clock is
/// ahead thinks the lottery over and would let buyers take places at the open gate.
#[tokio::test]
async fn queue_replicas_with_skewed_clocks_cannot_sell_ahead_of_the_opening_lottery() {
    let app = TestApp::spawn().await;
    let behind = app.replica_with(|c| c.clock_offset_ms = -120_000).await;
    let ahead = app.replica_with(|c| c.clock_offset_ms = 120_000).await;
    // opened 5 s ago by PostgreSQL's clock: the 60 s lottery window runs
    let (event, seats) = app.seat_event_opening("-5 seconds").await;
    let ticket_type = app.add_ticket_type(event, 10).await;
    let (bot, winner) = (app.user().await, app.user().await);
    app.admit(event, winner.id).await;

    for replica in [&behind, &ahead, &app] {
        for _ in 0..2 {
            assert_eq!(
                replica.hold(&bot.token, event, seats[0]).await,
                not_admitted()
            );
            assert_eq!(
                replica.book(&bot.token, event, ticket_type, 1).await,
                not_admitted()
            );
        }
    }
    assert_eq!(app.seat_status(seats[0]).await, "available");
    assert_eq!(app.reservations_of(event).await, 0, "nothing written");
    // the place the clock-ahead replica gave at the gate does not count during the lottery
    let (status, body) = app
        .post(
            &format!("/api/queue/check/{event}"),
            Some(&bot.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.hold(&bot.token, event, seats[0]).await, not_admitted());

    // the lottery's winner buys through either skewed replica
    assert_eq!(
        behind.hold(&winner.token, event, seats[0]).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        ahead.book(&winner.token, event, ticket_type, 1).await.0,
        StatusCode::CREATED
    );
}

/// The gate checked before the opening, the purchase run after it (the request waited for a
/// connection meanwhile): the check's "not open yet" travels into the purchase, which PostgreSQL
/// decides at its own instant.
#[tokio::test]
async fn queue_check_before_the_opening_cannot_buy_after_it() {
    use tiketi_service::{error::Code, queue::Verdict, reservations};
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event_opening("+2 seconds").await;
    let ticket_type = app.add_ticket_type(event, 10).await;
    let user = app.user().await;
    let opened = || async {
        sqlx::query_scalar::<_, bool>("SELECT now() >= sale_start_date FROM events WHERE id = $1")
            .bind(event)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };

    let verdict = tiketi_service::queue::admission(&app.state, event, user.id)
        .await
        .unwrap();
    assert!(
        !opened().await,
        "the machine was too slow: checked after the opening"
    );
    assert_eq!(verdict, Verdict::BeforeOpen);
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(10), opened).await,
        "the sale never opened"
    );

    let hold = reservations::hold_seats(&app.state, user.id, event, &seats[..1], verdict).await;
    assert_eq!(hold.err().map(|e| e.code()), Some(Code::QueueNotAdmitted));
    let booking =
        reservations::book_tickets(&app.state, user.id, event, &[(ticket_type, 1)], verdict).await;
    assert_eq!(
        booking.err().map(|e| e.code()),
        Some(Code::QueueNotAdmitted)
    );
    assert_eq!(app.seat_status(seats[0]).await, "available");
    assert_eq!(app.reservations_of(event).await, 0, "nothing written");
}

/// The one decider, `may_buy` (migration 0009), over its whole table: the sale window by
/// PostgreSQL's clock first, then the verdict.
#[tokio::test]
async fn queue_the_database_decides_every_purchase_by_its_own_clock() {
    use tiketi_service::{
        queue::Verdict,
        reservations::db::{BuyCheck, may_buy},
    };
    let app = TestApp::spawn().await;
    let soon = app.insert_event("", "+1 hour", "+1 day").await;
    let lottery = app.insert_event("", "-5 seconds", "+1 day").await;
    let fifo = app.insert_event("", "-5 minutes", "+1 day").await;
    let ended = app.insert_event("", "-2 days", "-1 day").await;
    let now = chrono::Utc::now().timestamp_millis();
    let live = now + 60_000;
    let verdicts = [
        Verdict::Admitted { until_ms: live },
        Verdict::Admitted {
            until_ms: now - 60_000,
        },
        Verdict::AtGate { until_ms: live },
        Verdict::NotAdmitted,
        Verdict::BeforeOpen,
        Verdict::Unproven,
    ];
    use BuyCheck::*;
    let table = [
        (soon, [NotOnSale; 6]),
        (ended, [NotOnSale; 6]),
        (
            lottery,
            [
                Ok,
                NotAdmitted,
                NotAdmitted,
                NotAdmitted,
                NotAdmitted,
                Unproven,
            ],
        ),
        (
            fifo,
            [Ok, NotAdmitted, Ok, NotAdmitted, NotAdmitted, Unproven],
        ),
        (uuid::Uuid::new_v4(), [NoEvent; 6]),
    ];
    for (event, expected) in table {
        for (verdict, want) in verdicts.iter().zip(expected) {
            let got = may_buy(&app.db, event, *verdict, 60.0).await.unwrap();
            assert_eq!(got, want, "{verdict:?}");
        }
    }
}
