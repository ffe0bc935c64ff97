//! Readiness means "this replica can serve": the chart's readiness probe keeps answering 200 while the
//! shared PostgreSQL is saturated or Redis is down (docs/design.md §3), and the health endpoints report it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::{common::TestApp, redis_server::RedisServer};

/// The path of `service.readinessProbe` in the chart's values.yaml (what Kubernetes will probe).
fn chart_readiness_path() -> String {
    let values = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/tiketi/values.yaml"
    ))
    .expect("chart values");
    let probe = values
        .split_once("\n  readinessProbe:")
        .expect("service.readinessProbe in values.yaml")
        .1;
    let path = probe.split_once("path:").expect("an httpGet path").1;
    path.trim_start()
        .split([',', '}', '\n'])
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_survives_a_redis_outage_and_a_saturated_pool() {
    let redis = RedisServer::start(&[]).await;
    let app = TestApp::spawn_with(|c| {
        c.redis_url = redis.url();
        c.db_pool_max = 1;
        c.db_acquire_timeout_ms = 200;
    })
    .await;
    let ready = chart_readiness_path();
    let (status, body) = app.get(&ready, None).await;
    assert_eq!(status, StatusCode::OK, "{ready}: {body}");

    redis.stop();
    app.wait_until_redis_reported_down().await;
    let (status, body) = app.get("/health/all", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"]["status"], "error");

    // PostgreSQL saturated too: the only connection is busy
    let held = app.state.db.acquire().await.expect("the only connection");
    let started = Instant::now();
    let (status, body) = app.get(&ready, None).await;
    assert_eq!(status, StatusCode::OK, "{ready} with Redis down: {body}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "readiness waited on a dependency ({:?})",
        started.elapsed()
    );
    assert_eq!(body["dependencies"]["redis"], "error", "{body}");
    let (status, _) = app.get("/health/db", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = app.get(&ready, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["dependencies"]["database"], "error", "{body}");
    drop(held);
    // (`tiketi_dependency_up` is process-wide: the other test apps' checkers in this process set it
    // too, so its value is checked by a unit test in health/deps.rs, not here)
}
