//! Test fixtures: an ordered API-server verifier (controller-rs's `ApiServerVerifier` idea: each
//! expected call, with its method, path and the parts of its body that matter, in order, and nothing
//! else), builders for TicketEvents and their world, and a context whose stores the test fills.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use kube::{
    Client,
    api::DynamicObject,
    client::Body,
    runtime::{
        events::Recorder,
        reflector::{self, store::Writer},
        watcher,
    },
};
use serde_json::{Value, json};
use tiketi_crds::{TicketEvent, TicketEventSpec, TicketEventStatus};

use crate::{
    context::{Context, FINALIZER, Stores},
    metrics::Metrics,
};

/// One expected request and the answer to give.
#[derive(Debug, Clone)]
pub struct Expect {
    pub method: &'static str,
    /// The request path ends with this (query excluded).
    pub path: String,
    /// Query fragments the request must carry.
    pub query: Vec<&'static str>,
    /// Parts of the JSON body the request must contain (`None`: not checked).
    pub body: Option<Value>,
    pub status: StatusCode,
    pub reply: Value,
    /// The API server takes this long to answer.
    pub delay: Option<std::time::Duration>,
}

impl Expect {
    fn new(method: &'static str, path: &str, body: Option<Value>, reply: Value) -> Self {
        Expect {
            method,
            path: path.into(),
            query: vec![],
            body,
            status: StatusCode::OK,
            reply,
            delay: None,
        }
    }
    pub fn get(path: &str, reply: Value) -> Self {
        Self::new("GET", path, None, reply)
    }
    pub fn put(path: &str, body: Value, reply: Value) -> Self {
        Self::new("PUT", path, Some(body), reply)
    }
    pub fn patch(path: &str, body: Value, reply: Value) -> Self {
        Self::new("PATCH", path, Some(body), reply)
    }
    pub fn not_found(method: &'static str, path: &str) -> Self {
        Expect {
            status: StatusCode::NOT_FOUND,
            ..Self::new(
                method,
                path,
                None,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404 }),
            )
        }
    }
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    pub fn with_query(mut self, q: &'static str) -> Self {
        self.query.push(q);
        self
    }

    /// GET of the TicketEvent (the pass starts from the stored object).
    pub fn get_te(te: &TicketEvent) -> Self {
        let name = te.metadata.name.clone().unwrap_or_default();
        Self::get(
            &format!("/namespaces/default/ticketevents/{name}"),
            serde_json::to_value(te).unwrap(),
        )
    }
    pub fn get_deployment(replicas: i32, ready: i32) -> Self {
        Self::get(
            "/apis/apps/v1/namespaces/default/deployments/svc",
            serde_json::to_value(deployment(replicas, ready)).unwrap(),
        )
    }
    pub fn get_deployment_with(replicas: i32, ready: i32, wishes: &[(&str, i32)]) -> Self {
        Self::get(
            "/apis/apps/v1/namespaces/default/deployments/svc",
            serde_json::to_value(deployment_with(replicas, ready, wishes)).unwrap(),
        )
    }
    /// The update of Deployment `svc` from `from` replicas (as `get_deployment(from, _)` gave it) to
    /// `replicas` (with the sale's wish beside), conditional on the Deployment being unchanged since
    /// (its resourceVersion).
    pub fn scale(from: i32, replicas: i32) -> Self {
        Self::patch(
            "/apis/apps/v1/namespaces/default/deployments/svc",
            json!({ "metadata": { "resourceVersion": format!("rv-{from}") }, "spec": { "replicas": replicas } }),
            serde_json::to_value(deployment(replicas, from)).unwrap(),
        )
    }
    /// An update of Deployment `svc` (read at `from` replicas) that records or removes the sale's
    /// wish only, conditional on its resourceVersion.
    pub fn write(from: i32) -> Self {
        Self::patch(
            "/apis/apps/v1/namespaces/default/deployments/svc",
            json!({ "metadata": { "resourceVersion": format!("rv-{from}") } }),
            serde_json::to_value(deployment(from, from)).unwrap(),
        )
    }
    /// The API server's answer when the object changed since the resourceVersion a write carried.
    pub fn conflict(mut self) -> Self {
        self.status = StatusCode::CONFLICT;
        self.reply = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                             "message": "the object has been modified; please apply your changes to the latest version and try again",
                             "code": 409 });
        self
    }
    /// Server-side apply of the status; `status` lists the fields that must be in it.
    pub fn status(te: &TicketEvent, status: Value) -> Self {
        let name = te.metadata.name.clone().unwrap_or_default();
        let mut reply = serde_json::to_value(te).unwrap();
        reply["status"] = json!({});
        Self::patch(
            &format!("/namespaces/default/ticketevents/{name}/status"),
            json!({ "status": status }),
            reply,
        )
        .with_query("fieldManager=tiketi-operator")
        .with_query("force=true")
    }
    /// A Kubernetes Event with this reason (and the note containing `note`, if given).
    pub fn event(reason: &str) -> Self {
        Self::new(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            Some(json!({ "reason": reason })),
            Value::Null,
        )
    }
}

