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

/// With PostgreSQL down before the opening, the pass still pre-scales from fallbackExpectedUsers
/// and writes its status: an unreadable history must not stop the pass.
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
            Expect::event("Scaled"),
            Expect::status(
                &te,
                json!({ "phase": "PreScaling", "forecast": { "expectedUsers": 7500,
                        "method": "fallback (sale history unavailable)" } }),
            ),
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
            Expect::event("Scaled"),
            Expect::status(
                &te,
                json!({ "phase": "OnSale", "desiredReplicas": 7, "queueDepth": 6001 }),
            ),
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
            // the sibling already has the target at 10: no scale, only this sale's wish and status
            Expect::get_deployment_with(10, 10, &[("other", 10)]),
            Expect::write(10),
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
async fn sale_data_history_is_the_demand_of_past_sales() {
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
    // the sale's own actual peak is the same measure, not the 1000 admitted
    assert_eq!(
        crate::sale_data::actual_peak(&db, past).await.unwrap(),
        Some(10_200)
    );
    let history = crate::sale_data::history(&db, "iu", Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].peak_users, 10_200,
        "the minute's demand, not the 1000 admitted"
    );
}

/// `sale_forecasts.error_percent` is the error the TicketEvent's status shows, rounding included.
#[tokio::test]
async fn signals_outcome_records_the_forecast_error_as_the_status_shows_it() {
    let db = database().await;
    let cases = [
        (7500, Some(9000)),
        (8, Some(9)),
        (8, Some(7)),
        (3000, Some(0)),
        (3000, None),
        (0, Some(50)),
    ];
    for (forecast, peak) in cases {
        let event = Uuid::new_v4();
        let row = crate::sale_data::SaleOutcome {
            event,
            artist: "IU",
            ticket_event: "default/iu",
            forecast_users: forecast,
            forecast_replicas: 1,
            method: "history",
            peak_users: peak,
            peak_queue: None,
        };
        crate::sale_data::record_outcome(&db, &row).await.unwrap();
        let stored: Option<i32> =
            sqlx::query_scalar("SELECT error_percent FROM sale_forecasts WHERE event_id = $1")
                .bind(event)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(
            stored.map(i64::from),
            crate::decide::forecast_error_percent(forecast, peak),
            "forecast {forecast}, peak {peak:?}"
        );
    }
}

/// The operator's database role (migration 0012) suffices for everything the operator does in
/// PostgreSQL — read the sale history, record forecast against actual — and nothing of the service's
/// data is readable through it.
#[tokio::test]
async fn operator_role_reads_history_writes_forecasts_and_nothing_else() {
    let db = database().await;
    let url = db.connect_options().get_database().map(|name| {
        let mut url = url_without_db(&env("DATABASE_URL"));
        url.push_str(name);
        url
    });
    let op = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(conn, "SET ROLE tiketi_operator").await?;
                Ok(())
            })
        })
        .connect(&url.unwrap())
        .await
        .unwrap();
    let event = Uuid::new_v4();
    crate::sale_data::history(&op, "IU", event).await.unwrap();
    crate::sale_data::actual_peak(&op, event).await.unwrap();
    let row = crate::sale_data::SaleOutcome {
        event,
        artist: "IU",
        ticket_event: "default/iu",
        forecast_users: 7500,
        forecast_replicas: 5,
        method: "fallback",
        peak_users: Some(100),
        peak_queue: Some(10),
    };
    crate::sale_data::record_outcome(&op, &row).await.unwrap();
    crate::sale_data::record_outcome(&op, &row).await.unwrap();
    let denied = sqlx::query("SELECT count(*) FROM users").execute(&op).await;
    let code = denied.err().and_then(|e| {
        e.as_database_error()
            .and_then(|d| d.code().map(|c| c.to_string()))
    });
    assert_eq!(
        code.as_deref(),
        Some("42501"),
        "users readable by the operator role"
    );
}

