//! `/api/payments/*`: the method list and the payment of a hold (success, validation, refusals,
//! double payment), and the payment intents' state machine: transient failures, retries, refunds,
//! recovery of what a dead replica left, and the ledger's invariant after each scenario.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestApp, eventually, keys, refusal};
use tiketi_service::payments::{provider::ChargeRequest, recovery};

#[tokio::test]
async fn payments_methods_are_listed() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/payments/methods", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "methods": [
            { "id": "naver_pay", "name": "네이버페이", "description": "네이버페이로 간편 결제", "icon": "/images/naver-pay.png" },
            { "id": "kakao_pay", "name": "카카오페이", "description": "카카오페이로 간편 결제", "icon": "/images/kakao-pay.png" },
            { "id": "bank_transfer", "name": "계좌이체", "description": "계좌이체로 결제", "icon": "/images/bank-transfer.png" },
        ] })
    );
}

#[tokio::test]
async fn payments_process_confirms_the_hold_and_sells_the_seat() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let user = app.user().await;
    let (status, held) = app.hold(&user.token, event, seat).await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let id: Uuid = held["reservation"]["id"].as_str().unwrap().parse().unwrap();

    let before = Utc::now();
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        keys(&body),
        ["message", "payment", "reservation", "success"]
    );
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "결제가 완료되었습니다.");
    let payment = &body["payment"];
    assert_eq!(
        keys(payment),
        [
            "paidAt",
            "paymentMethod",
            "reservationId",
            "reservationNumber",
            "totalAmount"
        ]
    );
    assert_eq!(payment["reservationId"], id.to_string());
    assert_eq!(
        payment["reservationNumber"],
        held["reservation"]["reservationNumber"]
    );
    assert_eq!(payment["paymentMethod"], "카카오페이");
    assert_eq!(payment["totalAmount"], 150000);
    let paid_at = payment["paidAt"].as_str().unwrap();
    assert!(paid_at.len() == 24 && paid_at.ends_with('Z'), "{paid_at}");
    let paid_at: DateTime<Utc> = paid_at.parse().unwrap();
    assert!((paid_at - before).num_seconds().abs() <= 5, "{paid_at}");

    let r = &body["reservation"];
    assert_eq!(keys(r), ["event", "seats"]);
    assert_eq!(keys(&r["event"]), ["event_date", "title", "venue"]);
    assert_eq!(r["event"]["title"], "테스트 공연");
    assert_eq!(r["event"]["venue"], "테스트홀");
    assert!(r["event"]["event_date"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        r["seats"],
        json!([{ "id": seat, "seat_label": "VIP-1-1", "section": "VIP", "row_number": 1, "seat_number": 1, "unit_price": 150000 }])
    );

    assert_eq!(app.seat_status(seat).await, "reserved");
    assert_eq!(
        app.reservation_state(id).await,
        ("confirmed".into(), "completed".into())
    );
    let (status, body) = app
        .get(&format!("/api/seats/reservation/{id}"), Some(&user.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reservation"]["status"], "confirmed");
    assert_eq!(body["reservation"]["payment_status"], "completed");
    assert_eq!(body["reservation"]["payment_method"], "kakao_pay");
    let (_, map) = app.get(&format!("/api/seats/events/{event}"), None).await;
    let shown = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == seat.to_string().as_str())
        .unwrap()["status"]
        .clone();
    assert_eq!(shown, "reserved");
}

#[tokio::test]
async fn payments_every_method_has_its_korean_name() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    for (i, (method, name)) in [
        ("naver_pay", "네이버페이"),
        ("kakao_pay", "카카오페이"),
        ("bank_transfer", "계좌이체"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = app.hold_ok(&user.token, event, seats[i]).await;
        let (status, body) = app.pay(&user.token, id, method).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["payment"]["paymentMethod"], name);
        let stored: String =
            sqlx::query_scalar("SELECT payment_method FROM reservations WHERE id = $1")
                .bind(id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(stored, method);
    }
}

#[tokio::test]
async fn payments_process_validation_messages() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    let plain = |code: &str, m: &str| json!({ "error": m, "code": code });
    let cases = [
        (json!({}), plain("INVALID_INPUT", "Missing required fields")),
        (
            json!({ "reservationId": id }),
            plain("INVALID_INPUT", "Missing required fields"),
        ),
        (
            json!({ "paymentMethod": "kakao_pay" }),
            plain("INVALID_INPUT", "Missing required fields"),
        ),
        (
            json!({ "reservationId": null, "paymentMethod": "kakao_pay" }),
            plain("INVALID_INPUT", "Missing required fields"),
        ),
        (
            json!({ "reservationId": "abc", "paymentMethod": "kakao_pay" }),
            plain("INVALID_ID", "Invalid reservationId format"),
        ),
        (
            json!({ "reservationId": id, "paymentMethod": "paypal" }),
            plain("INVALID_PAYMENT_METHOD", "유효하지 않은 결제 수단입니다."),
        ),
        (
            json!({ "reservationId": id, "paymentMethod": 3 }),
            plain("INVALID_PAYMENT_METHOD", "유효하지 않은 결제 수단입니다."),
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = app
            .post("/api/payments/process", Some(&user.token), request.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}");
        assert_eq!(body, expected, "{request}");
    }
    let (status, body) = app
        .post(
            "/api/payments/process",
            None,
            json!({ "reservationId": id, "paymentMethod": "kakao_pay" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": "인증이 필요합니다.", "code": "AUTH_REQUIRED" })
    );
    assert_eq!(
        app.reservation_state(id).await,
        ("pending".into(), "pending".into())
    );
    assert_eq!(app.seat_status(seats[0]).await, "locked");
}

#[tokio::test]
async fn payments_process_of_another_users_reservation_is_refused() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let (owner, stranger) = (app.user().await, app.user().await);
    let id = app.hold_ok(&owner.token, event, seats[0]).await;
    let (status, body) = app.pay(&stranger.token, id, "naver_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refusal("RESERVATION_NOT_FOUND", "예약을 찾을 수 없습니다.")
    );
    let (status, body) = app.pay(&owner.token, Uuid::new_v4(), "naver_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refusal("RESERVATION_NOT_FOUND", "예약을 찾을 수 없습니다.")
    );
    assert_eq!(
        app.reservation_state(id).await,
        ("pending".into(), "pending".into())
    );
    assert_eq!(app.seat_status(seats[0]).await, "locked");
}

#[tokio::test]
async fn payments_process_twice_is_refused() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    let (status, body) = app.pay(&user.token, id, "naver_pay").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refusal(
            "ALREADY_PAID",
            "Payment already completed for this reservation"
        )
    );
    let method: String =
        sqlx::query_scalar("SELECT payment_method FROM reservations WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(method, "naver_pay", "the first payment stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_concurrent_payments_of_one_hold_succeed_once() {
    // both requests pass the pre-check and wait in the provider call at the same time
    let app = TestApp::spawn_with(|c| {
        c.payment_delay_min_ms = 100;
        c.payment_delay_max_ms = 200;
    })
    .await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    let (a, b) = tokio::join!(
        app.pay(&user.token, id, "naver_pay"),
        app.pay(&user.token, id, "kakao_pay"),
    );
    let results = [a, b];
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{results:?}");
    let (status, body) = results.iter().find(|(s, _)| *s != StatusCode::OK).unwrap();
    assert_eq!(*status, StatusCode::BAD_REQUEST);
    assert_eq!(
        *body,
        refusal(
            "ALREADY_PAID",
            "Payment already completed for this reservation"
        )
    );
    assert_eq!(
        app.reservation_state(id).await,
        ("confirmed".into(), "completed".into())
    );
    assert_eq!(app.seat_status(seats[0]).await, "reserved");
    // one charge for the reservation (both requests shared its intent, whose id is the
    // idempotency key), captured, not refunded
    let charges = app.charges_of(id);
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert!(!charges[0].refunded);
    app.assert_ledger_balances().await;
}

/// A hold that ends while the provider is charging is never paid and its charge is refunded:
/// every charge ends captured for a live hold or refunded. Before, the mock "charged" and the
/// refusal kept the money.
#[tokio::test]
async fn payments_charge_of_a_hold_that_expired_meanwhile_is_refunded() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    // hold the reservation's row: the payment's pre-check still sees a live hold, its capture waits
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let release_when_charged = async {
        let charged = crate::common::eventually(std::time::Duration::from_secs(10), || async {
            !app.charges_of(id).is_empty()
        })
        .await;
        blocker.commit().await.unwrap();
        charged
    };
    let ((status, body), charged) =
        tokio::join!(app.pay(&user.token, id, "naver_pay"), release_when_charged);
    assert!(charged, "the provider was never asked");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, refusal("HOLD_EXPIRED", "예약이 만료되었습니다."));
    let charges = app.charges_of(id);
    assert!(
        charges.len() == 1 && charges[0].refunded,
        "charged for a seat the buyer did not get: {charges:?}"
    );
    assert_ne!(app.reservation_state(id).await.1, "completed");
    app.assert_ledger_balances().await;
}

