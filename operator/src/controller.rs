//! The TicketEvent reconciler. Each pass recomputes everything from the spec, the clock and what it
//! observes (so restarts lose nothing), decides this event's replicas, merges them with the other
//! events on the same Deployment (the max wins), scales through `/scale`, and explains itself in
//! status (server-side apply) and Kubernetes Events.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tiketi_crds::{
    Decision, Forecast, Mode, PastSale, TicketEvent, TicketEventStatus, condition, duration, phase,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{
    Error, Result,
    metrics::Metrics,
    plan::{self, Bounds, Phase, SalePeak, StepMemory, Window},
    signals, status,
};

pub const MANAGER: &str = "tiketi-operator";

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub db: Option<sqlx::PgPool>,
    pub redis: Option<fred::clients::Pool>,
    pub keys: tiketi_core::keys::Keys,
    pub metrics: Arc<Metrics>,
    /// consecutive failures per object, for exponential backoff (kube has no per-object backoff)
    pub failures: Mutex<HashMap<ObjectRef<TicketEvent>, u32>>,
}

/// The spec, parsed (times and durations are strings in the CRD).
struct Parsed {
    event: Uuid,
    window: Window,
    baseline: i32,
}

/// Longest `leadTime` and `afterSale.hold` the operator plans with: keeps every instant of the window
/// representable (an absurd duration would overflow the date arithmetic).
const MAX_WINDOW_DURATION_SECS: i64 = 366 * 86_400;

/// The spec, validated (the CEL rules again, see `TicketEventSpec::validate`) and parsed.
fn parse(te: &TicketEvent) -> Result<Parsed, String> {
    let s = &te.spec;
    s.validate()?;
    let time = |v: &str, what: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{what}: {e}"))
    };
    let dur = |v: &str, what: &str| match duration::parse_seconds(v) {
        Some(secs) if secs <= MAX_WINDOW_DURATION_SECS => Ok(chrono::Duration::seconds(secs)),
        Some(_) => Err(format!("{what}: longer than 366 days")),
        None => Err(format!("{what}: not a duration")),
    };
    let hold = s.after_sale.as_ref().map_or("10m", |a| a.hold.as_str());
    let (opens, closes) = (
        time(&s.opens_at, "opensAt")?,
        time(&s.closes_at, "closesAt")?,
    );
    if closes <= opens {
        return Err("closesAt must be after opensAt".into());
    }
    Ok(Parsed {
        event: s.event_id.parse().map_err(|e| format!("eventId: {e}"))?,
        window: Window {
            opens,
            closes,
            lead: dur(&s.lead_time, "leadTime")?,
            hold: if hold.is_empty() {
                chrono::Duration::zero()
            } else {
                dur(hold, "afterSale.hold")?
            },
        },
        baseline: s
            .after_sale
            .as_ref()
            .and_then(|a| a.replicas)
            .unwrap_or(s.min_replicas),
    })
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_ts(s: &Option<String>) -> Option<DateTime<Utc>> {
    s.as_deref()
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

async fn event(ctx: &Context, te: &TicketEvent, type_: EventType, reason: &str, note: String) {
    event_with(ctx, te, type_, reason, "Reconcile".into(), note).await
}

/// The Recorder folds events with the same reason and action into one series, so a scaling decision
/// names its target in the action: every distinct decision stays its own Event.
async fn event_with(
    ctx: &Context,
    te: &TicketEvent,
    type_: EventType,
    reason: &str,
    action: String,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action,
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &te.object_ref(&())).await {
        tracing::warn!(error = %e, "event not published");
    }
}

/// The forecast for this sale: recomputed until the sale opens, then frozen in status.
async fn forecast(
    ctx: &Context,
    te: &TicketEvent,
    p: &Parsed,
    phase: Phase,
    now: DateTime<Utc>,
) -> Result<Forecast> {
    let s = &te.spec;
    if matches!(phase, Phase::OnSale | Phase::Draining | Phase::Completed)
        && let Some(f) = te.status.as_ref().and_then(|st| st.forecast.clone())
    {
        return Ok(f);
    }
    let history = match &ctx.db {
        Some(db) => signals::history(db, &s.artist, p.event).await?,
        None => Vec::new(),
    };
    Ok(forecast_from(te, &history, now))
}

