//! The Redis maxmemory-policy check, against private redis-servers (the shared one is untouched).

use std::time::Duration;

use reqwest::StatusCode;
use tiketi_service::{Config, Service, config::CheckMode};
use uuid::Uuid;

use crate::{
    common::{TestApp, database_url, eventually},
    redis_server::{RedisCluster, RedisServer},
};

fn config(redis: &RedisServer, mode: Option<CheckMode>) -> Config {
    let mut c = Config::for_tests(
        &database_url(),
        &redis.url(),
        &format!("test:{}", Uuid::new_v4().simple()),
    );
    c.redis_eviction_policy_check = mode;
    c
}

/// The policy `/health/ready` reports.
async fn reported_policy(app: &TestApp) -> serde_json::Value {
    let (status, body) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["dependencies"]["redisMaxmemoryPolicy"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_policy_that_evicts_refuses_start_or_warns() {
    let redis = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]).await;
    let refused = Service::build(config(&redis, Some(CheckMode::Refuse))).await;
    let Err(e) = refused else {
        panic!("started on an allkeys-lru Redis")
    };
    assert!(
        e.to_string().contains("maxmemory-policy is allkeys-lru"),
        "{e}"
    );
    // the default outside dev mode is to refuse
    let mut prod = config(&redis, None);
    prod.dev = false;
    assert_eq!(prod.eviction_check(), CheckMode::Refuse);

    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = url;
        c.redis_eviction_policy_check = Some(CheckMode::Warn);
    })
    .await;
    assert_eq!(reported_policy(&app).await, "allkeys-lru");
    let metrics = app.get("/metrics", None).await.1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"tiketi_redis_maxmemory_policy{policy="allkeys-lru"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_policy_unreadable_config_does_not_block_start() {
    // managed Redis often forbids CONFIG
    let redis = RedisServer::start(&["--rename-command", "CONFIG", ""]).await;
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = url;
        c.redis_eviction_policy_check = Some(CheckMode::Refuse);
    })
    .await;
    assert_eq!(reported_policy(&app).await, serde_json::Value::Null);
    let (status, _) = app.get("/health/redis", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_policy_is_checked_again_after_a_reconnect() {
    let redis = RedisServer::start(&[]).await;
    let port = redis.port;
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = url;
        c.redis_eviction_policy_check = Some(CheckMode::Refuse);
    })
    .await;
    assert_eq!(reported_policy(&app).await, "noeviction");

    // a failover or restart lands on a Redis that evicts: the running replica reports it (and keeps
    // serving: refusing applies only at start)
    redis.stop();
    let _evicting = RedisServer::start_on(port, &["--maxmemory-policy", "volatile-lru"]).await;
    let seen = eventually(Duration::from_secs(20), || async {
        reported_policy(&app).await == "volatile-lru"
    })
    .await;
    assert!(seen, "the reconnect did not re-check the policy");
}

/// Each node of a Redis Cluster has its own configuration: one primary that evicts is enough to lose
/// the waiting room of the events in its slots, so the check asks every primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_policy_is_checked_on_every_primary_of_a_cluster() {
    let noeviction: &[&str] = &["--maxmemory-policy", "noeviction"];
    for evicting in 0..3 {
        let mut args = [noeviction; 3];
        args[evicting] = &["--maxmemory-policy", "allkeys-lru"];
        let cluster = RedisCluster::start(args).await;
        let mut c = Config::for_tests(
            &database_url(),
            &cluster.url(),
            &format!("test:{}", Uuid::new_v4().simple()),
        );
        c.redis_eviction_policy_check = Some(CheckMode::Refuse);
        let Err(e) = Service::build(c).await else {
            panic!("started on a cluster whose node {evicting} evicts")
        };
        assert!(
            e.to_string().contains("maxmemory-policy is allkeys-lru"),
            "{e}"
        );
    }
}
