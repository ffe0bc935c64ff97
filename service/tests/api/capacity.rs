//! The operator's per-event capacity as the waiting room reads it (zero or stale never closes
//! admission), and the waiting-time estimate from the queue's measured outflow.

use std::time::Duration;

use fred::prelude::KeysInterface;
use serde_json::{Value, json};
use tiketi_core::rules::{CapacityRecord, OutflowRecord};
use tiketi_service::metrics::KindLabels;
use uuid::Uuid;

use crate::common::{TestApp, eventually};

/// Publishes `users` as `event`'s capacity, `age_ms` old, as the operator does.
pub async fn publish(app: &TestApp, event: Uuid, users: i64, age_ms: i64) {
    let record = CapacityRecord {
        users,
        at_ms: chrono::Utc::now().timestamp_millis() - age_ms,
    };
    let _: () = app
        .state
        .redis
        .set(
            app.state.keys.capacity(event),
            serde_json::to_string(&record).unwrap(),
            None,
            None,
            false,
        )
        .await
        .unwrap();
    // the gate is kept a second in memory; a new publication is what the next check must see
    app.state.gates.forget(event);
}

/// A queue answer without its waiting-time fields (asserted separately).
pub fn without_eta(v: &Value) -> Value {
    let mut v = v.clone();
    for k in ["estimatedWait", "estimatedWaitKnown", "estimatedWaitBasis"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

/// With the room full and nobody gone yet, the estimate is the remaining hold (5 minutes), a number
/// the frontend renders ("약 5분"), flagged as not measured.
#[track_caller]
pub fn assert_hold_expiry_eta(v: &Value) {
    let wait = v["estimatedWait"]
        .as_i64()
        .expect("estimatedWait is a number");
    assert!((290..=300).contains(&wait), "estimatedWait {wait} in {v}");
    assert_eq!(v["estimatedWaitKnown"], false, "{v}");
    assert_eq!(v["estimatedWaitBasis"], "holdExpiry", "{v}");
}

fn fallbacks(app: &TestApp, kind: &'static str) -> u64 {
    app.state
        .metrics
        .queue_capacity_fallbacks
        .get_or_create(&KindLabels { kind })
        .get()
}

async fn threshold(app: &TestApp, event: Uuid) -> Value {
    let u = app.user().await;
    app.post(
        &format!("/api/queue/check/{event}"),
        Some(&u.token),
        json!({}),
    )
    .await
    .1["threshold"]
        .clone()
}

#[tokio::test]
async fn capacity_is_read_per_event() {
    let app = TestApp::spawn().await;
    let (a, _) = app.ticket_event(10).await;
    let (b, _) = app.ticket_event(10).await;
    let (c, _) = app.ticket_event(10).await;
    publish(&app, a, 1, 0).await;
    publish(&app, b, 3000, 0).await;
    assert_eq!(threshold(&app, a).await, 1, "its own capacity");
    assert_eq!(
        threshold(&app, b).await,
        1000,
        "its threshold, under its capacity"
    );
    assert_eq!(threshold(&app, c).await, 1000, "nothing published for it");
}

#[tokio::test]
async fn capacity_zero_or_stale_never_closes_admission() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    let (zero, stale) = (fallbacks(&app, "zero"), fallbacks(&app, "stale"));

    // zero with nothing good before: the event's threshold, counted
    publish(&app, event, 0, 0).await;
    let u = app.user().await;
    let (_, body) = app
        .post(
            &format!("/api/queue/check/{event}"),
            Some(&u.token),
            json!({}),
        )
        .await;
    assert_eq!(
        body,
        json!({ "queued": false, "currentUsers": 0, "threshold": 1000 })
    );
    assert!(fallbacks(&app, "zero") > zero);

    // a good value, then zero and stale ones: the last good value stands in
    publish(&app, event, 2, 0).await;
    assert_eq!(threshold(&app, event).await, 2);
    publish(&app, event, 0, 0).await;
    assert_eq!(
        threshold(&app, event).await,
        2,
        "zero keeps the last good capacity"
    );
    publish(&app, event, 1, 7 * 60 * 1000).await;
    assert_eq!(
        threshold(&app, event).await,
        2,
        "stale keeps the last good capacity"
    );
    assert!(fallbacks(&app, "stale") > stale);
}

#[tokio::test]
async fn capacity_eta_comes_from_the_measured_outflow_once_known() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    app.set_queue_threshold(event, 1).await;
    let users = app.users(3).await;
    let check = |t: &str| {
        let (app, t) = (&app, t.to_string());
        async move {
            app.post(&format!("/api/queue/check/{event}"), Some(&t), json!({}))
                .await
                .1
        }
    };
    assert_eq!(check(&users[0].token).await["queued"], false);
    assert_eq!(check(&users[1].token).await["position"], 1);
    let third = check(&users[2].token).await;
    assert_eq!(third["position"], 2);
    // one place, held for five minutes: position 2 waits for the place to turn over twice
    let wait = third["estimatedWait"].as_i64().unwrap();
    assert!((590..=600).contains(&wait), "{third}");

    // the admitted user leaves: the loop admits the next one, and measures that outflow
    app.start_jobs();
    let (status, _) = app
        .post(
            &format!("/api/queue/leave/{event}"),
            Some(&users[0].token),
            json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let status_path = format!("/api/queue/status/{event}");
    let measured = eventually(Duration::from_secs(30), || {
        let (app, path, token) = (&app, &status_path, &users[2].token);
        async move { app.get(path, Some(token)).await.1["estimatedWaitKnown"] == true }
    })
    .await;
    let last = app.get(&status_path, Some(&users[2].token)).await.1;
    assert!(measured, "never measured: {last}");
    assert_eq!(last["estimatedWaitBasis"], "outflow", "{last}");
    let outflow: String = app
        .state
        .redis
        .get(app.state.keys.outflow(event))
        .await
        .unwrap();
    let outflow: OutflowRecord = serde_json::from_str(&outflow).unwrap();
    assert!(outflow.admitted_per_second > 0.0, "{outflow:?}");
    assert!(outflow.window_secs >= tiketi_core::rules::OUTFLOW_MIN_WINDOW_SECS);
    let expected = (last["position"].as_f64().unwrap() / outflow.per_second).ceil() as i64;
    assert!(
        (last["estimatedWait"].as_i64().unwrap() - expected).abs() <= 1,
        "{last} {outflow:?}"
    );
}

/// 11d: the history records demand — everyone on the page plus everyone waiting — not only the
/// admitted users the threshold let in, and the per-sale peak the operator forecasts from follows.
#[tokio::test]
async fn capacity_history_records_demand_not_admissions() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    app.set_queue_threshold(event, 1).await;
    for u in app.users(3).await {
        app.post(
            &format!("/api/queue/check/{event}"),
            Some(&u.token),
            json!({}),
        )
        .await;
    }
    assert_eq!(
        tiketi_service::jobs::traffic::sample(&app.state)
            .await
            .unwrap(),
        1
    );
    let row: (i32, i32, Option<i32>) = sqlx::query_as(
        "SELECT concurrent_users, queue_users, demand_users FROM traffic_logs WHERE event_id = $1",
    )
    .bind(event)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(row, (1, 2, Some(3)), "1 admitted, 2 waiting: a demand of 3");
    let peak: i32 =
        sqlx::query_scalar("SELECT peak_demand_users FROM artist_sale_peaks WHERE event_id = $1")
            .bind(event)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(peak, 3);
}
