//! Per-user caps per event: seats held or owned (`MAX_SEATS_PER_USER_PER_EVENT`) and ticket units
//! booked (`MAX_TICKETS_PER_USER_PER_EVENT`), race-free, freed by cancel and expiry.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestApp, refusal};

const SEAT_CAP_MSG: &str = "이 공연은 1인당 최대 4석까지 예매할 수 있습니다.";
const TICKET_CAP_MSG: &str = "이 공연은 1인당 최대 8매까지 예매할 수 있습니다.";

/// A service with the default caps (the test configuration turns them off).
async fn capped() -> TestApp {
    TestApp::spawn_with(|c| {
        c.max_seats_per_user_per_event = 4;
        c.max_tickets_per_user_per_event = 8;
    })
    .await
}

/// Live seat holds and confirmed seats of `user` in `event`, as stored.
async fn seats_of(app: &TestApp, user: Uuid, event: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
         WHERE r.user_id = $1 AND r.event_id = $2 AND ri.seat_id IS NOT NULL AND r.status IN ('pending', 'confirmed')",
    )
    .bind(user)
    .bind(event)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn caps_seats_per_user_count_live_and_paid_seats_and_free_on_cancel_and_expiry() {
    let app = capped().await;
    let (event, seats) = app.seat_event().await;
    let (other_event, other_seats) = app.seat_event().await;
    let (user, other) = (app.user().await, app.user().await);

    let mut held = Vec::new();
    for seat in &seats[..4] {
        held.push(app.hold_ok(&user.token, event, *seat).await);
    }
    // one of them paid: confirmed seats count too
    let (status, body) = app
        .post(
            "/api/payments/process",
            Some(&user.token),
            json!({ "reservationId": held[0], "paymentMethod": "kakao_pay" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.reservation_state(held[0]).await.0, "confirmed");

    let refused = (
        StatusCode::BAD_REQUEST,
        refusal("PER_USER_LIMIT", SEAT_CAP_MSG),
    );
    assert_eq!(app.hold(&user.token, event, seats[4]).await, refused);
    assert_eq!(
        app.seat_status(seats[4]).await,
        "available",
        "a refused hold locks nothing"
    );
    // the per-request rule still answers first
    assert_eq!(
        app.post(
            "/api/seats/reserve",
            Some(&user.token),
            json!({ "eventId": event, "seatIds": [seats[4], seats[5]] }),
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            json!({ "error": "최대 1석까지 선택 가능합니다.", "code": "INVALID_INPUT" })
        )
    );
    // other users, and the same user in another event, are unaffected
    app.hold_ok(&other.token, event, seats[4]).await;
    app.hold_ok(&user.token, other_event, other_seats[0]).await;

    // a cancelled hold frees its place
    assert_eq!(app.cancel(&user.token, held[1]).await.0, StatusCode::OK);
    app.hold_ok(&user.token, event, seats[5]).await;
    assert_eq!(app.hold(&user.token, event, seats[6]).await, refused);

    // so does an expired one, even before the sweep has marked it
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(held[2])
        .execute(&app.db)
        .await
        .unwrap();
    app.hold_ok(&user.token, event, seats[6]).await;
    assert_eq!(app.hold(&user.token, event, seats[7]).await, refused);
    // a cancelled paid seat is refunded and frees its place as well
    assert_eq!(app.cancel(&user.token, held[0]).await.0, StatusCode::OK);
    app.hold_ok(&user.token, event, seats[7]).await;
}

#[tokio::test]
async fn caps_concurrent_holds_of_one_user_stop_exactly_at_the_cap() {
    let app = capped().await;
    let (event, seats) = app.seat_event().await;
    let (user, other) = (app.user().await, app.user().await);

    let results = join_all(
        seats[..20]
            .iter()
            .map(|seat| app.hold(&user.token, event, *seat)),
    )
    .await;
    let won = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(won, 4, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(
            (*status, body.clone()),
            (
                StatusCode::BAD_REQUEST,
                refusal("PER_USER_LIMIT", SEAT_CAP_MSG)
            )
        );
    }
    assert_eq!(seats_of(&app, user.id, event).await, 4);
    let locked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'locked'")
            .bind(event)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(locked, 4, "the refused requests locked nothing");

    // another user racing alongside the same user's next attempts gets their own four
    let mixed = join_all(seats[20..30].iter().enumerate().map(|(i, seat)| {
        let token = if i % 2 == 0 {
            &other.token
        } else {
            &user.token
        };
        app.hold(token, event, *seat)
    }))
    .await;
    let won: Vec<usize> = mixed
        .iter()
        .enumerate()
        .filter(|(_, (s, _))| *s == StatusCode::CREATED)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 4, "{mixed:?}");
    assert!(won.iter().all(|i| i % 2 == 0), "only the other user won");
    assert_eq!(seats_of(&app, other.id, event).await, 4);
    assert_eq!(seats_of(&app, user.id, event).await, 4);
}

#[tokio::test]
async fn caps_tickets_per_user_sum_quantities_and_hold_under_concurrency() {
    let app = capped().await;
    let (event, tt) = app.ticket_event(100).await;
    let users = app.users(4).await;
    let item = |q: i64| json!([{ "ticketTypeId": tt, "quantity": q }]);
    let refused = (
        StatusCode::BAD_REQUEST,
        refusal("PER_USER_LIMIT", TICKET_CAP_MSG),
    );
    let stock = || async {
        sqlx::query_scalar::<_, i32>("SELECT available_quantity FROM ticket_types WHERE id = $1")
            .bind(tt)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };

    let (status, first) = app.book_items(&users[0].token, event, item(5)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        app.book_items(&users[0].token, event, item(4)).await,
        refused
    );
    assert_eq!(stock().await, 95, "a refused booking takes no stock");
    assert_eq!(
        app.book_items(&users[0].token, event, item(3)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.book_items(&users[0].token, event, item(1)).await,
        refused
    );
    // cancelling frees the quota
    let first: Uuid = first["reservation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(app.cancel(&users[0].token, first).await.0, StatusCode::OK);
    assert_eq!(
        app.book_items(&users[0].token, event, item(5)).await.0,
        StatusCode::CREATED
    );

    // one request over the cap, also split over items of the request
    assert_eq!(
        app.book_items(&users[1].token, event, item(9)).await,
        refused
    );
    let split =
        json!([{ "ticketTypeId": tt, "quantity": 5 }, { "ticketTypeId": tt, "quantity": 4 }]);
    assert_eq!(app.book_items(&users[1].token, event, split).await, refused);
    assert_eq!(
        app.book_items(&users[1].token, event, item(8)).await.0,
        StatusCode::CREATED
    );

    // ten concurrent single-ticket bookings of one user: exactly eight pass
    let before = stock().await;
    let results = join_all((0..10).map(|_| app.book_items(&users[2].token, event, item(1)))).await;
    let won = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(won, 8, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.0 == StatusCode::CREATED || *r == refused)
    );
    assert_eq!(stock().await, before - 8);
    // someone else still books
    assert_eq!(
        app.book_items(&users[3].token, event, item(2)).await.0,
        StatusCode::CREATED
    );
}
