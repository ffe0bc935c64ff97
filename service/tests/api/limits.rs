//! Per-user rate limits on the paths bots hammer: holds/bookings/payments and waiting-room checks.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn limits_reservations_per_user_answer_429_and_spare_others() {
    let app = TestApp::spawn_with(|c| c.reserve_rate_limit = 2).await;
    let (event, seats) = app.seat_event().await;
    let (greedy, other) = (app.user().await, app.user().await);
    crate::common::early_in_rate_window().await;
    assert_eq!(
        app.hold(&greedy.token, event, seats[0]).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.hold(&greedy.token, event, seats[1]).await.0,
        StatusCode::CREATED
    );
    let resp = app
        .req(Method::POST, "/api/seats/reserve", Some(&greedy.token))
        .json(&json!({ "eventId": event, "seatIds": [seats[2]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        app.seat_status(seats[2]).await,
        "available",
        "a refused request holds nothing"
    );
    assert_eq!(
        app.hold(&other.token, event, seats[2]).await.0,
        StatusCode::CREATED,
        "other users are unaffected"
    );
}

#[tokio::test]
async fn limits_queue_checks_per_user() {
    let app = TestApp::spawn_with(|c| c.queue_check_rate_limit = 3).await;
    let (event, _) = app.ticket_event(10).await;
    let user = app.user().await;
    let path = format!("/api/queue/check/{event}");
    crate::common::early_in_rate_window().await;
    for _ in 0..3 {
        assert_eq!(
            app.post(&path, Some(&user.token), json!({})).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.post(&path, Some(&user.token), json!({})).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn limits_per_ip_stop_a_script_cycling_through_accounts() {
    let app = TestApp::spawn_with(|c| {
        c.reserve_rate_limit_per_ip = 3;
        c.queue_check_rate_limit_per_ip = 4;
    })
    .await;
    let (event, seats) = app.seat_event().await;
    // one client address (the tests' 127.0.0.1), a fresh account for every request
    let accounts = app.users(6).await;
    crate::common::early_in_rate_window().await;
    for (i, user) in accounts.iter().take(3).enumerate() {
        assert_eq!(
            app.hold(&user.token, event, seats[i]).await.0,
            StatusCode::CREATED
        );
    }
    let resp = app
        .req(Method::POST, "/api/seats/reserve", Some(&accounts[3].token))
        .json(&json!({ "eventId": event, "seatIds": [seats[3]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.seat_status(seats[3]).await, "available");

    let path = format!("/api/queue/check/{event}");
    for user in accounts.iter().take(4) {
        assert_eq!(
            app.post(&path, Some(&user.token), json!({})).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.post(&path, Some(&accounts[4].token), json!({})).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Behind an ingress every request arrives from the proxy's address. With the proxy trusted, the
/// per-IP login limit keys on each browser's forwarded address, so a login storm through one proxy
/// is not one shared budget; a client that is not a trusted proxy cannot choose its own address.
#[tokio::test]
async fn limits_per_ip_use_the_forwarded_client_behind_a_trusted_proxy() {
    let login = |app: &TestApp, forwarded_for: &str, email: String| {
        app.req(Method::POST, "/api/auth/login", None)
            .header("x-forwarded-for", forwarded_for.to_string())
            .json(&json!({ "email": email, "password": "wrong-password" }))
            .send()
    };
    let behind_proxy = TestApp::spawn_with(|c| {
        c.login_rate_limit = 2;
        c.trusted_proxies = tiketi_service::config::TrustedProxies(
            tiketi_service::client_ip::parse_trusted("127.0.0.0/8").unwrap(),
        );
    })
    .await;
    crate::common::early_in_rate_window().await;
    // three browsers, two attempts each, all through the one proxy (127.0.0.1)
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        for attempt in 0..2 {
            let email = format!("nobody-{client}-{attempt}@example.com");
            let resp = login(&behind_proxy, client, email).await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{client} #{attempt}"
            );
        }
    }
    let resp = login(&behind_proxy, "198.51.100.1", "again@example.com".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let (_, body) = crate::common::read(resp).await;
    assert_eq!(body["code"], "RATE_LIMITED");

    // not trusted (the default): the forwarded header is ignored, so rotating it does not help
    let direct = TestApp::spawn_with(|c| c.login_rate_limit = 2).await;
    for (i, forged) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let resp = login(&direct, forged, format!("forged-{i}@example.com"))
            .await
            .unwrap();
        let want = if i < 2 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(resp.status(), want, "forged {forged}");
    }
}
