//! The PostgreSQL pool hands out hot connections without a ping, and pings one that sat idle.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::TestApp;

#[tokio::test]
async fn pool_a_connection_killed_while_idle_is_replaced_before_use() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let (status, _) = app.get("/api/reservations/my", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);

    // a database restart or failover, as the pool sees it: every server-side session ends
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the service held no connection");
    // the ping is keyed on idle time, so the idle time must pass (stores::PING_IDLE_AFTER, 1 s)
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let (status, body) = app.get("/api/reservations/my", Some(&user.token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the dead connection was handed out: {body}"
    );
}
