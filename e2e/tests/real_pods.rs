//! End-to-end on real pods: the chart installed by `E2E_REAL_NODE=1 e2e/run.sh` on the local control plane's
//! real node (kubelet + containerd), with the images built on this machine. The service and the operator run as
//! pods there; these tests reach them the way users and platform teams do: through the Service (kube-proxy), the
//! API server, PostgreSQL and Redis. Without the real node (plain `make e2e`, or kind) each test says it is
//! skipped and passes: the kwok suite in cluster.rs covers the API side there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod, Secret, Service},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tiketi_crds::TicketEvent;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// True when the real node is there; else prints why the test does nothing.
fn real_node(test: &str) -> bool {
    if std::env::var("E2E_REAL_NODE").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("{test}: skipped: no real node (run E2E_REAL_NODE=1 e2e/run.sh as root)");
    false
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by e2e/run.sh"))
}

async fn admin() -> Client {
    Client::try_default()
        .await
        .expect("KUBECONFIG points at the e2e cluster")
}

fn release_ns() -> String {
    env("E2E_OPERATOR_NAMESPACE")
}

/// Polls until `check` gives a value (no fixed sleeps); panics with `what` after `timeout`.
async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn component_selector(component: &str) -> ListParams {
    ListParams::default().labels(&format!(
        "app.kubernetes.io/instance=tiketi,app.kubernetes.io/component={component}"
    ))
}

async fn pods(client: &Client, ns: &str, component: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&component_selector(component))
        .await
        .unwrap()
        .items
}

fn condition_time(pod: &Pod, kind: &str) -> Option<DateTime<Utc>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| utc(&t.0))
}

fn utc(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.as_millisecond()).expect("a valid timestamp")
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && condition_time(pod, "Ready").is_some()
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

