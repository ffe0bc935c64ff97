//! Act: applies an `Outcome` — the other autoscaler's patch and the target's replicas with this
//! sale's wish first, then the removal of a released capacity key and the forecast-vs-actual row of
//! a completed sale (these writes fail the pass, so they are retried with backoff), then the status
//! by server-side apply, the Kubernetes Events and a published capacity (logged and counted when it
//! fails: it never undoes or blocks a decision already made). A release and a completion are decided
//! once, on the pass whose status leaves the phase, so what they write goes before that status.
//! Every write first asks the leadership fence (`Context::fence`): a replica that lost the lease
//! stops before the next one.

use std::time::Instant;

use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;
use tiketi_crds::TicketEvent;

use crate::{
    Result,
    context::{
        Context, KEDA_PAUSED_REPLICAS, MANAGER, ORIGINAL_MIN_ANNOTATION, PAUSED_BY_ANNOTATION,
        WRITTEN_BY_ANNOTATION, wish_key,
    },
    decide::{After, AutoscalerPatch, Capacity, Note, Outcome},
    metrics::{DecisionLabels, ErrorLabels, EventLabels},
    sale_data,
};

pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

async fn patch_autoscaler(ctx: &Context, ns: &str, patch: &AutoscalerPatch) -> Result<()> {
    ctx.fence()?;
    let pp = PatchParams::default();
    match patch {
        AutoscalerPatch::HpaMin {
            name,
            min,
            save_original,
            restored,
        } => {
            let mut body = json!({ "spec": { "minReplicas": min } });
            if let Some(orig) = save_original {
                body["metadata"] =
                    json!({ "annotations": { ORIGINAL_MIN_ANNOTATION: orig.to_string() } });
            } else if *restored {
                body["metadata"] = json!({ "annotations": { ORIGINAL_MIN_ANNOTATION: null } });
            }
            let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.shared.client.clone(), ns);
            api.patch(name, &pp, &Patch::Merge(&body)).await?;
        }
        AutoscalerPatch::KedaPause { name, replicas, by } => {
            let annotations = match replicas {
                Some(n) => json!({ KEDA_PAUSED_REPLICAS: n.to_string(), PAUSED_BY_ANNOTATION: by }),
                None => json!({ KEDA_PAUSED_REPLICAS: null, PAUSED_BY_ANNOTATION: null }),
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.shared.client.clone(), ns, &scaled_object_resource());
            api.patch(
                name,
                &pp,
                &Patch::Merge(&json!({ "metadata": { "annotations": annotations } })),
            )
            .await?;
        }
    }
    Ok(())
}

fn soft_failure(ctx: &Context, what: &'static str, error: &dyn std::fmt::Display) {
    tracing::warn!(%error, "{what} failed; the decision stands");
    ctx.shared
        .metrics
        .failures
        .get_or_create(&ErrorLabels { error: what })
        .inc();
}

/// Writes Deployment `target`'s replicas and this event's wish (`name`) in one update conditional
/// on `version`: a sibling's pass reads both at one version or is refused.
async fn write_target(
    ctx: &Context,
    ns: &str,
    name: &str,
    target: &str,
    out: &Outcome,
    version: Option<&str>,
) -> Result<()> {
    if out.replicas.is_none() && out.wish.is_none() {
        return Ok(());
    }
    ctx.fence()?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.shared.client.clone(), ns);
    let started = Instant::now();
    let mut body = json!({ "metadata": {
        "resourceVersion": version,
        "annotations": { WRITTEN_BY_ANNOTATION: ctx.shared.identity },
    } });
    if let Some(n) = out.replicas {
        body["spec"] = json!({ "replicas": n });
    }
    if let Some(w) = &out.wish {
        let value = w
            .as_ref()
            .map(|w| serde_json::to_string(w).unwrap_or_default());
        body["metadata"]["annotations"][wish_key(name)] = json!(value);
    }
    match deployments
        .patch(target, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 409 => return Err(crate::Error::TargetChanged),
        other => other?,
    };
    if let Some(n) = out.replicas {
        ctx.shared
            .metrics
            .scale_latency
            .observe(started.elapsed().as_secs_f64());
        ctx.shared
            .metrics
            .decisions
            .get_or_create(&DecisionLabels {
                direction: if n > out.replicas_before {
                    "up"
                } else {
                    "down"
                },
            })
            .inc();
        tracing::info!(te = %name, target, from = out.replicas_before, to = n, "scaled");
    }
    Ok(())
}

