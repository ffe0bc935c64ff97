//! Back-pressure under overload: bounded password hashing and statement timeouts answer 503 with
//! `Retry-After` and a stable code instead of exhausting memory or the DB pool.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header};
use serde_json::json;
use sqlx::Connection;

use crate::common::{TestApp, refusal};

/// Sends `path` with `body` and returns (status, Retry-After, body, elapsed).
async fn timed_post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (StatusCode, Option<String>, serde_json::Value, Duration) {
    let started = Instant::now();
    let resp = app
        .req(Method::POST, path, token)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered within 10 s");
    let status = resp.status();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.json().await.unwrap_or_default();
    (status, retry, body, started.elapsed())
}

#[tokio::test]
async fn overload_password_hashing_beyond_its_slots_is_503_server_busy() {
    let app = TestApp::spawn_with(|c| {
        c.password_hash_concurrency = 1;
        c.password_hash_wait_ms = 200;
    })
    .await;
    let user = app.user().await;
    let refused_before = app.state.metrics.password_hash_refused.get();

    // every slot busy (as under a burst of logins): further hashes wait 200 ms, then 503
    let held = app.state.hasher.slot().await.expect("the only slot");
    let login = json!({ "email": user.email, "password": "secret123" });
    let (status, retry, body, elapsed) =
        timed_post(&app, "/api/auth/login", None, login.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        refusal("SERVER_BUSY", tiketi_service::error::MSG_DB_BUSY)
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    let register =
        json!({ "email": "new@example.com", "password": "secret123", "name": "새 사용자" });
    let (status, _, body, _) = timed_post(&app, "/api/auth/register", None, register.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "SERVER_BUSY");
    assert!(app.state.metrics.password_hash_refused.get() >= refused_before + 2);
    let metrics = app.get("/metrics", None).await.1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("tiketi_password_hash_refused_total"),
        "counter not exposed"
    );

    drop(held);
    let (status, _, body, _) = timed_post(&app, "/api/auth/login", None, login).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body, _) = timed_post(&app, "/api/auth/register", None, register).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn overload_statement_stuck_on_a_row_lock_is_503_db_timeout_and_frees_its_connection() {
    let app = TestApp::spawn_with(|c| {
        c.db_pool_max = 1;
        c.db_statement_timeout_ms = 300;
    })
    .await;
    let (event, _) = app.seat_event().await;
    let seat = app.seat_id(event, "VIP-1-1").await;
    let user = app.user().await;
    let timeouts_before = app.state.metrics.db_statement_timeouts.get();
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(shown, "300ms");

    // another client holds the seat's row lock in an open transaction (outside the service's pool)
    let mut other = sqlx::PgConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    let mut tx = sqlx::Connection::begin(&mut other).await.unwrap();
    sqlx::query("SELECT id FROM seats WHERE id = $1 FOR UPDATE")
        .bind(seat)
        .execute(&mut *tx)
        .await
        .unwrap();

    let hold = json!({ "eventId": event, "seatIds": [seat] });
    let (status, retry, body, elapsed) =
        timed_post(&app, "/api/seats/reserve", Some(&user.token), hold.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        refusal("DB_TIMEOUT", tiketi_service::error::MSG_DB_BUSY)
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    assert!(app.state.metrics.db_statement_timeouts.get() > timeouts_before);

    // the pool's only connection came back: other requests work while the lock is still held
    let (status, body) = app.get(&format!("/api/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tx.rollback().await.unwrap();
    let (status, _, body, _) =
        timed_post(&app, "/api/seats/reserve", Some(&user.token), hold).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.seat_status(seat).await, "locked");
}

#[tokio::test]
async fn overload_attempts_refused_as_server_busy_do_not_count_toward_the_rate_limit() {
    // two attempts a minute per client address (and per account): the "busy" refusals below are
    // more than that, and a person retrying after them as told must still get through
    let app = TestApp::spawn_with(|c| {
        c.password_hash_concurrency = 1;
        c.password_hash_wait_ms = 20;
        c.login_rate_limit = 2;
    })
    .await;
    crate::common::early_in_rate_window().await;
    let user = app.user().await;
    let held = app.state.hasher.slot().await.expect("the only slot");
    let register =
        json!({ "email": "busy@example.com", "password": "secret123", "name": "재시도" });
    let login = json!({ "email": user.email, "password": "secret123" });
    for _ in 0..3 {
        for (path, body) in [
            ("/api/auth/register", &register),
            ("/api/auth/login", &login),
        ] {
            let (status, _, body, _) = timed_post(&app, path, None, body.clone()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        }
    }
    drop(held);
    let (status, _, body, _) = timed_post(&app, "/api/auth/register", None, register).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body, _) = timed_post(&app, "/api/auth/login", None, login.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // the limit itself still holds: the third counted login in the minute is refused
    timed_post(&app, "/api/auth/login", None, login.clone()).await;
    let (status, _, body, _) = timed_post(&app, "/api/auth/login", None, login).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}
