//! `/api/seats/*`: layouts, the seat map, seat holds (validation, sale window, the one-seat race) and
//! the hold read-back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, eventually, keys, refusal};

const MSG_TAKEN_VIP_1_1: &str = "이미 예약된 좌석입니다. (VIP-1-1)";
const MSG_NOT_ON_SALE: &str = "예매 가능한 기간이 아닙니다.";

/// (seat, ticket type, quantity, unit_price, subtotal) of a reservation item.
type ItemRow = (Option<Uuid>, Option<Uuid>, i32, i32, i32);

/// `TK` + 13 digits (epoch ms) + 5 upper-case base-36 characters.
fn is_reservation_number(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("TK") else {
        return false;
    };
    rest.len() == 18
        && rest[..13].bytes().all(|b| b.is_ascii_digit())
        && rest[13..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// An event with the small_theater seats whose sale window is [now + start, now + end].
async fn seat_event_in_window(app: &TestApp, start: &str, end: &str) -> Uuid {
    let event = app.insert_event("small_theater", start, end).await;
    let layout: Uuid =
        sqlx::query_scalar("SELECT id FROM seat_layouts WHERE name = 'small_theater'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let mut tx = app.db.begin().await.unwrap();
    tiketi_service::seats::db::insert_layout_seats(&mut tx, event, layout)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    event
}

async fn reservation_count(app: &TestApp, event: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reservations WHERE event_id = $1")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// The status the public seat map shows for `seat`.
async fn map_status(app: &TestApp, event: Uuid, seat: Uuid) -> String {
    let (status, body) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seat = seat.to_string();
    body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == seat.as_str())
        .expect("seat in the map")["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn seats_layouts_are_listed_by_size_with_their_config() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/seats/layouts", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), ["layouts"]);
    let layouts = body["layouts"].as_array().unwrap();
    let names: Vec<&str> = layouts
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small_theater", "large_theater", "sports_stadium"]);
    let totals: Vec<i64> = layouts
        .iter()
        .map(|l| l["total_seats"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [265, 1250, 4900]);
    for l in layouts {
        assert_eq!(
            keys(l),
            ["description", "id", "layout_config", "name", "total_seats"]
        );
        assert!(l["id"].as_str().unwrap().parse::<Uuid>().is_ok());
        for s in l["layout_config"]["sections"].as_array().unwrap() {
            assert_eq!(
                keys(s),
                ["name", "price", "rows", "seatsPerRow", "startRow"]
            );
        }
    }
    assert_eq!(
        layouts[0]["layout_config"]["sections"][0],
        json!({ "name": "VIP", "rows": 3, "seatsPerRow": 10, "price": 150000, "startRow": 1 })
    );
}

#[tokio::test]
async fn seats_map_lists_every_seat_ordered_by_section_row_and_number() {
    let app = TestApp::spawn().await;
    let (event, ids) = app.seat_event().await;
    let (status, body) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), ["event", "layout", "seats"]);
    assert_eq!(
        body["event"],
        json!({ "id": event, "title": "테스트 공연" })
    );
    let sections: Vec<&str> = body["layout"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sections, ["VIP", "R", "S"]);

    let seats = body["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 265);
    for s in seats {
        assert_eq!(
            keys(s),
            [
                "id",
                "price",
                "row_number",
                "seat_label",
                "seat_number",
                "section",
                "status"
            ]
        );
        assert_eq!(s["status"], "available");
        let label = format!(
            "{}-{}-{}",
            s["section"].as_str().unwrap(),
            s["row_number"],
            s["seat_number"]
        );
        assert_eq!(s["seat_label"], label.as_str());
    }
    let order: Vec<(String, i64, i64)> = seats
        .iter()
        .map(|s| {
            (
                s["section"].as_str().unwrap().to_string(),
                s["row_number"].as_i64().unwrap(),
                s["seat_number"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "ordered by section, row_number, seat_number");
    assert_eq!(seats[0]["seat_label"], "R-4-1");
    assert_eq!(seats[0]["price"], 100000);
    assert_eq!(seats[264]["seat_label"], "VIP-3-10");
    assert_eq!(seats[264]["price"], 150000);
    let map_ids: Vec<Uuid> = seats
        .iter()
        .map(|s| s["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(map_ids, ids);
}

#[tokio::test]
async fn seats_map_errors() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/seats/events/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "Invalid event ID format", "code": "INVALID_ID" })
    );

    let (status, body) = app
        .get(&format!("/api/seats/events/{}", Uuid::new_v4()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": "Event not found", "code": "EVENT_NOT_FOUND" })
    );

    let (event, _) = app.ticket_event(10).await;
    let (status, body) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "error": "This event does not have seat selection", "code": "SEAT_NOT_FOUND" })
    );
}

#[tokio::test]
async fn seats_reserve_holds_the_seat_and_answers_the_contract_shape() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let user = app.user().await;
    let before = Utc::now();
    let (status, body) = app.hold(&user.token, event, seat).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(keys(&body), ["message", "reservation"]);
    assert_eq!(body["message"], "좌석이 선택되었습니다.");
    let r = &body["reservation"];
    assert_eq!(
        keys(r),
        [
            "expiresAt",
            "id",
            "reservationNumber",
            "seats",
            "totalAmount"
        ]
    );
    let id: Uuid = r["id"].as_str().unwrap().parse().unwrap();
    let number = r["reservationNumber"].as_str().unwrap();
    assert!(is_reservation_number(number), "{number}");
    assert_eq!(r["totalAmount"], 150000);
    let expires = r["expiresAt"].as_str().unwrap();
    assert_eq!(expires.len(), 24, "ISO with milliseconds and Z: {expires}");
    assert!(expires.ends_with('Z'));
    let expires: DateTime<Utc> = expires.parse().unwrap();
    let hold = (expires - before).num_seconds();
    assert!((295..=305).contains(&hold), "hold of {hold}s, expected 300");
    assert_eq!(
        r["seats"],
        json!([{ "id": seat, "seat_label": "VIP-1-1", "price": 150000, "status": "locked" }])
    );

    assert_eq!(map_status(&app, event, seat).await, "locked");
    assert_eq!(app.seat_status(seat).await, "locked");
    let row: (Uuid, Uuid, String, i32, String, String) = sqlx::query_as(
        "SELECT user_id, event_id, reservation_number, total_amount, status, payment_status FROM reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            user.id,
            event,
            number.to_string(),
            150000,
            "pending".into(),
            "pending".into()
        )
    );
    let items: Vec<ItemRow> = sqlx::query_as(
        "SELECT seat_id, ticket_type_id, quantity, unit_price, subtotal FROM reservation_items WHERE reservation_id = $1",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(items, [(Some(seat), None, 1, 150000, 150000)]);
}

