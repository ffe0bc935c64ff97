//! The TicketEvent reconciler. Each pass is observe → decide → act: `observe` gathers every read into
//! one `Observed`, `decide` (pure) turns spec, last status and observation into an `Outcome`, `act`
//! applies it. Everything is recomputed from the spec, the clock and what is observed, so restarts
//! lose nothing. A finalizer gives the target back when a TicketEvent is deleted mid-sale.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::ListParams,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::Reporter,
        finalizer::{self, Event as Finalizer},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tiketi_crds::{OtherAutoscalers, TicketEvent};

use crate::{
    Error, Result, act,
    context::{Context, FINALIZER, MANAGER, Shared, Stores},
    decide,
    health::Health,
    metrics::{Metrics, WatchLabels},
    observe,
    sale::Sale,
    scope::{self, Scope},
};

/// How soon a pass whose scale found the target changed runs again.
pub const RETRY_STALE: Duration = Duration::from_millis(200);

/// One pass on a TicketEvent as the API server stores it now.
async fn pass(te: Arc<TicketEvent>, ctx: &Context, deleting: bool) -> Result<Action> {
    let old = te.status.clone().unwrap_or_default();
    let mut spec = std::borrow::Cow::Borrowed(&te.spec);
    let narrowed =
        !ctx.shared.allow.cooperate && spec.other_autoscalers == OtherAutoscalers::Cooperate;
    if narrowed {
        spec.to_mut().other_autoscalers = OtherAutoscalers::Report;
    }
    let sale = Sale::new(&spec, &old);
    let observed = observe::observe(ctx, &te, &sale, deleting).await?;
    if narrowed && !observed.autoscalers.is_empty() {
        tracing::warn!(te = %te.name_any(), "otherAutoscalers: Cooperate is not allowed by this install (operator.allowCooperate): reporting only");
    }
    let outcome = decide::decide(&sale, &observed, ctx.shared.clock.now());
    let requeue = outcome.requeue;
    match act::act(ctx, &te, outcome, observed.target_version.as_deref()).await {
        // decided from a target another pass scaled meanwhile (a sibling sale): decide again from
        // what is there now rather than undo that scale. While deleting, an `Ok` would let the
        // finalizer go with the target still at sale size: the cleanup fails and is retried instead.
        Err(Error::TargetChanged) if !deleting => {
            ctx.shared.metrics.stale_scales.inc();
            tracing::info!(te = %te.name_any(), "target changed since read: deciding again");
            Ok(Action::requeue(RETRY_STALE))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(requeue.map_or_else(Action::await_change, Action::requeue)),
    }
}

/// A pass is cancelled as soon as leadership is lost (or its renewal overdue): no write of it can go
/// out after the renew deadline, which passes before a standby may take the lease over.
pub async fn reconcile(te: Arc<TicketEvent>, ctx: Arc<Context>) -> Result<Action> {
    ctx.shared.metrics.reconciles.inc();
    tokio::select! {
        biased;
        _ = ctx.shared.fence.lost() => Err(Error::NotLeading),
        r = reconcile_leading(te, &ctx) => r,
    }
}

async fn reconcile_leading(te: Arc<TicketEvent>, ctx: &Arc<Context>) -> Result<Action> {
    ctx.stores.ready().await?;
    ctx.fence()?;
    let ns = te.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<TicketEvent> = Api::namespaced(ctx.shared.client.clone(), &ns);
    // the watch cache may lag our own last status write by a pass; status is written whole (SSA), so
    // start from the object as stored, or an older decision would overwrite a newer one
    let Some(fresh) = api.get_opt(&te.name_any()).await? else {
        return Ok(Action::await_change());
    };
    // the finalizer's own patches (added before the first pass, removed after the cleanup pass)
    // are writes too: fenced before the helper runs and at the end of each pass
    ctx.fence()?;
    let action = finalizer::finalizer(&api, FINALIZER, Arc::new(fresh), |event| async {
        let action = match event {
            Finalizer::Apply(te) => pass(te, ctx, false).await,
            Finalizer::Cleanup(te) => pass(te, ctx, true).await,
        }?;
        ctx.fence()?;
        Ok(action)
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
    ctx.shared
        .metrics
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

/// What this install reconciles.
#[derive(Debug, Clone)]
pub struct Watch {
    pub scope: Scope,
    /// Label selector on TicketEvents (None: all of the watched namespaces).
    pub selector: Option<String>,
}

/// Mirrors a watch into `writer`; its errors are logged at warn and counted by `what` (a cluster
/// without KEDA answers 404 for ScaledObjects: that one is expected, and only counted).
fn reflect<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    what: &'static str,
    metrics: Arc<Metrics>,
) -> impl std::future::Future<Output = ()>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .for_each(move |r| {
            if let Err(e) = r {
                metrics
                    .watch_errors
                    .get_or_create(&WatchLabels { watch: what })
                    .inc();
                let absent = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                if absent {
                    tracing::debug!(error = %e, "{what} watch: not served");
                } else {
                    tracing::warn!(error = %e, "{what} watch failed; retrying");
                }
            }
            futures::future::ready(())
        })
}

/// Runs the controllers until shutdown: one per watched namespace (or one for all), each with its
/// own stores. Deployment changes wake the events that target them. HPAs and KEDA ScaledObjects are
/// mirrored by reflectors (a cluster without KEDA just has none).
pub async fn run(
    shared: Shared,
    health: Arc<Health>,
    watch: Watch,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let runs = watch.scope.namespaces().into_iter().map(|ns| {
        let mut stop = stop_rx.clone();
        run_in(shared.clone(), ns, watch.selector.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    });
    let result = futures::future::try_join_all(runs).await.map(|_| ());
    if !*stop_rx.borrow() {
        health.controller_ended();
    }
    result
}

async fn run_in(
    shared: Shared,
    ns: Option<String>,
    selector: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let client = shared.client.clone();
    let ns = ns.as_deref();
    let api: Api<TicketEvent> = scope::api(client.clone(), ns);
    if let Err(e) = api.list(&ListParams::default().limit(1)).await {
        anyhow::bail!(
            "TicketEvents in {} not readable ({e}); install the CRD (kubectl apply -f crds/ticketevent.yaml) and check the RBAC of the watched namespaces",
            ns.unwrap_or("all namespaces")
        );
    }
    let so_api = scope::api_dynamic(client.clone(), ns, &act::scaled_object_resource());
    let keda = match so_api.list(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::info!(
                "KEDA ScaledObjects not served: not waited for (watched in case KEDA comes)"
            );
            false
        }
        Err(e) => anyhow::bail!("ScaledObjects not readable: {e}"),
    };
    let mut config = watcher::Config::default().any_semantic();
    if let Some(sel) = &selector {
        config = config.labels(sel);
    }
    let controller = Controller::new(api, config);
    let tickets = controller.store();
    let (hpas, hpa_writer) = reflector::store();
    let so_writer = reflector::store::Writer::new(act::scaled_object_resource());
    let scaled_objects = so_writer.as_reader();
    let watches = [
        tokio::spawn(reflect(
            hpa_writer,
            scope::api(client.clone(), ns),
            "HorizontalPodAutoscaler",
            shared.metrics.clone(),
        )),
        tokio::spawn(reflect(
            so_writer,
            so_api,
            "ScaledObject",
            shared.metrics.clone(),
        )),
    ];
    let ctx = Arc::new(Context {
        shared,
        stores: Stores {
            tickets: tickets.clone(),
            hpas,
            scaled_objects,
            keda,
        },
        failures: Default::default(),
    });
    controller
        .watches(
            scope::api::<Deployment>(client, ns),
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
    for w in watches {
        w.abort();
    }
    Ok(())
}

pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance,
    }
}
