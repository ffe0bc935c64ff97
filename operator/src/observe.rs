//! Observe: every read of one reconcile pass, gathered into one `Observed` value for `decide`.
//! Sibling TicketEvents, HPAs and KEDA ScaledObjects come from the controller's reflector stores (no
//! LIST per pass); the target Deployment is read fresh, and with it the wishes of the sales on it
//! (annotations written with its replicas); PostgreSQL and Redis reads that fail are
//! recorded as failed (`Read::Failed`), never abort the pass: `decide` falls back and says so.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler, core::v1::Pod,
};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams},
};
use tiketi_core::rules::OutflowRecord;
use tiketi_crds::{LEAD_TIME_AUTO, Mode, TicketEvent, phase};

use crate::{
    Result,
    context::{
        Context, KEDA_PAUSED_REPLICAS, KEDA_SCALED_OBJECT_LABEL, ORIGINAL_MIN_ANNOTATION,
        PAUSED_BY_ANNOTATION, WISH_ANNOTATION_PREFIX, wish_key,
    },
    plan::{Phase, SalePeak},
    sale::Sale,
    sale_data,
};

/// The outcome of one read outside Kubernetes.
#[derive(Debug, Clone, PartialEq)]
pub enum Read<T> {
    /// Not needed in this phase (or no database/Redis configured).
    Skipped,
    Ok(T),
    Failed(String),
}

impl<T> Read<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Read::Ok(v) => Some(v),
            _ => None,
        }
    }

    fn from<E: std::fmt::Display>(r: std::result::Result<T, E>) -> Self {
        match r {
            Ok(v) => Read::Ok(v),
            Err(e) => Read::Failed(e.to_string()),
        }
    }
}

/// The target Deployment as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target {
    /// `spec.replicas`: what is asked of it now.
    pub replicas: i32,
    /// Pods that exist (`status.replicas`).
    pub existing: i32,
    pub ready: i32,
    /// A rollout is in progress (`updatedReplicas` behind `spec.replicas`, or the new template not
    /// observed yet): its surge pods are not ready yet either, but they were not asked for by a
    /// scale-up.
    pub rolling_out: bool,
}

impl Target {
    /// Replicas asked for or existing but not Ready yet (still starting).
    pub fn starting(&self) -> i32 {
        (self.replicas.max(self.existing) - self.ready).max(0)
    }

    /// The starting replicas a scale-up asked for, which the warm-up credit counts on. During a
    /// rollout the pods that are not Ready are mostly its surge, so only replicas asked for that do
    /// not exist at all count; a mid-sale `helm upgrade` must not hold the queue steps back.
    pub fn warming(&self) -> i32 {
        if self.rolling_out {
            (self.replicas - self.existing).max(0)
        } else {
            self.starting()
        }
    }
}

/// Another TicketEvent on the same target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sibling {
    pub name: String,
    /// Its wish as recorded on the target (see `TargetWish`) while it is live and active.
    pub live_wish: Option<i32>,
    /// Its window says it is live but the target carries no wish of it yet (its first pass): its
    /// wish is unknown, so nobody may scale the target down.
    pub unsure: bool,
}

/// One sale's wish on the target, until its window ends (a TicketEvent removed without its
/// finalizer cannot hold the target up for longer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetWish {
    pub replicas: i32,
    /// RFC 3339: the end of the sale's window (closesAt plus the after-sale hold).
    pub until: String,
}

impl TargetWish {
    fn live_at(&self, now: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(&self.until).is_ok_and(|u| u > now)
    }
}

/// The wishes recorded on a target, by annotation key.
pub fn wishes_on(d: &Deployment) -> std::collections::BTreeMap<String, TargetWish> {
    d.annotations()
        .iter()
        .filter(|(k, _)| k.starts_with(WISH_ANNOTATION_PREFIX))
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v).ok()?)))
        .collect()
}

/// The other sales on the target: every live wish recorded on it but `own`'s, and the TicketEvents
/// on it (`on_target`, `own` excluded) whose window is live but which recorded no wish yet.
pub fn siblings(
    own: &str,
    wishes: &std::collections::BTreeMap<String, TargetWish>,
    on_target: &[&TicketEvent],
    now: DateTime<Utc>,
) -> Vec<Sibling> {
    let own_key = wish_key(own);
    let mut out: Vec<Sibling> = wishes
        .iter()
        .filter(|(k, w)| **k != own_key && w.live_at(now))
        .map(|(k, w)| Sibling {
            name: k[WISH_ANNOTATION_PREFIX.len()..].to_string(),
            live_wish: Some(w.replicas),
            unsure: false,
        })
        .collect();
    out.extend(
        on_target
            .iter()
            .filter(|t| t.name_any() != own && !wishes.contains_key(&wish_key(&t.name_any())))
            .filter(|t| should_be_live(t, now))
            .map(|t| Sibling {
                name: t.name_any(),
                live_wish: None,
                unsure: true,
            }),
    );
    out
}

