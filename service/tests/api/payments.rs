//! `/api/payments/*`: the method list and the mock payment of a hold (success, validation, refusals,
//! double payment).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestApp, eventually, keys, refusal};

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
    // one charge for the reservation (its id is the idempotency key), captured, not refunded
    let ledger = app.state.payments.ledger().unwrap();
    assert_eq!(ledger.len(), 1);
    assert!(!ledger[&id].refunded);
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
            app.state.payments.ledger().unwrap().contains_key(&id)
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
    let ledger = app.state.payments.ledger().unwrap();
    assert!(
        ledger[&id].refunded,
        "charged for a seat the buyer did not get"
    );
    assert_ne!(app.reservation_state(id).await.1, "completed");
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
