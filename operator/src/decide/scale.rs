//! Our own decisions on the target: the `/scale` write (held while a sibling's wish is unknown), the
//! plan-mode decision and the admission capacity the waiting room may publish.

use chrono::{DateTime, Utc};
use tiketi_crds::{Decision, Mode, TicketEventSpec, TicketEventStatus, phase};

use super::{After, Capacity, Note, autoscalers::Other, others_sum, ts};
use crate::{
    observe::Observed,
    plan::{self, Phase},
};

/// Our own `/scale` for this pass.
pub(super) struct Scale {
    /// The new `spec.replicas`, and the count it had (0 when we do not scale).
    pub(super) replicas: Option<i32>,
    pub(super) replicas_before: i32,
    /// The sibling sale a scale-down waits for.
    pub(super) held_for: Option<String>,
    pub(super) decision: Option<Decision>,
    pub(super) event: Option<Note>,
}

/// Scales the target to `merged` when this event drives it (active, no other autoscaler).
pub(super) fn own_scale(
    s: &TicketEventSpec,
    o: &Observed,
    merged: Option<i32>,
    other: &Other,
    reason: &str,
    now: DateTime<Utc>,
) -> Scale {
    // our own /scale; never down while another live sale's wish is not known yet (it may be what
    // sized the target: its first pass, or its status not in the store yet)
    let unsure = o.siblings.iter().find(|x| x.unsure);
    let held_for = match (merged, o.target, unsure) {
        (Some(m), Some(t), Some(x)) if m < t.replicas => Some(x.name.clone()),
        _ => None,
    };
    let mut out = Scale {
        replicas: None,
        replicas_before: 0,
        held_for,
        decision: None,
        event: None,
    };
    let active = s.mode == Mode::Active;
    if let (Some(m), Some(t), true, false, false, None) = (
        merged,
        o.target,
        active,
        other.refused,
        other.cooperating,
        &out.held_for,
    ) {
        out.replicas_before = t.replicas;
        if m != t.replicas {
            out.replicas = Some(m);
            let note = format!(
                "{}: {} -> {m} replicas ({reason})",
                s.target.name, t.replicas
            );
            out.event = Some(Note {
                warning: false,
                reason: "Scaled",
                action: format!("ScaleTo{m}"),
                note,
                after: After::Target,
            });
            out.decision = Some(Decision {
                at: ts(now),
                replicas: m,
                reason: reason.into(),
            });
        }
    }
    out
}

/// In plan mode the decision records what would be done, whenever the wish changes.
pub(super) fn plan_mode_decision(
    s: &TicketEventSpec,
    desired: Option<i32>,
    reason: &str,
    decision: Option<Decision>,
    now: DateTime<Utc>,
) -> Option<Decision> {
    if s.mode == Mode::Plan
        && desired.is_some()
        && decision
            .as_ref()
            .is_none_or(|d| Some(d.replicas) != desired)
    {
        return Some(Decision {
            at: ts(now),
            replicas: desired.unwrap_or_default(),
            reason: format!("plan only: {reason}"),
        });
    }
    decision
}

/// The capacity to publish: during the window, unless another autoscaler drives the target.
pub(super) struct CapacityInputs<'a> {
    pub(super) s: &'a TicketEventSpec,
    pub(super) old: &'a TicketEventStatus,
    pub(super) o: &'a Observed,
    pub(super) phase: Phase,
    pub(super) window: bool,
    pub(super) refused: bool,
    pub(super) desired: Option<i32>,
    pub(super) ready: i32,
}

/// The users for `status.capacityUsers`, and the capacity change to publish.
pub(super) fn capacity(i: &CapacityInputs<'_>) -> (Option<i64>, Option<Capacity>) {
    // what the waiting room may admit: this event's share of the capacity that is actually ready
    // `Plan` shows the share in status but writes nothing the live waiting room reads
    let active = i.s.mode == Mode::Active;
    if i.window && !i.refused {
        let own = i.desired.unwrap_or(0);
        let users = plan::capacity_share(
            i.ready,
            own,
            own.saturating_add(others_sum(i.o)),
            i.s.users_per_replica,
        );
        (Some(users), active.then_some(Capacity::Publish(users)))
    } else if active && released(i.phase, i.old, i.o) {
        (None, Some(Capacity::Remove))
    } else {
        (None, None)
    }
}

/// The plan the last status held is given up this pass: the sale completed, or it was postponed.
pub(super) fn released(ph: Phase, old: &TicketEventStatus, o: &Observed) -> bool {
    match ph {
        Phase::Completed => old.phase.as_deref() != Some(phase::COMPLETED),
        Phase::Scheduled => postponed(old, o),
        _ => false,
    }
}

/// Scheduled again while the last pass was live, after an edit of the spec (`opensAt` moved later).
/// A `leadTime: auto` that shrank does not edit the spec: the plan keeps the target until it starts
/// again rather than scale down and back up.
pub(super) fn postponed(old: &TicketEventStatus, o: &Observed) -> bool {
    was_live(old.phase.as_deref()) && o.generation != old.observed_generation
}

/// A phase in which the plan held the target (pre-scaling to draining).
pub(super) fn was_live(phase: Option<&str>) -> bool {
    matches!(
        phase,
        Some(phase::PRE_SCALING | phase::READY | phase::ON_SALE | phase::DRAINING)
    )
}