#[derive(Debug, Clone, PartialEq)]
pub enum Autoscaler {
    Hpa {
        name: String,
        min: Option<i32>,
        max: i32,
        /// The minReplicas the operator saved before raising it.
        original_min: Option<i32>,
    },
    ScaledObject {
        name: String,
        paused_replicas: Option<i32>,
        /// The TicketEvent (namespace/name) that paused it, when the operator did.
        paused_by: Option<String>,
    },
}

impl Autoscaler {
    pub fn kind(&self) -> &'static str {
        match self {
            Autoscaler::Hpa { .. } => "HorizontalPodAutoscaler",
            Autoscaler::ScaledObject { .. } => "ScaledObject",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Autoscaler::Hpa { name, .. } | Autoscaler::ScaledObject { name, .. } => name,
        }
    }
}

/// A pod of the target that turned Ready: when, and how long after its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodStart {
    pub ready_at: DateTime<Utc>,
    pub seconds: i64,
}

/// Everything one pass knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `namespace/name` of the TicketEvent.
    pub key: String,
    pub generation: Option<i64>,
    /// The object is being deleted (the finalizer's cleanup).
    pub deleting: bool,
    pub target: Option<Target>,
    /// The target's resourceVersion as read: the scale is conditional on it, so a pass that decided
    /// from a target another pass changed meanwhile (a sibling sale's scale) cannot undo that change.
    pub target_version: Option<String>,
    pub siblings: Vec<Sibling>,
    pub autoscalers: Vec<Autoscaler>,
    pub history: Read<Vec<SalePeak>>,
    pub queue_depth: Read<i64>,
    pub outflow: Read<Option<OutflowRecord>>,
    pub peak_users: Read<Option<i64>>,
    pub pod_starts: Vec<PodStart>,
    /// An older TicketEvent (`namespace/name`) has the same `eventId`: it keeps the sale (the
    /// waiting room's capacity key is per event), this one must not write anything for it.
    pub duplicate_of: Option<String>,
    /// This event's own wish as the target records it.
    pub own_wish: Option<TargetWish>,
    /// `spec.target` moved away from the Deployment that records this event's wish: that
    /// Deployment's name and what was observed of it (as for a deletion), to give it back.
    pub old_target: Option<(String, Box<Observed>)>,
}

impl Observed {
    /// An observation with nothing in it (tests start from it).
    pub fn empty(key: &str) -> Self {
        Observed {
            key: key.into(),
            generation: Some(1),
            deleting: false,
            target: None,
            target_version: None,
            siblings: vec![],
            autoscalers: vec![],
            history: Read::Skipped,
            queue_depth: Read::Skipped,
            outflow: Read::Skipped,
            peak_users: Read::Skipped,
            pod_starts: vec![],
            duplicate_of: None,
            own_wish: None,
            old_target: None,
        }
    }
}

/// The TicketEvent among `all` with `te`'s eventId that keeps the sale when it is not `te`: the
/// oldest (creation time, then namespace and name), objects being deleted left out.
pub fn duplicate_of(te: &TicketEvent, all: &[Arc<TicketEvent>]) -> Option<String> {
    let rank = |t: &TicketEvent| {
        (
            t.metadata.creation_timestamp.as_ref().map(|c| c.0),
            t.namespace().unwrap_or_default(),
            t.name_any(),
        )
    };
    let id = te.spec.event_id.to_ascii_lowercase();
    let first = all
        .iter()
        .filter(|t| t.metadata.deletion_timestamp.is_none() || t.uid() == te.uid())
        .filter(|t| t.spec.event_id.to_ascii_lowercase() == id)
        .map(|t| t.as_ref())
        .chain(std::iter::once(te))
        .min_by_key(|t| rank(t))?;
    (rank(first) != rank(te)).then(|| {
        format!(
            "{}/{}",
            first.namespace().unwrap_or_default(),
            first.name_any()
        )
    })
}

