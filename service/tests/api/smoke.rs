//! The harness itself works: a service answers with demo-free data on its own database.

use reqwest::StatusCode;

use std::time::Duration;

use crate::common::{TestApp, database_url, eventually};

#[tokio::test]
async fn smoke_events_list_is_empty_on_a_fresh_database() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/events", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().unwrap().len(), 0);
    assert_eq!(body["pagination"]["total"], 0);
}

/// The Socket.IO handle's handlers hold the service state, and the state reaches the handle: were
/// that link strong, the cycle would keep a stopped service's pools, and their PostgreSQL backends,
/// alive after its runtime is gone (the suite would run out of connections).
#[test]
fn smoke_a_stopped_service_leaves_no_database_connection_behind() {
    let runtime = || tokio::runtime::Runtime::new().expect("runtime");
    let name = runtime().block_on(async {
        let app = TestApp::spawn().await;
        let (status, _) = app.get("/api/events", None).await;
        assert_eq!(status, StatusCode::OK);
        let url = &app.config.database_url;
        url.rsplit('/').next().expect("database name").to_string()
    });
    let closed = runtime().block_on(async {
        let admin = sqlx::PgPool::connect(&database_url())
            .await
            .expect("connect");
        eventually(Duration::from_secs(10), || async {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&name)
                    .fetch_one(&admin)
                    .await
                    .expect("count backends");
            open == 0
        })
        .await
    });
    assert!(closed, "the stopped service's connections stay open");
}
