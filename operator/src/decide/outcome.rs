//! What one pass does: the `Outcome` `act` applies, the events it publishes, and the outcome of a
//! spec that cannot be planned.

use std::time::Duration;

use tiketi_crds::{TicketEventStatus, condition, phase};
use uuid::Uuid;

use super::AutoscalerPatch;
use crate::{
    observe::{Observed, TargetWish},
    status,
};

/// A Kubernetes Event to publish. The Recorder folds events with the same reason and action into one
/// series, so a scaling decision names its target in the action.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub action: String,
    pub note: String,
    /// The write it reports, after which it is published.
    pub after: After,
}

/// The write a [`Note`] reports. It is published as soon as that write succeeded: before it, it could
/// report what never happened; after a later write that fails, it would be lost, since the next pass
/// finds that write done and has nothing to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Another autoscaler's patch (cooperating with it, or restoring it).
    Autoscaler,
    /// The target's replicas and this event's wish.
    Target,
    /// The TicketEvent's status (a phase or condition change, reported again until it is written).
    Status,
}

pub(super) fn note(warning: bool, reason: &'static str, note: String) -> Note {
    Note {
        warning,
        reason,
        action: "Reconcile".into(),
        note,
        after: After::Status,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Capacity {
    /// Publish this event's admission capacity (users).
    Publish(i64),
    /// The sale is over or gone: remove it (the waiting room falls back to the event's threshold).
    Remove,
}

/// The forecast-vs-actual row of a finished sale.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleRecord {
    pub forecast_users: i64,
    pub forecast_replicas: i32,
    pub method: String,
    pub peak_users: Option<i64>,
    pub peak_queue: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The target's new `spec.replicas` (through `/scale`), with the count it had.
    pub replicas: Option<i32>,
    pub replicas_before: i32,
    /// The whole status to apply (`None`: leave it, e.g. while deleting).
    pub status: Option<TicketEventStatus>,
    pub events: Vec<Note>,
    /// `None`: wait for a change.
    pub requeue: Option<Duration>,
    pub event_id: Option<Uuid>,
    pub capacity: Option<Capacity>,
    pub autoscaler: Option<AutoscalerPatch>,
    pub record: Option<SaleRecord>,
    /// This event's wish on the target changes (`Some(None)`: removed); written in one fenced
    /// update with `replicas`.
    pub wish: Option<Option<TargetWish>>,
    /// `spec.target` moved away from a Deployment this event's plan held: what gives it back,
    /// applied first.
    pub release: Option<Release>,
}

/// Giving back a Deployment the plan no longer targets: its own replicas, wish and autoscaler
/// writes and events (as when the TicketEvent is deleted), fenced by `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub target: String,
    pub version: Option<String>,
    pub outcome: Box<Outcome>,
}

impl Outcome {
    pub(super) fn nothing() -> Self {
        Outcome {
            replicas: None,
            replicas_before: 0,
            status: None,
            events: vec![],
            requeue: None,
            event_id: None,
            capacity: None,
            autoscaler: None,
            record: None,
            wish: None,
            release: None,
        }
    }
}

pub(super) fn invalid(old: &TicketEventStatus, o: &Observed, why: String) -> Outcome {
    failed(old, o, "InvalidSpec", "invalid spec", why)
}

/// Another TicketEvent, older, has the same eventId: this one is Failed and writes nothing live
/// (two plans on one waiting room would publish, and remove, each other's capacity).
pub(super) fn duplicate(old: &TicketEventStatus, o: &Observed, first: &str) -> Outcome {
    failed(
        old,
        o,
        "DuplicateEventId",
        "duplicate eventId",
        format!("TicketEvent {first} already plans this eventId; delete one of them"),
    )
}

/// Phase Failed with the Ready condition saying why, and nothing else done.
fn failed(
    old: &TicketEventStatus,
    o: &Observed,
    reason: &'static str,
    what: &str,
    why: String,
) -> Outcome {
    let conditions = status::set(
        &old.conditions,
        condition::READY,
        false,
        reason,
        why.clone(),
        o.generation,
    );
    let mut out = Outcome::nothing();
    out.status = Some(TicketEventStatus {
        phase: Some(phase::FAILED.into()),
        observed_generation: o.generation,
        summary: Some(format!("{what}: {why}")),
        conditions,
        ..old.clone()
    });
    if old.phase.as_deref() != Some(phase::FAILED) {
        out.events.push(note(true, reason, why));
    }
    out
}
