//! This event's own wish: the forecast (frozen at the opening, falling back when the history cannot
//! be read), the phase's replicas with the queue rules, drain-time target and warm-up credit.

use chrono::{DateTime, Utc};
use tiketi_crds::{DrainStatus, Forecast, PastSale, TicketEventSpec, TicketEventStatus, phase};

use super::{Parsed, parse_ts, ts};
use crate::{
    observe::{Observed, Read},
    plan::{self, Phase, SalePeak, StepMemory},
};

/// Warm-up credit lasts this long after the last scaling decision: pods that are not Ready by then
/// (no node, image pull failing) no longer hold back the next step.
const WARM_UP_CREDIT_SECS: i64 = 600;

/// The status forecast from the artist's past sale peaks.
pub fn forecast_from(s: &TicketEventSpec, history: &[SalePeak], now: DateTime<Utc>) -> Forecast {
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

/// Where the forecast came from, for the ForecastFallback condition.
pub(super) enum Source {
    /// Frozen since the opening: the condition stays as it was.
    Frozen,
    History,
    NoHistory,
    /// PostgreSQL could not be read: the last recorded forecast (`true`) or the spec's fallback.
    Unavailable(String, bool),
}

/// The forecast for this sale: recomputed until the sale opens, then frozen in status. A failed
/// history read falls back to the last recorded forecast, then to `fallbackExpectedUsers`.
pub(super) fn forecast(
    s: &TicketEventSpec,
    old: &TicketEventStatus,
    o: &Observed,
    ph: Phase,
    now: DateTime<Utc>,
) -> (Forecast, Source) {
    if matches!(ph, Phase::OnSale | Phase::Draining | Phase::Completed)
        && let Some(f) = &old.forecast
    {
        return (f.clone(), Source::Frozen);
    }
    let from = |h: &[SalePeak]| {
        let f = forecast_from(s, h, now);
        let src = if f.basis.is_empty() {
            Source::NoHistory
        } else {
            Source::History
        };
        (f, src)
    };
    match &o.history {
        Read::Ok(h) => from(h),
        Read::Skipped => from(&[]),
        Read::Failed(e) => match &old.forecast {
            Some(f) => (f.clone(), Source::Unavailable(e.clone(), true)),
            None => {
                let mut f = forecast_from(s, &[], now);
                f.method = "fallback (sale history unavailable)".into();
                (f, Source::Unavailable(e.clone(), false))
            }
        },
    }
}

/// This event's wish before the clamp.
pub(super) struct Wish {
    /// `None`: no opinion (before pre-scaling, after restoring).
    pub(super) wanted: Option<i32>,
    pub(super) floor: i32,
    pub(super) reason: String,
    pub(super) memory: StepMemory,
    pub(super) drain: Option<DrainStatus>,
}

/// What the wish is computed from.
pub(super) struct Inputs<'a> {
    pub(super) s: &'a TicketEventSpec,
    pub(super) old: &'a TicketEventStatus,
    pub(super) p: &'a Parsed,
    pub(super) o: &'a Observed,
    pub(super) phase: Phase,
    pub(super) forecast: &'a Forecast,
    /// The target's Ready replicas, and those a scale-up asked for that are still starting (not a
    /// rollout's surge: `Target::warming`).
    pub(super) ready: i32,
    pub(super) warming: i32,
    pub(super) now: DateTime<Utc>,
}

