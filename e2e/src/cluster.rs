//! What both e2e test targets need of the cluster: the kwok suite (tests/cluster.rs) and the real-pod
//! tests (tests/real_pods). The environment `e2e/run.sh` exports, the admin client, a namespace, a
//! Deployment and TicketEvents of one test, waiting, the suite's PostgreSQL and Redis, and what a
//! failed test prints about the operators.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, PostParams},
};
use serde_json::{Value, json};
use tiketi_crds::TicketEvent;
use uuid::Uuid;

/// The variable `name`, which `e2e/run.sh` sets.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by e2e/run.sh"))
}

/// True when `e2e/run.sh` runs with the real node (E2E_REAL_NODE=1): the chart's pods, the operator
/// pods among them, run on a kubelet; else the operators are local processes.
pub fn on_real_node() -> bool {
    std::env::var("E2E_REAL_NODE").as_deref() == Ok("1")
}

/// The cluster admin's client (KUBECONFIG).
pub async fn admin() -> Client {
    Client::try_default()
        .await
        .expect("KUBECONFIG points at the e2e cluster")
}

/// A fresh namespace for one test (the suite's operators watch every namespace).
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Deletes a test's namespace (and all in it); a failure is not the test's.
pub async fn delete_namespace(client: &Client, ns: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await
        .ok();
}

/// A Deployment the operator may scale, on the kwok nodes: its pods are Ready at once and nothing
/// runs (on kind, its kubelet runs the pause image), so a test scales it quickly, without a real
/// pod's start-up. E2E_IMAGE replaces the pause image.
pub async fn kwok_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> Api<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let image = std::env::var("E2E_IMAGE").unwrap_or_else(|_| "registry.k8s.io/pause:3.10".into());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "containers": [{ "name": "app", "image": image }],
                    "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }]
                }
            }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    api
}

/// Creates a TicketEvent from raw JSON (untyped, so invalid specs reach the API server's validation).
pub async fn create_te(
    client: &Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, kube::Error> {
    let ar = ApiResource::erase::<TicketEvent>(&());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tiketi.io/v1alpha1", "kind": "TicketEvent", "metadata": { "name": name }, "spec": spec
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .create(&PostParams::default(), &obj)
        .await
}

/// Deletes a TicketEvent, if it is there (the operator's finalizer may keep it a while).
pub async fn delete_te(client: &Client, ns: &str, name: &str) {
    Api::<TicketEvent>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .ok();
}

/// The status of a TicketEvent as JSON (empty before the operator wrote one).
pub async fn status(client: &Client, ns: &str, name: &str) -> Value {
    let te = Api::<TicketEvent>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    serde_json::to_value(te.status.unwrap_or_default()).unwrap()
}

/// What a check of [`until`] gives: `true` or a value when what it waits for is there.
pub trait Check {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Check for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Polls until `check` is true or gives a value (no fixed sleeps); returns that value, panics with
/// `what` after `timeout`.
pub async fn until<C, F, Fut>(timeout: Duration, what: &str, mut check: F) -> C::Value
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await.done() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// History in traffic_logs for `artist`, as the service's traffic sampler writes it: one past sale
/// per peak, 30, 60, 90 … days ago, ten minutes each rising to its peak.
pub async fn history(artist: &str, peaks: &[i32]) {
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    for (i, peak) in peaks.iter().enumerate() {
        sqlx::query(
            "INSERT INTO traffic_logs (event_id, artist_name, minute, concurrent_users, queue_users, replicas)
             SELECT $1, $2, date_trunc('minute', now()) - make_interval(days => $4) + make_interval(mins => m), $3 * m / 10, 0, 2
             FROM generate_series(1, 10) m",
        )
        .bind(Uuid::new_v4())
        .bind(artist)
        .bind(peak)
        .bind(30 * (i as i32 + 1))
        .execute(&db)
        .await
        .unwrap();
    }
}

/// A Redis client on the suite's Redis (REDIS_URL), and the keys under the prefix the service and the
/// operators use.
pub async fn redis() -> (fred::prelude::Client, tiketi_core::keys::Keys) {
    use fred::prelude::ClientLike;
    let redis = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&env("REDIS_URL")).unwrap(),
    )
    .build()
    .unwrap();
    redis.init().await.unwrap();
    let keys = tiketi_core::keys::Keys::new(
        std::env::var("REDIS_PREFIX").unwrap_or_else(|_| tiketi_core::keys::DEFAULT_PREFIX.into()),
    );
    (redis, keys)
}