/// A hold changes no cached page (the event page shows ticket types' stock, not seats), so it
/// leaves the page cached: otherwise during a sale every hold sends that page's readers to PostgreSQL.
#[tokio::test]
async fn seats_reserve_leaves_the_cached_event_page_alone() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let detail = format!("/api/events/{event}");
    let (status, before) = app.get(&detail, None).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    // a direct change shows only once the page is rebuilt
    sqlx::query("UPDATE events SET venue = '몰래 바뀐 홀' WHERE id = $1")
        .bind(event)
        .execute(&app.db)
        .await
        .unwrap();
    let user = app.user().await;
    app.hold_ok(&user.token, event, seat).await;
    let (_, after) = app.get(&detail, None).await;
    assert_eq!(after["event"]["venue"], before["event"]["venue"]);
    assert_eq!(map_status(&app, event, seat).await, "locked");
}

#[tokio::test]
async fn seats_reserve_twice_the_same_seat_is_refused() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let (first, second) = (app.user().await, app.user().await);
    app.hold_ok(&first.token, event, seat).await;

    let (status, body) = app.hold(&second.token, event, seat).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, refusal("SEAT_TAKEN", MSG_TAKEN_VIP_1_1));
    // the holder cannot hold it a second time either
    let (status, body) = app.hold(&first.token, event, seat).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, refusal("SEAT_TAKEN", MSG_TAKEN_VIP_1_1));
    assert_eq!(reservation_count(&app, event).await, 1);
}

