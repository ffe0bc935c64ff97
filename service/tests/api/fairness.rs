//! Fair opening of the waiting room: the crowd that arrives before a sale opens (or within
//! `FAIR_OPENING_WINDOW_SECONDS` after) gets one random order, stored once in Redis, the same on every
//! replica and kept on every re-check; nobody is admitted before the opening; then admission follows
//! that order, and later arrivals queue behind it.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use fred::prelude::SortedSetsInterface;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    common::{TestApp, User, eventually, keys, sorted},
    sio::Clients,
};

async fn check(app: &TestApp, event: Uuid, user: &User) -> Value {
    let (status, body) = app
        .post(
            &format!("/api/queue/check/{event}"),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn status(app: &TestApp, event: Uuid, user: &User) -> Value {
    let (code, body) = app
        .get(&format!("/api/api/queue/status/{event}"), Some(&user.token))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// The admitted users of `event`, straight from Redis (one atomic read).
async fn admitted(app: &TestApp, event: Uuid) -> HashSet<Uuid> {
    let members: Vec<String> = app
        .state
        .redis
        .zrange(
            app.state.keys.active(event),
            0,
            -1,
            None,
            false,
            None,
            false,
        )
        .await
        .unwrap();
    members.iter().map(|m| m.parse().unwrap()).collect()
}

/// The stored queue with its scores (to show nothing rewrites it).
async fn stored_queue(app: &TestApp, event: Uuid) -> Vec<(String, f64)> {
    app.state
        .redis
        .zrange(app.state.keys.queue(event), 0, -1, None, false, None, true)
        .await
        .unwrap()
}

async fn leave(app: &TestApp, event: Uuid, user: &User) {
    let (code, _) = app
        .post(
            &format!("/api/api/queue/leave/{event}"),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
}

/// Waits until exactly `expected` are admitted, checking on every look that the admitted users are
/// a prefix of `order` (the queue order from the current head: nobody further back goes first).
async fn admitted_in_order(app: &TestApp, event: Uuid, order: &[Uuid], expected: &[Uuid]) {
    let want: HashSet<Uuid> = expected.iter().copied().collect();
    let ok = eventually(Duration::from_secs(20), || async {
        let now = admitted(app, event).await;
        let in_order = order.iter().take_while(|u| now.contains(u)).count();
        let outside: Vec<_> = now.iter().filter(|u| !order.contains(u)).collect();
        assert!(
            outside.is_empty() && in_order == now.len(),
            "admitted out of order: {} admitted, only the first {in_order} of the queue order",
            now.len()
        );
        now == want
    })
    .await;
    assert!(ok, "the expected users were never admitted");
}

#[tokio::test]
async fn fairness_opening_crowd_gets_one_random_order_everywhere_admitted_in_it() {
    let a = TestApp::spawn_with(|c| c.fair_opening_window_seconds = 2).await;
    let b = a.replica().await;
    // both replicas run the admission loop; the lease lets one admit at a time
    a.start_jobs();
    b.start_jobs();
    let event = a.insert_event("", "+10 seconds", "+1 day").await;
    let opens: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE events SET queue_threshold = 20 WHERE id = $1 RETURNING sale_start_date",
    )
    .bind(event)
    .fetch_one(&a.db)
    .await
    .unwrap();
    let users = a.users(50).await;

    // 50 arrivals before the opening, alternating replicas: every one queued, none admitted
    for (i, u) in users.iter().enumerate() {
        let body = check(if i % 2 == 0 { &a } else { &b }, event, u).await;
        assert_eq!(
            keys(&body),
            sorted(&[
                "queued",
                "position",
                "estimatedWait",
                "estimatedWaitKnown",
                "estimatedWaitBasis",
                "threshold",
                "currentUsers"
            ])
        );
        assert_eq!(body["queued"], true, "{body}");
        assert_eq!(body["currentUsers"], 0);
        assert_eq!(body["threshold"], 20);
    }
    assert!(
        Utc::now() < opens,
        "the machine was too slow: arrivals ran past the opening"
    );
    let stored = stored_queue(&a, event).await;

    // the order is settled once the crowd is in: a permutation of 1..=50, the same from either
    // replica, by check or status, on every re-check
    let mut positions = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (this, that) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let first = check(that, event, u).await["position"].as_i64().unwrap();
        assert_eq!(check(this, event, u).await["position"], first);
        let until_opening = (opens - Utc::now()).num_seconds();
        let s = status(that, event, u).await;
        assert_eq!(
            (
                s["queued"].clone(),
                s["position"].as_i64(),
                s["queueSize"].clone()
            ),
            (json!(true), Some(first), json!(50))
        );
        assert!(
            s["estimatedWait"].as_i64().unwrap() > until_opening,
            "the wait includes the time until the opening: {s}"
        );
        positions.push(first);
    }
    let mut sorted_positions = positions.clone();
    sorted_positions.sort();
    assert_eq!(sorted_positions, (1..=50).collect::<Vec<_>>());
    assert_ne!(
        positions,
        (1..=50).collect::<Vec<_>>(),
        "the order is the arrival order (chance 1/50!)"
    );
    assert_eq!(
        stored_queue(&a, event).await,
        stored,
        "re-checks rewrote a stored place"
    );
    let mut order: Vec<Uuid> = vec![Uuid::nil(); 50];
    for (u, p) in users.iter().zip(&positions) {
        order[*p as usize - 1] = u.id;
    }
    let by_id = |id: Uuid| users.iter().find(|u| u.id == id).unwrap();

    // the first and the last in line wait in the frontend's waiting-room socket
    let mut c = Clients::start();
    let (first, last) = (by_id(order[0]), by_id(order[49]));
    for (name, u) in [("first", first), ("last", last)] {
        c.connect(
            name,
            &b,
            &u.token,
            json!([["join-queue", { "eventId": event }]]),
        )
        .await;
        c.emit(name, "join-event", json!({ "eventId": event }))
            .await;
        c.expect(name, "room-info", |_| true).await;
    }

    // nobody is admitted before the sale opens, although both loops run
    let opened = eventually(Duration::from_secs(30), || async {
        let now_admitted = admitted(&a, event).await;
        if Utc::now() < opens {
            assert!(now_admitted.is_empty(), "admitted before the opening");
            false
        } else {
            true
        }
    })
    .await;
    assert!(opened);

    // at the opening: the first 20 of the stored order, in order; the first in line is told
    admitted_in_order(&a, event, &order, &order[..20]).await;
    let allowed = c.expect("first", "queue-entry-allowed", |_| true).await;
    assert_eq!(allowed["userId"], json!(first.id));
    assert!(Utc::now() >= opens);
    // the rest moved up by 20, keeping their order
    for (i, id) in order.iter().enumerate().skip(20) {
        assert_eq!(
            status(&b, event, by_id(*id)).await["position"],
            i as i64 - 19
        );
    }

    // after the window, a newcomer queues behind the whole opening crowd
    let window_over = opens + chrono::Duration::seconds(2);
    assert!(
        eventually(Duration::from_secs(10), || async {
            Utc::now() >= window_over
        })
        .await
    );
    let late = a.users(1).await.remove(0);
    let body = check(&b, event, &late).await;
    assert_eq!(
        (body["queued"].clone(), body["position"].clone()),
        (json!(true), json!(31))
    );

    // as places free up, admission keeps following the stored order, the newcomer last
    let mut full: Vec<Uuid> = order.clone();
    full.push(late.id);
    for id in &order[..20] {
        leave(&a, event, by_id(*id)).await;
    }
    admitted_in_order(&a, event, &full[20..], &order[20..40]).await;
    for id in &order[20..40] {
        leave(&b, event, by_id(*id)).await;
    }
    admitted_in_order(&a, event, &full[40..], &full[40..]).await;
    c.expect("last", "queue-entry-allowed", |d| {
        d["userId"] == json!(last.id)
    })
    .await;
    c.expect("last", "queue-updated", |d| d["queueSize"] == 0)
        .await;
}

#[tokio::test]
async fn fairness_waiting_room_opens_its_lead_time_before_the_sale() {
    let app = TestApp::spawn_with(|c| c.fair_opening_lead_seconds = 600).await;
    let event = app.insert_event("", "+1 hour", "+1 day").await;
    let (early, on_time) = (app.user().await, app.user().await);

    // an hour early: neither queued nor admitted, and nothing is stored
    assert_eq!(
        check(&app, event, &early).await,
        json!({ "queued": false, "currentUsers": 0, "threshold": 1000 })
    );
    assert_eq!(
        status(&app, event, &early).await,
        json!({ "queued": false, "position": 0, "queueSize": 0, "estimatedWait": 0,
                "estimatedWaitKnown": true, "estimatedWaitBasis": "none", "currentUsers": 0, "threshold": 1000 })
    );
    assert!(admitted(&app, event).await.is_empty());

    // within the lead time: queued (not admitted, however empty the room), waiting until the opening
    sqlx::query("UPDATE events SET sale_start_date = now() + interval '5 minutes' WHERE id = $1")
        .bind(event)
        .execute(&app.db)
        .await
        .unwrap();
    // what the admin API does after a change (this test edits the row directly)
    let changed = tiketi_service::effects::Effects::none().event(Some(event));
    tiketi_service::effects::apply(&app.state, changed).await;
    let body = check(&app, event, &on_time).await;
    assert_eq!(
        (body["queued"].clone(), body["position"].clone()),
        (json!(true), json!(1))
    );
    let wait = body["estimatedWait"].as_i64().unwrap();
    assert!((290..=302).contains(&wait), "{wait}");
    assert_eq!(body["estimatedWaitBasis"], "opening");
    assert!(admitted(&app, event).await.is_empty());
    // the early user, coming back now, joins the same lottery
    assert_eq!(check(&app, event, &early).await["queued"], true);
    assert_eq!(status(&app, event, &early).await["queueSize"], 2);
}

/// A user's place in the opening lottery is drawn once: if leaving and checking again drew a new
/// random place, one account could re-draw thousands of times before the opening and keep the best.
#[tokio::test]
async fn fairness_leaving_and_coming_back_never_draws_again() {
    let app = TestApp::spawn().await;
    let event = app.insert_event("", "+10 minutes", "+1 day").await;
    let users = app.users(40).await;
    for u in &users {
        check(&app, event, u).await;
    }
    let gambler = &users[0];
    let score_of = |q: Vec<(String, f64)>| {
        q.into_iter()
            .find(|(m, _)| *m == gambler.id.to_string())
            .map(|(_, s)| s)
    };
    let first = score_of(stored_queue(&app, event).await).expect("queued in the lottery");
    let place = check(&app, event, gambler).await["position"].clone();
    for _ in 0..20 {
        leave(&app, event, gambler).await;
        assert_eq!(score_of(stored_queue(&app, event).await), None, "left");
        let body = check(&app, event, gambler).await;
        assert_eq!(body["queued"], true);
        assert_eq!(
            score_of(stored_queue(&app, event).await),
            Some(first),
            "a new draw after leaving"
        );
        assert_eq!(body["position"], place, "the place moved");
    }
}
