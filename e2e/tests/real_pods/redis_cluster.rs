//! The chart installed against an external Redis Cluster (3 primaries, 3 replicas on the node's address,
//! `scripts/redis-cluster.sh` started by `e2e/run.sh`): a second release of its own, two service pods.

use tiketi_core::keys::Keys;

use crate::support::*;

/// A buyer goes through the waiting room on one pod and holds a seat there; a fan on the other pod sees
/// the seat taken live, through the cluster's sharded pub/sub; the admission is in the cluster.
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_the_chart_runs_a_sale_on_an_external_redis_cluster() {
    if !real_node("real_pods_the_chart_runs_a_sale_on_an_external_redis_cluster") {
        return;
    }
    let client = admin().await;
    let ns = namespace(&client, "redis-cluster").await;
    let _gone = Uninstall(ns.clone());
    let cluster_url = env("E2E_POD_REDIS_CLUSTER_URL");
    let prefix = format!("e2e-rc-{}", Uuid::new_v4().simple());
    let image = env("TIKETI_SERVICE_IMAGE");
    let (repository, tag) = image.rsplit_once(':').expect("image name:tag");
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tiketi");
    let values = concat!(env!("CARGO_MANIFEST_DIR"), "/values/real-node.yaml");
    let set = |k: &str, v: &str| format!("{k}={v}");
    let installed = std::process::Command::new("helm")
        .args([
            "install",
            "tiketi-rc",
            chart,
            "-n",
            &ns,
            "--wait",
            "--wait-for-jobs",
        ])
        .args([
            "--timeout",
            "5m",
            "-f",
            values,
            "--set",
            "operator.enabled=false",
        ])
        .args(["--set", "service.replicaCount=2"])
        .args(["--set", &set("service.image.repository", repository)])
        .args(["--set", &set("service.image.tag", tag)])
        .args([
            "--set-string",
            &set("externalDatabase.url", &env("E2E_POD_DATABASE_URL")),
        ])
        .args(["--set-string", &set("externalRedis.url", &cluster_url)])
        .args(["--set-string", &set("secret.jwtSecret", &secret)])
        .args(["--set-string", &set("service.config.redisPrefix", &prefix)])
        .output()
        .expect("helm");
    assert!(
        installed.status.success(),
        "helm install on the Redis Cluster: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let selector = ListParams::default()
        .labels("app.kubernetes.io/instance=tiketi-rc,app.kubernetes.io/component=service");
    let ready = until(
        Duration::from_secs(120),
        "two ready service pods",
        || async {
            let all = Api::<Pod>::namespaced(client.clone(), &ns)
                .list(&selector)
                .await
                .unwrap()
                .items;
            let ready: Vec<Pod> = all.iter().filter(|p| is_ready(p)).cloned().collect();
            (ready.len() == 2).then_some(ready)
        },
    )
    .await;
    let (a, b) = (
        format!("http://{}:3001", pod_ip(&ready[0])),
        format!("http://{}:3001", pod_ip(&ready[1])),
    );

    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let (event,): (Uuid,) = sqlx::query_as(
        "INSERT INTO events (title, venue, event_date, sale_start_date, sale_end_date, status, queue_threshold)
         VALUES ('On a Redis Cluster', 'e2e', now() + interval '30 days', now() - interval '1 hour',
                 now() + interval '29 days', 'on_sale', 100)
         RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let (seat,): (Uuid,) = sqlx::query_as(
        "INSERT INTO seats (event_id, section, row_number, seat_number, seat_label, price)
         VALUES ($1, 'A', 1, 1, 'A-1', 50000) RETURNING id",
    )
    .bind(event)
    .fetch_one(&db)
    .await
    .unwrap();

    let http = reqwest::Client::new();
    let fan = register(&http, &a).await;
    let mut ws = sio_connect(&a, &fan).await;
    // the seat page's two rooms; `room-info` answers the event room's join
    for room in ["join-event", "join-seat-selection"] {
        ws.send(event_frame(room, &json!({ "eventId": event })))
            .await
            .unwrap();
    }
    wait_event(&mut ws, "room-info").await;

    let buyer = register(&http, &b).await;
    let check = http
        .post(format!("{b}/api/queue/check/{event}"))
        .bearer_auth(&buyer)
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200, "waiting room on the cluster");
    let hold = http
        .post(format!("{b}/api/seats/reserve"))
        .bearer_auth(&buyer)
        .json(&json!({ "eventId": event, "seatIds": [seat] }))
        .send()
        .await
        .unwrap();
    let status = hold.status();
    let held: Value = hold.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "hold: {held}");
    let (user,): (Uuid,) = sqlx::query_as("SELECT user_id FROM reservations WHERE event_id = $1")
        .bind(event)
        .fetch_one(&db)
        .await
        .unwrap();
    let locked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let d = wait_event(&mut ws, "seat-locked").await;
            if d["seatId"] == json!(seat) {
                return d;
            }
        }
    })
    .await
    .expect("the hold on one pod reaches the fan on the other through the cluster");
    assert_eq!(locked["seatId"], json!(seat));

    // the admission the hold was proven with lives in the cluster, under the release's prefix (read
    // over the loopback: this host's own connections to the node address do not reach it)
    let active = Keys::new(&prefix).active(event);
    let primary = cluster_cli(&["primary-of", &active]);
    let admitted = std::process::Command::new("redis-cli")
        .args(["-p", &primary, "zscore", &active, &user.to_string()])
        .output()
        .expect("redis-cli");
    let admitted = String::from_utf8_lossy(&admitted.stdout).trim().to_string();
    assert!(
        admitted.parse::<f64>().is_ok(),
        "the buyer's admission is in the cluster (node {primary}): {admitted:?}"
    );
}

/// Uninstalls the second release and deletes its namespace when the test ends, passed or not: its
/// pods would otherwise keep the single real node's memory from the tests after it.
struct Uninstall(String);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = std::process::Command::new("helm")
            .args([
                "uninstall",
                "tiketi-rc",
                "-n",
                &self.0,
                "--wait",
                "--timeout",
                "2m",
            ])
            .output();
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "namespace", &self.0, "--wait=false"])
            .output();
    }
}

/// `scripts/redis-cluster.sh` on the cluster `e2e/run.sh` started for the pods.
fn cluster_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/redis-cluster.sh"
    ))
    .args(args)
    .env("TIKETI_CLUSTER_PORT", env("E2E_REDIS_CLUSTER_PORT"))
    .output()
    .expect("scripts/redis-cluster.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