/// The status forecast of `te` from the artist's past sale peaks.
pub(crate) fn forecast_from(
    te: &TicketEvent,
    history: &[SalePeak],
    now: DateTime<Utc>,
) -> Forecast {
    let s = &te.spec;
    let f = plan::forecast(history, now, s.fallback_expected_users);
    Forecast {
        expected_users: f.expected_users,
        replicas: plan::replicas_for(
            f.expected_users,
            s.users_per_replica,
            s.min_replicas,
            s.max_replicas,
        ),
        method: f.method,
        basis: f
            .basis
            .iter()
            .map(|(sale, w)| PastSale {
                event_id: sale.event_id.clone(),
                peak_users: sale.peak_users,
                at: ts(sale.at),
                weight: (w * 1000.0).round() / 1000.0,
            })
            .collect(),
    }
}

/// This event's wish: replicas and why, or `None` when it has no opinion (before pre-scaling, after restoring).
fn wish(
    te: &TicketEvent,
    p: &Parsed,
    phase: Phase,
    f: &Forecast,
    depth: Option<i64>,
    now: DateTime<Utc>,
) -> (Option<i32>, i32, String, StepMemory) {
    let s = &te.spec;
    let st = te.status.clone().unwrap_or_default();
    let mut memory = StepMemory {
        last_up: parse_ts(&st.last_scale_up_at),
        last_down: parse_ts(&st.last_scale_down_at),
    };
    match phase {
        Phase::Scheduled => (
            None,
            0,
            format!(
                "scheduled: pre-scaling starts {} before opening",
                s.lead_time
            ),
            memory,
        ),
        Phase::PreScaling => (
            Some(f.replicas),
            f.replicas,
            format!(
                "pre-scaling for {} expected users ({})",
                f.expected_users, f.method
            ),
            memory,
        ),
        Phase::OnSale => {
            let current = st.desired_replicas.unwrap_or(f.replicas);
            let depth = depth.unwrap_or(0);
            let mut wanted = current;
            let mut reason = format!("on sale: queue depth {depth}, holding {current}");
            if let Some(step) = plan::queue_step(depth, &s.queue_scaling.rules, memory, now) {
                wanted = current.saturating_add(step.change);
                reason = step.reason;
                if step.change > 0 {
                    memory.last_up = Some(now);
                } else {
                    memory.last_down = Some(now);
                }
            }
            if let Some(per) = s.queue_scaling.target_queue_per_replica {
                let tracked = plan::tracking_replicas(depth, per);
                if tracked > wanted {
                    wanted = tracked;
                    reason = format!("queue depth {depth}: target {per} per replica -> {tracked}");
                }
            }
            // never below the forecast during the sale: the queue only fills once admissions flow
            (Some(wanted), f.replicas, reason, memory)
        }
        Phase::Draining => {
            let hold = st.desired_replicas.unwrap_or(f.replicas);
            (
                Some(hold),
                0,
                format!(
                    "sale closed: holding {hold} for {}",
                    s.after_sale.as_ref().map_or("10m", |a| a.hold.as_str())
                ),
                memory,
            )
        }
        Phase::Completed => {
            let restored = st.phase.as_deref() == Some(phase::COMPLETED);
            if restored {
                (None, 0, "completed".into(), memory)
            } else {
                (
                    Some(p.baseline),
                    0,
                    format!("sale over: back to {} replicas", p.baseline),
                    memory,
                )
            }
        }
    }
}

/// Another scaler already drives the target: report it, never fight it.
async fn conflicting_hpa(ctx: &Context, ns: &str, target: &str) -> Result<Option<String>> {
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), ns);
    let list = hpas.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .find(|h| {
            h.spec.as_ref().is_some_and(|s| {
                s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == target
            })
        })
        .map(|h| h.name_any()))
}

