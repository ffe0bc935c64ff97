//! Act: applies an `Outcome` — the other autoscaler's patch and the scale first (the only writes whose
//! failure fails the pass, so they are retried with backoff), then the status by server-side apply,
//! the Kubernetes Events, the waiting room's capacity and the forecast-vs-actual row (logged and
//! counted when they fail: they never undo or block a decision already made).

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
    controller::{Context, MANAGER},
    decide::{AutoscalerPatch, Capacity, Outcome},
    metrics::{DecisionLabels, ErrorLabels, EventLabels},
    observe::{KEDA_PAUSED_REPLICAS, ORIGINAL_MIN_ANNOTATION, PAUSED_BY_ANNOTATION},
    signals,
};

pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

async fn patch_autoscaler(ctx: &Context, ns: &str, patch: &AutoscalerPatch) -> Result<()> {
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
            let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), ns);
            api.patch(name, &pp, &Patch::Merge(&body)).await?;
        }
        AutoscalerPatch::KedaPause { name, replicas, by } => {
            let annotations = match replicas {
                Some(n) => json!({ KEDA_PAUSED_REPLICAS: n.to_string(), PAUSED_BY_ANNOTATION: by }),
                None => json!({ KEDA_PAUSED_REPLICAS: null, PAUSED_BY_ANNOTATION: null }),
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), ns, &scaled_object_resource());
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
    ctx.metrics
        .failures
        .get_or_create(&ErrorLabels { error: what })
        .inc();
}

/// `target_version`: the target's resourceVersion the decision was made from; the scale carries it
/// as a precondition and answers `Error::TargetChanged` (nothing else written) when it is stale.
pub async fn act(
    ctx: &Context,
    te: &TicketEvent,
    out: Outcome,
    target_version: Option<&str>,
) -> Result<()> {
    let ns = te.namespace().ok_or(crate::Error::NotNamespaced)?;
    let name = te.name_any();
    let target = &te.spec.target.name;

    if let Some(patch) = &out.autoscaler {
        patch_autoscaler(ctx, &ns, patch).await?;
    }
    if let Some(n) = out.replicas {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        let started = Instant::now();
        let body =
            json!({ "metadata": { "resourceVersion": target_version }, "spec": { "replicas": n } });
        match deployments
            .patch_scale(target, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 409 => return Err(crate::Error::TargetChanged),
            other => other?,
        };
        ctx.metrics
            .scale_latency
            .observe(started.elapsed().as_secs_f64());
        ctx.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                direction: if n > out.replicas_before {
                    "up"
                } else {
                    "down"
                },
            })
            .inc();
        tracing::info!(te = %name, from = out.replicas_before, to = n, "scaled");
    }
    if let Some(st) = &out.status {
        if let Some(f) = &st.forecast {
            ctx.metrics
                .forecast_users
                .get_or_create(&EventLabels {
                    ticket_event: format!("{ns}/{name}"),
                })
                .set(f.expected_users);
        }
        if Some(st) != te.status.as_ref() {
            let api: Api<TicketEvent> = Api::namespaced(ctx.client.clone(), &ns);
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
    for n in &out.events {
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
        if let Err(e) = ctx.recorder.publish(&ev, &te.object_ref(&())).await {
            tracing::warn!(error = %e, "event not published");
        }
    }
    if let (Some(r), Some(c), Some(event)) = (&ctx.redis, &out.capacity, out.event_id) {
        let done = match c {
            Capacity::Publish(users) => {
                signals::publish_capacity(r, &ctx.keys, event, *users).await
            }
            Capacity::Remove => signals::remove_capacity(r, &ctx.keys, event).await,
        };
        if let Err(e) = done {
            soft_failure(ctx, "capacity", &e);
        }
    }
    if let (Some(db), Some(rec), Some(event)) = (&ctx.db, &out.record, out.event_id) {
        let row = signals::SaleOutcome {
            event,
            artist: &te.spec.artist,
            ticket_event: &format!("{ns}/{name}"),
            forecast_users: rec.forecast_users,
            forecast_replicas: rec.forecast_replicas,
            method: &rec.method,
            peak_users: rec.peak_users,
            peak_queue: rec.peak_queue,
        };
        if let Err(e) = signals::record_outcome(db, &row).await {
            soft_failure(ctx, "forecast_record", &e);
        }
    }
    Ok(())
}