#[tokio::test]
async fn seats_reserve_by_a_deleted_user_is_401_and_leaves_the_seat_free() {
    // the hold skips the per-request user lookup; the hold's own statement must still refuse a
    // user who no longer exists, and undo the seat flip it made before finding out
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let gone = app.user().await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(gone.id)
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = app.hold(&gone.token, event, seat).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body,
        json!({ "error": "사용자 정보를 찾을 수 없습니다. 다시 로그인해주세요.", "code": "USER_NOT_FOUND" })
    );
    let (held_by, seat_state): (Option<Uuid>, String) =
        sqlx::query_as("SELECT held_by, status FROM seats WHERE id = $1")
            .bind(seat)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((held_by, seat_state.as_str()), (None, "available"));
    // and the seat is anyone else's to take
    let other = app.user().await;
    app.hold_ok(&other.token, event, seat).await;
}

#[tokio::test]
async fn seats_reserve_validation_order_and_messages() {
    let app = TestApp::spawn().await;
    let (event, ids) = app.seat_event().await;
    let (other_event, other_ids) = app.seat_event().await;
    let user = app.user().await;
    let plain = |code: &str, m: &str| json!({ "error": m, "code": code });
    let cases = [
        (json!({}), plain("INVALID_ID", "Invalid event ID format")),
        (
            json!({ "eventId": "not-a-uuid", "seatIds": [ids[0]] }),
            plain("INVALID_ID", "Invalid event ID format"),
        ),
        (
            json!({ "eventId": 42, "seatIds": [ids[0]] }),
            plain("INVALID_ID", "Invalid event ID format"),
        ),
        (
            json!({ "eventId": "nope", "seatIds": [] }),
            plain("INVALID_ID", "Invalid event ID format"),
        ),
        (
            json!({ "eventId": event }),
            plain("INVALID_INPUT", "Please select at least one seat"),
        ),
        (
            json!({ "eventId": event, "seatIds": [] }),
            plain("INVALID_INPUT", "Please select at least one seat"),
        ),
        (
            json!({ "eventId": event, "seatIds": ids[0] }),
            plain("INVALID_INPUT", "Please select at least one seat"),
        ),
        (
            json!({ "eventId": event, "seatIds": [ids[0], ids[1]] }),
            plain("INVALID_INPUT", "최대 1석까지 선택 가능합니다."),
        ),
        (
            json!({ "eventId": event, "seatIds": ["bad", "worse"] }),
            plain("INVALID_INPUT", "최대 1석까지 선택 가능합니다."),
        ),
        (
            json!({ "eventId": event, "seatIds": ["bad"] }),
            plain("INVALID_ID", "Invalid seat ID format"),
        ),
        (
            json!({ "eventId": event, "seatIds": [7] }),
            plain("INVALID_ID", "Invalid seat ID format"),
        ),
        (
            json!({ "eventId": event, "seatIds": [other_ids[0]] }),
            refusal("SEAT_NOT_FOUND", "좌석을 찾을 수 없습니다."),
        ),
        (
            json!({ "eventId": event, "seatIds": [Uuid::new_v4()] }),
            refusal("SEAT_NOT_FOUND", "좌석을 찾을 수 없습니다."),
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = app
            .post("/api/seats/reserve", Some(&user.token), request.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}");
        assert_eq!(body, expected, "{request}");
    }

    let (status, body) = app
        .post(
            "/api/seats/reserve",
            None,
            json!({ "eventId": event, "seatIds": [ids[0]] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": "인증이 필요합니다.", "code": "AUTH_REQUIRED" })
    );

    assert_eq!(reservation_count(&app, event).await, 0);
    assert_eq!(reservation_count(&app, other_event).await, 0);
    assert_eq!(app.seat_status(other_ids[0]).await, "available");
}

#[tokio::test]
async fn seats_reserve_is_refused_outside_the_sale_window() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let upcoming = seat_event_in_window(&app, "+1 day", "+2 days").await;
    let ended = seat_event_in_window(&app, "-2 days", "-1 day").await;
    let (cancelled, _) = app.seat_event().await;
    sqlx::query("UPDATE events SET status = 'cancelled' WHERE id = $1")
        .bind(cancelled)
        .execute(&app.db)
        .await
        .unwrap();
    for event in [upcoming, ended, cancelled] {
        let seat = app.seat_id(event, "VIP-1-1").await;
        let (status, body) = app.hold(&user.token, event, seat).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body, refusal("NOT_ON_SALE", MSG_NOT_ON_SALE));
        assert_eq!(app.seat_status(seat).await, "available");
        assert_eq!(reservation_count(&app, event).await, 0);
    }
}

#[tokio::test]
async fn seats_reservation_is_readable_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "R-5-3").await;
    let (owner, stranger) = (app.user().await, app.user().await);
    let (status, held) = app.hold(&owner.token, event, seat).await;
    assert_eq!(status, StatusCode::CREATED, "{held}");
    let id = held["reservation"]["id"].as_str().unwrap();

    let (status, body) = app
        .get(&format!("/api/seats/reservation/{id}"), Some(&owner.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), ["reservation"]);
    let r = &body["reservation"];
    assert_eq!(
        keys(r),
        [
            "created_at",
            "event_date",
            "event_id",
            "event_title",
            "expires_at",
            "id",
            "payment_method",
            "payment_status",
            "reservation_number",
            "seats",
            "status",
            "status_reason",
            "total_amount",
            "venue"
        ],
        "isExpired is absent while the hold runs"
    );
    assert_eq!(r["id"], id);
    assert_eq!(
        r["reservation_number"],
        held["reservation"]["reservationNumber"]
    );
    assert_eq!(r["total_amount"], 100000);
    assert_eq!(r["status"], "pending");
    assert_eq!(r["payment_status"], "pending");
    assert_eq!(r["payment_method"], Value::Null);
    assert_eq!(r["expires_at"], held["reservation"]["expiresAt"]);
    assert_eq!(r["event_id"], event.to_string());
    assert_eq!(r["event_title"], "테스트 공연");
    assert_eq!(r["venue"], "테스트홀");
    assert_eq!(
        r["seats"],
        json!([{ "seatId": seat, "seatLabel": "R-5-3", "section": "R", "rowNumber": 5, "seatNumber": 3, "price": 100000 }])
    );

    let not_found = json!({ "error": "예약을 찾을 수 없습니다.", "code": "RESERVATION_NOT_FOUND" });
    let (status, body) = app
        .get(
            &format!("/api/seats/reservation/{id}"),
            Some(&stranger.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    let (status, body) = app
        .get(
            &format!("/api/seats/reservation/{}", Uuid::new_v4()),
            Some(&owner.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, not_found);
    let (status, body) = app
        .get("/api/seats/reservation/nope", Some(&owner.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "Invalid reservation ID format", "code": "INVALID_ID" })
    );
    let (status, _) = app.get(&format!("/api/seats/reservation/{id}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn seats_reservation_reports_is_expired_after_the_hold_ends() {
    let app = TestApp::spawn_with(|c| c.hold_seconds = 1).await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "S-9-1").await;
    let user = app.user().await;
    let id = app.hold_ok(&user.token, event, seat).await;
    let path = format!("/api/seats/reservation/{id}");
    let expired = eventually(Duration::from_secs(10), || async {
        let (status, body) = app.get(&path, Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        match body["reservation"].get("isExpired") {
            None => false,
            Some(v) => {
                assert_eq!(*v, Value::Bool(true));
                true
            }
        }
    })
    .await;
    assert!(expired, "isExpired never appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seats_reserve_race_has_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let users = app.users(50).await;
    let results = join_all(users.iter().map(|u| app.hold(&u.token, event, seat))).await;

    let mut winners = Vec::new();
    for (user, (status, body)) in users.iter().zip(&results) {
        if *status == StatusCode::CREATED {
            winners.push((
                user.id,
                body["reservation"]["id"].as_str().unwrap().to_string(),
            ));
        } else {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(*body, refusal("SEAT_TAKEN", MSG_TAKEN_VIP_1_1));
        }
    }
    assert_eq!(winners.len(), 1, "exactly one hold wins");
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, user_id FROM reservations WHERE event_id = $1")
            .bind(event)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.to_string(), winners[0].1);
    assert_eq!(rows[0].1, winners[0].0);
    let items: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reservation_items WHERE seat_id = $1")
            .bind(seat)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(items, 1);
    assert_eq!(app.seat_status(seat).await, "locked");
    assert_eq!(map_status(&app, event, seat).await, "locked");
}

/// The seat map as sent: (status, `ETag`, body text).
async fn raw_map(
    app: &TestApp,
    event: Uuid,
    if_none_match: Option<&str>,
) -> (StatusCode, String, String) {
    let mut req = app.req(
        reqwest::Method::GET,
        &format!("/api/seats/events/{event}"),
        None,
    );
    if let Some(tag) = if_none_match {
        req = req.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, etag, resp.text().await.expect("body"))
}

#[tokio::test]
async fn seats_map_herd_reads_one_snapshot_until_a_change() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let user = app.user().await;
    let builds = || app.state.seat_maps.builds();
    let before = builds();

    // a herd arriving at once: one PostgreSQL read between them
    let herd = join_all((0..40).map(|_| raw_map(&app, event, None))).await;
    let first = &herd[0];
    for (status, etag, body) in &herd {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(
            (etag, body),
            (&first.1, &first.2),
            "one snapshot served to all"
        );
    }
    assert_eq!(builds() - before, 1, "concurrent misses share one read");
    // and the readers after them
    for _ in 0..20 {
        assert_eq!(map_status(&app, event, seat).await, "available");
    }
    assert_eq!(
        builds() - before,
        1,
        "repeated reads do not each read the seats"
    );

    // a hold made here is on the map at once, for one more read
    app.hold_ok(&user.token, event, seat).await;
    for _ in 0..10 {
        assert_eq!(map_status(&app, event, seat).await, "locked");
    }
    assert_eq!(builds() - before, 2);
}

#[tokio::test]
async fn seats_map_hold_on_one_replica_reaches_the_others_map() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let (event, _) = a.seat_event().await;
    let seat = a.seat_id(event, "VIP-1-1").await;
    let user = a.user().await;
    let before = b.state.seat_maps.builds();
    for _ in 0..10 {
        assert_eq!(map_status(&b, event, seat).await, "available");
    }
    assert_eq!(
        b.state.seat_maps.builds() - before,
        1,
        "B serves its snapshot"
    );

    a.hold_ok(&user.token, event, seat).await;
    // B learns of it from the version A published (checked every SEATMAP_REVALIDATE_MS, 250 ms)
    let mut reads = 0;
    let seen = eventually(Duration::from_secs(3), || {
        reads += 1;
        async { map_status(&b, event, seat).await == "locked" }
    })
    .await;
    assert!(seen, "replica B kept showing the held seat as available");
    let rebuilt = b.state.seat_maps.builds() - before - 1;
    assert!(
        rebuilt <= 2,
        "B rebuilt {rebuilt} times over {reads} reads: once per change, not per read"
    );
}

#[tokio::test]
async fn seats_map_etag_answers_304_while_unchanged() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let user = app.user().await;

    let (status, etag, body) = raw_map(&app, event, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "a strong ETag: {etag:?}"
    );
    assert!(body.contains("\"seats\""));

    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let (status, again, body) = raw_map(&app, event, Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "If-None-Match: {tag}");
        assert_eq!(again, etag);
        assert!(body.is_empty(), "a 304 has no body: {body:?}");
    }

    app.hold_ok(&user.token, event, seat).await;
    let (status, fresh, body) = raw_map(&app, event, Some(&etag)).await;
    assert_eq!(status, StatusCode::OK, "a stale ETag gets the new map");
    assert_ne!(fresh, etag);
    let map: Value = serde_json::from_str(&body).unwrap();
    let shown = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == seat.to_string().as_str())
        .unwrap()["status"]
        .clone();
    assert_eq!(shown, "locked");
    let (status, _, _) = raw_map(&app, event, Some(&fresh)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}
