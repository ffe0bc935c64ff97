//! The TicketEvent reconciler. Each pass is observe → decide → act: `observe` gathers every read into
//! one `Observed`, `decide` (pure) turns spec, last status and observation into an `Outcome`, `act`
//! applies it. Everything is recomputed from the spec, the clock and what is observed, so restarts
//! lose nothing. A finalizer gives the target back when a TicketEvent is deleted mid-sale.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, ListParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Recorder, Reporter},
        finalizer::{self, Event as Finalizer},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tiketi_crds::TicketEvent;
use tokio::sync::Mutex;

use crate::{Error, Result, act, decide, metrics::Metrics, observe};

pub const MANAGER: &str = "tiketi-operator";
/// Held while the operator may still have to give the target back.
pub const FINALIZER: &str = "tiketi.io/restore-replicas";

/// How soon a pass whose scale found the target changed runs again.
pub const RETRY_STALE: Duration = Duration::from_millis(200);

/// What the reconciler reads without asking the API server each pass.
#[derive(Clone)]
pub struct Stores {
    pub tickets: Store<TicketEvent>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub scaled_objects: Store<DynamicObject>,
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub db: Option<sqlx::PgPool>,
    pub redis: Option<fred::clients::Pool>,
    pub keys: tiketi_core::keys::Keys,
    pub metrics: Arc<Metrics>,
    pub stores: Stores,
    /// consecutive failures per object, for exponential backoff (kube has no per-object backoff)
    pub failures: Mutex<HashMap<ObjectRef<TicketEvent>, u32>>,
}

/// One pass on a TicketEvent as the API server stores it now.
async fn pass(te: Arc<TicketEvent>, ctx: &Context, deleting: bool) -> Result<Action> {
    let observed = observe::observe(ctx, &te, deleting).await?;
    let old = te.status.clone().unwrap_or_default();
    let outcome = decide::decide(&te.spec, &old, &observed, chrono::Utc::now());
    let requeue = outcome.requeue;
    match act::act(ctx, &te, outcome, observed.target_version.as_deref()).await {
        // decided from a target another pass scaled meanwhile (a sibling sale): decide again from
        // what is there now rather than undo that scale
        Err(Error::TargetChanged) => {
            ctx.metrics.stale_scales.inc();
            tracing::info!(te = %te.name_any(), "target changed since read: deciding again");
            Ok(Action::requeue(RETRY_STALE))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(requeue.map_or_else(Action::await_change, Action::requeue)),
    }
}

pub async fn reconcile(te: Arc<TicketEvent>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let ns = te.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<TicketEvent> = Api::namespaced(ctx.client.clone(), &ns);
    // the watch cache may lag our own last status write by a pass; status is written whole (SSA), so
    // start from the object as stored, or an older decision would overwrite a newer one
    let Some(fresh) = api.get_opt(&te.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let action = finalizer::finalizer(&api, FINALIZER, Arc::new(fresh), |event| async {
        match event {
            Finalizer::Apply(te) => pass(te, &ctx, false).await,
            Finalizer::Cleanup(te) => pass(te, &ctx, true).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })?;
    ctx.failures
        .lock()
        .await
        .remove(&ObjectRef::from(te.as_ref()));
    Ok(action)
}

/// Exponential backoff per object: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn error_policy(te: Arc<TicketEvent>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&crate::metrics::ErrorLabels {
            error: error.label(),
        })
        .inc();
    tracing::warn!(te = %te.name_any(), %error, "reconcile failed");
    let key = ObjectRef::from(te.as_ref());
    let n = match ctx.failures.try_lock() {
        Ok(mut map) => {
            let n = map.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    Action::requeue(Duration::from_secs(1u64 << n.min(8)).min(Duration::from_secs(300)))
}

/// What `run` needs besides the stores it builds.
pub struct Deps {
    pub client: Client,
    pub recorder: Recorder,
    pub db: Option<sqlx::PgPool>,
    pub redis: Option<fred::clients::Pool>,
    pub keys: tiketi_core::keys::Keys,
    pub metrics: Arc<Metrics>,
}

/// Runs the controller until shutdown; Deployment changes wake the events that target them. HPAs and
/// KEDA ScaledObjects are mirrored by reflectors (a cluster without KEDA just has none).
pub async fn run(
    deps: Deps,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let client = deps.client.clone();
    let api: Api<TicketEvent> = Api::all(client.clone());
    if let Err(e) = api.list(&ListParams::default().limit(1)).await {
        anyhow::bail!(
            "the TicketEvent CRD is not served ({e}); install it: kubectl apply -f crds/ticketevent.yaml"
        );
    }
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let tickets = controller.store();
    let (hpas, hpa_writer) = reflector::store();
    let hpa_watch = reflector::reflector(
        hpa_writer,
        watcher(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|r| {
        if let Err(e) = r {
            tracing::debug!(error = %e, "HPA watch");
        }
        futures::future::ready(())
    });
    let so_writer = reflector::store::Writer::new(act::scaled_object_resource());
    let scaled_objects = so_writer.as_reader();
    let so_watch = reflector::reflector(
        so_writer,
        watcher(
            Api::<DynamicObject>::all_with(client.clone(), &act::scaled_object_resource()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|r| {
        if let Err(e) = r {
            tracing::debug!(error = %e, "ScaledObject watch (KEDA not installed?)");
        }
        futures::future::ready(())
    });
    tokio::spawn(hpa_watch);
    tokio::spawn(so_watch);
    let ctx = Arc::new(Context {
        client: deps.client,
        recorder: deps.recorder,
        db: deps.db,
        redis: deps.redis,
        keys: deps.keys,
        metrics: deps.metrics,
        stores: Stores {
            tickets: tickets.clone(),
            hpas,
            scaled_objects,
        },
        failures: Default::default(),
    });
    controller
        .watches(
            Api::<Deployment>::all(client),
            watcher::Config::default(),
            move |d: Deployment| {
                let (ns, name) = (d.namespace(), d.name_any());
                tickets
                    .state()
                    .iter()
                    .filter(|te| te.namespace() == ns && te.spec.target.name == name)
                    .map(|te| ObjectRef::from(te.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance,
    }
}
