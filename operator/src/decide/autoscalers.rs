//! Other autoscalers on the target (`otherAutoscalers: Cooperate`), the other live sales' wishes, and
//! what a deleted TicketEvent gives back.

use chrono::{DateTime, Utc};
use tiketi_crds::{
    AutoscalerStatus, Decision, Mode, OtherAutoscalers, TicketEventSpec, TicketEventStatus, phase,
};

use super::{After, Capacity, Note, Outcome, baseline, note, ts};
use crate::{
    observe::{Autoscaler, Observed},
    plan,
};

/// A write to another autoscaler on the target (`otherAutoscalers: Cooperate`).
#[derive(Debug, Clone, PartialEq)]
pub enum AutoscalerPatch {
    /// Set the HPA's minReplicas; `save_original` stores the value to restore later, `restored`
    /// removes that record.
    HpaMin {
        name: String,
        min: i32,
        save_original: Option<i32>,
        restored: bool,
    },
    /// Pause the ScaledObject at `replicas` (by this TicketEvent), or lift the pause (`None`).
    KedaPause {
        name: String,
        replicas: Option<i32>,
        by: String,
    },
}

/// The largest wish of the other live events on the target.
pub(super) fn others_max(o: &Observed) -> Option<i32> {
    o.siblings.iter().filter_map(|s| s.live_wish).max()
}

pub(super) fn others_sum(o: &Observed) -> i32 {
    o.siblings
        .iter()
        .filter_map(|s| s.live_wish)
        .fold(0i32, |a, w| a.saturating_add(w.max(0)))
}

/// What this pass does about another autoscaler on the target.
#[derive(Default)]
pub(super) struct Other {
    pub(super) status: Option<AutoscalerStatus>,
    pub(super) patch: Option<AutoscalerPatch>,
    pub(super) decision: Option<Decision>,
    pub(super) event: Option<Note>,
    /// `otherAutoscalers: Cooperate` with one on the target.
    pub(super) cooperating: bool,
    /// One on the target, and we leave the target to it.
    pub(super) refused: bool,
}

/// The wishes on the target that cooperating hands on.
pub(super) struct Wishes<'a> {
    /// The largest live wish on the target, this event's included.
    pub(super) merged: Option<i32>,
    /// Pre-scaling, on sale or draining.
    pub(super) window: bool,
    /// Another live sale has a wish.
    pub(super) others_live: bool,
    pub(super) reason: &'a str,
}

/// Another autoscaler on the target: report it, or cooperate with it.
pub(super) fn other_autoscaler(
    s: &TicketEventSpec,
    o: &Observed,
    w: &Wishes<'_>,
    now: DateTime<Utc>,
) -> Other {
    let other = o.autoscalers.first();
    let cooperating = other.is_some() && s.other_autoscalers == OtherAutoscalers::Cooperate;
    let mut out = Other {
        cooperating,
        refused: other.is_some() && !cooperating,
        ..Other::default()
    };
    let Some(a) = other else {
        return out;
    };
    let policy = format!("{:?}", s.other_autoscalers);
    let effect = if cooperating && s.mode == Mode::Active {
        let (patch, effect) = cooperate(a, &o.key, w.merged, w.window, w.others_live);
        if let Some(patch) = &patch {
            out.decision = Some(Decision {
                at: ts(now),
                replicas: w.merged.unwrap_or_default(),
                reason: format!("{} {}: {effect} ({})", a.kind(), a.name(), w.reason),
            });
            out.event = Some(Note {
                warning: false,
                reason: "Cooperating",
                action: match patch {
                    AutoscalerPatch::HpaMin { min, .. } => format!("HpaMin{min}"),
                    AutoscalerPatch::KedaPause { replicas, .. } => {
                        format!("Pause{}", replicas.unwrap_or_default())
                    }
                },
                note: format!("{} {}: {effect}", a.kind(), a.name()),
                after: After::Autoscaler,
            });
        }
        out.patch = patch;
        effect
    } else if cooperating {
        "plan only: left as it is".into()
    } else {
        format!("not scaling: it drives {}", s.target.name)
    };
    out.status = Some(AutoscalerStatus {
        kind: a.kind().into(),
        name: a.name().into(),
        policy,
        effect,
    });
    out
}