/// Whether `actual` contains everything in `expected` (objects: those keys, recursively; anything
/// else: equal).
pub fn includes(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|x| includes(x, v))),
        (a, e) => a == e,
    }
}

/// A request the verifier served.
#[derive(Debug, Clone)]
pub struct Call {
    #[allow(dead_code)]
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// A client whose requests must be exactly `script`, in order. The returned future completes once
/// every client handle is gone and yields the calls; it panics on a wrong, missing or extra call.
pub fn verifier(script: Vec<Expect>) -> (Client, impl Future<Output = Vec<Call>>) {
    let (client, _, done) = verifier_at(script, chrono::Duration::zero());
    (client, done)
}

/// `verifier` whose API server's clock is `ahead` of this process's (its `Date` headers say so),
/// with the clock the client's responses feed.
pub fn verifier_at(
    script: Vec<Expect>,
    ahead: chrono::Duration,
) -> (
    Client,
    Arc<crate::clock::Clock>,
    impl Future<Output = Vec<Call>>,
) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut calls = Vec::new();
        for (i, want) in script.into_iter().enumerate() {
            // every client handle dropped before the call: it never came
            let Some((req, send)) = handle.next_request().await else {
                panic!("call {i} never came: {} {}", want.method, want.path);
            };
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (method, path) = (parts.method.to_string(), parts.uri.path().to_string());
            let query = parts.uri.query().unwrap_or_default().to_string();
            assert!(
                method == want.method && path.ends_with(&want.path),
                "call {i}: got {method} {path}, expected {} …{}",
                want.method,
                want.path
            );
            for q in &want.query {
                assert!(
                    query.contains(q),
                    "call {i} {path}: query {query} lacks {q}"
                );
            }
            if let Some(expected) = &want.body {
                assert!(
                    includes(&body, expected),
                    "call {i} {method} {path}: body\n{body:#}\nlacks\n{expected:#}"
                );
            }
            let reply = if want.reply.is_null() {
                body.clone()
            } else {
                want.reply.clone()
            };
            calls.push(Call { method, path, body });
            if let Some(d) = want.delay {
                tokio::time::sleep(d).await;
            }
            let date = (chrono::Utc::now() + ahead)
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            send.send_response(
                Response::builder()
                    .status(want.status)
                    .header(http::header::DATE, date)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
        if let Some((req, _)) = handle.next_request().await {
            panic!("unexpected call: {} {}", req.method(), req.uri());
        }
        calls
    });
    let clock = Arc::new(crate::clock::Clock::default());
    let service = tower::ServiceBuilder::new()
        .layer(crate::clock::layer(clock.clone()))
        .service(service);
    let client = Client::new(service, "default");
    (client, clock, async move { task.await.expect("verifier") })
}

