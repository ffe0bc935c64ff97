//! `REDIS_WAIT_REPLICAS`: a waiting-room place or admission is told only once a replica has it, so a
//! failover of the primary cannot take back what a user was told (the chaos suite's scenario 3 kills
//! a cluster primary).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    common::{TestApp, eventually},
    redis_server::RedisServer,
};

/// `POST /api/queue/check/:event` as `token`: status, `Retry-After` present, body.
async fn check(app: &TestApp, event: uuid::Uuid, token: &str) -> (StatusCode, bool, Value) {
    let resp = app
        .req(
            reqwest::Method::POST,
            &format!("/api/queue/check/{event}"),
            Some(token),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after = resp.headers().contains_key("retry-after");
    (status, retry_after, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_a_place_is_told_only_once_a_replica_has_it() {
    let primary = RedisServer::start(&[]).await;
    let url = primary.url();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = url;
        c.redis_wait_replicas = 1;
        c.redis_wait_ms = 100;
    })
    .await;
    let (event, _) = app.ticket_event(10).await;
    app.set_queue_threshold(event, 1).await;
    let (a, b, c) = (app.user().await, app.user().await, app.user().await);

    // no replica: nobody is told an admission or a place (503 + Retry-After, the contract's shape)
    let (status, retry_after, body) = check(&app, event, &a.token).await;
    assert_eq!(
        (status, retry_after, &body["code"]),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            true,
            &json!("REDIS_UNAVAILABLE")
        ),
        "{body}"
    );

    // a replica attaches: the retry is told what the primary kept for it, and the next user queues
    let port = primary.port.to_string();
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]).await;
    let admitted = eventually(Duration::from_secs(10), || async {
        check(&app, event, &a.token).await.0 == StatusCode::OK
    })
    .await;
    assert!(admitted, "no answer once the replica attached");
    assert_eq!(check(&app, event, &a.token).await.2["queued"], false);
    let (status, _, queued) = check(&app, event, &b.token).await;
    assert_eq!((status, &queued["position"]), (StatusCode::OK, &json!(1)));

    // the replica is gone: told nothing again
    replica.stop();
    let (status, retry_after, body) = check(&app, event, &c.token).await;
    assert_eq!(
        (status, retry_after),
        (StatusCode::SERVICE_UNAVAILABLE, true),
        "{body}"
    );
}