/// What to write to another autoscaler on the target, and the status line about it.
pub(super) fn cooperate(
    a: &Autoscaler,
    key: &str,
    merged: Option<i32>,
    window: bool,
    others_live: bool,
) -> (Option<AutoscalerPatch>, String) {
    match (a, merged.filter(|_| window)) {
        (
            Autoscaler::Hpa {
                name,
                min,
                max,
                original_min,
            },
            Some(m),
        ) => {
            let want = m.min(*max).max(1);
            let before = original_min.or(*min).unwrap_or(1);
            let effect = format!("minReplicas {before} -> {want} until the sale ends");
            let patch = (*min != Some(want)).then(|| AutoscalerPatch::HpaMin {
                name: name.clone(),
                min: want,
                save_original: original_min.is_none().then_some(before),
                restored: false,
            });
            (patch, effect)
        }
        (
            Autoscaler::Hpa {
                name,
                original_min: Some(orig),
                ..
            },
            None,
        ) if !others_live => (
            Some(AutoscalerPatch::HpaMin {
                name: name.clone(),
                min: *orig,
                save_original: None,
                restored: true,
            }),
            format!("minReplicas restored to {orig}"),
        ),
        (
            Autoscaler::ScaledObject {
                name,
                paused_replicas,
                paused_by,
            },
            Some(m),
        ) => {
            let patch =
                (*paused_replicas != Some(m) || paused_by.as_deref() != Some(key)).then(|| {
                    AutoscalerPatch::KedaPause {
                        name: name.clone(),
                        replicas: Some(m),
                        by: key.into(),
                    }
                });
            (patch, format!("paused at {m} replicas until the sale ends"))
        }
        (
            Autoscaler::ScaledObject {
                name,
                paused_by: Some(_),
                ..
            },
            None,
        ) if !others_live => (
            Some(AutoscalerPatch::KedaPause {
                name: name.clone(),
                replicas: None,
                by: key.into(),
            }),
            "pause lifted".into(),
        ),
        (a, _) => (None, format!("{} {} left as it is", a.kind(), a.name())),
    }
}

/// Deleting the TicketEvent (finalizer cleanup): give the target back to what the remaining events
/// want, or to the baseline, hand other autoscalers back, and say so.
pub(super) fn cleanup(s: &TicketEventSpec, old: &TicketEventStatus, o: &Observed) -> Outcome {
    let mut out = Outcome::nothing();
    // the wish goes with the restore (or alone when there is nothing to restore)
    if o.target.is_some() && o.own_wish.is_some() {
        out.wish = Some(None);
    }
    out.event_id = s.event_id.parse().ok();
    // the capacity key is the event's: only an active plan that keeps the sale wrote it
    out.capacity = out
        .event_id
        .filter(|_| s.mode == Mode::Active && o.duplicate_of.is_none())
        .map(|_| Capacity::Remove);
    let applied = matches!(
        old.phase.as_deref(),
        Some(phase::PRE_SCALING | phase::READY | phase::ON_SALE | phase::DRAINING)
    ) && s.mode == Mode::Active;
    let (Some(t), true) = (o.target, applied) else {
        return out;
    };
    let others = others_max(o);
    let restore = others
        .unwrap_or_else(|| baseline(s))
        .max(plan::MIN_TARGET_REPLICAS);
    let why = match others {
        Some(n) => format!("the remaining sales want {n}"),
        None => format!("baseline {}", baseline(s)),
    };
    if let Some(a) = o.autoscalers.first() {
        if s.other_autoscalers == OtherAutoscalers::Cooperate {
            let (patch, effect) = cooperate(a, &o.key, others, others.is_some(), others.is_some());
            out.autoscaler = patch;
            out.events.push(Note {
                after: After::Autoscaler,
                ..note(
                    false,
                    "Restored",
                    format!("TicketEvent deleted: {} {}: {effect}", a.kind(), a.name()),
                )
            });
        }
        return out;
    }
    out.replicas_before = t.replicas;
    if t.replicas != restore {
        out.replicas = Some(restore);
    }
    out.events.push(Note {
        after: After::Target,
        ..note(
            false,
            "Restored",
            format!(
                "TicketEvent deleted: {} {} -> {restore} replicas ({why})",
                s.target.name, t.replicas
            ),
        )
    });
    out
}
