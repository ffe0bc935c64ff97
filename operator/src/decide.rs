//! Decide: what one pass does, from the spec, the last status and what it observed — a pure, total
//! function (no IO, no clock: `now` is an argument), so the controller tests and the property tests
//! call it directly. `act` applies the `Outcome`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tiketi_crds::{Forecast, LEAD_TIME_AUTO, Mode, TicketEventSpec, TicketEventStatus, phase};

mod autoscalers;
mod conditions;
mod outcome;
mod own;
mod scale;
mod startup;
mod summary;
mod wish;

pub use autoscalers::AutoscalerPatch;
use autoscalers::{Wishes, cleanup, other_autoscaler, others_max, others_sum};
use conditions::{conditions, degraded_signals};
pub use outcome::{After, Capacity, Note, Outcome, Release, SaleRecord};
use outcome::{duplicate, invalid, note};
use own::own;
use scale::{CapacityInputs, capacity, own_scale, plan_mode_decision};
use startup::startup;
pub(crate) use summary::forecast_error_percent;
use summary::{Facts, Replicas, forecast_vs_actual, summary};
use wish::Source;
pub use wish::forecast_from;

use crate::{
    observe::{Observed, Read, TargetWish},
    plan::Phase,
    sale::{Parsed, Sale, baseline, parse_ts, ts},
};

/// One pass, in order: this event's own plan (`own`), the largest wish on the target, another
/// autoscaler on it, our own `/scale`, the plan-mode decision, the capacity to publish, the
/// conditions, the peaks and the sale record, the events, the summary, the status and the requeue.
pub fn decide(sale: &Sale<'_>, o: &Observed, now: DateTime<Utc>) -> Outcome {
    let (s, old) = (sale.spec, sale.old);
    let release = release(s, old, o);
    if o.deleting {
        return Outcome {
            release,
            ..cleanup(s, old, o)
        };
    }
    let p = match &sale.parsed {
        Ok(p) => p,
        Err(why) => return invalid(old, o, why.clone()),
    };
    if let Some(first) = &o.duplicate_of {
        return duplicate(old, o, first);
    }
    let own = own(s, old, o, p, now);
    let ph = own.phase;
    let others = others_max(o);
    // the largest live wish on the target always wins, whatever this event's phase
    let merged = own.desired.map(|d| d.max(others.unwrap_or(0)));
    let window = matches!(ph, Phase::PreScaling | Phase::OnSale | Phase::Draining);
    let wishes = Wishes {
        merged,
        window,
        others_live: others.is_some(),
        reason: &own.reason,
    };
    let other = other_autoscaler(s, o, &wishes, now);
    let scale = own_scale(s, o, merged, &other, &own.reason, now);
    // at most one of the two decides (cooperating excludes our own /scale)
    let decision = scale
        .decision
        .clone()
        .or(other.decision.clone())
        .or_else(|| old.last_decision.clone());
    let decision = plan_mode_decision(s, own.desired, &own.reason, decision, now);
    let (capacity_users, capacity) = capacity(&CapacityInputs {
        s,
        old,
        o,
        phase: ph,
        window,
        refused: other.refused,
        desired: own.desired,
        ready: own.ready,
    });

    let degraded = degraded_signals(o);
    let cond = conditions(&conditions::Inputs {
        old: &old.conditions,
        generation: o.generation,
        phase: ph,
        next: own.next,
        opens: p.window.opens,
        target: &s.target.name,
        target_found: o.target.is_some(),
        ready: own.ready,
        wanted: own.wanted,
        desired: own.desired,
        budget: own.budget,
        budget_limited: own.budget_limited,
        forecast: &own.forecast,
        source: &own.source,
        other: o.autoscalers.first(),
        cooperating: other.cooperating,
        refused: other.refused,
        effect: other.status.as_ref().map_or("", |x| x.effect.as_str()),
        window,
        degraded: &degraded,
    });
    let peaks = peaks(old, o, own.depth);
    let phase_name = if ph == Phase::PreScaling && cond.warm {
        phase::READY
    } else {
        ph.name()
    };

    let mut events: Vec<Note> = other
        .event
        .into_iter()
        .chain(scale.event)
        .chain(cond.events)
        .collect();
    let mut record = None;
    if ph == Phase::Completed && old.phase.as_deref() != Some(phase::COMPLETED) {
        let (r, n) = sale_record(&own.forecast, &peaks);
        record = Some(r);
        events.push(n);
    }
    events.extend(phase_note(old, phase_name, &own.reason));

    let target_replicas = scale
        .replicas
        .or(o.target.map(|t| t.replicas))
        .filter(|_| o.target.is_some());
    let summary = summary(&Facts {
        phase: phase_name,
        reason: &own.reason,
        replicas: o
            .target
            .filter(|_| !matches!(ph, Phase::Scheduled | Phase::Completed))
            .map(|t| Replicas {
                ready: t.ready,
                replicas: target_replicas.unwrap_or(t.replicas),
                starting: own.starting,
            }),
        target: &s.target.name,
        other_sale_wants: merged.filter(|m| Some(*m) != own.desired),
        drain_waits: own.drain.as_ref().is_some_and(|d| d.replicas.is_none()),
        lead_auto_samples: (s.lead_time == LEAD_TIME_AUTO && ph == Phase::Scheduled)
            .then(|| old.startup.as_ref().map_or(0, |u| u.samples_seconds.len())),
        held_for: scale.held_for.as_deref(),
        budget_limited: own.budget_limited,
        autoscaler: other.status.as_ref(),
        history_unreadable: matches!(own.source, Source::Unavailable(..)),
        signals_unreadable: !degraded.is_empty(),
        completed: (ph == Phase::Completed).then_some((own.forecast.expected_users, peaks.users)),
    });

    // the wish siblings decide from, recorded on the target while this plan drives or cooperates
    let want = (window && s.mode == Mode::Active && !other.refused)
        .then_some(own.desired)
        .flatten()
        .map(|replicas| TargetWish {
            replicas,
            until: ts(p.window.closes + p.window.hold),
        });
    let wish_target = want.as_ref().map(|_| s.target.name.clone());
    let wish = (o.target.is_some() && o.own_wish != want).then_some(want);

    let forecast_error_percent = forecast_error_percent(own.forecast.expected_users, peaks.users);
    let requeue = requeue(s, ph, cond.warm, own.next, now);
    let status = TicketEventStatus {
        phase: Some(phase_name.into()),
        observed_generation: o.generation,
        forecast: Some(own.forecast),
        desired_replicas: own.desired.or(old.desired_replicas),
        ready_replicas: o.target.map(|t| t.ready),
        queue_depth: own.depth,
        last_decision: decision,
        last_scale_up_at: own.memory.last_up.map(ts),
        last_scale_down_at: own.memory.last_down.map(ts),
        peak_queue_depth: peaks.queue,
        peak_actual_users: peaks.users,
        forecast_error_percent,
        conditions: cond.conditions,
        target_replicas,
        starting_replicas: o.target.map(|_| own.starting),
        capacity_users,
        drain: own.drain,
        autoscaler: other.status,
        startup: startup(s, old, o),
        wish_target,
        summary: Some(summary),
    };
    Outcome {
        replicas: scale.replicas,
        replicas_before: scale.replicas_before,
        status: Some(status),
        events,
        requeue: Some(requeue),
        event_id: Some(p.event),
        capacity,
        autoscaler: other.patch,
        record,
        wish,
        release,
    }
}

