//! The status conditions of a pass (Ready, BudgetLimited, ForecastFallback, TargetConflict,
//! SignalsDegraded) and the warnings raised when one turns on.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use tiketi_crds::{Forecast, condition};

use super::{Note, note, ts, wish::Source};
use crate::{
    observe::{Autoscaler, Observed, Read},
    plan::Phase,
    status,
};

/// What the conditions are computed from.
pub(super) struct Inputs<'a> {
    /// The conditions of the last status.
    pub(super) old: &'a [Condition],
    pub(super) generation: Option<i64>,
    pub(super) phase: Phase,
    /// The next phase boundary.
    pub(super) next: Option<DateTime<Utc>>,
    pub(super) opens: DateTime<Utc>,
    /// The target Deployment's name, and whether it was found.
    pub(super) target: &'a str,
    pub(super) target_found: bool,
    pub(super) ready: i32,
    /// This event's wish before and after the clamp.
    pub(super) wanted: Option<i32>,
    pub(super) desired: Option<i32>,
    pub(super) budget: Option<i32>,
    pub(super) budget_limited: bool,
    pub(super) forecast: &'a Forecast,
    pub(super) source: &'a Source,
    /// Another autoscaler on the target, whether we cooperate with it or refuse to scale, and what
    /// cooperating did.
    pub(super) other: Option<&'a Autoscaler>,
    pub(super) cooperating: bool,
    pub(super) refused: bool,
    pub(super) effect: &'a str,
    /// Pre-scaling, on sale or draining.
    pub(super) window: bool,
    /// The signals that could not be read (see `degraded_signals`).
    pub(super) degraded: &'a [String],
}

pub(super) struct Conditions {
    pub(super) conditions: Vec<Condition>,
    /// Warnings for conditions that just turned on.
    pub(super) events: Vec<Note>,
    /// Enough replicas are Ready (the Ready condition).
    pub(super) warm: bool,
}

/// The signals this pass could not read, one line each.
pub(super) fn degraded_signals(o: &Observed) -> Vec<String> {
    [
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
    .collect()
}

pub(super) fn conditions(i: &Inputs<'_>) -> Conditions {
    let generation = i.generation;
    let mut events = vec![];
    let mut conditions = i.old.to_vec();
    let (warm, ready_reason, ready_msg) = ready(i);
    conditions = status::set(
        &conditions,
        condition::READY,
        warm,
        ready_reason,
        ready_msg,
        generation,
    );
    let cap_msg = match i.budget {
        Some(cap) => format!("connection budget allows {cap} replicas"),
        None => "no connection budget".into(),
    };
    if i.budget_limited && !status::is_true(i.old, condition::BUDGET_LIMITED) {
        events.push(note(
            true,
            "BudgetLimited",
            format!(
                "wanted {} replicas; {cap_msg}",
                i.wanted.unwrap_or_default()
            ),
        ));
    }
    conditions = status::set(
        &conditions,
        condition::BUDGET_LIMITED,
        i.budget_limited,
        if i.budget_limited {
            "Capped"
        } else {
            "WithinBudget"
        },
        cap_msg,
        generation,
    );
    if let Some((on, why, msg)) = fallback(i.source, i.forecast) {
        conditions = status::set(
            &conditions,
            condition::FORECAST_FALLBACK,
            on,
            why,
            msg,
            generation,
        );
    }
    if i.refused && !status::is_true(i.old, condition::TARGET_CONFLICT) {
        let a = i.other.map(|a| (a.kind(), a.name())).unwrap_or_default();
        events.push(note(
            true,
            "TargetConflict",
            format!("{} {} also scales {}; not scaling", a.0, a.1, i.target),
        ));
    }
    let (conflict_reason, conflict_msg) = conflict(i);
    conditions = status::set(
        &conditions,
        condition::TARGET_CONFLICT,
        i.refused,
        conflict_reason,
        conflict_msg,
        generation,
    );
    let degraded = i.degraded;
    // outside the window the condition is only written to raise it or to clear it
    if i.window || !degraded.is_empty() || status::is_true(i.old, condition::SIGNALS_DEGRADED) {
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
    Conditions {
        conditions,
        events,
        warm,
    }
}

/// The Ready condition: whether enough replicas are Ready, its reason and message.
fn ready(i: &Inputs<'_>) -> (bool, &'static str, String) {
    let ready = i.ready;
    match (i.phase, i.desired, i.target_found) {
        (_, _, false) => (
            false,
            "TargetMissing",
            format!("deployment {} not found", i.target),
        ),
        (Phase::Scheduled, _, _) => (
            false,
            "Scheduled",
            format!(
                "pre-scaling starts at {}",
                i.next.map(ts).unwrap_or_default()
            ),
        ),
        // 0/0 is not warm: a sale is never served by no replica
        (_, Some(d), _) if ready >= d && ready > 0 => {
            (true, "Warm", format!("{ready}/{d} replicas ready"))
        }
        (Phase::PreScaling, Some(d), _) => (
            false,
            "Warming",
            format!("{ready}/{d} replicas ready, opening at {}", ts(i.opens)),
        ),
        (Phase::OnSale, Some(d), _) => (
            false,
            "NotWarmInTime",
            format!("{ready}/{d} replicas ready after opening"),
        ),
        (_, _, _) if ready > 0 => (true, "Idle", format!("{ready} replicas ready")),
        (_, _, _) => (false, "NoReplicasReady", "no replica ready".into()),
    }
}

/// The ForecastFallback condition; `None` leaves it as it was (the forecast is frozen).
fn fallback(source: &Source, f: &Forecast) -> Option<(bool, &'static str, String)> {
    match source {
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
    }
}

/// The TargetConflict condition's reason and message.
fn conflict(i: &Inputs<'_>) -> (&'static str, String) {
    match (i.other, i.cooperating) {
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
            format!("{} {}: {}", a.kind(), a.name(), i.effect),
        ),
    }
}