/// Whether `te`'s window makes it live now (whatever its status says).
fn should_be_live(te: &TicketEvent, now: DateTime<Utc>) -> bool {
    let st = te.status.clone().unwrap_or_default();
    // a Failed one (e.g. a duplicate eventId) has no wish to wait for
    st.phase.as_deref() != Some(phase::FAILED)
        && te.spec.mode == Mode::Active
        && te.metadata.deletion_timestamp.is_none()
        && matches!(
            Sale::new(&te.spec, &st).phase_at(now),
            Some(Phase::PreScaling | Phase::OnSale | Phase::Draining)
        )
}

fn target_of(d: &Deployment) -> Target {
    let status = d.status.as_ref();
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let existing = status.and_then(|s| s.replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(existing);
    let observed = status.and_then(|s| s.observed_generation);
    Target {
        replicas,
        existing,
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        rolling_out: updated < replicas.min(existing)
            || observed.is_some_and(|g| Some(g) < d.metadata.generation),
    }
}

fn scaled_object(o: &DynamicObject, target: &str) -> Option<Autoscaler> {
    let r = &o.data["spec"]["scaleTargetRef"];
    let kind = r["kind"].as_str().unwrap_or("Deployment");
    if kind != "Deployment" || r["name"].as_str() != Some(target) {
        return None;
    }
    let ann = o.annotations();
    Some(Autoscaler::ScaledObject {
        name: o.name_any(),
        paused_replicas: ann.get(KEDA_PAUSED_REPLICAS).and_then(|v| v.parse().ok()),
        paused_by: ann.get(PAUSED_BY_ANNOTATION).cloned(),
    })
}

/// The KEDA ScaledObject that owns an HPA (KEDA creates `keda-hpa-<name>` for each one).
fn keda_owner(h: &HorizontalPodAutoscaler) -> Option<String> {
    let by_ref = h
        .owner_references()
        .iter()
        .find(|r| r.kind == "ScaledObject" && r.api_version.starts_with("keda.sh/"));
    by_ref
        .map(|r| r.name.clone())
        .or_else(|| h.labels().get(KEDA_SCALED_OBJECT_LABEL).cloned())
}

/// The other autoscalers on Deployment `target` in `ns`, sorted by kind and name. An HPA KEDA owns
/// is KEDA's: it is represented by its ScaledObject (even one the reflector has not seen yet), so
/// cooperating pauses the ScaledObject and never writes to that HPA (KEDA would revert it).
pub fn autoscalers_on(
    hpas: &[Arc<HorizontalPodAutoscaler>],
    scaled_objects: &[Arc<DynamicObject>],
    ns: &str,
    target: &str,
) -> Vec<Autoscaler> {
    let mut keda_owned = vec![];
    let mut out: Vec<Autoscaler> = hpas
        .iter()
        .filter(|h| h.namespace().as_deref() == Some(ns))
        .filter_map(|h| {
            let spec = h.spec.as_ref()?;
            if spec.scale_target_ref.kind != "Deployment" || spec.scale_target_ref.name != target {
                return None;
            }
            if let Some(owner) = keda_owner(h) {
                keda_owned.push(owner);
                return None;
            }
            Some(Autoscaler::Hpa {
                name: h.name_any(),
                min: spec.min_replicas,
                max: spec.max_replicas,
                original_min: h
                    .annotations()
                    .get(ORIGINAL_MIN_ANNOTATION)
                    .and_then(|v| v.parse().ok()),
            })
        })
        .collect();
    out.extend(
        scaled_objects
            .iter()
            .filter(|so| so.namespace().as_deref() == Some(ns))
            .filter_map(|so| scaled_object(so, target)),
    );
    for owner in keda_owned {
        if !out
            .iter()
            .any(|a| matches!(a, Autoscaler::ScaledObject { name, .. } if *name == owner))
        {
            out.push(Autoscaler::ScaledObject {
                name: owner,
                paused_replicas: None,
                paused_by: None,
            });
        }
    }
    out.sort_by(|a, b| (a.kind(), a.name()).cmp(&(b.kind(), b.name())));
    out
}

/// Start-to-Ready times of the target's pods (only read for `leadTime: auto` while replicas start).
async fn pod_starts(ctx: &Context, ns: &str, d: &Deployment) -> Result<Vec<PodStart>> {
    let Some(labels) = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
    else {
        return Ok(vec![]);
    };
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(ctx.shared.client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list.items.iter().filter_map(pod_start).collect())
}

fn pod_start(p: &Pod) -> Option<PodStart> {
    let created = p.metadata.creation_timestamp.as_ref()?.0;
    let ready = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    let to_utc =
        |t: k8s_openapi::jiff::Timestamp| DateTime::<Utc>::from_timestamp(t.as_second(), 0);
    let ready_at = to_utc(ready)?;
    Some(PodStart {
        ready_at,
        seconds: (ready_at - to_utc(created)?).num_seconds().max(0),
    })
}

/// Reads Deployment `target` fresh into `o` (replicas, version, the wishes it records) with the
/// TicketEvents and autoscalers on it from the stores.
async fn on_target(
    ctx: &Context,
    ns: &str,
    name: &str,
    target: &str,
    tickets: &[Arc<TicketEvent>],
    o: &mut Observed,
) -> Result<Option<Deployment>> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.shared.client.clone(), ns);
    let deployment = deployments
        .get_opt(target)
        .await?
        // a target being deleted (with its namespace, say) gets nothing back: the cleanup lets go
        .filter(|d| !(o.deleting && d.metadata.deletion_timestamp.is_some()));
    o.target = deployment.as_ref().map(target_of);
    o.target_version = deployment
        .as_ref()
        .and_then(|d| d.metadata.resource_version.clone());
    let on_target: Vec<&TicketEvent> = tickets
        .iter()
        .map(|t| t.as_ref())
        .filter(|t| t.namespace().as_deref() == Some(ns) && t.spec.target.name == target)
        .collect();
    let wishes = deployment.as_ref().map(wishes_on).unwrap_or_default();
    o.own_wish = wishes.get(&wish_key(name)).cloned();
    o.siblings = siblings(name, &wishes, &on_target, ctx.shared.clock.now());
    o.autoscalers = autoscalers_on(
        &ctx.stores.hpas.state(),
        &ctx.stores.scaled_objects.state(),
        ns,
        target,
    );
    Ok(deployment)
}