#[tokio::test]
async fn payments_process_of_a_cancelled_reservation_is_refused() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            &format!("/api/reservations/{id}/cancel"),
            Some(&user.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, refusal("RESERVATION_CANCELLED", "취소된 예약입니다."));
    assert_eq!(
        app.reservation_state(id).await,
        ("cancelled".into(), "refunded".into())
    );
    assert_eq!(app.seat_status(seats[0]).await, "available");
}

#[tokio::test]
async fn payments_process_of_an_expired_hold_is_refused() {
    let app = TestApp::spawn_with(|c| c.hold_seconds = 1).await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    let path = format!("/api/seats/reservation/{id}");
    let past = eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get(&path, Some(&user.token)).await;
        body["reservation"]["isExpired"] == true
    })
    .await;
    assert!(past, "the hold never ran out");

    // past its time but not swept yet
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, refusal("HOLD_EXPIRED", "예약이 만료되었습니다."));
    assert_eq!(app.seat_status(seats[0]).await, "locked");

    // and once the sweep has expired it
    tiketi_service::jobs::hold_expiry::sweep(&app.state)
        .await
        .unwrap();
    assert_eq!(
        app.reservation_state(id).await,
        ("expired".into(), "failed".into())
    );
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, refusal("HOLD_EXPIRED", "예약이 만료되었습니다."));
    assert_eq!(app.seat_status(seats[0]).await, "available");
}

