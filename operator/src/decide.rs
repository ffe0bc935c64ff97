//! Decide: what one pass does, from the spec, the last status and what it observed — a pure, total
//! function (no IO, no clock: `now` is an argument), so the controller tests and the property tests
//! call it directly. `act` applies the `Outcome`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tiketi_crds::{
    AutoscalerStatus, Decision, LEAD_TIME_AUTO, Mode, OtherAutoscalers, TicketEventSpec,
    TicketEventStatus, condition, phase,
};
mod autoscalers;
mod outcome;
mod spec;
mod wish;

pub use autoscalers::AutoscalerPatch;
use autoscalers::{cleanup, cooperate, others_max, others_sum};
pub use outcome::{Capacity, Note, Outcome, SaleRecord};
use outcome::{invalid, note};
use spec::parse_ts;
pub use spec::{Parsed, parse, ts};
pub use wish::forecast_from;
use wish::{Source, forecast, startup, wish};

use crate::{
    observe::{Autoscaler, Observed, Read},
    plan::{self, Bounds, Phase, StepMemory},
    status,
};

pub fn decide(
    s: &TicketEventSpec,
    old: &TicketEventStatus,
    o: &Observed,
    now: DateTime<Utc>,
) -> Outcome {
    if o.deleting {
        return cleanup(s, old, o);
    }
    let p = match parse(s, old) {
        Ok(p) => p,
        Err(why) => return invalid(old, o, why),
    };
    let generation = o.generation;
    let (ph, next) = plan::phase_at(&p.window, now);
    let (ready, starting) = o.target.map_or((0, 0), |t| (t.ready, t.starting()));
    let (f, source) = forecast(s, old, o, ph, now);
    let w = wish(s, old, &p, ph, &f, o, ready, starting, now);
    let budget = s
        .connection_budget
        .as_ref()
        .map(|b| plan::budget_cap(b.max_connections, b.pool_per_replica, b.reserved));
    let bounds = Bounds {
        min: s.min_replicas,
        max: s.max_replicas,
        budget,
    };
    let (desired, budget_limited) = match w.wanted {
        Some(n) => {
            let (n, limited) = plan::clamp(n, w.floor, bounds);
            (Some(n), limited)
        }
        None => (None, false),
    };
    let depth = o.queue_depth.ok().copied();
    // a rule that changes nothing after the clamp (e.g. "below 1000" at the forecast floor while the
    // queue is still empty) neither starts a cooldown nor claims to be the reason
    let (memory, reason) = match (ph, desired) {
        (Phase::OnSale, Some(n))
            if (Some(n) == old.desired_replicas
                || (old.desired_replicas.is_none() && n == f.replicas))
                && !w.reason.contains("warm-up credit")
                && !w.reason.contains("unreadable") =>
        {
            (
                StepMemory {
                    last_up: parse_ts(&old.last_scale_up_at),
                    last_down: parse_ts(&old.last_scale_down_at),
                },
                format!("on sale: queue depth {}, holding {n}", depth.unwrap_or(0)),
            )
        }
        _ => (w.memory, w.reason),
    };

    let mut out = Outcome::nothing();
    out.event_id = Some(p.event);
    let others = others_max(o);
    // the largest live wish on the target always wins, whatever this event's phase
    let merged = desired.map(|d| d.max(others.unwrap_or(0)));
    let window = matches!(ph, Phase::PreScaling | Phase::OnSale | Phase::Draining);
    let active = s.mode == Mode::Active;

    // another autoscaler on the target: report it, or cooperate with it
    let other = o.autoscalers.first();
    let cooperating = other.is_some() && s.other_autoscalers == OtherAutoscalers::Cooperate;
    let refused = other.is_some() && !cooperating;
    let mut autoscaler = None;
    let mut decision = old.last_decision.clone();
    if let Some(a) = other {
        let policy = format!("{:?}", s.other_autoscalers);
        let effect = if cooperating && active {
            let (patch, effect) = cooperate(a, &o.key, merged, window, others.is_some());
            if let Some(patch) = &patch {
                decision = Some(Decision {
                    at: ts(now),
                    replicas: merged.unwrap_or_default(),
                    reason: format!("{} {}: {effect} ({reason})", a.kind(), a.name()),
                });
                out.events.push(Note {
                    warning: false,
                    reason: "Cooperating",
                    action: match patch {
                        AutoscalerPatch::HpaMin { min, .. } => format!("HpaMin{min}"),
                        AutoscalerPatch::KedaPause { replicas, .. } => {
                            format!("Pause{}", replicas.unwrap_or_default())
                        }
                    },
                    note: format!("{} {}: {effect}", a.kind(), a.name()),
                });
            }
            out.autoscaler = patch;
            effect
        } else if cooperating {
            "plan only: left as it is".into()
        } else {
            format!("not scaling: it drives {}", s.target.name)
        };
        autoscaler = Some(AutoscalerStatus {
            kind: a.kind().into(),
            name: a.name().into(),
            policy,
            effect,
        });
    }

    // our own /scale; never down while another live sale's wish is not known yet (it may be what
    // sized the target: its first pass, or its status not in the store yet)
    let unsure = o.siblings.iter().find(|x| x.unsure);
    let held_for = match (merged, o.target, unsure) {
        (Some(m), Some(t), Some(x)) if m < t.replicas => Some(x.name.clone()),
        _ => None,
    };
    if let (Some(m), Some(t), true, false, false, None) =
        (merged, o.target, active, refused, cooperating, &held_for)
    {
        out.replicas_before = t.replicas;
        if m != t.replicas {
            out.replicas = Some(m);
            let note = format!(
                "{}: {} -> {m} replicas ({reason})",
                s.target.name, t.replicas
            );
            out.events.push(Note {
                warning: false,
                reason: "Scaled",
                action: format!("ScaleTo{m}"),
                note,
            });
            decision = Some(Decision {
                at: ts(now),
                replicas: m,
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

    // what the waiting room may admit: this event's share of the capacity that is actually ready
    let mut capacity_users = None;
    if window && !refused {
        let own = desired.unwrap_or(0);
        let users = plan::capacity_share(
            ready,
            own,
            own.saturating_add(others_sum(o)),
            s.users_per_replica,
        );
        capacity_users = Some(users);
        out.capacity = Some(Capacity::Publish(users));
    } else if ph == Phase::Completed && old.phase.as_deref() != Some(phase::COMPLETED) {
        out.capacity = Some(Capacity::Remove);
    }

    // conditions
    let mut conditions = old.conditions.clone();
    let (warm, ready_reason, ready_msg) = match (ph, desired, &o.target) {
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
        out.events.push(note(
            true,
            "BudgetLimited",
            format!(
                "wanted {} replicas; {cap_msg}",
                w.wanted.unwrap_or_default()
            ),
        ));
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
    let fallback = match &source {
        Source::Frozen => None,
        Source::History => Some((false, "History", f.method.clone())),
        Source::NoHistory => Some((true, "NoHistory", f.method.clone())),
        Source::Unavailable(e, true) => Some((
            true,
            "HistoryUnavailable",
            format!(
                "sale history unreadable ({e}): keeping the last recorded forecast of {} users",
                f.expected_users
            ),
        )),
        Source::Unavailable(e, false) => Some((
            true,
            "HistoryUnavailable",
            format!(
                "sale history unreadable ({e}): fallbackExpectedUsers {} until it is back",
                f.expected_users
            ),
        )),
    };
    if let Some((on, why, msg)) = fallback {
        conditions = status::set(
            &conditions,
            condition::FORECAST_FALLBACK,
            on,
            why,
            msg,
            generation,
        );
    }
    if refused && !status::is_true(&old.conditions, condition::TARGET_CONFLICT) {
        let a = other.map(|a| (a.kind(), a.name())).unwrap_or_default();
        out.events.push(note(
            true,
            "TargetConflict",
            format!("{} {} also scales {}; not scaling", a.0, a.1, s.target.name),
        ));
    }
    let (conflict_reason, conflict_msg) = match (other, cooperating) {
        (None, _) => ("None", "no other scaler on the target".to_string()),
        (Some(a), false) => (
            match a {
                Autoscaler::Hpa { .. } => "HPA",
                Autoscaler::ScaledObject { .. } => "ScaledObject",
            },
            format!("{} {} scales the same Deployment", a.kind(), a.name()),
        ),
        (Some(a), true) => (
            "Cooperating",
            format!(
                "{} {}: {}",
                a.kind(),
                a.name(),
                autoscaler.as_ref().map_or("", |x| x.effect.as_str())
            ),
        ),
    };
    conditions = status::set(
        &conditions,
        condition::TARGET_CONFLICT,
        refused,
        conflict_reason,
        conflict_msg,
        generation,
    );
    let degraded: Vec<String> = [
        match &o.queue_depth {
            Read::Failed(e) => Some(format!("queue depth: {e}")),
            _ => None,
        },
        match &o.outflow {
            Read::Failed(e) => Some(format!("outflow: {e}")),
            _ => None,
        },
        match &o.peak_users {
            Read::Failed(e) => Some(format!("actual peak: {e}")),
            _ => None,
        },
    ]
    .into_iter()
    .flatten()
    .collect();
    if window
        || !degraded.is_empty()
        || status::is_true(&old.conditions, condition::SIGNALS_DEGRADED)
    {
        conditions = status::set(
            &conditions,
            condition::SIGNALS_DEGRADED,
            !degraded.is_empty(),
            if degraded.is_empty() {
                "Read"
            } else {
                "Unreadable"
            },
            if degraded.is_empty() {
                "queue and history signals read".into()
            } else {
                degraded.join("; ")
            },
            generation,
        );
    }

    // peaks and the forecast-vs-actual record
    let peak_queue = depth
        .map(|d| d.max(old.peak_queue_depth.unwrap_or(0)))
        .or(old.peak_queue_depth);
    let peak_users = match &o.peak_users {
        Read::Ok(Some(p)) => Some((*p).max(old.peak_actual_users.unwrap_or(0))),
        _ => old.peak_actual_users,
    };
    let phase_name = if ph == Phase::PreScaling && warm {
        phase::READY
    } else {
        ph.name()
    };
    if ph == Phase::Completed && old.phase.as_deref() != Some(phase::COMPLETED) {
        out.record = Some(SaleRecord {
            forecast_users: f.expected_users,
            forecast_replicas: f.replicas,
            method: f.method.clone(),
            peak_users,
            peak_queue,
        });
        out.events.push(note(
            false,
            "SaleCompleted",
            format!(
                "forecast {} users, actual peak {}",
                f.expected_users,
                peak_users.map_or("unknown".into(), |p| p.to_string())
            ),
        ));
    }
    if old.phase.as_deref() != Some(phase_name) {
        out.events.push(Note {
            warning: false,
            reason: "Phase",
            action: format!("To{phase_name}"),
            note: format!(
                "{} -> {phase_name}: {reason}",
                old.phase.as_deref().unwrap_or("New")
            ),
        });
    }

    let target_replicas = out
        .replicas
        .or(o.target.map(|t| t.replicas))
        .filter(|_| o.target.is_some());
    let mut summary = format!("{phase_name}: {reason}");
    if let Some(t) = o.target
        && !matches!(ph, Phase::Scheduled | Phase::Completed)
    {
        summary.push_str(&format!(
            "; {}/{} ready",
            t.ready,
            target_replicas.unwrap_or(t.replicas)
        ));
        if starting > 0 {
            summary.push_str(&format!(", {starting} starting"));
        }
    }
    if merged.is_some() && merged != desired {
        summary.push_str(&format!(
            "; another sale on {} wants {}",
            s.target.name,
            merged.unwrap_or_default()
        ));
    }
    if let Some(d) = &w.drain
        && d.replicas.is_none()
    {
        summary.push_str("; drain-time rule waits for a measured outflow");
    }
    if s.lead_time == LEAD_TIME_AUTO && ph == Phase::Scheduled {
        let n = old.startup.as_ref().map_or(0, |u| u.samples_seconds.len());
        summary.push_str(&format!("; leadTime auto from {n} measured start-up(s)"));
    }
    if let Some(x) = &held_for {
        summary.push_str(&format!(
            "; not scaling down before sale {x} reports its wish"
        ));
    }
    if budget_limited {
        summary.push_str("; capped by the connection budget");
    }
    if let Some(a) = &autoscaler {
        summary.push_str(&format!("; {} {}: {}", a.kind, a.name, a.effect));
    }
    if matches!(source, Source::Unavailable(..)) {
        summary.push_str("; history unreadable, forecast fallback");
    }
    if !degraded.is_empty() {
        summary.push_str("; signals unreadable");
    }
    if ph == Phase::Completed {
        summary.push_str(&format!(
            "; forecast {} users, actual peak {}",
            f.expected_users,
            peak_users.map_or("unknown".into(), |p| p.to_string())
        ));
    }

    out.status = Some(TicketEventStatus {
        phase: Some(phase_name.into()),
        observed_generation: generation,
        forecast: Some(f),
        desired_replicas: desired.or(old.desired_replicas),
        ready_replicas: o.target.map(|t| t.ready),
        queue_depth: depth,
        last_decision: decision,
        last_scale_up_at: memory.last_up.map(ts),
        last_scale_down_at: memory.last_down.map(ts),
        peak_queue_depth: peak_queue,
        peak_actual_users: peak_users,
        conditions,
        target_replicas,
        starting_replicas: o.target.map(|_| starting),
        capacity_users,
        drain: w.drain,
        autoscaler,
        startup: startup(s, old, o),
        summary: Some(summary),
    });

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
    out.requeue = Some(wait.max(Duration::from_millis(500)));
    out
}
