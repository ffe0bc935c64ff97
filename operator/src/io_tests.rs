//! Reconcile and signal tests against real PostgreSQL and Redis (`make test` starts them and
//! exports DATABASE_URL and REDIS_URL), and against a PostgreSQL that is down.

use std::time::Duration;

use chrono::Duration as Minutes;
use fred::prelude::{Builder, ClientLike, Config, KeysInterface, SortedSetsInterface};
use serde_json::json;
use tiketi_core::{keys::Keys, rules::CapacityRecord};
use uuid::Uuid;

use crate::fixtures::*;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with make test"))
}

async fn redis() -> fred::clients::Pool {
    let pool = Builder::from_config(Config::from_url(&env("REDIS_URL")).unwrap())
        .build_pool(1)
        .unwrap();
    pool.connect_pool();
    pool.wait_for_connect().await.unwrap();
    pool
}

/// A fresh database with the migrations applied (dropped by the next `make test`).
async fn database() -> sqlx::PgPool {
    let admin = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let name = format!("tiketi_test_op_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = url_without_db(&env("DATABASE_URL"));
    url.push_str(&name);
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate!("../migrations").run(&db).await.unwrap();
    db
}

fn url_without_db(url: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/")
}

/// A pool to a port nothing listens on: every query fails fast.
fn dead_database() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://nobody:x@127.0.0.1:9/none")
        .unwrap()
}

/// 11b at the API: with PostgreSQL down before the opening, the pass still pre-scales from
/// fallbackExpectedUsers and writes its status (the old pass aborted on the history read).
#[tokio::test]
async fn reconcile_prescales_through_a_postgres_outage() {
    let te = ticket_event("outage", Minutes::minutes(10));
    let (result, calls) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 5),
            Expect::status(
                &te,
                json!({ "phase": "PreScaling", "forecast": { "expectedUsers": 7500,
                        "method": "fallback (sale history unavailable)" } }),
            ),
            Expect::event("Scaled"),
            Expect::event("Phase"),
        ],
        Some(dead_database()),
        None,
        Keys::default(),
    )
    .await;
    result.unwrap();
    let st = &calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .unwrap()
        .body["status"];
    let fallback = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ForecastFallback")
        .unwrap();
    assert_eq!(fallback["reason"], "HistoryUnavailable");
}

/// 11b after the opening: the actual-peak read fails, the queue step and its cooldown still land.
#[tokio::test]
async fn reconcile_on_sale_survives_postgres_down_after_the_scale() {
    let r = redis().await;
    let keys = Keys::new(format!("optest:{}", Uuid::new_v4().simple()));
    let mut te = with_status(ticket_event("onsale-pg", Minutes::minutes(-5)), "OnSale", 5);
    te.status.as_mut().unwrap().forecast = Some(tiketi_crds::Forecast {
        expected_users: 7500,
        replicas: 5,
        method: "fallback".into(),
        basis: vec![],
    });
    let event: Uuid = te.spec.event_id.parse().unwrap();
    let members: Vec<(f64, String)> = (0..6001).map(|i| (i as f64, format!("u{i}"))).collect();
    let _: i64 = r
        .zadd(keys.queue(event), None, None, false, false, members)
        .await
        .unwrap();
    let (result, _) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(5, 5),
            Expect::scale(5, 7),
            Expect::status(
                &te,
                json!({ "phase": "OnSale", "desiredReplicas": 7, "queueDepth": 6001 }),
            ),
            Expect::event("Scaled"),
        ],
        Some(dead_database()),
        Some(r.clone()),
        keys.clone(),
    )
    .await;
    result.unwrap();
    let _: i64 = r.del(keys.queue(event)).await.unwrap();
}

/// The on-sale path with a real Redis: the queue depth is read (ZCARD), the step scales, and this
/// event's capacity is published under its own key with its publication time.
#[tokio::test]
async fn reconcile_on_sale_reads_the_queue_and_publishes_this_event_s_capacity() {
    let r = redis().await;
    let keys = Keys::new(format!("optest:{}", Uuid::new_v4().simple()));
    let te = with_status(ticket_event("onsale", Minutes::minutes(-5)), "OnSale", 5);
    let event: Uuid = te.spec.event_id.parse().unwrap();
    let members: Vec<(f64, String)> = (0..20_001).map(|i| (i as f64, format!("u{i}"))).collect();
    let _: i64 = r
        .zadd(keys.queue(event), None, None, false, false, members)
        .await
        .unwrap();
    let other = with_status(ticket_event("other", Minutes::minutes(-5)), "OnSale", 10);
    let before = chrono::Utc::now().timestamp_millis();
    let (result, _) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te).ticket(&other),
        vec![
            Expect::get_te(&te),
            // the sibling already has the target at 10: no scale, only status
            Expect::get_deployment(10, 10),
            Expect::status(
                &te,
                json!({ "desiredReplicas": 10, "queueDepth": 20_001, "targetReplicas": 10, "capacityUsers": 7500 }),
            ),
        ],
        None,
        Some(r.clone()),
        keys.clone(),
    )
    .await;
    result.unwrap();
    let raw: String = r.get(keys.capacity(event)).await.unwrap();
    let published: CapacityRecord = serde_json::from_str(&raw).unwrap();
    // +5 above 20000 -> 10; the sibling wants 10 too: half of 10 ready replicas x 1500
    assert_eq!(published.users, 7500);
    assert!(published.at_ms >= before);
    let _: i64 = r
        .del(vec![keys.queue(event), keys.capacity(event)])
        .await
        .unwrap();
}

/// 11d: the forecast learns demand (users on the page plus those waiting), not the capped admissions.
#[tokio::test]
async fn signals_history_is_the_demand_of_past_sales() {
    let db = database().await;
    let past = Uuid::new_v4();
    for (minute, users, queue, demand) in [(0, 1000, 9000, Some(10_200)), (1, 1000, 4000, None)] {
        sqlx::query(
            "INSERT INTO traffic_logs (event_id, artist_name, minute, concurrent_users, queue_users, demand_users)
             VALUES ($1, 'IU', date_trunc('minute', now()) - make_interval(mins => $2), $3, $4, $5)",
        )
        .bind(past)
        .bind(minute)
        .bind(users)
        .bind(queue)
        .bind(demand)
        .execute(&db)
        .await
        .unwrap();
    }
    let history = crate::signals::history(&db, "iu", Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].peak_users, 10_200,
        "the minute's demand, not the 1000 admitted"
    );
}
