//! A fake API server for reconcile tests: answers the calls the reconciler makes from a small in-memory
//! world and records every request, so tests assert on what was patched (tower-test mock service).

use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use kube::{Client, client::Body, runtime::events::Recorder};
use serde_json::{Value, json};
use tiketi_crds::{TicketEvent, TicketEventSpec};

use crate::{controller::Context, metrics::Metrics};

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default, Clone)]
pub struct World {
    pub deployment: Option<Deployment>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub ticket_events: Vec<TicketEvent>,
}

impl World {
    /// Just the target Deployment with `replicas`, `ready` of them ready.
    pub fn target(replicas: i32, ready: i32) -> Self {
        World {
            deployment: Some(deployment(replicas, ready)),
            ..Default::default()
        }
    }
}

pub struct Fake {
    pub calls: Arc<Mutex<Vec<Call>>>,
}

impl Fake {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn find(&self, method: &str, path_end: &str) -> Option<Call> {
        self.calls()
            .into_iter()
            .find(|c| c.method == method && c.path.ends_with(path_end))
    }

    /// Reasons of the Kubernetes Events published.
    pub fn event_reasons(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.path.contains("/events"))
            .filter_map(|c| c.body["reason"].as_str().map(String::from))
            .collect()
    }
}

fn list(items: Vec<Value>, kind: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items })
}

/// A client whose requests are served from `world`.
pub fn client(world: World) -> (Client, Fake) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (method, path) = (parts.method.to_string(), parts.uri.path().to_string());
            recorded.lock().unwrap().push(Call {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            let (status, reply) = route(&world, &method, &path, &body);
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), Fake { calls })
}

fn route(world: &World, method: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let not_found = (
        StatusCode::NOT_FOUND,
        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404 }),
    );
    match (method, path) {
        ("GET", p) if p.starts_with("/apis/apps/v1/namespaces/") && p.contains("/deployments/") => {
            match &world.deployment {
                Some(d) => (StatusCode::OK, serde_json::to_value(d).unwrap()),
                None => not_found,
            }
        }
        ("PATCH", p) if p.ends_with("/scale") => {
            let replicas = body["spec"]["replicas"].clone();
            (
                StatusCode::OK,
                json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": { "name": "svc" }, "spec": { "replicas": replicas } }),
            )
        }
        ("GET", p) if p.contains("/horizontalpodautoscalers") => (
            StatusCode::OK,
            list(
                world
                    .hpas
                    .iter()
                    .map(|h| serde_json::to_value(h).unwrap())
                    .collect(),
                "HorizontalPodAutoscalerList",
            ),
        ),
        ("GET", p) if p.contains("/ticketevents/") => {
            let name = p.rsplit('/').next().unwrap_or_default();
            match world
                .ticket_events
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(name))
            {
                Some(t) => (StatusCode::OK, serde_json::to_value(t).unwrap()),
                None => not_found,
            }
        }
        ("GET", p) if p.ends_with("/ticketevents") => (
            StatusCode::OK,
            list(
                world
                    .ticket_events
                    .iter()
                    .map(|t| serde_json::to_value(t).unwrap())
                    .collect(),
                "TicketEventList",
            ),
        ),
        ("PATCH", p) if p.ends_with("/status") => {
            // echo a whole object back: the client decodes a TicketEvent
            let name = p
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .unwrap_or("te");
            let mut te =
                serde_json::to_value(ticket_event(name, chrono::Duration::minutes(1))).unwrap();
            te["status"] = body["status"].clone();
            (StatusCode::OK, te)
        }
        ("POST", p) if p.contains("/events") => (StatusCode::CREATED, body.clone()),
        _ => not_found,
    }
}

pub fn context(client: Client) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            crate::controller::reporter(Some("test".into())),
        ),
        client,
        db: None,
        redis: None,
        keys: tiketi_core::keys::Keys::default(),
        metrics: Arc::new(Metrics::default()),
        failures: Default::default(),
    })
}

/// A TicketEvent named `name` opening `opens_in` from now, for two hours, on Deployment `svc`.
pub fn ticket_event(name: &str, opens_in: chrono::Duration) -> TicketEvent {
    let opens = chrono::Utc::now() + opens_in;
    let spec: TicketEventSpec = serde_json::from_value(json!({
        "eventId": "6a8c3a57-94f1-4f5c-9d5b-2f0b8c1d7e11",
        "artist": "IU",
        "opensAt": opens.to_rfc3339(),
        "closesAt": (opens + chrono::Duration::hours(2)).to_rfc3339(),
        "target": { "kind": "Deployment", "name": "svc" },
    }))
    .unwrap();
    let mut te = TicketEvent::new(name, spec);
    te.metadata.namespace = Some("default".into());
    te.metadata.generation = Some(1);
    te
}

pub fn deployment(replicas: i32, ready: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "svc", "namespace": "default" },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "svc" } }, "template": { "metadata": { "labels": { "app": "svc" } } } },
        "status": { "replicas": replicas, "readyReplicas": ready }
    }))
    .unwrap()
}

pub fn hpa_on_svc() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "svc-hpa", "namespace": "default" },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "svc" }, "minReplicas": 2, "maxReplicas": 10 }
    }))
    .unwrap()
}

/// Reconciles `te` once against `world` (which then also holds `te`, as the API server would).
pub async fn run(
    te: TicketEvent,
    mut world: World,
) -> (crate::Result<kube::runtime::controller::Action>, Fake) {
    if !world
        .ticket_events
        .iter()
        .any(|t| t.metadata.name == te.metadata.name)
    {
        world.ticket_events.push(te.clone());
    }
    let (client, fake) = client(world);
    (
        crate::controller::reconcile(Arc::new(te), context(client)).await,
        fake,
    )
}