/// The largest wish of the other live events on the same Deployment.
async fn others_max(ctx: &Context, te: &TicketEvent, ns: &str) -> Result<Option<i32>> {
    let api: Api<TicketEvent> = Api::namespaced(ctx.client.clone(), ns);
    let all = api.list(&ListParams::default()).await?;
    Ok(all
        .items
        .iter()
        .filter(|o| {
            o.name_any() != te.name_any()
                && o.spec.target == te.spec.target
                && o.spec.mode == Mode::Active
        })
        .filter_map(|o| o.status.as_ref())
        .filter(|st| {
            matches!(
                st.phase.as_deref(),
                Some(phase::PRE_SCALING | phase::READY | phase::ON_SALE | phase::DRAINING)
            )
        })
        .filter_map(|st| st.desired_replicas)
        .max())
}

pub async fn reconcile(te: Arc<TicketEvent>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let ns = te.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<TicketEvent> = Api::namespaced(ctx.client.clone(), &ns);
    // the watch cache may lag our own last status write by a pass; status is written whole (SSA), so
    // start from the object as stored, or an older decision would overwrite a newer one
    let te = match api.get_opt(&te.name_any()).await? {
        Some(fresh) => Arc::new(fresh),
        None => return Ok(Action::await_change()),
    };
    let generation = te.metadata.generation;
    let old = te.status.clone().unwrap_or_default();
    let now = Utc::now();

    let p = match parse(&te) {
        Ok(p) => p,
        Err(why) => {
            let conditions = status::set(
                &old.conditions,
                condition::READY,
                false,
                "InvalidSpec",
                why.clone(),
                generation,
            );
            let st = TicketEventStatus {
                phase: Some(phase::FAILED.into()),
                observed_generation: generation,
                conditions,
                ..old.clone()
            };
            patch_status(&api, &te, &st).await?;
            if old.phase.as_deref() != Some(phase::FAILED) {
                event(&ctx, &te, EventType::Warning, "InvalidSpec", why).await;
            }
            return Ok(Action::await_change());
        }
    };
    let (ph, next) = plan::phase_at(&p.window, now);
    let f = forecast(&ctx, &te, &p, ph, now).await?;
    ctx.metrics
        .forecast_users
        .get_or_create(&crate::metrics::EventLabels {
            ticket_event: format!("{ns}/{}", te.name_any()),
        })
        .set(f.expected_users);

    let live = matches!(ph, Phase::OnSale | Phase::Draining);
    let depth = match (&ctx.redis, live) {
        (Some(r), true) => Some(signals::queue_depth(r, &ctx.keys, p.event).await?),
        _ => None,
    };
    let (wanted, floor, reason, memory) = wish(&te, &p, ph, &f, depth, now);
    let s = &te.spec;
    let budget = s
        .connection_budget
        .as_ref()
        .map(|b| plan::budget_cap(b.max_connections, b.pool_per_replica, b.reserved));
    let bounds = Bounds {
        min: s.min_replicas,
        max: s.max_replicas,
        budget,
    };
    let (desired, budget_limited) = match wanted {
        Some(w) => {
            let (n, limited) = plan::clamp(w, floor, bounds);
            (Some(n), limited)
        }
        None => (None, false),
    };
    // a rule that changes nothing after the clamp (e.g. "below 1000" at the forecast floor while the
    // queue is still empty) neither starts a cooldown nor claims to be the reason
    let (memory, reason) = match (ph, desired) {
        (Phase::OnSale, Some(n))
            if Some(n) == old.desired_replicas
                || (old.desired_replicas.is_none() && n == f.replicas) =>
        {
            (
                StepMemory {
                    last_up: parse_ts(&old.last_scale_up_at),
                    last_down: parse_ts(&old.last_scale_down_at),
                },
                format!("on sale: queue depth {}, holding {n}", depth.unwrap_or(0)),
            )
        }
        _ => (memory, reason),
    };

    // the target and who else drives it
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let target = deployments.get_opt(&s.target.name).await?;
    let conflict = conflicting_hpa(&ctx, &ns, &s.target.name).await?;
    let current = target
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|sp| sp.replicas)
        .unwrap_or(0);
    let ready = target
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|st| st.ready_replicas)
        .unwrap_or(0);

    let mut decision = old.last_decision.clone();
    if let (Some(want), Some(_), None, Mode::Active) = (desired, &target, &conflict, &s.mode) {
        let merged = want.max(if ph == Phase::Completed {
            0
        } else {
            others_max(&ctx, &te, &ns).await?.unwrap_or(0)
        });
        if merged != current {
            let started = std::time::Instant::now();
            deployments
                .patch_scale(
                    &s.target.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "replicas": merged } })),
                )
                .await?;
            ctx.metrics
                .scale_latency
                .observe(started.elapsed().as_secs_f64());
            ctx.metrics
                .decisions
                .get_or_create(&crate::metrics::DecisionLabels {
                    direction: if merged > current { "up" } else { "down" },
                })
                .inc();
            let note = format!(
                "{}: {current} -> {merged} replicas ({reason})",
                s.target.name
            );
            event_with(
                &ctx,
                &te,
                EventType::Normal,
                "Scaled",
                format!("ScaleTo{merged}"),
                note.clone(),
            )
            .await;
            tracing::info!(te = %te.name_any(), %note, "scaled");
            decision = Some(Decision {
                at: ts(now),
                replicas: merged,
                reason: reason.clone(),
            });
        }
    }
    if s.mode == Mode::Plan
        && desired.is_some()
        && decision
            .as_ref()
            .is_none_or(|d| Some(d.replicas) != desired)
    {
        decision = Some(Decision {
            at: ts(now),
            replicas: desired.unwrap_or_default(),
            reason: format!("plan only: {reason}"),
        });
    }

    // what the waiting room may admit: the capacity that is actually ready
    if let (Some(r), true, None) = (
        &ctx.redis,
        matches!(ph, Phase::PreScaling | Phase::OnSale | Phase::Draining),
        &conflict,
    ) {
        signals::publish_capacity(
            r,
            &ctx.keys,
            i64::from(ready) * i64::from(s.users_per_replica),
        )
        .await?;
    }

    // conditions
    let mut conditions = old.conditions.clone();
    let (warm, ready_reason, ready_msg) = match (ph, desired, &target) {
        (_, _, None) => (
            false,
            "TargetMissing",
            format!("deployment {} not found", s.target.name),
        ),
        (Phase::Scheduled, _, _) => (
            false,
            "Scheduled",
            format!("pre-scaling starts at {}", next.map(ts).unwrap_or_default()),
        ),
        (_, Some(d), _) if ready >= d => (true, "Warm", format!("{ready}/{d} replicas ready")),
        (Phase::PreScaling, Some(d), _) => (
            false,
            "Warming",
            format!(
                "{ready}/{d} replicas ready, opening at {}",
                ts(p.window.opens)
            ),
        ),
        (Phase::OnSale, Some(d), _) => (
            false,
            "NotWarmInTime",
            format!("{ready}/{d} replicas ready after opening"),
        ),
        (_, _, _) => (true, "Idle", format!("{ready} replicas ready")),
    };
    conditions = status::set(
        &conditions,
        condition::READY,
        warm,
        ready_reason,
        ready_msg,
        generation,
    );
    let cap_msg = match budget {
        Some(cap) => format!("connection budget allows {cap} replicas"),
        None => "no connection budget".into(),
    };
    if budget_limited && !status::is_true(&old.conditions, condition::BUDGET_LIMITED) {
        event(
            &ctx,
            &te,
            EventType::Warning,
            "BudgetLimited",
            format!("wanted {} replicas; {cap_msg}", wanted.unwrap_or_default()),
        )
        .await;
    }
    conditions = status::set(
        &conditions,
        condition::BUDGET_LIMITED,
        budget_limited,
        if budget_limited {
            "Capped"
        } else {
            "WithinBudget"
        },
        cap_msg,
        generation,
    );
    let fallback = f.basis.is_empty();
    conditions = status::set(
        &conditions,
        condition::FORECAST_FALLBACK,
        fallback,
        if fallback { "NoHistory" } else { "History" },
        f.method.clone(),
        generation,
    );
    if conflict.is_some() && !status::is_true(&old.conditions, condition::TARGET_CONFLICT) {
        event(
            &ctx,
            &te,
            EventType::Warning,
            "TargetConflict",
            format!(
                "HPA {} also scales {}; not scaling",
                conflict.clone().unwrap_or_default(),
                s.target.name
            ),
        )
        .await;
    }
    let conflict_msg = conflict
        .as_ref()
        .map_or("no other scaler on the target".into(), |h| {
            format!("HorizontalPodAutoscaler {h} scales the same Deployment")
        });
    conditions = status::set(
        &conditions,
        condition::TARGET_CONFLICT,
        conflict.is_some(),
        if conflict.is_some() { "HPA" } else { "None" },
        conflict_msg,
        generation,
    );

    // peaks and the forecast-vs-actual record
    let peak_queue = depth
        .map(|d| d.max(old.peak_queue_depth.unwrap_or(0)))
        .or(old.peak_queue_depth);
    let peak_users = match (&ctx.db, ph) {
        (Some(db), Phase::OnSale | Phase::Draining | Phase::Completed) => {
            signals::actual_peak(db, p.event)
                .await?
                .or(old.peak_actual_users)
        }
        _ => old.peak_actual_users,
    };
    let phase_name = if ph == Phase::PreScaling && warm {
        phase::READY
    } else {
        ph.name()
    };
    if ph == Phase::Completed && old.phase.as_deref() != Some(phase::COMPLETED) {
        if let Some(db) = &ctx.db {
            let outcome = signals::Outcome {
                event: p.event,
                artist: &s.artist,
                ticket_event: &format!("{ns}/{}", te.name_any()),
                forecast_users: f.expected_users,
                forecast_replicas: f.replicas,
                method: &f.method,
                peak_users,
                peak_queue,
            };
            signals::record_outcome(db, &outcome).await?;
        }
        event(
            &ctx,
            &te,
            EventType::Normal,
            "SaleCompleted",
            format!(
                "forecast {} users, actual peak {}",
                f.expected_users,
                peak_users.map_or("unknown".into(), |p| p.to_string())
            ),
        )
        .await;
    }
    if old.phase.as_deref() != Some(phase_name) {
        event_with(
            &ctx,
            &te,
            EventType::Normal,
            "Phase",
            format!("To{phase_name}"),
            format!(
                "{} -> {phase_name}: {reason}",
                old.phase.as_deref().unwrap_or("New")
            ),
        )
        .await;
    }

    let st = TicketEventStatus {
        phase: Some(phase_name.into()),
        observed_generation: generation,
        forecast: Some(f),
        desired_replicas: desired.or(old.desired_replicas),
        ready_replicas: Some(ready),
        queue_depth: depth,
        last_decision: decision,
        last_scale_up_at: memory.last_up.map(ts),
        last_scale_down_at: memory.last_down.map(ts),
        peak_queue_depth: peak_queue,
        peak_actual_users: peak_users,
        conditions,
    };
    if Some(&st) != te.status.as_ref() {
        patch_status(&api, &te, &st).await?;
    }
    ctx.failures
        .lock()
        .await
        .remove(&ObjectRef::from(te.as_ref()));

    // next look: the poll interval during the sale, readiness checks while warming, else the boundary
    let wait = match ph {
        Phase::OnSale => Duration::from_secs(s.queue_scaling.poll_seconds.clamp(1, 60) as u64),
        Phase::PreScaling if !warm => Duration::from_secs(5),
        _ => next
            .and_then(|t| (t - now).to_std().ok())
            .map_or(Duration::from_secs(300), |d| {
                d.min(Duration::from_secs(300))
            }),
    };
    Ok(Action::requeue(wait.max(Duration::from_millis(500))))
}

async fn patch_status(
    api: &Api<TicketEvent>,
    te: &TicketEvent,
    st: &TicketEventStatus,
) -> Result<()> {
    let patch = json!({ "apiVersion": "tiketi.io/v1alpha1", "kind": "TicketEvent", "status": st });
    api.patch_status(
        &te.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
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

/// Runs the controller until shutdown; Deployment changes wake the events that target them.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let api: Api<TicketEvent> = Api::all(ctx.client.clone());
    if let Err(e) = api.list(&ListParams::default().limit(1)).await {
        anyhow::bail!(
            "the TicketEvent CRD is not served ({e}); install it: kubectl apply -f crds/ticketevent.yaml"
        );
    }
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        .watches(
            Api::<Deployment>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |d: Deployment| {
                let (ns, name) = (d.namespace(), d.name_any());
                store
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

#[cfg(test)]
#[path = "spec_props.rs"]
mod spec_props;