/// Publishes the notes that report the write `after`, which just succeeded.
async fn publish(ctx: &Context, te: &TicketEvent, notes: &[Note], after: After) -> Result<()> {
    for n in notes.iter().filter(|n| n.after == after) {
        let ev = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.into(),
            note: Some(n.note.clone()),
            action: n.action.clone(),
            secondary: None,
        };
        ctx.fence()?;
        if let Err(e) = ctx.shared.recorder.publish(&ev, &te.object_ref(&())).await {
            tracing::warn!(error = %e, "event not published");
        }
    }
    Ok(())
}

/// `target_version`: the target's resourceVersion the decision was made from; the update of the
/// target's replicas and wish carries it as a precondition and answers `Error::TargetChanged`
/// (nothing else written) when it is stale. A Deployment the plan no longer targets is given back
/// first, under the same rule.
pub async fn act(
    ctx: &Context,
    te: &TicketEvent,
    out: Outcome,
    target_version: Option<&str>,
) -> Result<()> {
    let ns = te.namespace().ok_or(crate::Error::NotNamespaced)?;
    let name = te.name_any();
    let target = &te.spec.target.name;

    if let Some(r) = &out.release {
        if let Some(patch) = &r.outcome.autoscaler {
            patch_autoscaler(ctx, &ns, patch).await?;
            publish(ctx, te, &r.outcome.events, After::Autoscaler).await?;
        }
        write_target(ctx, &ns, &name, &r.target, &r.outcome, r.version.as_deref()).await?;
        publish(ctx, te, &r.outcome.events, After::Target).await?;
        // a release writes no status: any other note of it goes out with its target's
        publish(ctx, te, &r.outcome.events, After::Status).await?;
    }
    if let Some(patch) = &out.autoscaler {
        patch_autoscaler(ctx, &ns, patch).await?;
        publish(ctx, te, &out.events, After::Autoscaler).await?;
    }
    write_target(ctx, &ns, &name, target, &out, target_version).await?;
    publish(ctx, te, &out.events, After::Target).await?;
    if let (Some(r), Some(Capacity::Remove), Some(event)) =
        (&ctx.shared.redis, &out.capacity, out.event_id)
    {
        ctx.fence()?;
        sale_data::remove_capacity(r, &ctx.shared.keys, event).await?;
    }
    if let (Some(db), Some(rec), Some(event)) = (&ctx.shared.db, &out.record, out.event_id) {
        ctx.fence()?;
        let row = sale_data::SaleOutcome {
            event,
            artist: &te.spec.artist,
            ticket_event: &format!("{ns}/{name}"),
            forecast_users: rec.forecast_users,
            forecast_replicas: rec.forecast_replicas,
            method: &rec.method,
            peak_users: rec.peak_users,
            peak_queue: rec.peak_queue,
        };
        sale_data::record_outcome(db, &row).await?;
    }
    if let Some(st) = &out.status {
        if let Some(f) = &st.forecast {
            ctx.shared
                .metrics
                .forecast_users
                .get_or_create(&EventLabels {
                    ticket_event: format!("{ns}/{name}"),
                })
                .set(f.expected_users);
        }
        if Some(st) != te.status.as_ref() {
            ctx.fence()?;
            let api: Api<TicketEvent> = Api::namespaced(ctx.shared.client.clone(), &ns);
            let patch =
                json!({ "apiVersion": "tiketi.io/v1alpha1", "kind": "TicketEvent", "status": st });
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        }
    }
    publish(ctx, te, &out.events, After::Status).await?;
    if let (Some(r), Some(Capacity::Publish(users)), Some(event)) =
        (&ctx.shared.redis, &out.capacity, out.event_id)
    {
        ctx.fence()?;
        let now = ctx.shared.clock.now();
        if let Err(e) = sale_data::publish_capacity(r, &ctx.shared.keys, event, *users, now).await {
            soft_failure(ctx, "capacity", &e);
        }
    }
    Ok(())
}