/// What the pass on `te` needs from the cluster, PostgreSQL and Redis; which reads, `sale`'s phase
/// says.
pub async fn observe(
    ctx: &Context,
    te: &TicketEvent,
    sale: &Sale<'_>,
    deleting: bool,
) -> Result<Observed> {
    let ns = te.namespace().ok_or(crate::Error::NotNamespaced)?;
    let name = te.name_any();
    let (s, old) = (sale.spec, sale.old);
    let now = ctx.shared.clock.now();
    let mut o = Observed::empty(&format!("{ns}/{name}"));
    o.generation = te.metadata.generation;
    o.deleting = deleting;

    let tickets = ctx.stores.tickets.state();
    o.duplicate_of = duplicate_of(te, &tickets);
    let deployment = on_target(ctx, &ns, &name, &s.target.name, &tickets, &mut o).await?;
    if let Some(held) = old.wish_target.as_ref().filter(|t| **t != s.target.name) {
        let mut released = Observed::empty(&o.key);
        released.generation = o.generation;
        released.deleting = true;
        on_target(ctx, &ns, &name, held, &tickets, &mut released).await?;
        o.old_target = Some((held.clone(), Box::new(released)));
    }

    // which outside reads this phase needs
    let (Ok(p), Some(ph)) = (&sale.parsed, sale.phase_at(now)) else {
        return Ok(o);
    };
    use crate::plan::Phase::*;
    let frozen = matches!(ph, OnSale | Draining | Completed) && old.forecast.is_some();
    if let (Some(db), false, false) = (&ctx.shared.db, frozen, deleting) {
        o.history = Read::from(sale_data::history(db, &s.artist, p.event).await);
    }
    if let (Some(db), OnSale | Draining | Completed, false) = (&ctx.shared.db, ph, deleting) {
        o.peak_users = Read::from(sale_data::actual_peak(db, p.event).await);
    }
    if let (Some(r), OnSale | Draining, false) = (&ctx.shared.redis, ph, deleting) {
        o.queue_depth = Read::from(sale_data::queue_depth(r, &ctx.shared.keys, p.event).await);
        if s.queue_scaling.drain_within_seconds.is_some() {
            o.outflow = Read::from(sale_data::outflow(r, &ctx.shared.keys, p.event).await);
        }
    }
    // leadTime auto learns from pods that turned Ready since the last pass saw a change
    let auto = s.lead_time == LEAD_TIME_AUTO && ctx.shared.allow.pod_starts;
    if let (Some(d), true, PreScaling | OnSale) = (&deployment, auto, ph)
        && o.target
            .is_some_and(|t| Some(t.ready) != old.ready_replicas)
    {
        o.pod_starts = match pod_starts(ctx, &ns, d).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "pod start-up times not read");
                vec![]
            }
        };
    }
    Ok(o)
}