/// The Deployment the plan held before `spec.target` moved: given back as on a deletion (the
/// remaining sales' wishes or the baseline, its autoscaler restored, this event's wish removed).
fn release(s: &TicketEventSpec, old: &TicketEventStatus, o: &Observed) -> Option<Release> {
    let (name, held) = o.old_target.as_ref()?;
    let mut was = s.clone();
    was.target.name = name.clone();
    let mut outcome = cleanup(&was, old, held);
    outcome.capacity = None;
    for n in &mut outcome.events {
        n.note = n.note.replace("TicketEvent deleted", "target changed");
    }
    Some(Release {
        target: name.clone(),
        version: held.target_version.clone(),
        outcome: Box::new(outcome),
    })
}

/// The largest queue depth and admitted users seen during the sale.
struct Peaks {
    queue: Option<i64>,
    users: Option<i64>,
}

fn peaks(old: &TicketEventStatus, o: &Observed, depth: Option<i64>) -> Peaks {
    Peaks {
        queue: depth
            .map(|d| d.max(old.peak_queue_depth.unwrap_or(0)))
            .or(old.peak_queue_depth),
        users: match &o.peak_users {
            Read::Ok(Some(p)) => Some((*p).max(old.peak_actual_users.unwrap_or(0))),
            _ => old.peak_actual_users,
        },
    }
}

/// The forecast-vs-actual record of a sale that just completed, and its event.
fn sale_record(f: &Forecast, peaks: &Peaks) -> (SaleRecord, Note) {
    let record = SaleRecord {
        forecast_users: f.expected_users,
        forecast_replicas: f.replicas,
        method: f.method.clone(),
        peak_users: peaks.users,
        peak_queue: peaks.queue,
    };
    let event = note(
        false,
        "SaleCompleted",
        forecast_vs_actual(f.expected_users, peaks.users),
    );
    (record, event)
}

/// The Phase event when the phase changes.
fn phase_note(old: &TicketEventStatus, phase_name: &str, reason: &str) -> Option<Note> {
    (old.phase.as_deref() != Some(phase_name)).then(|| Note {
        warning: false,
        reason: "Phase",
        action: format!("To{phase_name}"),
        note: format!(
            "{} -> {phase_name}: {reason}",
            old.phase.as_deref().unwrap_or("New")
        ),
        after: After::Status,
    })
}

/// When to look next.
fn requeue(
    s: &TicketEventSpec,
    ph: Phase,
    warm: bool,
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Duration {
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
    wait.max(Duration::from_millis(500))
}