#[tokio::test]
async fn payments_process_of_a_ticket_booking_has_no_seats() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(5).await;
    let user = app.user().await;
    let (status, booked) = app
        .post(
            "/api/reservations",
            Some(&user.token),
            json!({ "eventId": event, "items": [{ "ticketTypeId": tt, "quantity": 2 }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id: Uuid = booked["reservation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = app.pay(&user.token, id, "bank_transfer").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["payment"]["totalAmount"], 100000);
    assert_eq!(body["payment"]["paymentMethod"], "계좌이체");
    assert_eq!(body["reservation"]["seats"], json!([]));
    assert_eq!(
        app.reservation_state(id).await,
        ("confirmed".into(), "completed".into())
    );
}

/// A confirmation that fails transiently (here a statement timeout raised inside the database) must
/// not give the charge back: the retry confirms on that same charge, never on refunded money. Before,
/// any failure refunded the charge, the retry replayed the refunded charge under the same key and
/// the reservation was confirmed with its money given back.
#[tokio::test]
async fn payments_transient_failure_while_confirming_then_retry_never_confirms_on_a_refund() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;

    app.fail_confirmations(1).await;
    let (status, body) = app.pay(&user.token, id, "naver_pay").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "DB_TIMEOUT");
    assert_eq!(
        app.reservation_state(id).await,
        ("pending".into(), "pending".into())
    );
    assert_eq!(app.seat_status(seats[0]).await, "locked");
    let charges = app.charges_of(id);
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert!(
        !charges[0].refunded,
        "a charge that can still confirm was refunded"
    );
    let intents = app.intents_of(id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].1, "charged", "the money taken is on record");

    app.heal_confirmations().await;
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["payment"]["paymentMethod"], "네이버페이",
        "confirmed on the charge made, by the method charged"
    );
    assert_eq!(
        app.reservation_state(id).await,
        ("confirmed".into(), "completed".into())
    );
    assert_eq!(app.seat_status(seats[0]).await, "reserved");
    let charges = app.charges_of(id);
    assert_eq!(charges.len(), 1, "the retry reused the charge: {charges:?}");
    assert!(!charges[0].refunded, "confirmed on a refunded charge");
    assert_eq!(app.intents_of(id).await[0].1, "captured");
    app.assert_ledger_balances().await;
}