pub(super) fn wish(i: &Inputs<'_>) -> Wish {
    let &Inputs {
        s,
        old,
        p,
        o,
        phase: ph,
        forecast: f,
        ready,
        warming,
        now,
    } = i;
    let mut memory = StepMemory {
        last_up: parse_ts(&old.last_scale_up_at),
        last_down: parse_ts(&old.last_scale_down_at),
    };
    let plain = |wanted, floor, reason, memory| Wish {
        wanted,
        floor,
        reason,
        memory,
        drain: None,
    };
    match ph {
        // the opening moved later while the plan held the target: give it back until pre-scaling
        Phase::Scheduled if super::scale::postponed(old, o) => plain(
            Some(p.baseline),
            0,
            format!(
                "postponed: opening moved to {}; back to {} replicas until pre-scaling",
                ts(p.window.opens),
                p.baseline
            ),
            memory,
        ),
        Phase::Scheduled => plain(
            None,
            0,
            format!(
                "scheduled: pre-scaling to {} starts {}s before opening",
                f.replicas,
                p.window.lead.num_seconds()
            ),
            memory,
        ),
        Phase::PreScaling => plain(
            Some(f.replicas),
            f.replicas,
            format!(
                "pre-scaling for {} expected users ({})",
                f.expected_users, f.method
            ),
            memory,
        ),
        Phase::OnSale => {
            let current = old.desired_replicas.unwrap_or(f.replicas);
            let depth = match &o.queue_depth {
                Read::Ok(d) => *d,
                Read::Failed(e) => {
                    return plain(
                        Some(current),
                        f.replicas,
                        format!("on sale: queue depth unreadable ({e}), holding {current}"),
                        memory,
                    );
                }
                Read::Skipped => 0,
            };
            let mut wanted = current;
            let mut reason = format!("on sale: queue depth {depth}, holding {current}");
            if let Some(step) = plan::queue_step(depth, &s.queue_scaling.rules, memory, now) {
                let last_scaled = old
                    .last_decision
                    .as_ref()
                    .and_then(|d| DateTime::parse_from_rfc3339(&d.at).ok());
                let credit = warming > 0
                    && last_scaled.is_some_and(|t| {
                        (now - t.with_timezone(&Utc)).num_seconds() < WARM_UP_CREDIT_SECS
                    });
                if step.change > 0 && credit {
                    // warm-up credit: the replicas still starting will serve soon; another step now
                    // would overshoot (the queue cannot shrink before they are Ready)
                    reason = format!(
                        "{}: waits, warm-up credit: {warming} replica(s) still starting count toward {current}",
                        step.reason
                    );
                } else {
                    wanted = current.saturating_add(step.change);
                    reason = step.reason;
                    if step.change > 0 {
                        memory.last_up = Some(now);
                    } else {
                        memory.last_down = Some(now);
                    }
                }
            }
            if let Some(per) = s.queue_scaling.target_queue_per_replica {
                let tracked = plan::tracking_replicas(depth, per);
                if tracked > wanted {
                    wanted = tracked;
                    reason = format!("queue depth {depth}: target {per} per replica -> {tracked}");
                }
            }
            let drain =
                s.queue_scaling.drain_within_seconds.map(|within| {
                    // per replica that produced it: the service's count while measuring, else Ready now
                    let measured =
                        o.outflow.ok().copied().flatten().filter(|r| {
                            r.window_secs >= tiketi_core::rules::OUTFLOW_MIN_WINDOW_SECS
                        });
                    let basis = measured
                        .and_then(|r| r.replicas)
                        .map_or(ready, |n| n.clamp(0, i64::from(i32::MAX)) as i32);
                    let per_replica = measured
                        .filter(|_| basis > 0)
                        .map(|r| r.admitted_per_second / f64::from(basis))
                        .filter(|v| v.is_finite() && *v > 0.0);
                    DrainStatus {
                        queue_depth: depth,
                        outflow_per_replica: per_replica.map(|v| (v * 1000.0).round() / 1000.0),
                        ready_replicas: basis,
                        within_seconds: within,
                        replicas: plan::drain_replicas(depth, per_replica, within),
                    }
                });
            if let Some(d) = &drain
                && let (Some(need), Some(per)) = (d.replicas, d.outflow_per_replica)
                && need > wanted
            {
                wanted = need;
                reason = format!(
                    "drain {depth} queued within {}s at {per:.2}/s per ready replica -> {need}",
                    d.within_seconds
                );
            }
            // never below the forecast during the sale: the queue only fills once admissions flow
            Wish {
                wanted: Some(wanted),
                floor: f.replicas,
                reason,
                memory,
                drain,
            }
        }
        Phase::Draining => {
            let hold = old.desired_replicas.unwrap_or(f.replicas);
            plain(
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
            if old.phase.as_deref() == Some(phase::COMPLETED) {
                plain(None, 0, "completed".into(), memory)
            } else {
                plain(
                    Some(p.baseline),
                    0,
                    format!("sale over: back to {} replicas", p.baseline),
                    memory,
                )
            }
        }
    }
}
