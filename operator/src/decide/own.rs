//! This event's own plan for a pass, before the other sales and autoscalers on the target count.

use chrono::{DateTime, Utc};
use tiketi_crds::{DrainStatus, Forecast, TicketEventSpec, TicketEventStatus};

use super::{
    Parsed, parse_ts,
    wish::{self, Source, forecast},
};
use crate::{
    observe::Observed,
    plan::{self, Bounds, Phase, StepMemory},
};

/// This event's own plan for the pass: the phase, the forecast, its wish clamped to the bounds and
/// the connection budget, and the step memory and reason that go with it.
pub(super) struct Own {
    pub(super) phase: Phase,
    /// The next phase boundary.
    pub(super) next: Option<DateTime<Utc>>,
    pub(super) ready: i32,
    pub(super) starting: i32,
    pub(super) forecast: Forecast,
    pub(super) source: Source,
    /// Before the clamp, and after it.
    pub(super) wanted: Option<i32>,
    pub(super) desired: Option<i32>,
    pub(super) budget: Option<i32>,
    pub(super) budget_limited: bool,
    pub(super) depth: Option<i64>,
    pub(super) memory: StepMemory,
    pub(super) reason: String,
    pub(super) drain: Option<DrainStatus>,
}

pub(super) fn own(
    s: &TicketEventSpec,
    old: &TicketEventStatus,
    o: &Observed,
    p: &Parsed,
    now: DateTime<Utc>,
) -> Own {
    let (ph, next) = plan::phase_at(&p.window, now);
    let (ready, starting, warming) = o
        .target
        .map_or((0, 0, 0), |t| (t.ready, t.starting(), t.warming()));
    let (f, source) = forecast(s, old, o, ph, now);
    let w = wish::wish(&wish::Inputs {
        s,
        old,
        p,
        o,
        phase: ph,
        forecast: &f,
        ready,
        warming,
        now,
    });
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
    Own {
        phase: ph,
        next,
        ready,
        starting,
        forecast: f,
        source,
        wanted: w.wanted,
        desired,
        budget,
        budget_limited,
        depth,
        memory,
        reason,
        drain: w.drain,
    }
}
