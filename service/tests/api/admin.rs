//! The admin console API (docs/wire-contract.md §1.3 Admin, §4.9): guard, dashboard, events, seats, tickets and
//! reservations.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, User, is_wire_time, keys, sorted};

/// A naive Asia/Seoul wall-clock time `offset` from now, as the admin form sends it.
fn kst(offset: Duration) -> String {
    (Utc::now() + offset)
        .with_timezone(&chrono_tz::Asia::Seoul)
        .format("%Y-%m-%dT%H:%M:00")
        .to_string()
}

fn error(status: StatusCode, code: &str, msg: &str) -> (StatusCode, Value) {
    (status, json!({ "error": msg, "code": code }))
}

async fn layout_id(app: &TestApp, name: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM seat_layouts WHERE name = $1")
        .bind(name)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// An event body whose sale window is [now + start, now + end].
fn event_body(start: Duration, end: Duration) -> Value {
    json!({
        "title": "관리자 공연", "description": "설명", "venue": "올림픽홀", "address": "서울특별시 송파구",
        "eventDate": kst(Duration::days(30)), "saleStartDate": kst(start), "saleEndDate": kst(end),
        "posterImageUrl": "/images/poster.jpg", "artistName": "아이유",
    })
}

async fn create_event(app: &TestApp, admin: &User, body: Value) -> Value {
    let (status, resp) = app
        .post("/api/admin/events", Some(&admin.token), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    resp["event"].clone()
}

async fn admin_send(
    app: &TestApp,
    admin: &User,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.send(method, path, Some(&admin.token), body).await
}

async fn count(app: &TestApp, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

fn pair(s: &str, p: &str) -> (String, String) {
    (s.to_string(), p.to_string())
}

#[tokio::test]
async fn admin_every_route_requires_an_admin() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let admin = app.admin().await;
    let id = Uuid::new_v4();
    let routes = [
        (Method::GET, "/api/admin/dashboard/stats".to_string()),
        (Method::GET, "/api/admin/seat-layouts".into()),
        (Method::POST, "/api/admin/events".into()),
        (Method::PUT, format!("/api/admin/events/{id}")),
        (Method::DELETE, format!("/api/admin/events/{id}")),
        (Method::POST, format!("/api/admin/events/{id}/cancel")),
        (
            Method::POST,
            format!("/api/admin/events/{id}/generate-seats"),
        ),
        (Method::DELETE, format!("/api/admin/events/{id}/seats")),
        (Method::POST, format!("/api/admin/events/{id}/tickets")),
        (Method::PUT, format!("/api/admin/tickets/{id}")),
        (Method::GET, "/api/admin/reservations".into()),
        (
            Method::PATCH,
            format!("/api/admin/reservations/{id}/status"),
        ),
        (Method::GET, "/api/admin".into()),
        (Method::GET, "/api/admin/".into()),
        (Method::GET, "/api/admin/nope".into()),
        (Method::POST, "/api/admin/events/not-a-uuid/nope".into()),
    ];
    for (method, path) in &routes {
        let body = Some(json!({ "title": "x", "status": "cancelled" }));
        assert_eq!(
            app.send(method.clone(), path, None, body.clone()).await,
            error(
                StatusCode::UNAUTHORIZED,
                "AUTH_REQUIRED",
                "인증이 필요합니다."
            ),
            "anonymous {method} {path}"
        );
        assert_eq!(
            app.send(method.clone(), path, Some(&user.token), body)
                .await,
            error(
                StatusCode::FORBIDDEN,
                "ADMIN_ONLY",
                "관리자 권한이 필요합니다."
            ),
            "user {method} {path}"
        );
    }
    assert_eq!(
        app.get("/api/admin/nope", Some("garbage")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/admin/nope", Some(&admin.token)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/admin/seat-layouts", Some(&admin.token))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_dashboard_stats_and_recent_reservations() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (u1, u2) = (app.user().await, app.user().await);
    let (event, tt) = app.ticket_event(50).await;
    app.insert_event("", "+1 day", "+2 days").await;

    let r1 = app.book_ok(&u1.token, event, tt, 2).await;
    let r2 = app.book_ok(&u2.token, event, tt, 1).await;
    app.pay_ok(&u2.token, r2).await;
    let r3 = app.book_ok(&u1.token, event, tt, 1).await;
    let (status, _) = app
        .post(
            &format!("/api/reservations/{r3}/cancel"),
            Some(&u1.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app
        .get("/api/admin/dashboard/stats", Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), sorted(&["stats", "recentReservations"]));
    assert_eq!(
        body["stats"],
        json!({ "totalEvents": 2, "totalReservations": 2, "totalRevenue": 50000, "todayReservations": 2 })
    );
    for v in body["stats"].as_object().unwrap().values() {
        assert!(v.is_i64(), "stats are integers: {v}");
    }
    let recent = body["recentReservations"].as_array().unwrap();
    let order: Vec<&str> = recent.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(order, [r3.to_string(), r2.to_string(), r1.to_string()]);
    for r in recent {
        assert_eq!(
            keys(r),
            sorted(&[
                "id",
                "reservation_number",
                "total_amount",
                "status",
                "status_reason",
                "created_at",
                "user_name",
                "user_email",
                "event_title"
            ])
        );
        assert!(is_wire_time(&r["created_at"]));
        assert_eq!(r["event_title"], "테스트 공연");
    }
    assert_eq!(recent[0]["status"], "cancelled");
    assert_eq!(recent[1]["user_email"], u2.email);
    assert_eq!(recent[1]["user_name"], "테스트");
    assert_eq!(recent[2]["total_amount"], 100000);
}

#[tokio::test]
async fn admin_seat_layouts_are_ordered_by_name() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (status, body) = app.get("/api/admin/seat-layouts", Some(&admin.token)).await;
    assert_eq!(status, StatusCode::OK);
    let layouts = body["layouts"].as_array().unwrap();
    let names: Vec<&str> = layouts
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["large_theater", "small_theater", "sports_stadium"]);
    assert_eq!(
        keys(&layouts[0]),
        sorted(&["id", "name", "description", "total_seats", "layout_config"])
    );
    assert_eq!(layouts[1]["total_seats"], 265);
    assert_eq!(layouts[1]["layout_config"]["sections"][0]["name"], "VIP");
}

#[tokio::test]
async fn admin_create_event_with_seats_and_ticket_types() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let small = layout_id(&app, "small_theater").await;
    let (status, body) = app
        .post(
            "/api/admin/events",
            Some(&admin.token),
            json!({
                "title": "2030 신년 콘서트", "description": "설명", "venue": "올림픽홀", "address": "",
                "eventDate": "2030-01-01T19:00:00", "saleStartDate": "2029-12-01T10:00:00",
                "saleEndDate": "2029-12-31T23:59:00", "posterImageUrl": "/images/p.jpg", "artistName": "아이유",
                "seatLayoutId": small,
                "ticketTypes": [
                    { "name": "일반", "price": "50000", "totalQuantity": "200", "description": "" },
                    { "name": "VIP", "price": "150000", "totalQuantity": "100", "description": "앞자리" },
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "이벤트가 생성되었습니다.");
    let e = &body["event"];
    assert_eq!(keys(e), sorted(crate::common::EVENT_KEYS));
    assert_eq!(
        e["event_date"], "2030-01-01T10:00:00.000Z",
        "naive input is KST"
    );
    assert_eq!(e["sale_start_date"], "2029-12-01T01:00:00.000Z");
    assert_eq!(e["sale_end_date"], "2029-12-31T14:59:00.000Z");
    assert_eq!(e["status"], "upcoming");
    assert_eq!(e["seat_layout_id"], small.to_string());
    assert_eq!(e["created_by"], admin.id.to_string());
    assert_eq!(e["address"], Value::Null, "blank optional text is NULL");
    assert_eq!(e["artist_name"], "아이유");
    let id: Uuid = e["id"].as_str().unwrap().parse().unwrap();

    assert_eq!(
        count(&app, "SELECT count(*) FROM seats WHERE event_id = $1", id).await,
        265
    );
    let (_, detail) = app.get(&format!("/api/events/{id}"), None).await;
    let types = detail["ticketTypes"].as_array().unwrap();
    assert_eq!(types.len(), 2);
    assert_eq!(
        (
            &types[0]["name"],
            &types[0]["price"],
            &types[0]["total_quantity"],
            &types[0]["available_quantity"]
        ),
        (&json!("VIP"), &json!(150000), &json!(100), &json!(100))
    );
    assert_eq!(types[0]["description"], "앞자리");
    assert_eq!(types[1]["price"], 50000);
    assert_eq!(types[1]["description"], Value::Null);

    // the initial status follows the sale window
    let on_sale = create_event(
        &app,
        &admin,
        event_body(Duration::days(-1), Duration::days(1)),
    )
    .await;
    assert_eq!(on_sale["status"], "on_sale");
    let ended = create_event(
        &app,
        &admin,
        event_body(Duration::days(-3), Duration::days(-2)),
    )
    .await;
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["seat_layout_id"], Value::Null);
    let (_, list) = app.get("/api/events", None).await;
    assert_eq!(list["pagination"]["total"], 3);
}

#[tokio::test]
async fn admin_create_event_validation_errors() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let valid = event_body(Duration::days(1), Duration::days(2));
    let with = |key: &str, value: Value| {
        let mut b = valid.clone();
        b[key] = value;
        b
    };
    let mut no_title = valid.clone();
    no_title.as_object_mut().unwrap().remove("title");
    let cases = [
        (no_title, "제목을 입력해주세요. (255자 이하)"),
        (
            with("title", json!("   ")),
            "제목을 입력해주세요. (255자 이하)",
        ),
        (
            with("saleEndDate", json!(kst(Duration::hours(1)))),
            "판매 종료 일시는 판매 시작 일시보다 늦어야 합니다.",
        ),
        (
            with("seatLayoutId", json!("abc")),
            "Invalid seatLayoutId format",
        ),
        (
            with("seatLayoutId", json!(Uuid::new_v4())),
            "존재하지 않는 좌석 레이아웃입니다.",
        ),
        (
            with("eventDate", json!("31/12/2030")),
            "공연 일시가 올바르지 않습니다.",
        ),
        (
            with(
                "ticketTypes",
                json!([{ "name": "R", "price": "abc", "totalQuantity": "1" }]),
            ),
            "티켓 가격은 0 이상의 정수여야 합니다.",
        ),
        (
            with("ticketTypes", json!([{ "name": "R", "price": "1000" }])),
            "티켓 이름, 가격, 수량은 필수입니다.",
        ),
    ];
    for (body, msg) in cases {
        assert_eq!(
            app.post("/api/admin/events", Some(&admin.token), body.clone())
                .await,
            error(StatusCode::BAD_REQUEST, "INVALID_INPUT", msg),
            "{body}"
        );
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, 0, "nothing was created");
    // empty or null seatLayoutId means "no seat map"
    for none in [json!(""), Value::Null] {
        let e = create_event(&app, &admin, with("seatLayoutId", none)).await;
        assert_eq!(e["seat_layout_id"], Value::Null);
    }
}

#[tokio::test]
async fn admin_update_event_is_partial_and_recomputes_status() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let created = create_event(
        &app,
        &admin,
        event_body(Duration::days(1), Duration::days(2)),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/admin/events/{id}");
    assert_eq!(created["status"], "upcoming");

    let (status, body) = admin_send(
        &app,
        &admin,
        Method::PUT,
        &path,
        Some(json!({ "title": "새 제목" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "이벤트가 수정되었습니다.");
    let e = &body["event"];
    assert_eq!(keys(e), sorted(crate::common::EVENT_KEYS));
    assert_eq!(e["title"], "새 제목");
    for kept in [
        "description",
        "venue",
        "address",
        "event_date",
        "sale_start_date",
        "sale_end_date",
        "poster_image_url",
        "artist_name",
        "status",
    ] {
        assert_eq!(e[kept], created[kept], "{kept} is kept");
    }

    let (status, body) = admin_send(
        &app,
        &admin,
        Method::PUT,
        &path,
        Some(json!({ "saleStartDate": kst(Duration::days(-1)), "artistName": null })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["event"]["status"], "on_sale",
        "status follows the new window"
    );
    assert_eq!(body["event"]["artist_name"], Value::Null, "null clears");
    assert_eq!(body["event"]["title"], "새 제목");

    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::PUT,
            &path,
            Some(json!({ "saleEndDate": kst(Duration::days(-2)) }))
        )
        .await,
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "판매 종료 일시는 판매 시작 일시보다 늦어야 합니다."
        )
    );

    // a cancelled event stays cancelled
    let (status, _) = admin_send(&app, &admin, Method::POST, &format!("{path}/cancel"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = admin_send(
        &app,
        &admin,
        Method::PUT,
        &path,
        Some(json!({ "saleEndDate": kst(Duration::days(3)) })),
    )
    .await;
    assert_eq!(body["event"]["status"], "cancelled");

    let msg = "이벤트를 찾을 수 없습니다.";
    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::PUT,
            &format!("/api/admin/events/{}", Uuid::new_v4()),
            Some(json!({ "title": "x" }))
        )
        .await,
        (
            StatusCode::NOT_FOUND,
            json!({ "success": false, "message": msg, "error": msg, "code": "EVENT_NOT_FOUND" })
        )
    );
    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::PUT,
            "/api/admin/events/abc",
            Some(json!({ "title": "x" }))
        )
        .await,
        error(StatusCode::BAD_REQUEST, "INVALID_ID", "Invalid id format")
    );
}

#[tokio::test]
async fn admin_cancel_event_cancels_reservations_and_frees_held_seats() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (holder, payer) = (app.user().await, app.user().await);
    let (event, seats) = app.seat_event().await;
    let held = app.hold_ok(&holder.token, event, seats[0]).await;
    let paid = app.hold_ok(&payer.token, event, seats[1]).await;
    app.pay_ok(&payer.token, paid).await;
    assert_eq!(
        app.get(&format!("/api/events/{event}"), None).await.1["event"]["status"],
        "on_sale"
    );

    let path = format!("/api/admin/events/{event}/cancel");
    let (status, body) = admin_send(&app, &admin, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        keys(&body),
        sorted(&["message", "event", "cancelledReservations"])
    );
    assert_eq!(
        body["message"],
        "이벤트가 취소되었습니다. 모든 예약이 취소되고 결제 완료된 예약은 환불 처리되었습니다."
    );
    assert_eq!(body["cancelledReservations"], 2);
    assert_eq!(body["event"]["status"], "cancelled");
    assert_eq!(keys(&body["event"]), sorted(crate::common::EVENT_KEYS));

    assert_eq!(
        app.reservation_state(held).await,
        pair("cancelled", "refunded"),
        "a cancelled unpaid hold reads 취소됨 / 환불 완료 (nothing owed), not 결제 대기"
    );
    assert_eq!(
        app.reservation_state(paid).await,
        pair("cancelled", "refunded")
    );
    assert_eq!(
        app.seat_status(seats[0]).await,
        "available",
        "held seat freed"
    );
    assert_eq!(
        app.seat_status(seats[1]).await,
        "reserved",
        "sold seat stays"
    );
    let charges = app.charges_of(paid);
    assert!(
        charges.len() == 1 && charges[0].refunded,
        "the captured payment is refunded at the provider: {charges:?}"
    );
    assert!(
        app.charges_of(held).is_empty(),
        "an unpaid hold was never charged"
    );
    app.assert_ledger_balances().await;
    assert_eq!(
        app.get(&format!("/api/events/{event}"), None).await.1["event"]["status"],
        "cancelled",
        "detail cache invalidated"
    );

    let msg = "이벤트 취소에 실패했습니다.";
    let failed = (
        StatusCode::NOT_FOUND,
        json!({ "success": false, "message": msg, "error": msg, "code": "EVENT_NOT_FOUND" }),
    );
    assert_eq!(
        admin_send(&app, &admin, Method::POST, &path, None).await,
        failed,
        "already cancelled"
    );
    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::POST,
            &format!("/api/admin/events/{}/cancel", Uuid::new_v4()),
            None
        )
        .await,
        failed
    );
}

