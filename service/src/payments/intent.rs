//! The payment intent's states and the moves between them. Pure: `db.rs` writes each move as a
//! compare-and-set on the state (`UPDATE … WHERE state = ANY(from)`), so two actors racing on one
//! intent (a request, its retry, the recovery job) can never both move it.
//!
//! ```text
//! created ──charged──▶ charged ──capture──▶ captured ──refund──▶ refund_pending ──▶ refunded
//!    │                    └──────────────refund──────────────────────┘
//!    └──not charged──▶ failed
//! ```
//! A reservation is confirmed only in the transaction that moves its intent `charged → captured`;
//! every refund moves the intent out of `charged`/`captured` before the provider is asked, so no
//! confirmation can ever use money that is being or was given back.

use crate::reservations::lifecycle::{self, Change, Current};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Charged,
    Captured,
    RefundPending,
    Refunded,
    Failed,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Created,
        State::Charged,
        State::Captured,
        State::RefundPending,
        State::Refunded,
        State::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Charged => "charged",
            State::Captured => "captured",
            State::RefundPending => "refund_pending",
            State::Refunded => "refunded",
            State::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(self, State::Captured | State::Refunded | State::Failed)
    }
}

/// What happened to an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// The provider answered the charge with success (or, asked later, says it holds the money).
    Charged,
    /// The provider did not charge (declined, or asked later, has no charge for the key).
    NotCharged,
    /// The reservation was confirmed on it (same transaction).
    Capture,
    /// The money must go back: the hold ended before the charge confirmed it. (A captured charge
    /// goes back only with its reservation's cancellation, under the reservation's row lock:
    /// `db::begin_refunds`.)
    Refund,
    /// The provider refunded it.
    Refunded,
}

impl Move {
    /// The states this move may start from, and the state it leads to.
    pub fn edge(self) -> (&'static [State], State) {
        use State::*;
        match self {
            Move::Charged => (&[Created], Charged),
            Move::NotCharged => (&[Created], Failed),
            Move::Capture => (&[Charged], Captured),
            Move::Refund => (&[Charged], RefundPending),
            Move::Refunded => (&[Created, RefundPending], Refunded),
        }
    }

    /// The state after the move, if the move is allowed from `from`.
    pub fn apply(self, from: State) -> Option<State> {
        let (froms, to) = self.edge();
        froms.contains(&from).then_some(to)
    }
}

/// What the recovery job does with an intent no request has touched for the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// `created`: ask the provider whether it charged the key.
    AskProvider,
    /// `charged` on a hold that can still be paid: confirm the reservation on it (the buyer asked
    /// to pay and the money is taken; the seat is still theirs).
    Confirm,
    /// `charged` on a reservation that can no longer be paid (expired, cancelled, already paid on
    /// another charge): give the money back.
    Refund,
    /// `refund_pending`: ask the provider to refund (again; refunds are idempotent).
    FinishRefund,
    /// Final: nothing to do.
    Nothing,
}

/// Decides what recovery does with an intent in `state` of a reservation that is `now`
/// (`None`: the reservation is locked and read only for a `charged` intent).
pub fn recovery(state: State, now: Option<Current>) -> Recovery {
    match state {
        State::Created => Recovery::AskProvider,
        State::Charged => match now.map(|c| lifecycle::transition(c, Change::Pay)) {
            Some(Ok(_)) => Recovery::Confirm,
            _ => Recovery::Refund,
        },
        State::RefundPending => Recovery::FinishRefund,
        State::Captured | State::Refunded | State::Failed => Recovery::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reservations::lifecycle::{Payment, Status};

    #[test]
    fn intent_moves_only_forward() {
        use State::*;
        assert_eq!(Move::Charged.apply(Created), Some(Charged));
        assert_eq!(Move::Capture.apply(Charged), Some(Captured));
        assert_eq!(Move::Refund.apply(Charged), Some(RefundPending));
        // a confirmed seat's money is never given back by a payment actor, only by a cancellation
        assert_eq!(Move::Refund.apply(Captured), None);
        assert_eq!(Move::Refunded.apply(RefundPending), Some(Refunded));
        // no confirmation on money being given back, nor on money never taken
        for from in [Created, RefundPending, Refunded, Failed, Captured] {
            assert_eq!(Move::Capture.apply(from), None, "{from:?}");
        }
        // final states stay final
        for s in State::ALL
            .into_iter()
            .filter(|s| *s != Captured && s.is_final())
        {
            for m in [
                Move::Charged,
                Move::NotCharged,
                Move::Capture,
                Move::Refund,
                Move::Refunded,
            ] {
                assert_eq!(m.apply(s), None, "{m:?} from {s:?}");
            }
        }
        // a charge found after its intent was given up is never captured: it can only be refunded
        assert_eq!(Move::Charged.apply(Failed), None);
    }

    #[test]
    fn intent_states_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("paid"), None);
    }

    #[test]
    fn intent_recovery_confirms_only_a_live_hold() {
        let at = |status, payment, hold_over| Current {
            status,
            payment,
            hold_over,
        };
        let live = at(Status::Pending, Payment::Pending, false);
        assert_eq!(recovery(State::Charged, Some(live)), Recovery::Confirm);
        for dead in [
            at(Status::Pending, Payment::Pending, true),
            at(Status::Expired, Payment::Failed, true),
            at(Status::Cancelled, Payment::Refunded, false),
            at(Status::Confirmed, Payment::Completed, false),
        ] {
            assert_eq!(recovery(State::Charged, Some(dead)), Recovery::Refund);
        }
        assert_eq!(recovery(State::Charged, None), Recovery::Refund);
        assert_eq!(recovery(State::Created, None), Recovery::AskProvider);
        assert_eq!(recovery(State::RefundPending, None), Recovery::FinishRefund);
        assert_eq!(recovery(State::Captured, Some(live)), Recovery::Nothing);
    }
}
