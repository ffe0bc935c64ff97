//! Failure modes: holds running out (alone and while being paid), an exhausted database pool and a
//! Redis outage.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header};
use serde_json::json;
use tiketi_service::jobs::hold_expiry::sweep;
use uuid::Uuid;

use crate::{
    common::{TestApp, eventually, refusal},
    redis_server::RedisServer,
};

/// Runs sweeps until the reservation is expired (or the time is up).
async fn swept_until_expired(app: &TestApp, id: Uuid) -> bool {
    eventually(Duration::from_secs(15), || async {
        sweep(&app.state).await.expect("sweep runs");
        app.reservation_state(id).await.0 == "expired"
    })
    .await
}

#[tokio::test]
async fn faults_unpaid_hold_expires_and_the_seat_returns_to_sale() {
    let app = TestApp::spawn_with(|c| c.hold_seconds = 1).await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let (first, second) = (app.user().await, app.user().await);
    let id = app.hold_ok(&first.token, event, seat).await;
    assert_eq!(app.seat_status(seat).await, "locked");

    assert!(
        swept_until_expired(&app, id).await,
        "the hold never expired"
    );
    assert_eq!(
        app.reservation_state(id).await,
        ("expired".into(), "failed".into())
    );
    assert_eq!(app.seat_status(seat).await, "available");
    let (status, map) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let shown = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == seat.to_string().as_str())
        .unwrap()["status"]
        .clone();
    assert_eq!(shown, "available");
    let (status, body) = app
        .get(&format!("/api/seats/reservation/{id}"), Some(&first.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    // the frontend knows no `expired`: a lapsed hold reads 취소됨 with its reason beside
    assert_eq!(body["reservation"]["status"], "cancelled");
    assert_eq!(body["reservation"]["status_reason"], "expired");
    assert_eq!(body["reservation"]["payment_status"], "failed");
    assert_eq!(body["reservation"]["isExpired"], true);

    // another user can hold it now; a further sweep leaves the new hold alone
    let second_hold = app.hold_ok(&second.token, event, seat).await;
    assert_eq!(sweep(&app.state).await.unwrap(), 0);
    assert_eq!(
        app.reservation_state(second_hold).await,
        ("pending".into(), "pending".into())
    );
    assert_eq!(app.seat_status(seat).await, "locked");
    assert_eq!(
        app.reservation_state(id).await,
        ("expired".into(), "failed".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_hold_paid_while_expiring_ends_paid_or_expired_never_both() {
    // the provider call takes about as long as the hold lasts, and sweeps run all along
    let app = TestApp::spawn_with(|c| {
        c.hold_seconds = 1;
        c.payment_delay_min_ms = 800;
        c.payment_delay_max_ms = 1200;
    })
    .await;
    let (event, seats) = app.seat_event().await;
    let users = app.users(4).await;
    let mut holds = Vec::new();
    for (user, seat) in users.iter().zip(&seats) {
        holds.push((user, *seat, app.hold_ok(&user.token, event, *seat).await));
    }
    let payments = futures::future::join_all(holds.iter().map(|(user, _, id)| {
        app.post(
            "/api/payments/process",
            Some(&user.token),
            json!({ "reservationId": id, "paymentMethod": "kakao_pay" }),
        )
    }));
    let sweeps = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            sweep(&app.state).await.expect("sweep runs");
        }
    };
    let results = tokio::select! {
        r = payments => r,
        _ = sweeps => unreachable!(),
    };
    // whatever is still pending is past its time: let the sweep finish it
    for (_, _, id) in &holds {
        let done = eventually(Duration::from_secs(15), || async {
            sweep(&app.state).await.expect("sweep runs");
            app.reservation_state(*id).await.0 != "pending"
        })
        .await;
        assert!(done, "reservation {id} stayed pending");
    }

    for ((_, seat, id), (status, body)) in holds.iter().zip(&results) {
        let state = app.reservation_state(*id).await;
        let seat_status = app.seat_status(*seat).await;
        match *status {
            StatusCode::OK => {
                assert_eq!(body["success"], true);
                assert_eq!(state, ("confirmed".into(), "completed".into()));
                assert_eq!(seat_status, "reserved");
            }
            StatusCode::BAD_REQUEST => {
                assert_eq!(*body, refusal("HOLD_EXPIRED", "예약이 만료되었습니다."));
                assert_eq!(state, ("expired".into(), "failed".into()));
                assert_eq!(seat_status, "available");
            }
            other => panic!("unexpected payment answer {other}: {body}"),
        }
    }
}

#[tokio::test]
async fn faults_db_pool_exhaustion_answers_503_then_recovers() {
    let app = TestApp::spawn_with(|c| {
        c.db_pool_max = 1;
        c.db_acquire_timeout_ms = 200;
    })
    .await;
    let event = app.insert_event("", "-1 hour", "+1 day").await;
    let path = format!("/api/events/{event}");

    let held = app.state.db.acquire().await.expect("the only connection");
    let started = Instant::now();
    let resp = app.req(Method::GET, &path, None).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, refusal("DB_BUSY", tiketi_service::error::MSG_DB_BUSY));
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}, not after the 200 ms acquire timeout"
    );
    // an authenticated route cannot even check its caller
    let user = app
        .state
        .jwt
        .issue(Uuid::new_v4(), "x@example.com", "user")
        .unwrap();
    let (status, body) = app
        .post(
            "/api/reservations",
            Some(&user),
            json!({ "eventId": event, "items": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["success"], false);
    let (status, body) = app.get("/health/db", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "error");
    assert_eq!(body["service"], "database");

    drop(held);
    let (status, body) = app.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["id"], event.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_redis_outage_degrades_and_recovers() {
    let redis = RedisServer::start(&[]).await;
    let port = redis.port;
    let app = TestApp::spawn_with(|c| c.redis_url = redis.url()).await;
    let event = app.insert_event("", "-1 hour", "+1 day").await;
    // a buyer admitted through this replica before the outage (at the open gate)
    let (sale, seats) = app.seat_event().await;
    let buyer = app.user().await;
    let (status, body) = app
        .post(
            &format!("/api/queue/check/{sale}"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &body["queued"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    let (status, _) = app.get("/health/redis", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/api/events", None).await;
    assert_eq!(status, StatusCode::OK);

    redis.stop();
    app.wait_until_redis_reported_down().await;

    // reads bypass the cache
    let (status, body) = app.get("/api/events", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["events"].as_array().expect("events");
    assert!(
        listed.iter().any(|e| e["id"] == event.to_string().as_str()),
        "{body}"
    );
    let (status, body) = app.get(&format!("/api/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["id"], event.to_string());
    // the login rate limiter fails open
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "admin@tiketi.gg", "password": "admin123" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].is_string());

    // holds go through PostgreSQL for a buyer this replica saw admitted, and their optional Redis
    // steps (the rate limit, the cache invalidation, the publish) are skipped together instead of
    // each waiting out its timeout; the gate check has its own breaker and never skips the queue
    let skipped = || app.state.metrics.redis_steps_skipped.get();
    let _ = app.hold(&buyer.token, sale, seats[0]).await; // may be the probe that re-opens it
    let before = skipped();
    let (status, body) = app.hold(&buyer.token, sale, seats[1]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.seat_status(seats[1]).await, "locked");
    // three optional steps (the per-IP limit is off in tests); one of them may be the probe
    assert!(
        skipped() >= before + 2,
        "the hold's redis steps were not skipped: {} -> {}",
        before,
        skipped()
    );
    assert!(app.state.redis_breaker.is_open());
    // anyone the replica cannot prove admitted waits for Redis (the gate fails closed)
    let stranger = app.users(1).await.remove(0);
    let (status, body) = app.hold(&stranger.token, sale, seats[2]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "QUEUE_UNAVAILABLE");
    assert_eq!(app.seat_status(seats[2]).await, "available");
    // the waiting room, which needs Redis, says so at once
    let (status, body) = app
        .post(
            &format!("/api/queue/check/{sale}"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "REDIS_UNAVAILABLE");

    let _redis = RedisServer::start_on(port, &[]).await;
    let up = eventually(Duration::from_secs(20), || async {
        app.get("/health/redis", None).await.0 == StatusCode::OK
    })
    .await;
    assert!(up, "/health/redis never recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_redis_restart_fans_out_again_between_replicas() {
    let redis = RedisServer::start(&[]).await;
    let port = redis.port;
    let a = TestApp::spawn_with(|c| c.redis_url = redis.url()).await;
    let b = a.replica().await;
    let (event, seats) = a.seat_event().await;
    let (viewer, buyer) = (a.user().await, a.user().await);
    let mut c = crate::sio::Clients::start();
    let joins = json!([["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]]);
    c.connect("viewer", &b, &viewer.token, joins).await;
    c.expect("viewer", "room-info", |_| true).await;
    // the buyer is admitted through replica A before the outage, so A may let them buy while its
    // Redis link comes back (an unproven buyer would get 503 QUEUE_UNAVAILABLE meanwhile)
    let (status, body) = a
        .post(
            &format!("/api/queue/check/{event}"),
            Some(&buyer.token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &body["queued"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );

    redis.stop();
    // an endpoint that needs Redis says so clearly, with a retry hint
    let resp = a
        .req(
            reqwest::Method::POST,
            &format!("/api/queue/check/{event}"),
            Some(&buyer.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false);

    let _redis = RedisServer::start_on(port, &[]).await;
    // holds through replica A reach the client on replica B again once both have reconnected
    let mut delivered = false;
    for seat in seats.iter().take(40) {
        let (status, _) = a
            .post(
                "/api/seats/reserve",
                Some(&buyer.token),
                json!({ "eventId": event, "seatIds": [seat] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        if c.within(
            "viewer",
            "seat-locked",
            |d| d["seatId"] == json!(seat),
            Duration::from_millis(500),
        )
        .await
        .is_some()
        {
            delivered = true;
            break;
        }
    }
    assert!(
        delivered,
        "no seat-locked crossed replicas within 20 s of the Redis restart"
    );
}

/// The waiting room during the opening lottery, with Redis gone: nobody the replica cannot prove
/// admitted buys (503 `QUEUE_UNAVAILABLE`, nothing held); the lottery's winner, seen admitted by
/// this replica before the outage, still buys; pages are still served. (A gate skipped whenever
/// Redis fails would let anyone buy ahead of the queue.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_redis_outage_during_the_lottery_keeps_the_gate_closed() {
    let redis = RedisServer::start(&[]).await;
    let app = TestApp::spawn_with(|c| c.redis_url = redis.url()).await;
    // opened 5 s ago: the 60 s lottery window runs
    let (event, seats) = app.seat_event_opening("-5 seconds").await;
    let ticket_type = app.add_ticket_type(event, 10).await;
    let [winner, waiting, bot]: [crate::common::User; 3] = app.users(3).await.try_into().unwrap();
    app.admit(event, winner.id).await;
    for (user, queued) in [(&winner, false), (&waiting, true)] {
        let (status, body) = app
            .post(
                &format!("/api/queue/check/{event}"),
                Some(&user.token),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, &body["queued"]),
            (StatusCode::OK, &json!(queued)),
            "{body}"
        );
    }

    redis.stop();
    for user in [&waiting, &bot] {
        let resp = app
            .req(Method::POST, "/api/seats/reserve", Some(&user.token))
            .json(&json!({ "eventId": event, "seatIds": [seats[0]] }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            refusal(
                "QUEUE_UNAVAILABLE",
                tiketi_service::queue::MSG_QUEUE_UNAVAILABLE
            )
        );
        let (status, body) = app.book(&user.token, event, ticket_type, 1).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "QUEUE_UNAVAILABLE");
    }
    assert_eq!(app.seat_status(seats[0]).await, "available");
    assert_eq!(app.reservations_of(event).await, 0, "nothing written");

    assert_eq!(
        app.hold(&winner.token, event, seats[0]).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.book(&winner.token, event, ticket_type, 1).await.0,
        StatusCode::CREATED
    );
    let (status, body) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get(&format!("/api/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A timeout of an optional Redis step (cache, rate limit) opens the shared breaker. The gate check
/// has its own: were it run through the shared one, every hold on the replica would skip the queue
/// while it is open.
#[tokio::test]
async fn faults_open_shared_breaker_never_skips_the_queue() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event_opening("-5 seconds").await;
    let [winner, bot]: [crate::common::User; 2] = app.users(2).await.try_into().unwrap();
    app.admit(event, winner.id).await;

    app.state.redis_breaker.failure();
    assert!(app.state.redis_breaker.is_open());
    let (status, body) = app.hold(&bot.token, event, seats[0]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "QUEUE_NOT_ADMITTED");
    assert_eq!(app.seat_status(seats[0]).await, "available");
    assert_eq!(
        app.hold(&winner.token, event, seats[0]).await.0,
        StatusCode::CREATED
    );
}