/// Stores filled by the test (what the reflectors would hold).
pub struct World {
    pub tickets: Writer<TicketEvent>,
    pub hpas: Writer<HorizontalPodAutoscaler>,
    pub scaled_objects: Writer<DynamicObject>,
    pub stores: Stores,
}

impl World {
    /// Stores that had their first (empty) list, as the reflectors' after their start.
    pub fn new() -> Self {
        let mut w = Self::unsynced();
        w.tickets.apply_watcher_event(&watcher::Event::InitDone);
        w.hpas.apply_watcher_event(&watcher::Event::InitDone);
        w.scaled_objects
            .apply_watcher_event(&watcher::Event::InitDone);
        w
    }
    /// Stores whose first list has not come yet (the operator just started or took over).
    pub fn unsynced() -> Self {
        let (tickets_r, tickets) = reflector::store();
        let (hpas_r, hpas) = reflector::store();
        let scaled_objects = Writer::new(crate::act::scaled_object_resource());
        let so_r = scaled_objects.as_reader();
        World {
            tickets,
            hpas,
            scaled_objects,
            stores: Stores {
                tickets: tickets_r,
                hpas: hpas_r,
                scaled_objects: so_r,
                keda: true,
            },
        }
    }
    pub fn ticket(mut self, te: &TicketEvent) -> Self {
        self.tickets
            .apply_watcher_event(&watcher::Event::Apply(te.clone()));
        self
    }
    pub fn hpa(mut self, h: &HorizontalPodAutoscaler) -> Self {
        self.hpas
            .apply_watcher_event(&watcher::Event::Apply(h.clone()));
        self
    }
    pub fn scaled_object(mut self, so: &DynamicObject) -> Self {
        self.scaled_objects
            .apply_watcher_event(&watcher::Event::Apply(so.clone()));
        self
    }
}

pub fn context(
    client: Client,
    stores: Stores,
    db: Option<sqlx::PgPool>,
    redis: Option<fred::clients::Pool>,
    keys: tiketi_core::keys::Keys,
) -> Arc<Context> {
    Arc::new(context_with(
        client,
        stores,
        db,
        redis,
        keys,
        crate::leader::Fence::always(),
        Default::default(),
    ))
}

pub fn context_with(
    client: Client,
    stores: Stores,
    db: Option<sqlx::PgPool>,
    redis: Option<fred::clients::Pool>,
    keys: tiketi_core::keys::Keys,
    fence: crate::leader::Fence,
    clock: Arc<crate::clock::Clock>,
) -> Context {
    Context {
        shared: crate::context::Shared {
            recorder: Recorder::new(
                client.clone(),
                crate::controller::reporter(Some("test".into())),
            ),
            client,
            db,
            redis,
            keys,
            metrics: Arc::new(Metrics::default()),
            fence,
            clock,
            allow: crate::context::Allow {
                cooperate: true,
                pod_starts: true,
            },
            identity: "test".into(),
        },
        stores,
        failures: Default::default(),
    }
}

/// A TicketEvent named `name` opening `opens_in` from now, for two hours, on Deployment `svc`, with
/// the operator's finalizer already on it.
pub fn ticket_event(name: &str, opens_in: chrono::Duration) -> TicketEvent {
    let opens = chrono::Utc::now() + opens_in;
    // one event per TicketEvent name (two TicketEvents with one eventId: the newer is Failed)
    let tail = name.bytes().fold(0x2f0b_8c1d_7e11u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) & 0xffff_ffff_ffff;
    let spec: TicketEventSpec = serde_json::from_value(json!({
        "eventId": format!("6a8c3a57-94f1-4f5c-9d5b-{tail:012x}"),
        "artist": "IU",
        "opensAt": opens.to_rfc3339(),
        "closesAt": (opens + chrono::Duration::hours(2)).to_rfc3339(),
        "target": { "kind": "Deployment", "name": "svc" },
    }))
    .unwrap();
    let mut te = TicketEvent::new(name, spec);
    te.metadata.namespace = Some("default".into());
    te.metadata.generation = Some(1);
    te.metadata.uid = Some(format!("uid-{name}"));
    te.metadata.finalizers = Some(vec![FINALIZER.into()]);
    te
}