#[tokio::test]
async fn admin_delete_event_even_with_booked_ticket_types() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user().await;
    let (event, tt) = app.ticket_event(10).await;
    let booked = app.book_ok(&user.token, event, tt, 2).await;
    let (seat_event, seats) = app.seat_event().await;
    let paid = app.hold_ok(&user.token, seat_event, seats[0]).await;
    app.pay_ok(&user.token, paid).await;
    assert_eq!(
        app.get(&format!("/api/events/{event}"), None).await.0,
        StatusCode::OK
    );

    let deleted = |n: i64| {
        (
            StatusCode::OK,
            json!({ "message": "이벤트가 삭제되었습니다.", "cancelledReservations": n }),
        )
    };
    // the original failed with 500 here: reservation_items referenced the ticket types
    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/admin/events/{event}"),
            None
        )
        .await,
        deleted(1)
    );
    assert_eq!(
        app.reservation_state(booked).await,
        pair("cancelled", "refunded")
    );
    let (event_id, item_tt): (Option<Uuid>, Option<Uuid>) = sqlx::query_as(
        "SELECT r.event_id, ri.ticket_type_id FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
         WHERE r.id = $1",
    )
    .bind(booked)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        (event_id, item_tt),
        (None, None),
        "history kept, links cleared"
    );
    assert_eq!(
        app.get(&format!("/api/events/{event}"), None).await,
        error(
            StatusCode::NOT_FOUND,
            "EVENT_NOT_FOUND",
            "이벤트를 찾을 수 없습니다."
        ),
        "detail cache invalidated"
    );

    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/admin/events/{seat_event}"),
            None
        )
        .await,
        deleted(1)
    );
    assert_eq!(
        app.reservation_state(paid).await,
        pair("cancelled", "refunded")
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM seats WHERE event_id = $1",
            seat_event
        )
        .await,
        0
    );

    let (status, mine) = app.get("/api/reservations/my", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["reservations"].as_array().unwrap().len(), 2);
    assert_eq!(mine["reservations"][0]["event_title"], Value::Null);

    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/admin/events/{event}"),
            None
        )
        .await,
        error(
            StatusCode::NOT_FOUND,
            "EVENT_NOT_FOUND",
            "이벤트를 찾을 수 없습니다."
        )
    );
    assert_eq!(
        admin_send(&app, &admin, Method::DELETE, "/api/admin/events/abc", None).await,
        error(StatusCode::BAD_REQUEST, "INVALID_ID", "Invalid id format")
    );
}