/// The chart's service Deployment in the release namespace.
async fn service_deployment(client: &Client) -> (Api<Deployment>, String) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &release_ns());
    let d = api
        .list(&component_selector("service"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the chart's service Deployment");
    let name = d.name_any();
    (api, name)
}

/// http://CLUSTER-IP:PORT of the chart's ClusterIP Service (kube-proxy routes it from the host too).
async fn service_url(client: &Client) -> String {
    let svc = Api::<Service>::namespaced(client.clone(), &release_ns())
        .list(&component_selector("service"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ClusterIP"))
        .expect("the chart's ClusterIP Service");
    let spec = svc.spec.unwrap();
    format!(
        "http://{}:{}",
        spec.cluster_ip.unwrap(),
        spec.ports.unwrap()[0].port
    )
}

async fn scale(api: &Api<Deployment>, name: &str, replicas: i32) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await
    .unwrap();
}

/// Waits until the Deployment has exactly `n` Ready pods and no terminating ones; returns them.
async fn settle(client: &Client, n: usize) -> Vec<Pod> {
    until(
        Duration::from_secs(120),
        &format!("{n} ready service pods"),
        || async {
            let all = pods(client, &release_ns(), "service").await;
            let ready: Vec<Pod> = all.iter().filter(|p| is_ready(p)).cloned().collect();
            (ready.len() == n && all.len() == n).then_some(ready)
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_run_ready_on_the_real_node_as_the_chart_defines_them() {
    if !real_node("real_pods_run_ready_on_the_real_node_as_the_chart_defines_them") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let node_name = env("TIKETI_K8S_NODE_NAME");
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(&node_name)
        .await
        .unwrap();
    assert!(
        !node.annotations().contains_key("kwok.x-k8s.io/node"),
        "{node_name} is not a kwok node"
    );
    let runtime = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.container_runtime_version.clone())
        .unwrap_or_default();
    assert!(runtime.starts_with("containerd://"), "runtime {runtime}");
    for component in ["service", "operator"] {
        let list = pods(&client, &ns, component).await;
        assert!(list.len() >= 2, "{component}: {} pods", list.len());
        for pod in &list {
            let name = pod.name_any();
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(
                spec.node_name.as_deref(),
                Some(node_name.as_str()),
                "{name}"
            );
            assert!(is_ready(pod), "{name} is Ready");
            let c = &spec.containers[0];
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
            let psc = spec.security_context.as_ref().unwrap();
            assert_eq!(psc.run_as_non_root, Some(true), "{name}");
            assert_eq!(psc.run_as_user, Some(65532), "{name}");
            let started = pod
                .status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap();
            assert!(started[0].ready, "{name}: container ready");
            assert!(
                started[0].image_id.starts_with("sha256:")
                    || started[0].image_id.contains("@sha256:"),
                "{name}: a real image: {}",
                started[0].image_id
            );
            if component == "service" {
                assert_eq!(
                    spec.automount_service_account_token,
                    Some(false),
                    "{name}: the service gets no API token"
                );
                assert!(
                    c.volume_mounts
                        .iter()
                        .flatten()
                        .any(|m| m.mount_path == "/data/uploads"),
                    "{name}: uploads on a volume"
                );
            }
        }
        eprintln!(
            "{component}: {} pods Running and Ready on {node_name}",
            list.len()
        );
    }
    // The migration Job ran as a pre-install hook (and was deleted on success): the schema is there.
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(applied > 0, "migrations applied by the chart's Job");
    // Readiness and the dependencies as the pods see them, through the Service.
    let base = service_url(&client).await;
    let ready: Value = reqwest::get(format!("{base}/health/all"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["database"]["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["redis"]["status"], "ok", "{ready}");
    let status = reqwest::get(format!("{base}/health/ready"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// History rows for `artist` (three past sales peaking at `peak`), as the traffic sampler writes them.
async fn history(artist: &str, peak: i32) {
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    for days in [30, 60, 90] {
        sqlx::query(
            "INSERT INTO traffic_logs (event_id, artist_name, minute, concurrent_users, queue_users, replicas)
             SELECT $1, $2, date_trunc('minute', now()) - make_interval(days => $4) + make_interval(mins => m), $3 * m / 10, 0, 2
             FROM generate_series(1, 10) m",
        )
        .bind(Uuid::new_v4())
        .bind(artist)
        .bind(peak)
        .bind(days)
        .execute(&db)
        .await
        .unwrap();
    }
}

async fn create_te(client: &Client, ns: &str, name: &str, spec: Value) {
    let ar = ApiResource::erase::<TicketEvent>(&());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tiketi.io/v1alpha1", "kind": "TicketEvent", "metadata": { "name": name }, "spec": spec
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

async fn delete_te(client: &Client, ns: &str, name: &str) {
    Api::<TicketEvent>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .ok();
}

/// One test at a time may resize the chart's service Deployment or cut its dependencies (they share them).
static SERVICE_DEPLOYMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_prescales_before_opens_at_and_start_to_ready_is_measured() {
    if !real_node("real_pods_operator_prescales_before_opens_at_and_start_to_ready_is_measured") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    let before: Vec<String> = settle(&client, 2)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let artist = format!("E2E real {}", Uuid::new_v4().simple());
    // 4000 users at 1000 per replica: 4 replicas, pre-scaled leadTime (25 s) before an opening 45 s away.
    history(&artist, 4000).await;
    let opens_at = Utc::now() + chrono::Duration::seconds(45);
    let te = format!("real-{}", &Uuid::new_v4().simple().to_string()[..8]);
    create_te(
        &client,
        &ns,
        &te,
        json!({
            "eventId": Uuid::new_v4(),
            "artist": artist,
            "opensAt": opens_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "closesAt": (opens_at + chrono::Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "target": { "kind": "Deployment", "name": name },
            "usersPerReplica": 1000,
            "minReplicas": 2,
            "maxReplicas": 6,
            "leadTime": "25s",
        }),
    )
    .await;
    let scaled_at = until(
        Duration::from_secs(60),
        "the operator to scale the service to 4",
        || async {
            let d = deployments.get(&name).await.ok()?;
            (d.spec?.replicas? == 4).then(Utc::now)
        },
    )
    .await;
    let ready = settle(&client, 4).await;
    let ready_at = Utc::now();
    let lead = opens_at - scaled_at;
    eprintln!(
        "operator scaled 2 -> 4 at opensAt - {} s; all 4 Ready at opensAt - {} s",
        lead.num_milliseconds() as f64 / 1000.0,
        (opens_at - ready_at).num_milliseconds() as f64 / 1000.0
    );
    assert!(
        ready_at < opens_at,
        "the pre-scaled pods are Ready before opensAt"
    );
    assert!(
        lead <= chrono::Duration::seconds(40),
        "scaled from the lead time ({}s before), not at once",
        lead.num_seconds()
    );
    for pod in ready.iter().filter(|p| !before.contains(&p.name_any())) {
        let created = utc(&pod.metadata.creation_timestamp.as_ref().unwrap().0);
        let scheduled = condition_time(pod, "PodScheduled").unwrap_or(created);
        let started = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| utc(&t.0))
            .unwrap();
        let ready = condition_time(pod, "Ready").unwrap();
        eprintln!(
            "start-to-Ready {}: created -> Ready {:.1} s (scheduled {:.1} s, container started {:.1} s, Ready {:.1} s)",
            pod.name_any(),
            (ready - created).num_milliseconds() as f64 / 1000.0,
            (scheduled - created).num_milliseconds() as f64 / 1000.0,
            (started - created).num_milliseconds() as f64 / 1000.0,
            (ready - created).num_milliseconds() as f64 / 1000.0,
        );
        assert!(ready < opens_at, "{} Ready before opensAt", pod.name_any());
    }
    let status = serde_json::to_value(
        Api::<TicketEvent>::namespaced(client.clone(), &ns)
            .get(&te)
            .await
            .unwrap()
            .status
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(status["forecast"]["expectedUsers"], 4000, "{status}");
    delete_te(&client, &ns, &te).await;
    scale(&deployments, &name, 2).await;
    settle(&client, 2).await;
}

// ---- a minimal Socket.IO client (Engine.IO v4 over WebSocket), as the frontend's socket.io-client speaks it ----

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn sio_connect(base: &str, token: &str) -> Ws {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("websocket upgrade in time")
    .expect("websocket upgrade");
    let open = next_text(&mut ws).await.expect("engine.io open");
    assert!(open.starts_with('0'), "engine.io open: {open}");
    ws.send(Message::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    loop {
        let m = next_text(&mut ws).await.expect("socket.io connect ack");
        if m.starts_with("40") {
            return ws;
        }
        assert!(!m.starts_with("44"), "connect refused: {m}");
    }
}

/// The next text frame (answering pings); None when the connection ended.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .ok()??
            .ok()?;
        match msg {
            Message::Text(t) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.ok()?;
            }
            Message::Text(t) => return Some(t.to_string()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Waits for the event `name`; returns its payload.
async fn wait_event(ws: &mut Ws, name: &str) -> Value {
    let prefix = format!("42[\"{name}\"");
    loop {
        let m = next_text(ws)
            .await
            .unwrap_or_else(|| panic!("connection ended before {name}"));
        if m.starts_with(&prefix) {
            let mut parts: Vec<Value> = serde_json::from_str(&m[2..]).unwrap();
            return parts.swap_remove(1);
        }
    }
}

/// How a connection ended when its pod went away.
#[derive(Debug, PartialEq)]
enum Ending {
    /// WebSocket close frame or Engine.IO close packet: socket.io-client reconnects.
    Closed,
    /// Socket.IO DISCONNECT from the server ("io server disconnect"): socket.io-client does NOT reconnect.
    ServerDisconnect,
    /// TCP closed or reset without a close handshake: socket.io-client reconnects ("transport close").
    Dropped(String),
}

async fn ending(ws: &mut Ws, within: Duration) -> Ending {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("the connection of a terminated pod ends within its grace period");
        match msg {
            None => return Ending::Dropped("end of stream".into()),
            Some(Err(e)) => return Ending::Dropped(e.to_string()),
            Some(Ok(Message::Close(_))) => return Ending::Closed,
            Some(Ok(Message::Text(t))) if t.as_str() == "1" => return Ending::Closed,
            Some(Ok(Message::Text(t))) if t.starts_with("41") => return Ending::ServerDisconnect,
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.ok();
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Registers a user through `base` and returns its token.
async fn register(http: &reqwest::Client, base: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    let res = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({
            "email": format!("real-{}@e2e.tiketi.test", &id[..12]),
            "password": "real-pods-e2e-password",
            "name": "Real Pod",
            "phone": "010-0000-0000",
        }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "register: {body}");
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_scale_down_drains_sockets_and_sessions_are_restored_on_another_pod() {
    if !real_node("real_pods_scale_down_drains_sockets_and_sessions_are_restored_on_another_pod") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    let ready = settle(&client, 2).await;
    let (leaving, staying) = (&ready[0], &ready[1]);
    let leaving_url = format!("http://{}:3001", pod_ip(leaving));
    let base = service_url(&client).await;
    let http = reqwest::Client::new();
    // Users on the pod that the scale-down removes (lowest deletion cost), each in an event's room.
    let event = Uuid::new_v4();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let token = register(&http, &base).await;
        let mut ws = sio_connect(&leaving_url, &token).await;
        ws.send(Message::text(format!(
            "42{}",
            json!(["join-event", { "eventId": event }])
        )))
        .await
        .unwrap();
        wait_event(&mut ws, "room-info").await;
        sockets.push((token, ws));
    }
    Api::<Pod>::namespaced(client.clone(), &ns)
        .patch(
            &leaving.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "controller.kubernetes.io/pod-deletion-cost": "-1000" } } })),
        )
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    scale(&deployments, &name, 1).await;
    let mut endings = Vec::new();
    for (_, ws) in &mut sockets {
        endings.push(ending(ws, Duration::from_secs(45)).await);
    }
    eprintln!(
        "scale-down: the {} sockets on {} ended after {:?}: {endings:?}",
        sockets.len(),
        leaving.name_any(),
        t0.elapsed()
    );
    for e in &endings {
        assert_ne!(
            *e,
            Ending::ServerDisconnect,
            "a server DISCONNECT stops socket.io-client from reconnecting"
        );
    }
    // Reconnect as socket.io-client does, through the Service: the only pod left restores the session.
    for (token, _) in &sockets {
        let mut ws = sio_connect(&base, token).await;
        let restored = wait_event(&mut ws, "session-restored").await;
        assert_eq!(restored["eventId"], json!(event), "{restored}");
    }
    let left = settle(&client, 1).await;
    assert_eq!(left[0].name_any(), staying.name_any());
    eprintln!(
        "sessions restored on {} after the scale-down",
        staying.name_any()
    );
    scale(&deployments, &name, 2).await;
    settle(&client, 2).await;
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_memory_limit_oom_kills_a_pod_and_the_service_goes_on() {
    if !real_node("real_pods_memory_limit_oom_kills_a_pod_and_the_service_goes_on") {
        return;
    }
    // Its pod needs PostgreSQL and Redis too (the outage test cuts them).
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    // A copy of the chart's service pod with a memory limit below what 4 concurrent argon2 hashes need
    // (4 × 19 MiB): registrations at once push it over, and the kernel kills it for real.
    let mut template = deployments.get(&name).await.unwrap().spec.unwrap().template;
    let labels = json!({ "app": "tiketi-oom-probe" });
    template.metadata = Some(serde_json::from_value(json!({ "labels": labels })).unwrap());
    let container = &mut template.spec.as_mut().unwrap().containers[0];
    container.resources = Some(
        serde_json::from_value(
            json!({ "requests": { "memory": "32Mi" }, "limits": { "memory": "48Mi" } }),
        )
        .unwrap(),
    );
    container.startup_probe = None;
    let oom: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "tiketi-oom-probe" },
        "spec": { "replicas": 1, "selector": { "matchLabels": labels }, "template": template },
    }))
    .unwrap();
    oom.delete("tiketi-oom-probe", &DeleteParams::default())
        .await
        .ok();
    oom.create(&PostParams::default(), &d).await.unwrap();
    let pod_api = Api::<Pod>::namespaced(client.clone(), &ns);
    let probe_pods = ListParams::default().labels("app=tiketi-oom-probe");
    let pod = until(
        Duration::from_secs(60),
        "the OOM probe pod Ready",
        || async {
            pod_api
                .list(&probe_pods)
                .await
                .ok()?
                .items
                .into_iter()
                .find(is_ready)
        },
    )
    .await;
    let url = format!("http://{}:3001", pod_ip(&pod));
    let http = reqwest::Client::new();
    let base = service_url(&client).await;
    let survivors_before = settle_count(&client).await;
    // Registrations at once: each holds 19 MiB of argon2 memory while it hashes.
    let storm: Vec<_> = (0..8)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4().simple().to_string();
                http.post(format!("{url}/api/auth/register"))
                    .timeout(Duration::from_secs(20))
                    .json(&json!({ "email": format!("oom-{}@e2e.tiketi.test", &id[..12]),
                        "password": "real-pods-e2e-password", "name": "OOM", "phone": "010-0000-0000" }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for s in storm {
        answers.push(s.await.unwrap().map_err(|e| e.to_string()));
    }
    let killed = until(
        Duration::from_secs(60),
        "the probe container OOM-killed",
        || async {
            let p = pod_api.get(&pod.name_any()).await.ok()?;
            let cs = p.status?.container_statuses?.into_iter().next()?;
            let last = cs.last_state?.terminated?;
            (last.reason.as_deref() == Some("OOMKilled"))
                .then_some((cs.restart_count, last.exit_code))
        },
    )
    .await;
    eprintln!(
        "OOM probe: answers {answers:?}; container OOMKilled (exit {}), restarts {}",
        killed.1, killed.0
    );
    // It comes back and serves; the chart's pods were untouched and the Service answers throughout.
    until(
        Duration::from_secs(90),
        "the OOM-killed pod Ready again",
        || async {
            let p = pod_api.get(&pod.name_any()).await.ok()?;
            is_ready(&p).then_some(())
        },
    )
    .await;
    let health = http
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(health, 200, "the restarted pod serves");
    let through_service = http
        .get(format!("{base}/api/events"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(through_service, 200);
    assert_eq!(
        settle_count(&client).await,
        survivors_before,
        "the chart's pods never restarted"
    );
    oom.delete("tiketi-oom-probe", &DeleteParams::default())
        .await
        .ok();
}

/// Restarts of the chart's service containers (they must not change while another pod is OOM-killed).
async fn settle_count(client: &Client) -> i32 {
    pods(client, &release_ns(), "service")
        .await
        .iter()
        .filter_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()
                .map(|c| c.restart_count)
        })
        .sum()
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_pod_token_has_its_rbac_and_no_more() {
    if !real_node("real_pods_operator_pod_token_has_its_rbac_and_no_more") {
        return;
    }
    let client = admin().await;
    let ns = release_ns();
    let operators = pods(&client, &ns, "operator").await;
    // The token the kubelet projected into the operator pod (its real, pod-bound ServiceAccount token), read from
    // the node's volume directory; used over the path pods use: the kubernetes Service, through kube-proxy.
    let pod = operators
        .iter()
        .find(|p| is_ready(p))
        .expect("a Ready operator pod");
    let uid = pod.metadata.uid.clone().unwrap();
    let dir = format!(
        "{}/kubelet/pods/{uid}/volumes/kubernetes.io~projected",
        env("E2E_KUBELET_ROOT")
    );
    let volume = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.join("token").exists())
        .expect("a projected ServiceAccount token");
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "in-pod", "cluster": {
            "server": "https://10.96.0.1:443",
            "certificate-authority": volume.join("ca.crt") } }],
        "users": [{ "name": "pod", "user": { "tokenFile": volume.join("token") } }],
        "contexts": [{ "name": "pod", "context": { "cluster": "in-pod", "user": "pod", "namespace": ns } }],
        "current-context": "pod",
    }))
    .unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let sa = Client::try_from(config).unwrap();
    Api::<TicketEvent>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list TicketEvents with the pod's token");
    Api::<Deployment>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list Deployments with the pod's token");
    let forbidden =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(ref s)) if s.code == 403);
    assert!(forbidden(
        Api::<Secret>::namespaced(sa.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Namespace>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    // After a rollout the old leader's lease runs out first: a current pod must take over within its duration.
    let leases = Api::<Lease>::namespaced(sa, &ns);
    let holder = until(
        Duration::from_secs(60),
        "an operator pod of this release to hold the lease",
        || async {
            let lease = leases
                .get("tiketi-operator")
                .await
                .expect("the operator reads its Lease");
            let holder = lease.spec?.holder_identity?;
            pods(&client, &ns, "operator")
                .await
                .iter()
                .any(|p| p.name_any() == holder && is_ready(p))
                .then_some(holder)
        },
    )
    .await;
    eprintln!(
        "operator pod {} token: RBAC as granted; leader {holder}",
        pod.name_any()
    );
}

fn from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(source.parse().unwrap()))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One Engine.IO long-polling request of session `sid` (the handshake when None); the body.
async fn poll(
    http: &reqwest::Client,
    base: &str,
    sid: Option<&str>,
    post: Option<String>,
) -> (u16, String) {
    let mut url = format!("{base}/socket.io/?EIO=4&transport=polling");
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    let req = match post {
        Some(body) => http
            .post(url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body),
        None => http.get(url),
    };
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Polls session `sid` until a packet starting with `prefix` arrives (answering pings); all packets seen.
async fn poll_until(http: &reqwest::Client, base: &str, sid: &str, prefix: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (code, body) = poll(http, base, Some(sid), None).await;
        assert_eq!(code, 200, "poll of {sid}: {body}");
        for packet in body.split('\u{1e}') {
            if packet == "2" {
                let (code, ok) = poll(http, base, Some(sid), Some("3".into())).await;
                assert_eq!((code, ok.as_str()), (200, "ok"), "pong of {sid}");
            }
            seen.push(packet.to_string());
        }
        if seen.iter().any(|p| p.starts_with(prefix)) {
            return seen;
        }
    }
    panic!("no {prefix} packet for {sid}: {seen:?}");
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_behind_nginx_websocket_polling_affinity_and_forwarded_client_addresses() {
    if !real_node(
        "real_pods_behind_nginx_websocket_polling_affinity_and_forwarded_client_addresses",
    ) {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let nginx = env("E2E_NGINX_URL");
    let ready = settle(&client, 2).await;
    // nginx follows the endpoints (as an ingress controller does): wait until it proxies to exactly these pods.
    let mut ips: Vec<String> = ready.iter().map(pod_ip).collect();
    ips.sort();
    until(
        Duration::from_secs(30),
        "nginx's upstream to list the ready pods",
        || async {
            let conf = std::fs::read_to_string(env("E2E_NGINX_UPSTREAM")).ok()?;
            let mut listed: Vec<String> = conf
                .lines()
                .filter_map(|l| Some(l.strip_prefix("server ")?.split(':').next()?.to_string()))
                .collect();
            listed.sort();
            (listed == ips).then_some(())
        },
    )
    .await;
    let event = Uuid::new_v4();
    // WebSocket through the proxy (Upgrade / Connection passed on).
    let token = register(&from("127.0.0.1"), &nginx).await;
    let mut ws = sio_connect(&nginx, &token).await;
    ws.send(Message::text(format!(
        "42{}",
        json!(["join-event", { "eventId": event }])
    )))
    .await
    .unwrap();
    let info = wait_event(&mut ws, "room-info").await;
    eprintln!("websocket through nginx: room-info {info}");
    // Long-polling clients from four addresses: every request of a session must reach the pod holding it.
    for i in 2..6 {
        let http = from(&format!("127.0.0.{i}"));
        let token = register(&http, &nginx).await;
        let (code, open) = poll(&http, &nginx, None, None).await;
        assert_eq!(code, 200, "{open}");
        let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
        let sid = handshake["sid"].as_str().unwrap().to_string();
        let connect = format!("40{}", json!({ "token": token }));
        let (code, body) = poll(&http, &nginx, Some(&sid), Some(connect)).await;
        assert_eq!(
            (code, body.as_str()),
            (200, "ok"),
            "polling CONNECT of 127.0.0.{i}"
        );
        poll_until(&http, &nginx, &sid, "40").await;
        let join = format!("42{}", json!(["join-event", { "eventId": event }]));
        let (code, body) = poll(&http, &nginx, Some(&sid), Some(join)).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let packets = poll_until(&http, &nginx, &sid, "42[\"room-info\"").await;
        assert!(
            !packets.iter().any(|p| p.contains("Session ID unknown")),
            "127.0.0.{i}: {packets:?}"
        );
    }
    eprintln!("polling through nginx: 4 sessions, 5 requests each, all on their own pod");
    // X-Forwarded-For: the service trusts the proxy (TRUSTED_PROXIES), so each client has its own login budget.
    let noisy = from("127.0.0.7");
    // The limit counts per fixed minute: start the burst well inside one (not in its last 15 s).
    until(Duration::from_secs(20), "a fresh minute window", || async {
        (Utc::now().timestamp() % 60 < 45).then_some(())
    })
    .await;
    // At once: the attempts over the budget are refused before any password hashing.
    let burst: Vec<_> = (0..40)
        .map(|n| {
            let noisy = noisy.clone();
            let nginx = nginx.clone();
            tokio::spawn(async move {
                noisy
                    .post(format!("{nginx}/api/auth/login"))
                    .json(&json!({ "email": format!("nobody-{n}-{}@e2e.tiketi.test", Uuid::new_v4().simple()), "password": "wrong-password" }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap());
    }
    assert!(
        statuses.contains(&429),
        "the noisy client is limited: {statuses:?}"
    );
    let quiet = from("127.0.0.8")
        .post(format!("{nginx}/api/auth/login"))
        .json(&json!({ "email": format!("quiet-{}@e2e.tiketi.test", Uuid::new_v4().simple()), "password": "wrong-password" }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_ne!(
        quiet, 429,
        "another client behind the same proxy keeps its own budget"
    );
    eprintln!(
        "X-Forwarded-For: 127.0.0.7 got {} x 429 of 40 logins at once, 127.0.0.8 answered {quiet}",
        statuses.iter().filter(|s| **s == 429).count()
    );
}

/// `control-plane.sh ARGS` (the harness that owns the forwarders the pods reach PostgreSQL and Redis through).
fn control_plane(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/control-plane.sh");
    let out = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("run control-plane.sh");
    assert!(
        out.status.success(),
        "control-plane.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dependency checks of one pod (GET /health/all on its own address).
async fn dependency_status(http: &reqwest::Client, pod: &Pod, dependency: &str) -> Option<String> {
    let all: Value = http
        .get(format!("http://{}:3001/health/all", pod_ip(pod)))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    all["checks"][dependency]["status"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_postgres_and_redis_outages_never_take_every_pod_out_of_the_service() {
    if !real_node("real_pods_postgres_and_redis_outages_never_take_every_pod_out_of_the_service") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ready = settle(&client, 2).await;
    let names: Vec<String> = ready.iter().map(ResourceExt::name_any).collect();
    let base = service_url(&client).await;
    let http = reqwest::Client::new();
    for (dependency, forwarder) in [("redis", "redis"), ("database", "postgres")] {
        // The outage as the pods see it: every connection to it cut, new ones refused.
        control_plane(&["forward-stop", forwarder]);
        let t0 = tokio::time::Instant::now();
        let mut seen_down = Vec::new();
        // Until every pod reports it down (each checks on its own), and for 10 s more: the pods stay Ready and in
        // the Service, and the Service answers readiness.
        while seen_down.len() < ready.len() || t0.elapsed() < Duration::from_secs(10) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{dependency}: pods reporting it down: {seen_down:?}"
            );
            for pod in &ready {
                if !seen_down.contains(&pod.name_any())
                    && dependency_status(&http, pod, dependency)
                        .await
                        .is_some_and(|s| s != "ok")
                {
                    seen_down.push(pod.name_any());
                }
            }
            let now: Vec<String> = pods(&client, &release_ns(), "service")
                .await
                .iter()
                .filter(|p| is_ready(p))
                .map(ResourceExt::name_any)
                .collect();
            assert_eq!(now, names, "{dependency} down: the pods stay Ready");
            let status = http
                .get(format!("{base}/health/ready"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(
                status, 200,
                "{dependency} down: readiness through the Service"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!(
            "{dependency} outage: both pods reported it down, stayed Ready and in the Service for {:?}",
            t0.elapsed()
        );
        control_plane(&["forward-start", forwarder]);
        for pod in &ready {
            until(
                Duration::from_secs(60),
                &format!("{} to see {dependency} again", pod.name_any()),
                || async {
                    (dependency_status(&http, pod, dependency).await.as_deref() == Some("ok"))
                        .then_some(())
                },
            )
            .await;
        }
        eprintln!(
            "{dependency} back: both pods report it ok after {:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_rolling_restart_mid_sale_answers_every_request_and_restores_every_session() {
    if !real_node(
        "real_pods_rolling_restart_mid_sale_answers_every_request_and_restores_every_session",
    ) {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let (deployments, name) = service_deployment(&client).await;
    let before: Vec<String> = settle(&client, 2)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let base = service_url(&client).await;
    let http = reqwest::Client::new();
    let event = Uuid::new_v4();
    let mut users = Vec::new();
    for _ in 0..3 {
        let token = register(&http, &base).await;
        let mut ws = sio_connect(&base, &token).await;
        ws.send(Message::text(format!(
            "42{}",
            json!(["join-event", { "eventId": event }])
        )))
        .await
        .unwrap();
        wait_event(&mut ws, "room-info").await;
        users.push((token, ws));
    }
    // Requests all through the rollout, as the frontend keeps making them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, http, base) = (stop.clone(), http.clone(), base.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http
                    .get(format!("{base}/api/events"))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        })
    };
    // What `helm upgrade` does to the pods: a new template, rolled out one pod at a time (maxUnavailable 0).
    let t0 = tokio::time::Instant::now();
    deployments
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "template": { "metadata": { "annotations": {
                "tiketi.dev/e2e-rollout": Uuid::new_v4().to_string() } } } } }),
            ),
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(180),
        "the rollout to replace both pods",
        || async {
            let all = pods(&client, &release_ns(), "service").await;
            let fresh = all
                .iter()
                .filter(|p| is_ready(p) && !before.contains(&p.name_any()))
                .count();
            (fresh == 2 && all.len() == 2).then_some(())
        },
    )
    .await;
    let rollout = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    eprintln!(
        "rolling restart in {rollout:?}: {ok} requests answered 200, {} not: {failed:?}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "every request answered during the rollout"
    );
    // Every socket's pod went away; each user reconnects (as socket.io-client does) and gets the session back.
    for (token, mut ws) in users {
        let end = ending(&mut ws, Duration::from_secs(5)).await;
        assert_ne!(end, Ending::ServerDisconnect);
        let mut ws = sio_connect(&base, &token).await;
        let restored = wait_event(&mut ws, "session-restored").await;
        assert_eq!(restored["eventId"], json!(event), "{restored}");
    }
    eprintln!("rolling restart: 3 sessions restored on the new pods");
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_queue_depth_scales_real_pods_out_and_back() {
    use fred::prelude::{ClientLike, KeysInterface, SortedSetsInterface};
    if !real_node("real_pods_queue_depth_scales_real_pods_out_and_back") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    settle(&client, 2).await;
    let event = Uuid::new_v4();
    let te = format!("queue-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let now = Utc::now();
    create_te(
        &client,
        &ns,
        &te,
        json!({
            "eventId": event,
            "artist": format!("E2E real queue {}", Uuid::new_v4().simple()),
            "opensAt": (now - chrono::Duration::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "closesAt": (now + chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "target": { "kind": "Deployment", "name": name },
            "usersPerReplica": 1500,
            "minReplicas": 2,
            "maxReplicas": 4,
            "fallbackExpectedUsers": 1500,
            "queueScaling": { "pollSeconds": 1, "rules": [
                { "above": 5000, "change": 2, "cooldownSeconds": 4 },
                { "below": 1000, "change": -1, "cooldownSeconds": 4 } ] },
        }),
    )
    .await;
    let redis = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&env("REDIS_URL")).unwrap(),
    )
    .build()
    .unwrap();
    redis.init().await.unwrap();
    let keys = tiketi_core::keys::Keys::new(
        std::env::var("REDIS_PREFIX").unwrap_or_else(|_| tiketi_core::keys::DEFAULT_PREFIX.into()),
    );
    let queue = keys.queue(event);
    let users: Vec<(f64, String)> = (0..6000).map(|i| (i as f64, format!("user-{i}"))).collect();
    let _: () = redis
        .zadd(&queue, None, None, false, false, users)
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    until(
        Duration::from_secs(30),
        "+2 replicas for 6000 queued users",
        || async {
            let d = deployments.get(&name).await.ok()?;
            (d.spec?.replicas? == 4).then_some(())
        },
    )
    .await;
    let decided = t0.elapsed();
    settle(&client, 4).await;
    eprintln!(
        "6000 queued users: operator scaled 2 -> 4 after {decided:?}; 4 real pods Ready after {:?}",
        t0.elapsed()
    );
    let status = serde_json::to_value(
        Api::<TicketEvent>::namespaced(client.clone(), &ns)
            .get(&te)
            .await
            .unwrap()
            .status
            .unwrap_or_default(),
    )
    .unwrap();
    eprintln!(
        "decision while the queue was full: {}",
        status["lastDecision"]
    );
    // The queue drains: one replica less per cooldown, down to minReplicas.
    let _: i64 = redis.del(&queue).await.unwrap();
    until(
        Duration::from_secs(60),
        "scale-in to minReplicas",
        || async {
            let d = deployments.get(&name).await.ok()?;
            (d.spec?.replicas? == 2).then_some(())
        },
    )
    .await;
    settle(&client, 2).await;
    eprintln!(
        "queue drained: back to 2 real pods after {:?}",
        t0.elapsed()
    );
    delete_te(&client, &ns, &te).await;
    scale(&deployments, &name, 2).await;
}