/// A postponed sale releases its capacity key before its status leaves the live phase: the release
/// is decided on that pass only, so a removal Redis refuses fails the pass (the status stays live)
/// and the retry, with Redis back, removes the key. Here Redis refuses it through an ACL user
/// without DEL.
#[tokio::test]
async fn reconcile_postponed_sale_keeps_its_live_phase_until_the_capacity_is_removed() {
    use fred::prelude::Value;
    let r = redis().await;
    let keys = Keys::new(format!("optest:{}", Uuid::new_v4().simple()));
    let user = format!("optest_{}", Uuid::new_v4().simple());
    let acl = vec![
        "SETUSER", &user, "on", ">pw", "~*", "&*", "+@all", "-del", "-unlink",
    ];
    let client = r.next();
    // ACL users live per node: on a Redis Cluster every primary learns this one
    match client.is_clustered() {
        true => {
            for node in client.active_connections() {
                let _: Value = client
                    .with_cluster_node(node)
                    .custom(fred::cmd!("ACL"), acl.clone())
                    .await
                    .unwrap();
            }
        }
        false => {
            let _: Value = client.custom(fred::cmd!("ACL"), acl).await.unwrap();
        }
    }
    let refusing = {
        let url = env("REDIS_URL").replacen("://", &format!("://{user}:pw@"), 1);
        let pool = Builder::from_config(Config::from_url(&url).unwrap())
            .build_pool(1)
            .unwrap();
        pool.connect_pool();
        pool.wait_for_connect().await.unwrap();
        pool
    };
    // on sale at 9 replicas, then opensAt moved 5 h later (a new generation)
    let mut te = with_status(ticket_event("postponed", Minutes::hours(5)), "OnSale", 9);
    te.metadata.generation = Some(2);
    te.status.as_mut().unwrap().observed_generation = Some(1);
    let event: Uuid = te.spec.event_id.parse().unwrap();
    crate::sale_data::publish_capacity(&r, &keys, event, 13_500, chrono::Utc::now())
        .await
        .unwrap();

    let (result, calls) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment_with(9, 9, &[("postponed", 9)]),
            Expect::scale(9, 2),
            // the scale happened: reported now, as the retry will find nothing to scale
            Expect::event("Scaled"),
        ],
        None,
        Some(refusing.clone()),
        keys.clone(),
    )
    .await;
    assert!(result.is_err(), "a refused removal fails the pass");
    assert!(!calls.iter().any(|c| c.path.ends_with("/status")));
    let kept: bool = r.exists(keys.capacity(event)).await.unwrap();
    assert!(kept, "the DEL was refused");

    // the retry: the target is at 2 already, the status still says OnSale
    let (result, calls) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(&te, json!({ "phase": "Scheduled" })),
            Expect::event("Phase"),
        ],
        None,
        Some(r.clone()),
        keys.clone(),
    )
    .await;
    result.unwrap();
    assert!(calls.iter().any(|c| c.path.ends_with("/status")));
    let kept: bool = r.exists(keys.capacity(event)).await.unwrap();
    assert!(!kept, "the capacity key removed on the retry");
    let _: Value = r
        .next()
        .custom(fred::cmd!("ACL"), vec!["DELUSER", &user])
        .await
        .unwrap();
}

/// A completed sale's forecast-vs-actual row is written before the status says Completed: the record
/// is decided on that pass only, so with PostgreSQL down the pass fails (the target is already back
/// at the baseline) and the retry records it once PostgreSQL answers.
#[tokio::test]
async fn reconcile_completed_sale_keeps_draining_until_its_record_is_written() {
    let te = with_status(ticket_event("recorded", Minutes::hours(-3)), "Draining", 9);
    let event: Uuid = te.spec.event_id.parse().unwrap();
    let (result, calls) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(9, 9),
            Expect::scale(9, 2),
            // the scale happened: reported now, as the retry will find nothing to scale
            Expect::event("Scaled"),
        ],
        Some(dead_database()),
        None,
        Keys::default(),
    )
    .await;
    assert!(result.is_err(), "an unwritten record fails the pass");
    assert!(!calls.iter().any(|c| c.path.ends_with("/status")));

    let db = database().await;
    let (result, _) = reconcile_scripted_with(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(&te, json!({ "phase": "Completed" })),
            Expect::event("SaleCompleted"),
            Expect::event("Phase"),
        ],
        Some(db.clone()),
        None,
        Keys::default(),
    )
    .await;
    result.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sale_forecasts WHERE event_id = $1")
        .bind(event)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}