/// An attempt whose charge was given back (the hold lapsed before it confirmed) is never reused: when
/// an admin revives the hold, the next payment charges anew under a new key and confirms on that.
#[tokio::test]
async fn payments_retry_after_a_refund_charges_anew() {
    let app = TestApp::spawn_with(|c| c.payment_recovery_grace_seconds = 0).await;
    let admin = app.admin().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seats[0]).await;
    app.fail_confirmations(1).await;
    let (status, body) = app.pay(&user.token, id, "naver_pay").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    app.heal_confirmations().await;
    // the hold lapses before anyone retries; the job expires it, recovery gives the money back
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    tiketi_service::jobs::hold_expiry::sweep(&app.state)
        .await
        .unwrap();
    let round = recovery::run_once(&app.state).await.unwrap();
    assert_eq!(round.refunded, 1, "{round:?}");
    let (status, body) = app.pay(&user.token, id, "naver_pay").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "HOLD_EXPIRED");

    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            &format!("/api/admin/reservations/{id}/status"),
            Some(&admin.token),
            Some(json!({ "status": "pending" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.pay(&user.token, id, "kakao_pay").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut charges = app.charges_of(id);
    charges.sort_by_key(|c| c.refunded);
    assert_eq!(charges.len(), 2, "a new key, a new charge: {charges:?}");
    assert!(!charges[0].refunded && charges[1].refunded);
    assert_eq!(charges[0].method, "kakao_pay");
    let states: Vec<String> = app.intents_of(id).await.into_iter().map(|i| i.1).collect();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&"refunded".into()) && states.contains(&"captured".into()));
    app.assert_ledger_balances().await;
}

/// Inserts an intent as a replica that died mid-payment left it: `state`, untouched for an hour,
/// and (when `charged`) the provider holding its charge.
async fn left_by_a_dead_replica(
    app: &TestApp,
    reservation: Uuid,
    state: &str,
    charged: bool,
) -> Uuid {
    let key = Uuid::new_v4();
    let amount: i32 = sqlx::query_scalar(
        "INSERT INTO payment_intents (id, reservation_id, amount, method, state, created_at, updated_at)
         SELECT $1, id, total_amount, 'naver_pay', $3, now() - interval '1 hour', now() - interval '1 hour'
         FROM reservations WHERE id = $2 RETURNING amount",
    )
    .bind(key)
    .bind(reservation)
    .bind(state)
    .fetch_one(&app.db)
    .await
    .unwrap();
    if charged {
        let req = ChargeRequest {
            key,
            reference: reservation,
            amount,
            method: "naver_pay",
        };
        app.state.payments.charge(req).await.unwrap();
    }
    key
}

#[tokio::test]
async fn payments_recovery_resolves_every_intent_a_dead_replica_left() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let users = app.users(4).await;
    let expire = |id: Uuid| {
        let db = app.db.clone();
        async move {
            sqlx::query(
                "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1",
            )
            .bind(id)
            .execute(&db)
            .await
            .unwrap();
        }
    };
    // charged, then the hold expired: refunded
    let lapsed = app.hold_ok(&users[0].token, event, seats[0]).await;
    left_by_a_dead_replica(&app, lapsed, "charged", true).await;
    expire(lapsed).await;
    tiketi_service::jobs::hold_expiry::sweep(&app.state)
        .await
        .unwrap();
    // charged on a hold that still runs: confirmed
    let live = app.hold_ok(&users[1].token, event, seats[1]).await;
    left_by_a_dead_replica(&app, live, "charged", true).await;
    // recorded, but the provider never got the charge: failed, and the hold stays payable
    let never_charged = app.hold_ok(&users[2].token, event, seats[2]).await;
    left_by_a_dead_replica(&app, never_charged, "created", false).await;
    // cancelled after it was paid, the refund never made: refunded
    let cancelled = app.hold_ok(&users[3].token, event, seats[3]).await;
    sqlx::query(
        "UPDATE reservations SET status = 'cancelled', payment_status = 'refunded' WHERE id = $1",
    )
    .bind(cancelled)
    .execute(&app.db)
    .await
    .unwrap();
    left_by_a_dead_replica(&app, cancelled, "refund_pending", true).await;
    // a fresh intent is a request still in flight: left alone
    let in_flight = app.hold_ok(&users[3].token, event, seats[4]).await;
    sqlx::query(
        "INSERT INTO payment_intents (id, reservation_id, amount, method) VALUES ($1, $2, 1, 'naver_pay')",
    )
    .bind(Uuid::new_v4())
    .bind(in_flight)
    .execute(&app.db)
    .await
    .unwrap();

    let round = recovery::run_once(&app.state).await.unwrap();
    assert_eq!(
        round,
        recovery::Round {
            confirmed: 1,
            refunded: 2,
            failed: 1,
            unresolved: 0
        }
    );
    let state_of = |id| app.intents_of(id);
    assert_eq!(state_of(lapsed).await[0].1, "refunded");
    assert_eq!(
        app.reservation_state(lapsed).await,
        ("expired".into(), "failed".into())
    );
    assert!(app.charges_of(lapsed)[0].refunded);
    assert_eq!(app.seat_status(seats[0]).await, "available");

    assert_eq!(state_of(live).await[0].1, "captured");
    assert_eq!(
        app.reservation_state(live).await,
        ("confirmed".into(), "completed".into())
    );
    assert_eq!(app.seat_status(seats[1]).await, "reserved");

    assert_eq!(state_of(never_charged).await[0].1, "failed");
    assert_eq!(state_of(cancelled).await[0].1, "refunded");
    assert!(app.charges_of(cancelled)[0].refunded);
    assert_eq!(state_of(in_flight).await[0].1, "created", "not stale yet");
    assert_eq!(
        recovery::run_once(&app.state).await.unwrap(),
        recovery::Round::default(),
        "a second round finds nothing more"
    );

    // the hold whose charge never happened is paid normally, under a new key
    sqlx::query("DELETE FROM payment_intents WHERE reservation_id = $1")
        .bind(in_flight)
        .execute(&app.db)
        .await
        .unwrap();
    app.pay_ok(&users[2].token, never_charged).await;
    app.assert_ledger_balances().await;
}

