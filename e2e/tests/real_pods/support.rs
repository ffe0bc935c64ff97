//! Helpers of the real-pod tests: the cluster, the chart's objects, waiting, a minimal Socket.IO client.

pub use std::time::Duration;

pub use chrono::{DateTime, Utc};
pub use futures::{SinkExt, StreamExt};
pub use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod, Secret, Service},
};
pub use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
pub use serde_json::{Value, json};
pub use tiketi_crds::TicketEvent;
pub use tiketi_e2e::cluster::*;
pub use tiketi_testkit::sio::{self, Frame, Ws, event_frame};
pub use uuid::Uuid;

/// True when the real node is there; else prints why the test does nothing.
pub fn real_node(test: &str) -> bool {
    if on_real_node() {
        return true;
    }
    eprintln!("{test}: skipped: no real node (run E2E_REAL_NODE=1 e2e/run.sh as root)");
    false
}

pub fn release_ns() -> String {
    env("E2E_OPERATOR_NAMESPACE")
}

pub fn component_selector(component: &str) -> ListParams {
    ListParams::default().labels(&format!(
        "app.kubernetes.io/instance=tiketi,app.kubernetes.io/component={component}"
    ))
}

pub async fn pods(client: &Client, ns: &str, component: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&component_selector(component))
        .await
        .unwrap()
        .items
}

pub fn condition_time(pod: &Pod, kind: &str) -> Option<DateTime<Utc>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| utc(&t.0))
}

pub fn utc(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.as_millisecond()).expect("a valid timestamp")
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && condition_time(pod, "Ready").is_some()
}

pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

/// The chart's service Deployment in the release namespace.
pub async fn service_deployment(client: &Client) -> (Api<Deployment>, String) {
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
pub async fn service_url(client: &Client) -> String {
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

pub async fn scale(api: &Api<Deployment>, name: &str, replicas: i32) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await
    .unwrap();
}

/// Waits until the Deployment has exactly `n` Ready pods and no terminating ones; returns them.
pub async fn settle(client: &Client, n: usize) -> Vec<Pod> {
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

/// One test at a time may resize the chart's service Deployment or cut its dependencies (they share them).
pub static SERVICE_DEPLOYMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test at a time may delete an operator pod or rely on every operator pod staying (its token).
pub static OPERATOR_PODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Each Socket.IO frame within a minute (a pod's start-up, the proxy's read timeout).
const SIO_WAIT: Duration = Duration::from_secs(60);

/// A Socket.IO client of `base` (http://ADDRESS:PORT) connected with `token`.
pub async fn sio_connect(base: &str, token: &str) -> Ws {
    let server = sio::resolve(base).await.expect("the server's address");
    let mut ws = tokio::time::timeout(Duration::from_secs(10), sio::open(server, None, None))
        .await
        .expect("websocket upgrade in time")
        .expect("websocket upgrade");
    sio::handshake(&mut ws, token, SIO_WAIT)
        .await
        .expect("engine.io open and socket.io connect ack");
    ws
}

/// Waits for the event `name`; returns its payload.
pub async fn wait_event(ws: &mut Ws, name: &str) -> Value {
    next_event(ws, name)
        .await
        .unwrap_or_else(|| panic!("connection ended before {name}"))
}

/// The payload of the next event `name` (pings answered); None when the connection ended first.
pub async fn next_event(ws: &mut Ws, name: &str) -> Option<Value> {
    loop {
        let m = sio::next_text(ws, SIO_WAIT).await.ok()?;
        if let Some(payload) = sio::event_payload(&m, name) {
            return Some(payload);
        }
    }
}

/// How a connection ended when its pod went away.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// WebSocket close frame or Engine.IO close packet: socket.io-client reconnects.
    Closed,
    /// Socket.IO DISCONNECT from the server ("io server disconnect"): socket.io-client does NOT reconnect.
    ServerDisconnect,
    /// TCP closed or reset without a close handshake: socket.io-client reconnects ("transport close").
    Dropped(String),
}

pub async fn ending(ws: &mut Ws, within: Duration) -> Ending {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = tokio::time::timeout(left, sio::next_frame(ws))
            .await
            .expect("the connection of a terminated pod ends within its grace period");
        match frame {
            Frame::Closed => return Ending::Closed,
            Frame::Dropped(why) => return Ending::Dropped(why),
            Frame::Text(t) if t.starts_with("41") => return Ending::ServerDisconnect,
            Frame::Text(_) => {}
        }
    }
}

/// Registers a user through `base` and returns its token.
pub async fn register(http: &reqwest::Client, base: &str) -> String {
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

/// Restarts of the chart's service containers (they must not change while another pod is OOM-killed).
pub async fn settle_count(client: &Client) -> i32 {
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

/// A client from `source`; it waits longer than the proxy's read timeout (60 s), so no answer means the
/// proxy hung as well.
pub fn from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(source.parse().unwrap()))
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
}

/// One Engine.IO long-polling request of session `sid` (the handshake when None); the body.
pub async fn poll(
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
pub async fn poll_until(
    http: &reqwest::Client,
    base: &str,
    sid: &str,
    prefix: &str,
) -> Vec<String> {
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

/// `control-plane.sh ARGS` (the harness that owns the forwarders the pods reach PostgreSQL and Redis through).
pub fn control_plane(args: &[&str]) {
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
pub async fn dependency_status(
    http: &reqwest::Client,
    pod: &Pod,
    dependency: &str,
) -> Option<String> {
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

/// A Socket.IO WebSocket through the proxy at `base` from the client address `source` (nginx balances by
/// it), before any Engine.IO packet; or why not.
pub async fn ws_from(base: &str, source: &str) -> Result<Ws, String> {
    let proxy = sio::resolve(base)
        .await
        .map_err(|e| format!("proxy address {base}: {e:#}"))?;
    let source = source.parse().map_err(|e| format!("{source}: {e}"))?;
    sio::open(proxy, Some(source), None)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// The leading operator pod of the release (Lease holder, Ready) and a Ready standby.
pub async fn leader_and_standby(client: &Client, ns: &str) -> (String, String) {
    let leases = Api::<Lease>::namespaced(client.clone(), ns);
    until(
        Duration::from_secs(60),
        "a leading operator pod and a Ready standby",
        || async {
            let holder = leases
                .get("tiketi-operator")
                .await
                .ok()?
                .spec?
                .holder_identity?;
            let list = pods(client, ns, "operator").await;
            list.iter()
                .find(|p| p.name_any() == holder && is_ready(p))?;
            let standby = list
                .iter()
                .find(|p| p.name_any() != holder && is_ready(p))?;
            Some((holder, standby.name_any()))
        },
    )
    .await
}

/// The host pid of the operator process of pod `pod` (the real node's containers are host
/// processes; the pod name is in its environment as POD_NAME).
pub fn operator_pid(pod: &str) -> Option<u32> {
    let needle = format!("POD_NAME={pod}\0");
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        // the image starts it through a symlink (entrypoint): its comm says so, its exe does not
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        if !exe.to_string_lossy().ends_with("tiketi-operator") {
            return None;
        }
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        environ
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
            .then_some(pid)
    })
}

/// Sends `signal` (e.g. "STOP", "CONT") to host process `pid`; false when it is gone.
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}