#[tokio::test]
async fn admin_generate_seats() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let generate = |id: Uuid| {
        let (app, admin) = (&app, &admin);
        async move {
            admin_send(
                app,
                admin,
                Method::POST,
                &format!("/api/admin/events/{id}/generate-seats"),
                None,
            )
            .await
        }
    };
    assert_eq!(
        generate(Uuid::new_v4()).await,
        error(
            StatusCode::NOT_FOUND,
            "EVENT_NOT_FOUND",
            "이벤트를 찾을 수 없습니다."
        )
    );
    let no_layout = app.insert_event("", "-1 hour", "+1 day").await;
    assert_eq!(
        generate(no_layout).await,
        error(
            StatusCode::BAD_REQUEST,
            "CONFLICT",
            "좌석 레이아웃이 설정되지 않았습니다."
        )
    );
    let (with_seats, _) = app.seat_event().await;
    assert_eq!(
        generate(with_seats).await,
        (
            StatusCode::BAD_REQUEST,
            json!({ "error": "이미 좌석이 생성되어 있습니다.", "code": "CONFLICT", "existingSeats": 265 })
        )
    );
    let without_seats = app.insert_event("small_theater", "-1 hour", "+1 day").await;
    assert_eq!(
        generate(without_seats).await,
        (
            StatusCode::OK,
            json!({ "message": "좌석이 생성되었습니다.", "seatsCreated": 265, "eventTitle": "테스트 공연" })
        )
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'available'",
            without_seats
        )
        .await,
        265
    );
    let (status, map) = app
        .get(&format!("/api/seats/events/{without_seats}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(map["seats"].as_array().unwrap().len(), 265);
}

#[tokio::test]
async fn admin_delete_seats_refused_while_a_seat_is_booked() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user().await;
    let (event, seats) = app.seat_event().await;
    let held = app.hold_ok(&user.token, event, seats[0]).await;
    let path = format!("/api/admin/events/{event}/seats");

    assert_eq!(
        admin_send(&app, &admin, Method::DELETE, &path, None).await,
        error(
            StatusCode::BAD_REQUEST,
            "CONFLICT",
            "예약된 좌석이 있어 삭제할 수 없습니다."
        )
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM seats WHERE event_id = $1",
            event
        )
        .await,
        265
    );

    let (status, _) = admin_send(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/admin/reservations/{held}/status"),
        Some(json!({ "status": "cancelled" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        admin_send(&app, &admin, Method::DELETE, &path, None).await,
        (
            StatusCode::OK,
            json!({ "message": "좌석이 삭제되었습니다.", "seatsDeleted": 265 })
        )
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM seats WHERE event_id = $1",
            event
        )
        .await,
        0
    );
    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/admin/events/{}/seats", Uuid::new_v4()),
            None
        )
        .await,
        (
            StatusCode::OK,
            json!({ "message": "좌석이 삭제되었습니다.", "seatsDeleted": 0 })
        )
    );
}