/// Many buyers paying the same holds at once, every other confirmation failing transiently, buyers
/// retrying and some cancelling meanwhile: whatever interleaving happens, every hold ends confirmed
/// on exactly one kept charge or with all its money back, and the ledger balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_concurrency_and_retry_storm_keeps_the_ledger_balanced() {
    let app = TestApp::spawn_with(|c| {
        c.payment_delay_min_ms = 5;
        c.payment_delay_max_ms = 60;
        c.payment_recovery_grace_seconds = 0;
        c.db_acquire_timeout_ms = 10_000;
    })
    .await;
    let (event, seats) = app.seat_event().await;
    let users = app.users(8).await;
    let mut holds = Vec::new();
    for (user, seat) in users.iter().zip(&seats) {
        holds.push((user, app.hold_ok(&user.token, event, *seat).await));
    }
    app.fail_confirmations(2).await;
    let methods = ["naver_pay", "kakao_pay", "bank_transfer"];
    let app = &app;
    let buyer = |token: &str, id: Uuid, method: &'static str| {
        let token = token.to_string();
        async move {
            for _ in 0..20 {
                let (status, body) = app.pay(&token, id, method).await;
                match status {
                    StatusCode::OK => return "paid".to_string(),
                    StatusCode::BAD_REQUEST => return body["code"].as_str().unwrap().to_string(),
                    // transient: retry
                    _ => {}
                }
            }
            "gave up".to_string()
        }
    };
    let all = holds.iter().enumerate().flat_map(|(i, (user, id))| {
        let pays = methods.map(|m| futures::future::Either::Left(buyer(&user.token, *id, m)));
        let cancel = (i % 3 == 0).then(|| {
            futures::future::Either::Right(async move {
                let (status, _) = app.cancel(&user.token, id).await;
                format!("cancel {status}")
            })
        });
        pays.into_iter().chain(cancel)
    });
    let outcomes = futures::future::join_all(all).await;
    assert!(!outcomes.iter().any(|o| o == "gave up"), "{outcomes:?}");
    // what a request left (none should be) is resolved, then everything must balance
    recovery::run_once(&app.state).await.unwrap();
    for (i, (_, id)) in holds.iter().enumerate() {
        let (status, payment) = app.reservation_state(*id).await;
        let kept = app
            .charges_of(*id)
            .into_iter()
            .filter(|c| !c.refunded)
            .count();
        match (status.as_str(), payment.as_str()) {
            ("confirmed", "completed") => assert_eq!(kept, 1, "{id}"),
            ("cancelled", _) => {
                assert_eq!(i % 3, 0, "{id} cancelled by nobody");
                assert_eq!(kept, 0, "{id} cancelled with money kept");
            }
            other => panic!("{id} ended {other:?}; outcomes {outcomes:?}"),
        }
    }
    app.heal_confirmations().await;
    app.assert_ledger_balances().await;
}