pub fn with_status(mut te: TicketEvent, phase: &str, desired: i32) -> TicketEvent {
    te.status = Some(TicketEventStatus {
        phase: Some(phase.into()),
        desired_replicas: Some(desired),
        ..Default::default()
    });
    te
}

pub fn deployment(replicas: i32, ready: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "svc", "namespace": "default", "resourceVersion": format!("rv-{replicas}") },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "svc" } }, "template": { "metadata": { "labels": { "app": "svc" } } } },
        "status": { "replicas": replicas, "readyReplicas": ready }
    }))
    .unwrap()
}

/// Deployment `svc` recording the wishes of the TicketEvents named in `wishes` (live for a day).
pub fn deployment_with(replicas: i32, ready: i32, wishes: &[(&str, i32)]) -> Deployment {
    deployment_named("svc", replicas, ready, wishes)
}

pub fn deployment_named(
    name: &str,
    replicas: i32,
    ready: i32,
    wishes: &[(&str, i32)],
) -> Deployment {
    let until = crate::sale::ts(chrono::Utc::now() + chrono::Duration::days(1));
    let mut d = deployment(replicas, ready);
    d.metadata.name = Some(name.into());
    d.metadata.annotations = Some(
        wishes
            .iter()
            .map(|(name, n)| {
                let w = crate::observe::TargetWish {
                    replicas: *n,
                    until: until.clone(),
                };
                (
                    crate::context::wish_key(name),
                    serde_json::to_string(&w).unwrap(),
                )
            })
            .collect(),
    );
    d
}

/// The wish annotation a call wrote for TicketEvent `name` (`Some(Null)`: removed).
pub fn written_wish(call: &Call, name: &str) -> Option<Value> {
    let v = call.body["metadata"]["annotations"].get(crate::context::wish_key(name))?;
    Some(match v.as_str() {
        Some(s) => serde_json::from_str(s).unwrap(),
        None => Value::Null,
    })
}

pub fn hpa_on_svc() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "svc-hpa", "namespace": "default" },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "svc" }, "minReplicas": 2, "maxReplicas": 10 }
    }))
    .unwrap()
}

pub fn scaled_object_on_svc() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": { "name": "svc-keda", "namespace": "default" },
        "spec": { "scaleTargetRef": { "name": "svc" }, "minReplicaCount": 1, "maxReplicaCount": 30 }
    }))
    .unwrap()
}

/// Reconciles `te` once with `world`'s stores against exactly `script`; returns the result and the
/// calls made (every one of them was expected, in order).
pub async fn reconcile_scripted(
    te: &TicketEvent,
    world: World,
    script: Vec<Expect>,
) -> (crate::Result<kube::runtime::controller::Action>, Vec<Call>) {
    reconcile_scripted_with(te, world, script, None, None, Default::default()).await
}

pub async fn reconcile_scripted_with(
    te: &TicketEvent,
    world: World,
    script: Vec<Expect>,
    db: Option<sqlx::PgPool>,
    redis: Option<fred::clients::Pool>,
    keys: tiketi_core::keys::Keys,
) -> (crate::Result<kube::runtime::controller::Action>, Vec<Call>) {
    let (client, done) = verifier(script);
    let ctx = context(client, world.stores.clone(), db, redis, keys);
    let result = crate::controller::reconcile(Arc::new(te.clone()), ctx).await;
    drop(world);
    (result, done.await)
}

/// The HPA KEDA creates for ScaledObject `svc-keda` (owned by it, labelled with its name).
pub fn keda_hpa_on_svc() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "keda-hpa-svc-keda", "namespace": "default",
                      "labels": { "scaledobject.keda.sh/name": "svc-keda" },
                      "ownerReferences": [{ "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                            "name": "svc-keda", "uid": "uid-svc-keda", "controller": true }] },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "svc" }, "minReplicas": 1, "maxReplicas": 30 }
    }))
    .unwrap()
}