#[tokio::test]
async fn admin_ticket_types_create_and_update() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user().await;
    let event = app.insert_event("", "-1 hour", "+1 day").await;

    let (status, body) = app
        .post(
            &format!("/api/admin/events/{event}/tickets"),
            Some(&admin.token),
            json!({ "name": "R석", "price": "70000", "totalQuantity": "10", "description": "중앙" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "티켓이 등록되었습니다.");
    let t = &body["ticketType"];
    assert_eq!(
        keys(t),
        sorted(&[
            "id",
            "event_id",
            "name",
            "price",
            "total_quantity",
            "available_quantity",
            "description",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(
        (
            &t["event_id"],
            &t["name"],
            &t["price"],
            &t["total_quantity"],
            &t["available_quantity"]
        ),
        (
            &json!(event),
            &json!("R석"),
            &json!(70000),
            &json!(10),
            &json!(10)
        )
    );
    assert!(is_wire_time(&t["created_at"]));
    let tt: Uuid = t["id"].as_str().unwrap().parse().unwrap();

    app.book_ok(&user.token, event, tt, 4).await;
    let path = format!("/api/admin/tickets/{tt}");
    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::PUT,
            &path,
            Some(json!({ "totalQuantity": 3 }))
        )
        .await,
        error(
            StatusCode::BAD_REQUEST,
            "CONFLICT",
            "판매된 티켓 수보다 적은 수량으로 변경할 수 없습니다."
        )
    );
    let (status, body) = admin_send(
        &app,
        &admin,
        Method::PUT,
        &path,
        Some(json!({ "name": "R석 (변경)", "price": 80000, "totalQuantity": "6" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "티켓이 수정되었습니다.");
    let t = &body["ticketType"];
    assert_eq!(
        (
            &t["name"],
            &t["price"],
            &t["total_quantity"],
            &t["available_quantity"],
            &t["description"]
        ),
        (
            &json!("R석 (변경)"),
            &json!(80000),
            &json!(6),
            &json!(2),
            &json!("중앙")
        )
    );
    assert_eq!(
        app.get(&format!("/api/tickets/availability/{tt}"), None)
            .await
            .1,
        json!({ "available_quantity": 2, "total_quantity": 6 })
    );
    assert_eq!(
        app.get(&format!("/api/events/{event}"), None).await.1["ticketTypes"][0]["available_quantity"],
        2,
        "detail cache invalidated"
    );

    assert_eq!(
        admin_send(
            &app,
            &admin,
            Method::PUT,
            &format!("/api/admin/tickets/{}", Uuid::new_v4()),
            Some(json!({ "totalQuantity": 1 }))
        )
        .await,
        error(
            StatusCode::NOT_FOUND,
            "TICKET_TYPE_NOT_FOUND",
            "티켓을 찾을 수 없습니다."
        )
    );
    let ticket = json!({ "name": "S석", "price": 1000, "totalQuantity": 1 });
    assert_eq!(
        app.post(
            "/api/admin/events/abc/tickets",
            Some(&admin.token),
            ticket.clone()
        )
        .await,
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_ID",
            "Invalid eventId format"
        )
    );
    assert_eq!(
        app.post(
            &format!("/api/admin/events/{}/tickets", Uuid::new_v4()),
            Some(&admin.token),
            ticket
        )
        .await,
        error(
            StatusCode::NOT_FOUND,
            "EVENT_NOT_FOUND",
            "이벤트를 찾을 수 없습니다."
        )
    );
    assert_eq!(
        app.post(
            &format!("/api/admin/events/{event}/tickets"),
            Some(&admin.token),
            json!({ "name": "S석" })
        )
        .await,
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "티켓 이름, 가격, 수량은 필수입니다."
        )
    );
}

#[tokio::test]
async fn admin_reservations_list_filters_and_pages() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (u1, u2) = (app.user().await, app.user().await);
    let (event, tt) = app.ticket_event(50).await;
    let r1 = app.book_ok(&u1.token, event, tt, 1).await;
    let r2 = app.book_ok(&u2.token, event, tt, 2).await;
    let r3 = app.book_ok(&u1.token, event, tt, 3).await;
    let (status, _) = app
        .post(
            &format!("/api/reservations/{r3}/cancel"),
            Some(&u1.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let list = |query: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let (status, body) = app
                .get(
                    &format!("/api/admin/reservations{query}"),
                    Some(&admin.token),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            let ids: Vec<Uuid> = body["reservations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().parse().unwrap())
                .collect();
            (ids, body)
        }
    };

    let (ids, body) = list("").await;
    assert_eq!(ids, [r3, r2, r1], "newest first");
    assert_eq!(
        body["pagination"],
        json!({ "page": 1, "limit": 20, "total": 3, "totalPages": 1 })
    );
    let r = &body["reservations"][1];
    assert_eq!(
        keys(r),
        sorted(&[
            "id",
            "reservation_number",
            "total_amount",
            "status",
            "status_reason",
            "payment_status",
            "created_at",
            "user_name",
            "user_email",
            "event_title",
            "venue",
            "event_date"
        ])
    );
    assert_eq!(
        (
            &r["total_amount"],
            &r["status"],
            &r["payment_status"],
            &r["user_email"],
            &r["event_title"],
            &r["venue"]
        ),
        (
            &json!(100000),
            &json!("pending"),
            &json!("pending"),
            &json!(u2.email),
            &json!("테스트 공연"),
            &json!("테스트홀")
        )
    );
    assert!(is_wire_time(&r["event_date"]) && is_wire_time(&r["created_at"]));

    let (ids, body) = list("?status=cancelled").await;
    assert_eq!(ids, [r3]);
    assert_eq!(body["pagination"]["total"], 1);
    // never paid: "refunded" like the original (§9 #17), so the frontend shows 취소됨 / 환불 완료
    // instead of 취소됨 / 결제 대기, which read as money still owed
    assert_eq!(body["reservations"][0]["payment_status"], "refunded");
    assert_eq!(list("?status=pending").await.0, [r2, r1]);
    assert_eq!(
        list("?status=").await.0.len(),
        3,
        "an empty status is no filter"
    );

    let (ids, body) = list("?limit=2").await;
    assert_eq!(ids, [r3, r2]);
    assert_eq!(
        body["pagination"],
        json!({ "page": 1, "limit": 2, "total": 3, "totalPages": 2 })
    );
    assert_eq!(list("?page=2&limit=2").await.0, [r1]);
}

#[tokio::test]
async fn admin_reservation_status_patch() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user().await;
    let (seat_event, seats) = app.seat_event().await;
    let held = app.hold_ok(&user.token, seat_event, seats[0]).await;
    let (event, tt) = app.ticket_event(10).await;
    let booked = app.book_ok(&user.token, event, tt, 3).await;
    let patch = |id: String, body: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            admin_send(
                app,
                admin,
                Method::PATCH,
                &format!("/api/admin/reservations/{id}/status"),
                Some(body),
            )
            .await
        }
    };

    assert_eq!(
        patch(booked.to_string(), json!({})).await,
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "변경할 상태를 지정해주세요."
        )
    );
    assert_eq!(
        patch(
            booked.to_string(),
            json!({ "status": null, "paymentStatus": null })
        )
        .await,
        error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "변경할 상태를 지정해주세요."
        )
    );
    for bad in [
        json!({ "status": "bogus" }),
        json!({ "paymentStatus": "paid" }),
        json!({ "status": 1 }),
    ] {
        assert_eq!(
            patch(booked.to_string(), bad.clone()).await,
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_STATUS_CHANGE",
                "유효하지 않은 상태 값입니다."
            ),
            "{bad}"
        );
    }
    assert_eq!(
        patch(Uuid::new_v4().to_string(), json!({ "status": "confirmed" })).await,
        error(
            StatusCode::NOT_FOUND,
            "RESERVATION_NOT_FOUND",
            "예매를 찾을 수 없습니다."
        )
    );
    assert_eq!(
        patch("abc".into(), json!({ "status": "confirmed" })).await,
        error(StatusCode::BAD_REQUEST, "INVALID_ID", "Invalid id format")
    );
    assert_eq!(
        app.reservation_state(booked).await,
        pair("pending", "pending")
    );

    // only a captured payment confirms or completes a reservation
    for claim in [
        json!({ "paymentStatus": "completed" }),
        json!({ "status": "confirmed" }),
        json!({ "status": "confirmed", "paymentStatus": "completed" }),
    ] {
        let (status, body) = patch(booked.to_string(), claim.clone()).await;
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::BAD_REQUEST, &json!("PAYMENT_REQUIRED")),
            "{claim}: {body}"
        );
    }
    let (status, body) = patch(booked.to_string(), json!({ "paymentStatus": "failed" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "예매 상태가 변경되었습니다.");
    let r = &body["reservation"];
    assert_eq!(
        keys(r),
        sorted(&[
            "id",
            "user_id",
            "event_id",
            "reservation_number",
            "total_amount",
            "status",
            "status_reason",
            "payment_method",
            "payment_status",
            "expires_at",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(
        (
            &r["id"],
            &r["user_id"],
            &r["event_id"],
            &r["status"],
            &r["payment_status"],
            &r["expires_at"]
        ),
        (
            &json!(booked),
            &json!(user.id),
            &json!(event),
            &json!("pending"),
            &json!("failed"),
            &Value::Null
        )
    );

    // ending a reservation returns what it held
    let (status, body) = patch(held.to_string(), json!({ "status": "cancelled" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reservation"]["status"], "cancelled");
    assert!(is_wire_time(&body["reservation"]["expires_at"]));
    assert_eq!(app.seat_status(seats[0]).await, "available");
    assert_eq!(
        app.reservation_state(held).await,
        pair("cancelled", "refunded"),
        "a cancelled unpaid hold reads 취소됨 / 환불 완료 (nothing owed), not 결제 대기"
    );

    assert_eq!(
        app.get(&format!("/api/tickets/availability/{tt}"), None)
            .await
            .1["available_quantity"],
        7
    );
    let (status, _) = patch(booked.to_string(), json!({ "status": "cancelled" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/api/tickets/availability/{tt}"), None)
            .await
            .1["available_quantity"],
        10
    );
}

/// A seat is freed only by the reservation that holds it. A's hold expires, B buys the seat; an
/// admin then tries to revive A. Before the lifecycle, the revival succeeded without re-claiming the
/// seat, and A's cancel then freed B's paid seat for sale again.
#[tokio::test]
async fn admin_revival_cannot_take_a_seat_sold_to_someone_else() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (a, b) = (app.user().await, app.user().await);
    let (event, seats) = app.seat_event().await;
    let held_by_a = app.hold_ok(&a.token, event, seats[0]).await;
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(held_by_a)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        tiketi_service::jobs::hold_expiry::sweep(&app.state)
            .await
            .unwrap(),
        1
    );
    let bought_by_b = app.hold_ok(&b.token, event, seats[0]).await;
    app.pay_ok(&b.token, bought_by_b).await;

    for (revive, answer, code) in [
        ("confirmed", StatusCode::BAD_REQUEST, "PAYMENT_REQUIRED"),
        ("pending", StatusCode::CONFLICT, "INVALID_STATUS_CHANGE"),
    ] {
        let (status, body) = admin_send(
            &app,
            &admin,
            Method::PATCH,
            &format!("/api/admin/reservations/{held_by_a}/status"),
            Some(json!({ "status": revive })),
        )
        .await;
        assert_eq!(status, answer, "{revive}: {body}");
        assert_eq!(body["code"], code);
    }
    assert_eq!(
        app.reservation_state(held_by_a).await,
        pair("expired", "failed")
    );
    // A cancelling the dead hold touches nothing of B's
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/api/reservations/{held_by_a}/cancel"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.seat_status(seats[0]).await, "reserved");
    assert_eq!(
        app.reservation_state(bought_by_b).await,
        pair("confirmed", "completed")
    );

    // reviving works when the seat is free again: it is claimed back, held by A
    let free = app.hold_ok(&a.token, event, seats[1]).await;
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/api/reservations/{free}/cancel"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.seat_status(seats[1]).await, "available");
    let (status, body) = admin_send(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/admin/reservations/{free}/status"),
        Some(json!({ "status": "pending" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.seat_status(seats[1]).await, "locked");
    let (status, body) = app.hold(&b.token, event, seats[1]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("SEAT_TAKEN"))
    );
}

/// No admin change frees a paid seat without its refund. Before, an admin setting a paid
/// reservation back to pending kept the money, and the expiry job then freed and re-sold its seat.
#[tokio::test]
async fn admin_paid_reservation_is_only_cancelled_and_then_refunded() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user().await;
    let (event, seats) = app.seat_event().await;
    let paid = app.hold_ok(&user.token, event, seats[0]).await;
    app.pay_ok(&user.token, paid).await;
    let path = format!("/api/admin/reservations/{paid}/status");
    let msg = "결제 완료된 예매는 취소(환불)만 할 수 있습니다.";
    for edit in [
        json!({ "status": "pending" }),
        json!({ "status": "pending", "paymentStatus": "pending" }),
        json!({ "status": "expired" }),
        json!({ "paymentStatus": "refunded" }),
        json!({ "paymentStatus": "pending" }),
        json!({ "status": "cancelled", "paymentStatus": "completed" }),
    ] {
        assert_eq!(
            admin_send(&app, &admin, Method::PATCH, &path, Some(edit.clone())).await,
            (
                StatusCode::BAD_REQUEST,
                json!({ "success": false, "message": msg, "error": msg, "code": "RESERVATION_PAID" })
            ),
            "{edit}"
        );
    }
    assert_eq!(
        app.reservation_state(paid).await,
        pair("confirmed", "completed")
    );
    // the expiry job never frees a confirmed seat, however late its hold time
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 hour' WHERE id = $1")
        .bind(paid)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        tiketi_service::jobs::hold_expiry::sweep(&app.state)
            .await
            .unwrap(),
        0
    );
    assert_eq!(app.seat_status(seats[0]).await, "reserved");
    assert_eq!(
        app.reservation_state(paid).await,
        pair("confirmed", "completed")
    );
    app.assert_ledger_balances().await;

    let (status, body) = admin_send(
        &app,
        &admin,
        Method::PATCH,
        &path,
        Some(json!({ "status": "cancelled" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.reservation_state(paid).await,
        pair("cancelled", "refunded")
    );
    assert_eq!(app.seat_status(seats[0]).await, "available");
    let charges = app.charges_of(paid);
    assert!(
        charges.len() == 1 && charges[0].refunded,
        "the seat went back with its money: {charges:?}"
    );
    assert_eq!(app.intents_of(paid).await[0].1, "refunded");
    app.assert_ledger_balances().await;
}

/// The admin console lists a lapsed hold as `cancelled` with `status_reason: "expired"`; filtering
/// by `cancelled` finds it with the cancelled ones, filtering by `expired` finds only it.
#[tokio::test]
async fn admin_lapsed_holds_list_as_cancelled_and_filter_by_expired() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user().await;
    let (event, seats) = app.seat_event().await;
    let lapsed = app.hold_ok(&user.token, event, seats[0]).await;
    let cancelled = app.hold_ok(&user.token, event, seats[1]).await;
    let live = app.hold_ok(&user.token, event, seats[2]).await;
    assert_eq!(app.cancel(&user.token, cancelled).await.0, StatusCode::OK);
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(lapsed)
        .execute(&app.db)
        .await
        .unwrap();
    tiketi_service::jobs::hold_expiry::sweep(&app.state)
        .await
        .unwrap();
    let list = |query: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let (status, body) = app
                .get(
                    &format!("/api/admin/reservations{query}"),
                    Some(&admin.token),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["reservations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
                        r["status"].clone(),
                        r["status_reason"].clone(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let shown_lapsed = (lapsed, json!("cancelled"), json!("expired"));
    let shown_cancelled = (cancelled, json!("cancelled"), Value::Null);
    assert_eq!(
        list("?status=expired").await,
        std::slice::from_ref(&shown_lapsed)
    );
    assert_eq!(
        list("?status=cancelled").await,
        [shown_cancelled, shown_lapsed]
    );
    assert_eq!(
        list("?status=pending").await,
        [(live, json!("pending"), Value::Null)]
    );
    let (_, body) = app
        .get("/api/admin/dashboard/stats", Some(&admin.token))
        .await;
    let recent = body["recentReservations"].as_array().unwrap();
    let lapsed_recent = recent
        .iter()
        .find(|r| r["id"] == lapsed.to_string().as_str())
        .unwrap();
    assert_eq!(
        (&lapsed_recent["status"], &lapsed_recent["status_reason"]),
        (&json!("cancelled"), &json!("expired"))
    );
}

/// An admin change on a replica wakes that replica's event-status job, which otherwise sleeps up to
/// 30 s: the sale opens when its new start passes, not at the job's next tick.
#[tokio::test]
async fn admin_moving_a_sale_start_wakes_the_status_job() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let later = create_event(
        &app,
        &admin,
        event_body(Duration::days(1), Duration::days(2)),
    )
    .await;
    // a sale whose window has begun but whose stored status lags: the job's first pass opens it, so
    // once it reads on_sale the job is asleep until its next boundary (a day away: 30 s at most)
    let lagging = create_event(
        &app,
        &admin,
        event_body(Duration::days(-1), Duration::days(2)),
    )
    .await;
    let lagging = lagging["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    sqlx::query("UPDATE events SET status = 'upcoming' WHERE id = $1")
        .bind(lagging)
        .execute(&app.db)
        .await
        .unwrap();
    app.start_jobs();
    let status = |id: Uuid| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM events WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(lagging).await != "on_sale" {
        assert!(tokio::time::Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let id = later["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let start = (Utc::now() + Duration::seconds(2))
        .with_timezone(&chrono_tz::Asia::Seoul)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let (code, body) = admin_send(
        &app,
        &admin,
        Method::PUT,
        &format!("/api/admin/events/{id}"),
        Some(json!({ "saleStartDate": start })),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["status"], "upcoming", "{body}");
    // well inside the 30 s the job would otherwise sleep
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(12);
    while status(id).await != "on_sale" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sale did not open when its new start passed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