/// Two requests paying one hold share its intent. A move refused because the other request's move
/// committed while this one waited on the row must report the state that commit left: told the
/// `created` its statement started from, a request took the intent as given up and refunded the
/// money the other request then confirmed the seat on (a confirmed seat with no money kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_a_move_refused_by_a_concurrent_one_reports_the_state_it_left() {
    use tiketi_service::payments::{
        db,
        intent::{Move, State},
    };
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = &app.users(1).await[0];
    let hold = app.hold_ok(&user.token, event, seats[0]).await;
    let key = left_by_a_dead_replica(&app, hold, "created", true).await;

    // the other request records the charge; its commit is still to come
    let mut other = app.db.begin().await.unwrap();
    let moved = db::make_move(&mut other, key, Move::Charged).await.unwrap();
    assert_eq!(moved, Some(State::Charged));
    let this = tokio::spawn({
        let db = app.db.clone();
        async move { db::move_now(&db, key, Move::Charged).await.unwrap() }
    });
    let waiting = eventually(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                 AND wait_event_type = 'Lock' AND query LIKE '%UPDATE payment_intents%')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap()
    })
    .await;
    assert!(waiting, "the second move waits on the intent's row");
    other.commit().await.unwrap();
    assert_eq!(this.await.unwrap(), Some(State::Charged));
}

/// A refund is made only of an intent given up (`refund_pending`, `failed`, `refunded`): never of
/// one that is charged (a confirmation may still use it) or captured (a seat was sold on it).
#[tokio::test]
async fn payments_refund_of_a_live_intent_is_refused() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = &app.users(1).await[0];
    let hold = app.hold_ok(&user.token, event, seats[0]).await;
    let charged = left_by_a_dead_replica(&app, hold, "charged", true).await;
    tiketi_service::payments::refund::refund_now(&app.state, charged).await;
    assert_eq!(
        app.intents_of(hold).await,
        vec![(charged, "charged".into())]
    );
    assert!(
        !app.charges_of(hold)[0].refunded,
        "money a confirmation may use"
    );

    sqlx::query("UPDATE payment_intents SET state = 'refund_pending' WHERE id = $1")
        .bind(charged)
        .execute(&app.db)
        .await
        .unwrap();
    tiketi_service::payments::refund::refund_now(&app.state, charged).await;
    assert_eq!(
        app.intents_of(hold).await,
        vec![(charged, "refunded".into())]
    );
    assert!(app.charges_of(hold)[0].refunded);
}

/// A request that takes up an old intent (a retry joining the intent a timed-out attempt left)
/// restarts its age: the recovery job, which gives up a `created` intent the provider holds
/// nothing for, leaves it alone for its grace — longer than the provider call the request is
/// waiting on — even when it listed the intent as stale just before.
#[tokio::test]
async fn payments_recovery_never_gives_up_an_intent_a_request_took_up() {
    use tiketi_service::payments::{
        db,
        intent::{Move, State},
    };
    let app = TestApp::spawn_with(|c| c.payment_recovery_grace_seconds = 60).await;
    let (event, seats) = app.seat_event().await;
    let user = &app.users(1).await[0];
    let hold = app.hold_ok(&user.token, event, seats[0]).await;
    let key = left_by_a_dead_replica(&app, hold, "created", false).await;
    assert!(db::drive(&app.db, key).await.unwrap());
    assert_eq!(
        recovery::run_once(&app.state).await.unwrap(),
        recovery::Round::default()
    );
    // listed stale by a round that started before the request took it up: not given up either
    let moved = db::move_if_stale(&app.db, key, Move::NotCharged, 60.0).await;
    assert_eq!(moved.unwrap(), Some(State::Created));
    assert_eq!(app.intents_of(hold).await, vec![(key, "created".into())]);

    // the request pays on it
    app.pay_ok(&user.token, hold).await;
    assert_eq!(app.intents_of(hold).await, vec![(key, "captured".into())]);
    app.assert_ledger_balances().await;

    // once untouched for the grace, the same move is made
    let (event, seats) = app.seat_event().await;
    let other = app.hold_ok(&user.token, event, seats[0]).await;
    let stale = left_by_a_dead_replica(&app, other, "created", false).await;
    let moved = db::move_if_stale(&app.db, stale, Move::NotCharged, 60.0).await;
    assert_eq!(moved.unwrap(), Some(State::Failed));
}
