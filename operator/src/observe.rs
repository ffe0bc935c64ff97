//! Observe: every read of one reconcile pass, gathered into one `Observed` value for `decide`.
//! Sibling TicketEvents, HPAs and KEDA ScaledObjects come from the controller's reflector stores (no
//! LIST per pass); the target Deployment is read fresh; PostgreSQL and Redis reads that fail are
//! recorded as failed (`Read::Failed`), never abort the pass: `decide` falls back and says so.

use chrono::{DateTime, Utc};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams},
};
use tiketi_core::rules::OutflowRecord;
use tiketi_crds::{LEAD_TIME_AUTO, Mode, TicketEvent, phase};

use crate::{Result, controller::Context, decide, plan::SalePeak, signals};

/// Annotation on an HPA whose `minReplicas` the operator raised: the value to restore.
pub const ORIGINAL_MIN_ANNOTATION: &str = "tiketi.io/original-min-replicas";
/// KEDA's pause annotation: the ScaledObject holds the target at this many replicas.
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// Set beside KEDA's annotation, so only a pause the operator made is lifted by it.
pub const PAUSED_BY_ANNOTATION: &str = "tiketi.io/paused-by";

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
}

impl Target {
    /// Replicas asked for or existing but not Ready yet (still starting).
    pub fn starting(&self) -> i32 {
        (self.replicas.max(self.existing) - self.ready).max(0)
    }
}

/// Another TicketEvent on the same target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sibling {
    pub name: String,
    /// Its own wish (status.desiredReplicas) while it is live (pre-scaling to draining) and active.
    pub live_wish: Option<i32>,
    /// Its window says it is live but no live status was seen yet (its first pass, or the store
    /// lagging its status write): its wish is unknown, so nobody may scale the target down.
    pub unsure: bool,
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
        }
    }
}

fn live(te: &TicketEvent) -> Option<i32> {
    let st = te.status.as_ref()?;
    let is_live = matches!(
        st.phase.as_deref(),
        Some(phase::PRE_SCALING | phase::READY | phase::ON_SALE | phase::DRAINING)
    );
    (is_live && te.spec.mode == Mode::Active && te.metadata.deletion_timestamp.is_none())
        .then_some(st.desired_replicas)
        .flatten()
}

/// Whether `te`'s window makes it live now (whatever its status says).
fn should_be_live(te: &TicketEvent, now: DateTime<Utc>) -> bool {
    let st = te.status.clone().unwrap_or_default();
    te.spec.mode == Mode::Active
        && te.metadata.deletion_timestamp.is_none()
        && decide::parse(&te.spec, &st).is_ok_and(|p| {
            use crate::plan::Phase::*;
            matches!(
                crate::plan::phase_at(&p.window, now).0,
                PreScaling | OnSale | Draining
            )
        })
}

fn target_of(d: &Deployment) -> Target {
    let status = d.status.as_ref();
    Target {
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        existing: status.and_then(|s| s.replicas).unwrap_or(0),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
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
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
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

pub async fn observe(ctx: &Context, te: &TicketEvent, deleting: bool) -> Result<Observed> {
    let ns = te.namespace().ok_or(crate::Error::NotNamespaced)?;
    let name = te.name_any();
    let s = &te.spec;
    let old = te.status.clone().unwrap_or_default();
    let mut o = Observed::empty(&format!("{ns}/{name}"));
    o.generation = te.metadata.generation;
    o.deleting = deleting;

    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let deployment = deployments.get_opt(&s.target.name).await?;
    o.target = deployment.as_ref().map(target_of);
    o.target_version = deployment
        .as_ref()
        .and_then(|d| d.metadata.resource_version.clone());

    o.siblings = ctx
        .stores
        .tickets
        .state()
        .iter()
        .filter(|t| {
            t.namespace().as_deref() == Some(ns.as_str())
                && t.name_any() != name
                && t.spec.target == s.target
        })
        .map(|t| {
            let live_wish = live(t);
            Sibling {
                name: t.name_any(),
                live_wish,
                unsure: live_wish.is_none() && should_be_live(t, chrono::Utc::now()),
            }
        })
        .collect();
    o.autoscalers = ctx
        .stores
        .hpas
        .state()
        .iter()
        .filter(|h| h.namespace().as_deref() == Some(ns.as_str()))
        .filter_map(|h| {
            let spec = h.spec.as_ref()?;
            (spec.scale_target_ref.kind == "Deployment"
                && spec.scale_target_ref.name == s.target.name)
                .then(|| Autoscaler::Hpa {
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
    o.autoscalers.extend(
        ctx.stores
            .scaled_objects
            .state()
            .iter()
            .filter(|so| so.namespace().as_deref() == Some(ns.as_str()))
            .filter_map(|so| scaled_object(so, &s.target.name)),
    );
    o.autoscalers
        .sort_by(|a, b| (a.kind(), a.name()).cmp(&(b.kind(), b.name())));

    // which outside reads this phase needs
    let Ok(p) = decide::parse(s, &old) else {
        return Ok(o);
    };
    let (ph, _) = crate::plan::phase_at(&p.window, chrono::Utc::now());
    use crate::plan::Phase::*;
    let frozen = matches!(ph, OnSale | Draining | Completed) && old.forecast.is_some();
    if let (Some(db), false, false) = (&ctx.db, frozen, deleting) {
        o.history = Read::from(signals::history(db, &s.artist, p.event).await);
    }
    if let (Some(db), OnSale | Draining | Completed, false) = (&ctx.db, ph, deleting) {
        o.peak_users = Read::from(signals::actual_peak(db, p.event).await);
    }
    if let (Some(r), OnSale | Draining, false) = (&ctx.redis, ph, deleting) {
        o.queue_depth = Read::from(signals::queue_depth(r, &ctx.keys, p.event).await);
        if s.queue_scaling.drain_within_seconds.is_some() {
            o.outflow = Read::from(signals::outflow(r, &ctx.keys, p.event).await);
        }
    }
    // leadTime auto learns from pods that turned Ready since the last pass saw a change
    if let (Some(d), true, PreScaling | OnSale) = (&deployment, s.lead_time == LEAD_TIME_AUTO, ph)
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
