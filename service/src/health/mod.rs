//! `/health*` (contract shapes), `/health/ready` (readiness of this replica) and `/metrics`.

mod db;
pub mod deps;

use std::time::{Duration, Instant};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use fred::prelude::ClientLike;
use serde_json::{Value, json};
use tiketi_core::time::to_wire;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/db", get(db))
        .route("/health/redis", get(redis))
        .route("/health/all", get(all))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Period of the background dependency checks (they keep `tiketi_dependency_up` current).
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Checks PostgreSQL and Redis every few seconds for the metrics and `/health/ready`'s report. Runs
/// beside the server (see `Service::serve`), so it stops with it.
pub async fn watch(state: AppState) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let _ = tokio::join!(check_db(&state), check_redis(&state));
    }
}

/// 200 while this replica can serve (even with PostgreSQL or Redis down: see `deps`), 503 draining.
async fn ready(State(state): State<AppState>) -> Response {
    let status = if state.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(state.health.report())).into_response()
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "timestamp": to_wire(&chrono::Utc::now()),
        "uptime": state.started.elapsed().as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
        "environment": if state.config.dev { "development" } else { "production" },
    }))
}

/// Runs a probe with a deadline; `Ok(ms)` or the failure text.
async fn probe<F, E>(f: F) -> Result<u128, String>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let t = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(())) => Ok(t.elapsed().as_millis()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn check_db(state: &AppState) -> Result<u128, String> {
    let r = probe(db::ping(&state.db)).await;
    state.health.saw_db(r.is_ok());
    r
}

async fn check_redis(state: &AppState) -> Result<u128, String> {
    let r = probe(async { state.redis.ping::<String>(None).await.map(|_| ()) }).await;
    state.health.saw_redis(r.is_ok());
    r
}

fn single(service: &str, r: Result<u128, String>) -> Response {
    match r {
        Ok(ms) => {
            Json(json!({ "status": "ok", "service": service, "responseTime": format!("{ms}ms") }))
                .into_response()
        }
        Err(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "error", "service": service, "message": message })),
        )
            .into_response(),
    }
}

async fn db(State(state): State<AppState>) -> Response {
    single("database", check_db(&state).await)
}

async fn redis(State(state): State<AppState>) -> Response {
    single("redis", check_redis(&state).await)
}

/// Resident memory of this process in MB (Linux), for the `server.memory` block.
fn memory_mb() -> (u64, u64) {
    let kb = |key: &str| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    (kb("VmRSS:") / 1024, kb("VmPeak:") / 1024)
}

async fn all(State(state): State<AppState>) -> Response {
    let (db, redis) = tokio::join!(check_db(&state), check_redis(&state));
    let healthy = db.is_ok() && redis.is_ok();
    let check = |r: Result<u128, String>| match r {
        Ok(ms) => json!({ "status": "ok", "responseTime": format!("{ms}ms") }),
        Err(message) => json!({ "status": "error", "message": message }),
    };
    let (used, total) = memory_mb();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "checks": {
            "server": { "status": "ok", "uptime": state.started.elapsed().as_secs_f64(),
                        "memory": { "used": used, "total": total, "unit": "MB" } },
            "database": check(db),
            "redis": check(redis),
        },
        "timestamp": to_wire(&chrono::Utc::now()),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    // The registry is the process's: a refresh clears the per-event gauges and refills them, so two
    // scrapes must not interleave, or one renders the other's half-refilled families (several
    // services in one process, as in the API tests, have different events).
    static SCRAPE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _scrape = SCRAPE.lock().await;
    crate::queue::gauges::refresh(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.db),
    )
        .into_response()
}
