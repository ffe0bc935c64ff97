//! `/api/reservations*`: ticket-type bookings (validation, stock, the inventory race), the caller's
//! reservations and cancellation.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, keys, refusal};

/// (ticket type, seat, quantity, unit_price, subtotal) of a reservation item.
type ItemRow = (Option<Uuid>, Option<Uuid>, i32, i32, i32);

/// (available, total) of a ticket type.
async fn stock(app: &TestApp, tt: Uuid) -> (i32, i32) {
    sqlx::query_as("SELECT available_quantity, total_quantity FROM ticket_types WHERE id = $1")
        .bind(tt)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn add_ticket_type(app: &TestApp, event: Uuid, name: &str, price: i32, qty: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity) VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(event)
    .bind(name)
    .bind(price)
    .bind(qty)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn reservation_count(app: &TestApp, event: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reservations WHERE event_id = $1")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn reservations_booking_answers_the_contract_shape_and_takes_stock() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(10).await;
    let vip = add_ticket_type(&app, event, "VIP석", 120000, 4).await;
    let user = app.user().await;
    let (status, body) = app
        .post(
            "/api/reservations",
            Some(&user.token),
            json!({ "eventId": event, "items": [
                { "ticketTypeId": tt, "quantity": 3 },
                { "ticketTypeId": vip, "quantity": 1 },
            ] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(keys(&body), ["message", "reservation"]);
    assert_eq!(body["message"], "예매가 완료되었습니다.");
    let r = &body["reservation"];
    assert_eq!(keys(r), ["id", "reservationNumber", "totalAmount"]);
    assert_eq!(r["totalAmount"], 3 * 50000 + 120000);
    let number = r["reservationNumber"].as_str().unwrap();
    assert!(number.starts_with("TK") && number.len() == 20, "{number}");
    let id: Uuid = r["id"].as_str().unwrap().parse().unwrap();

    assert_eq!(stock(&app, tt).await, (7, 10));
    assert_eq!(stock(&app, vip).await, (3, 4));
    let row: (Uuid, String, String, Option<chrono::DateTime<chrono::Utc>>, i32) = sqlx::query_as(
        "SELECT user_id, status, payment_status, expires_at, total_amount FROM reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (user.id, "pending".into(), "pending".into(), None, 270000)
    );
    let mut items: Vec<ItemRow> = sqlx::query_as(
        "SELECT ticket_type_id, seat_id, quantity, unit_price, subtotal FROM reservation_items WHERE reservation_id = $1",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    items.sort_by_key(|i| i.3);
    assert_eq!(
        items,
        [
            (Some(tt), None, 3, 50000, 150000),
            (Some(vip), None, 1, 120000, 120000)
        ]
    );

    // the public availability endpoint sees the new stock
    let (status, body) = app
        .get(&format!("/api/tickets/availability/{tt}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "available_quantity": 7, "total_quantity": 10 })
    );
}

#[tokio::test]
async fn reservations_booking_validation_messages() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(5).await;
    let (other_event, other_tt) = app.ticket_event(5).await;
    let user = app.user().await;
    let plain = |code: &str, m: &str| json!({ "error": m, "code": code });
    let item = |id: Value, q: Value| json!({ "eventId": event, "items": [{ "ticketTypeId": id, "quantity": q }] });
    let cases = [
        (json!({}), plain("INVALID_ID", "Invalid eventId format")),
        (
            json!({ "items": [{ "ticketTypeId": tt, "quantity": 1 }] }),
            plain("INVALID_ID", "Invalid eventId format"),
        ),
        (
            json!({ "eventId": "abc", "items": [{ "ticketTypeId": tt, "quantity": 1 }] }),
            plain("INVALID_ID", "Invalid eventId format"),
        ),
        (
            json!({ "eventId": event }),
            plain("INVALID_INPUT", "티켓을 선택해주세요."),
        ),
        (
            json!({ "eventId": event, "items": [] }),
            plain("INVALID_INPUT", "티켓을 선택해주세요."),
        ),
        (
            item(json!("not-a-uuid"), json!(1)),
            plain("INVALID_INPUT", "Invalid ticketTypeId list"),
        ),
        (
            json!({ "eventId": event, "items": [{ "quantity": 1 }] }),
            plain("INVALID_INPUT", "Invalid ticketTypeId list"),
        ),
        (
            json!({ "eventId": event, "items": [
                { "ticketTypeId": tt, "quantity": 1 },
                { "ticketTypeId": "bad", "quantity": 1 },
            ] }),
            plain("INVALID_INPUT", "Invalid ticketTypeId list"),
        ),
        // every id is checked before any quantity
        (
            json!({ "eventId": event, "items": [
                { "ticketTypeId": tt, "quantity": 0 },
                { "ticketTypeId": "bad", "quantity": 1 },
            ] }),
            plain("INVALID_INPUT", "Invalid ticketTypeId list"),
        ),
        (
            item(json!(tt), json!(0)),
            refusal("INVALID_INPUT", "수량은 1개 이상이어야 합니다."),
        ),
        (
            item(json!(tt), json!(-2)),
            refusal("INVALID_INPUT", "수량은 1개 이상이어야 합니다."),
        ),
        (
            json!({ "eventId": event, "items": [{ "ticketTypeId": tt }] }),
            refusal("INVALID_INPUT", "수량은 1개 이상이어야 합니다."),
        ),
        (
            item(json!(Uuid::new_v4()), json!(1)),
            refusal("TICKET_TYPE_NOT_FOUND", "존재하지 않는 티켓입니다."),
        ),
        // a ticket type of another event is not sold through this one
        (
            item(json!(other_tt), json!(1)),
            refusal("TICKET_TYPE_NOT_FOUND", "존재하지 않는 티켓입니다."),
        ),
        (
            item(json!(tt), json!(6)),
            refusal("SOLD_OUT", "일반석 티켓이 부족합니다. (남은 수량: 5)"),
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = app
            .post("/api/reservations", Some(&user.token), request.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}");
        assert_eq!(body, expected, "{request}");
    }
    let (status, body) = app
        .post(
            "/api/reservations",
            None,
            json!({ "eventId": event, "items": [{ "ticketTypeId": tt, "quantity": 1 }] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": "인증이 필요합니다.", "code": "AUTH_REQUIRED" })
    );

    assert_eq!(stock(&app, tt).await, (5, 5));
    assert_eq!(stock(&app, other_tt).await, (5, 5));
    assert_eq!(reservation_count(&app, event).await, 0);
    assert_eq!(reservation_count(&app, other_event).await, 0);
}

#[tokio::test]
async fn reservations_booking_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(10).await;
    let scarce = add_ticket_type(&app, event, "VIP석", 120000, 1).await;
    let user = app.user().await;
    let (status, body) = app
        .post(
            "/api/reservations",
            Some(&user.token),
            json!({ "eventId": event, "items": [
                { "ticketTypeId": tt, "quantity": 2 },
                { "ticketTypeId": scarce, "quantity": 2 },
            ] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refusal("SOLD_OUT", "VIP석 티켓이 부족합니다. (남은 수량: 1)")
    );
    assert_eq!(
        stock(&app, tt).await,
        (10, 10),
        "the first item is rolled back"
    );
    assert_eq!(stock(&app, scarce).await, (1, 1));
    assert_eq!(reservation_count(&app, event).await, 0);
}

#[tokio::test]
async fn reservations_booking_is_refused_outside_the_sale_window() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    for (start, end) in [("+1 day", "+2 days"), ("-2 days", "-1 day")] {
        let event = app.insert_event("", start, end).await;
        let tt = add_ticket_type(&app, event, "일반석", 50000, 10).await;
        let (status, body) = app.book(&user.token, event, tt, 1).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body, refusal("NOT_ON_SALE", "예매 가능한 기간이 아닙니다."));
        assert_eq!(stock(&app, tt).await, (10, 10));
    }
}

#[tokio::test]
async fn reservations_my_and_detail_shapes_for_the_owner_only() {
    let app = TestApp::spawn().await;
    let (ticket_event, tt) = app.ticket_event(10).await;
    let (seat_event, _) = app.seat_event().await;
    let seat = app.seat_id(seat_event, "VIP-2-4").await;
    let (owner, stranger) = (app.user().await, app.user().await);
    let booked = app.book_ok(&owner.token, ticket_event, tt, 2).await;
    let held = app.hold_ok(&owner.token, seat_event, seat).await;

    let (status, body) = app.get("/api/reservations/my", Some(&owner.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), ["reservations"]);
    let list = body["reservations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for r in list {
        assert_eq!(
            keys(r),
            [
                "created_at",
                "event_date",
                "event_title",
                "id",
                "items",
                "payment_status",
                "reservation_number",
                "status",
                "status_reason",
                "total_amount",
                "venue"
            ]
        );
        assert_eq!(r["status"], "pending");
        assert_eq!(r["payment_status"], "pending");
        assert_eq!(r["event_title"], "테스트 공연");
        assert_eq!(r["venue"], "테스트홀");
    }
    // newest first
    assert_eq!(list[0]["id"], held.to_string());
    assert_eq!(list[0]["total_amount"], 150000);
    assert_eq!(
        list[0]["items"],
        json!([{ "ticketTypeName": "VIP-2-4", "quantity": 1, "unitPrice": 150000, "subtotal": 150000 }])
    );
    assert_eq!(list[1]["id"], booked.to_string());
    assert_eq!(list[1]["total_amount"], 100000);
    assert_eq!(
        list[1]["items"],
        json!([{ "ticketTypeName": "일반석", "quantity": 2, "unitPrice": 50000, "subtotal": 100000 }])
    );

    let (status, body) = app.get("/api/reservations/my", Some(&stranger.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "reservations": [] }));

    let (status, body) = app
        .get(&format!("/api/reservations/{booked}"), Some(&owner.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = &body["reservation"];
    assert_eq!(
        keys(r),
        [
            "address",
            "created_at",
            "event_date",
            "event_id",
            "event_title",
            "id",
            "items",
            "payment_method",
            "payment_status",
            "reservation_number",
            "status",
            "status_reason",
            "total_amount",
            "venue"
        ]
    );
    assert_eq!(r["event_id"], ticket_event.to_string());
    assert_eq!(r["payment_method"], Value::Null);
    assert_eq!(r["reservation_number"], list[1]["reservation_number"]);
    assert_eq!(
        r["items"],
        json!([{ "ticketTypeName": "일반석", "quantity": 2, "unitPrice": 50000, "subtotal": 100000,
                 "seatLabel": null, "section": null }])
    );
    let (status, body) = app
        .get(&format!("/api/reservations/{held}"), Some(&owner.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["reservation"]["items"],
        json!([{ "ticketTypeName": "VIP-2-4", "quantity": 1, "unitPrice": 150000, "subtotal": 150000,
                 "seatLabel": "VIP-2-4", "section": "VIP" }])
    );

    let not_found =
        json!({ "error": "예매 내역을 찾을 수 없습니다.", "code": "RESERVATION_NOT_FOUND" });
    let (status, body) = app
        .get(
            &format!("/api/reservations/{booked}"),
            Some(&stranger.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    let (status, body) = app
        .get(
            &format!("/api/reservations/{}", Uuid::new_v4()),
            Some(&owner.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    let (status, body) = app.get("/api/reservations/xyz", Some(&owner.token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "Invalid id format", "code": "INVALID_ID" })
    );
    let (status, _) = app.get("/api/reservations/my", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reservations_cancel_restores_stock_once() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(10).await;
    let user = app.user().await;
    let id = app.book_ok(&user.token, event, tt, 3).await;
    assert_eq!(stock(&app, tt).await, (7, 10));

    let (status, body) = app.cancel(&user.token, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "message": "예매가 취소되었습니다." }));
    assert_eq!(stock(&app, tt).await, (10, 10));
    // never paid: "refunded" (nothing owed), as the original; not 결제 대기
    assert_eq!(
        app.reservation_state(id).await,
        ("cancelled".into(), "refunded".into())
    );

    let (status, body) = app.cancel(&user.token, id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refusal("ALREADY_CANCELLED", "이미 취소된 예매입니다.")
    );
    assert_eq!(
        stock(&app, tt).await,
        (10, 10),
        "a second cancel restores nothing"
    );
}

#[tokio::test]
async fn reservations_cancel_is_owner_only() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(10).await;
    let (owner, stranger) = (app.user().await, app.user().await);
    let id = app.book_ok(&owner.token, event, tt, 2).await;

    let not_found = refusal("RESERVATION_NOT_FOUND", "예매 내역을 찾을 수 없습니다.");
    let (status, body) = app.cancel(&stranger.token, id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, not_found);
    let (status, body) = app.cancel(&owner.token, Uuid::new_v4()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, not_found);
    let (status, body) = app.cancel(&owner.token, "nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "Invalid id format", "code": "INVALID_ID" })
    );
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            &format!("/api/reservations/{id}/cancel"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        app.reservation_state(id).await,
        ("pending".into(), "pending".into())
    );
    assert_eq!(stock(&app, tt).await, (8, 10));
}

#[tokio::test]
async fn reservations_cancel_frees_a_held_seat() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let (first, second) = (app.user().await, app.user().await);
    let id = app.hold_ok(&first.token, event, seat).await;

    let (status, body) = app.cancel(&first.token, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.seat_status(seat).await, "available");
    assert_eq!(
        app.reservation_state(id).await,
        ("cancelled".into(), "refunded".into())
    );
    let (status, body) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let shown = body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == seat.to_string().as_str())
        .unwrap()["status"]
        .clone();
    assert_eq!(shown, "available");

    app.hold_ok(&second.token, event, seat).await;
    assert_eq!(app.seat_status(seat).await, "locked");
}

#[tokio::test]
async fn reservations_cancel_of_a_paid_seat_refunds_and_frees_it() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "S-10-7").await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seat).await;
    let (status, body) = app
        .post(
            "/api/payments/process",
            Some(&user.token),
            json!({ "reservationId": id, "paymentMethod": "bank_transfer" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.seat_status(seat).await, "reserved");

    let (status, body) = app.cancel(&user.token, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.reservation_state(id).await,
        ("cancelled".into(), "refunded".into())
    );
    assert_eq!(app.seat_status(seat).await, "available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_inventory_race_never_oversells() {
    // 200 bookings queue on one row: give them time to get a connection instead of a 503
    let app = TestApp::spawn_with(|c| c.db_acquire_timeout_ms = 30_000).await;
    let (event, tt) = app.ticket_event(150).await;
    let users = app.users(200).await;
    let results = join_all(users.iter().map(|u| app.book(&u.token, event, tt, 1))).await;

    let mut won = 0;
    for (status, body) in &results {
        if *status == StatusCode::CREATED {
            won += 1;
        } else {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(
                *body,
                refusal("SOLD_OUT", "일반석 티켓이 부족합니다. (남은 수량: 0)")
            );
        }
    }
    assert_eq!(won, 150);
    assert_eq!(stock(&app, tt).await, (0, 150));
    let (sold, bookings): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(quantity), 0)::BIGINT, count(DISTINCT reservation_id) FROM reservation_items WHERE ticket_type_id = $1",
    )
    .bind(tt)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(sold, 150);
    assert_eq!(bookings, 150);
    assert_eq!(reservation_count(&app, event).await, 150);
    let (available, total) = stock(&app, tt).await;
    assert_eq!(sold + i64::from(available), i64::from(total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_inventory_race_with_quantities_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let (event, tt) = app.ticket_event(10).await;
    let users = app.users(12).await;
    let results = join_all(users.iter().map(|u| app.book(&u.token, event, tt, 3))).await;
    let won = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(won, 3);
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::BAD_REQUEST);
        assert_eq!(
            *body,
            refusal("SOLD_OUT", "일반석 티켓이 부족합니다. (남은 수량: 1)")
        );
    }
    assert_eq!(stock(&app, tt).await, (1, 10));
    assert_eq!(reservation_count(&app, event).await, 3);
}

/// A hold that lapsed reads as what it is in the unmodified frontend, which knows only `pending`,
/// `confirmed` and `cancelled` (anything else shows 결제 대기, "awaiting payment"): `cancelled`, its
/// payment `failed`, and `status_reason: "expired"` — before the expiry job ends it and after.
#[tokio::test]
async fn reservations_a_lapsed_hold_reads_cancelled_with_its_reason() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let lapsed = app.hold_ok(&user.token, event, seats[0]).await;
    let live = app.hold_ok(&user.token, event, seats[1]).await;
    let cancelled = app.hold_ok(&user.token, event, seats[2]).await;
    assert_eq!(app.cancel(&user.token, cancelled).await.0, StatusCode::OK);
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(lapsed)
        .execute(&app.db)
        .await
        .unwrap();

    let shown = |id: Uuid| {
        let (app, token) = (&app, user.token.clone());
        async move {
            let (status, list) = app.get("/api/reservations/my", Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            let listed = list["reservations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id.to_string().as_str())
                .unwrap()
                .clone();
            let (status, detail) = app
                .get(&format!("/api/reservations/{id}"), Some(&token))
                .await;
            assert_eq!(status, StatusCode::OK, "{detail}");
            let (status, held) = app
                .get(&format!("/api/seats/reservation/{id}"), Some(&token))
                .await;
            assert_eq!(status, StatusCode::OK, "{held}");
            let views = [
                listed,
                detail["reservation"].clone(),
                held["reservation"].clone(),
            ];
            let seen: Vec<(Value, Value, Value)> = views
                .iter()
                .map(|r| {
                    (
                        r["status"].clone(),
                        r["payment_status"].clone(),
                        r["status_reason"].clone(),
                    )
                })
                .collect();
            assert!(
                seen.windows(2).all(|w| w[0] == w[1]),
                "views disagree: {seen:?}"
            );
            seen[0].clone()
        }
    };
    let expired = (json!("cancelled"), json!("failed"), json!("expired"));
    assert_eq!(shown(lapsed).await, expired, "past its time, not swept yet");
    assert_eq!(
        shown(live).await,
        (json!("pending"), json!("pending"), Value::Null)
    );
    assert_eq!(
        shown(cancelled).await,
        (json!("cancelled"), json!("refunded"), Value::Null)
    );
    tiketi_service::jobs::hold_expiry::sweep(&app.state)
        .await
        .unwrap();
    assert_eq!(
        app.reservation_state(lapsed).await,
        ("expired".into(), "failed".into()),
        "stored as what it is"
    );
    assert_eq!(shown(lapsed).await, expired, "once the job expired it");
}