/// `kubectl ARGS` (run.sh puts it on PATH), fed `stdin`; its stdout, or its stderr as the error.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("kubectl: {e}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The last lines of every operator pod's log in `ns`, and of its previous container (a restart).
pub fn operator_logs(ns: &str) -> String {
    pod_logs(ns, "operator", 80, |_| true)
}

/// The errors, and the warnings about holds and the database, that the service pods of `ns` logged
/// (current and previous containers): what a failing rehearsal prints beside a 5xx it counted. (A
/// Redis fault makes every request warn; those are left out.)
pub fn service_problems(ns: &str) -> String {
    pod_logs(ns, "service", 20_000, |line| {
        line.contains("\"level\":\"ERROR\"")
            || (line.contains("\"level\":\"WARN\"")
                && (line.contains("hold") || line.contains("database")))
    })
}

/// The lines `keep` keeps of the last `tail` lines of each `component` pod's log in `ns`, current and
/// previous container.
fn pod_logs(ns: &str, component: &str, tail: u32, keep: impl Fn(&str) -> bool) -> String {
    let selector = format!("app.kubernetes.io/component={component}");
    let names = kubectl(
        &["-n", ns, "get", "pods", "-l", &selector, "-o", "name"],
        None,
    )
    .unwrap_or_else(|e| e);
    let tail = format!("--tail={tail}");
    let mut out = String::new();
    for pod in names.lines() {
        for previous in ["--previous=false", "--previous=true"] {
            let logs =
                kubectl(&["-n", ns, "logs", pod, &tail, previous], None).unwrap_or_else(|e| e);
            let kept: Vec<&str> = logs.lines().filter(|l| keep(l)).collect();
            let last = &kept[kept.len().saturating_sub(80)..];
            out.push_str(&format!(
                "---- {ns}/{pod} ({previous}) ----\n{}\n",
                last.join("\n")
            ));
        }
    }
    out
}

/// What a failing test prints, so that a timeout says what the operators did meanwhile.
pub enum Logs {
    /// The last 80 lines of a local operator process's log file.
    File(PathBuf),
    /// The logs of the operator pods of a namespace (current and previous containers) and its Leases.
    Pods(String),
    /// The TicketEvents and Deployments of a namespace, as stored.
    Objects(String),
}

/// Prints its [`Logs`] when the test fails (panics), a timeout included.
pub struct LogsOnFailure(pub Vec<Logs>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for logs in &self.0 {
            match logs {
                Logs::File(path) => {
                    let text = std::fs::read_to_string(path).unwrap_or_else(|e| e.to_string());
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
                    eprintln!("---- {} (last 80 lines) ----\n{tail}", path.display());
                }
                Logs::Pods(ns) => {
                    eprintln!("{}", operator_logs(ns));
                    let leases = kubectl(&["-n", ns, "get", "lease", "-o", "wide"], None)
                        .unwrap_or_else(|e| e);
                    eprintln!("---- leases in {ns} ----\n{leases}");
                }
                Logs::Objects(ns) => {
                    let objects = kubectl(
                        &["-n", ns, "get", "ticketevents,deployments", "-o", "yaml"],
                        None,
                    )
                    .unwrap_or_else(|e| e);
                    eprintln!("---- TicketEvents and Deployments in {ns} ----\n{objects}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn until_takes_a_bool_or_an_option_and_returns_the_value() {
        let mut n = 0;
        let got = until(Duration::from_secs(5), "the third poll", || {
            n += 1;
            let n = n;
            async move { (n == 3).then_some(n * 10) }
        })
        .await;
        assert_eq!(got, 30);
        let mut polls = 0;
        until(Duration::from_secs(5), "the second poll", || {
            polls += 1;
            let done = polls == 2;
            async move { done }
        })
        .await;
        assert_eq!(polls, 2);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 300ms waiting for never")]
    async fn until_panics_with_what_it_waited_for() {
        until(Duration::from_millis(300), "never", || async { false }).await;
    }
}
