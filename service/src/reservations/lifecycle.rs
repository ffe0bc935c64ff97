//! The reservation lifecycle: its statuses, the changes allowed between them, and what each change
//! does to the reservation's seats and stock. Pure: the SQL that carries a decision out is in
//! `db.rs`, every path that changes a reservation (payment, expiry, user cancel, admin event
//! cancel, admin status change) asks `transition` first.

use crate::error::{Code, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Confirmed,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    Pending,
    Completed,
    Failed,
    Refunded,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Confirmed,
        Status::Cancelled,
        Status::Expired,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Holds seats or stock.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Pending | Status::Confirmed)
    }
}

impl Payment {
    pub const ALL: [Payment; 4] = [
        Payment::Pending,
        Payment::Completed,
        Payment::Failed,
        Payment::Refunded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Payment::Pending => "pending",
            Payment::Completed => "completed",
            Payment::Failed => "failed",
            Payment::Refunded => "refunded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a reservation is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub status: Status,
    pub payment: Payment,
    /// `expires_at` has passed (a seat hold's 5 minutes are over).
    pub hold_over: bool,
}

impl Current {
    pub fn parse(status: &str, payment: &str, hold_over: bool) -> Option<Self> {
        Some(Self {
            status: Status::parse(status)?,
            payment: Payment::parse(payment)?,
            hold_over,
        })
    }
}

/// A requested change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The buyer paid (the provider captured the charge).
    Pay,
    /// The hold job found the hold over.
    Expire,
    /// The buyer cancelled.
    Cancel,
    /// An admin cancelled the whole event.
    CancelEvent,
    /// An admin set the status and/or the payment status.
    Admin {
        status: Option<Status>,
        payment: Option<Payment>,
    },
}

/// What the change does to the seats and stock the reservation holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items {
    /// Nothing.
    Keep,
    /// Its seats (the ones it still holds) and stock go back on sale.
    Release,
    /// Its held seats become sold (`locked` → `reserved`); every seat must still be held by it.
    Sell,
    /// Its sold seats become held again (`reserved` → `locked`).
    Unsell,
    /// An ended reservation comes back: its seats and stock are claimed again, all or nothing, and
    /// the seats end `reserved` when `sold`.
    Reclaim { sold: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub status: Status,
    pub payment: Payment,
    pub items: Items,
}

/// The payment status a cancellation leaves: a captured payment is refunded, and an unpaid one
/// shows `refunded` too (nothing is owed; the original answers the same, and the frontend's
/// `취소됨 / 결제 대기` for an unpaid one read as money still owed). A failed payment stays failed.
fn cancelled_payment(p: Payment) -> Payment {
    match p {
        Payment::Completed | Payment::Pending => Payment::Refunded,
        other => other,
    }
}

/// Decides a change, or refuses it with the error the caller answers.
pub fn transition(now: Current, change: Change) -> Result<Transition, Error> {
    use Status::*;
    let to = |status, payment, items| {
        Ok(Transition {
            status,
            payment,
            items,
        })
    };
    match change {
        Change::Pay => match (now.status, now.payment) {
            (_, Payment::Completed) => Err(Error::rejected(
                Code::AlreadyPaid,
                "Payment already completed for this reservation",
            )),
            (Cancelled, _) => Err(Error::rejected(
                Code::ReservationCancelled,
                "취소된 예약입니다.",
            )),
            (Expired, _) => Err(hold_expired()),
            _ if now.hold_over => Err(hold_expired()),
            (Pending | Confirmed, _) => to(Confirmed, Payment::Completed, Items::Sell),
        },
        Change::Expire => match (now.status, now.payment) {
            (Pending, Payment::Pending) if now.hold_over => {
                to(Expired, Payment::Failed, Items::Release)
            }
            _ => Err(invalid_change()),
        },
        Change::Cancel => match now.status {
            Cancelled => Err(Error::rejected(
                Code::AlreadyCancelled,
                "이미 취소된 예매입니다.",
            )),
            // an expired hold already gave its seats back
            Expired => to(Cancelled, cancelled_payment(now.payment), Items::Keep),
            Pending | Confirmed => to(Cancelled, cancelled_payment(now.payment), Items::Release),
        },
        // the event is over: unpaid holds give their seats back, sold seats stay sold (the record
        // of who had which seat; nothing of a cancelled event is on sale again)
        Change::CancelEvent => match now.status {
            Pending => to(Cancelled, cancelled_payment(now.payment), Items::Release),
            Confirmed => to(Cancelled, cancelled_payment(now.payment), Items::Keep),
            Cancelled | Expired => Err(invalid_change()),
        },
        Change::Admin { status, payment } => {
            let target = status.unwrap_or(now.status);
            // money moves only through the payment intents: no admin edit confirms without a
            // captured charge, and a paid reservation ends only by a cancellation that refunds it
            if payment == Some(Payment::Completed) && now.payment != Payment::Completed
                || target == Confirmed && now.status != Confirmed
            {
                return Err(Error::rejected(
                    Code::PaymentRequired,
                    "결제 완료는 결제를 통해서만 가능합니다.",
                ));
            }
            if now.payment == Payment::Completed {
                let keeps =
                    target == now.status && matches!(payment, None | Some(Payment::Completed));
                let refunds =
                    target == Cancelled && matches!(payment, None | Some(Payment::Refunded));
                if !keeps && !refunds {
                    return Err(Error::rejected(
                        Code::ReservationPaid,
                        "결제 완료된 예매는 취소(환불)만 할 수 있습니다.",
                    ));
                }
            }
            let items = match (now.status.is_live(), target) {
                _ if target == now.status => Items::Keep,
                (true, Cancelled | Expired) => Items::Release,
                (true, Confirmed) => Items::Sell,
                (true, Pending) => Items::Unsell,
                (false, Pending) => Items::Reclaim { sold: false },
                (false, Confirmed) => Items::Reclaim { sold: true },
                (false, Cancelled | Expired) => Items::Keep,
            };
            let payment = payment.unwrap_or(match target {
                Cancelled if now.status.is_live() || now.payment == Payment::Completed => {
                    cancelled_payment(now.payment)
                }
                Expired if now.payment == Payment::Pending => Payment::Failed,
                _ => now.payment,
            });
            to(target, payment, items)
        }
    }
}

/// Whether the transition from a reservation whose payment is `from` gives a captured payment back
/// (its intent moves to `refund_pending` in the same transaction; the refund follows the commit).
pub fn refunds(from: Payment, t: &Transition) -> bool {
    from == Payment::Completed && t.payment == Payment::Refunded
}

/// A reservation as clients see it. The frontend knows the statuses `pending`, `confirmed` and
/// `cancelled` (anything else reads as 결제 대기, "awaiting payment"), so a lapsed hold — expired by
/// the job, or past its time and not swept yet — shows `cancelled` with `status_reason: "expired"`
/// and its payment `failed`. Every other reservation shows as stored, with no reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub status: Status,
    pub payment: Payment,
    pub reason: Option<&'static str>,
}

pub const REASON_EXPIRED: &str = "expired";

pub fn shown(now: Current) -> Shown {
    let lapsed = match (now.status, now.payment) {
        (Status::Expired, _) => true,
        (Status::Pending, Payment::Pending) => now.hold_over,
        _ => false,
    };
    if lapsed {
        Shown {
            status: Status::Cancelled,
            payment: if now.payment == Payment::Pending {
                Payment::Failed
            } else {
                now.payment
            },
            reason: Some(REASON_EXPIRED),
        }
    } else {
        Shown {
            status: now.status,
            payment: now.payment,
            reason: None,
        }
    }
}

/// The stored statuses an admin filter by shown status matches: `cancelled` finds the cancelled and
/// the expired ones (both show `cancelled`), `expired` only the expired ones; an unknown value
/// matches nothing.
pub fn stored_for_filter(shown: &str) -> Vec<&'static str> {
    match Status::parse(shown) {
        Some(Status::Cancelled) => vec![Status::Cancelled.as_str(), Status::Expired.as_str()],
        Some(s) => vec![s.as_str()],
        None => Vec::new(),
    }
}

fn hold_expired() -> Error {
    Error::rejected(Code::HoldExpired, "예약이 만료되었습니다.")
}

fn invalid_change() -> Error {
    Error::bad_request(Code::InvalidStatusChange, "유효하지 않은 상태 값입니다.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: Status, payment: Payment, hold_over: bool) -> Current {
        Current {
            status,
            payment,
            hold_over,
        }
    }

    fn code(r: Result<Transition, Error>) -> &'static str {
        r.err().map(|e| e.code().as_str()).unwrap_or("ok")
    }

    #[test]
    fn lifecycle_pay_only_a_live_unpaid_hold() {
        use Payment as P;
        use Status as S;
        let paid = transition(at(S::Pending, P::Pending, false), Change::Pay).unwrap();
        assert_eq!(
            (paid.status, paid.payment, paid.items),
            (S::Confirmed, P::Completed, Items::Sell)
        );
        assert_eq!(
            code(transition(at(S::Pending, P::Pending, true), Change::Pay)),
            "HOLD_EXPIRED"
        );
        assert_eq!(
            code(transition(at(S::Expired, P::Failed, true), Change::Pay)),
            "HOLD_EXPIRED"
        );
        assert_eq!(
            code(transition(
                at(S::Cancelled, P::Refunded, false),
                Change::Pay
            )),
            "RESERVATION_CANCELLED"
        );
        assert_eq!(
            code(transition(
                at(S::Confirmed, P::Completed, false),
                Change::Pay
            )),
            "ALREADY_PAID"
        );
    }

    #[test]
    fn lifecycle_cancel_refunds_and_never_reads_as_owed() {
        for s in Status::ALL {
            for p in Payment::ALL {
                let Ok(t) = transition(at(s, p, false), Change::Cancel) else {
                    assert_eq!(s, Status::Cancelled);
                    continue;
                };
                assert_eq!(t.status, Status::Cancelled);
                assert_ne!(
                    t.payment,
                    Payment::Pending,
                    "{s:?}/{p:?} cancelled still reads 결제 대기"
                );
                assert_ne!(
                    t.payment,
                    Payment::Completed,
                    "{s:?}/{p:?}: a captured payment is refunded"
                );
                assert_eq!(t.items == Items::Release, s.is_live());
            }
        }
    }

    #[test]
    fn lifecycle_expire_only_unpaid_holds_past_their_time() {
        let t = transition(at(Status::Pending, Payment::Pending, true), Change::Expire).unwrap();
        assert_eq!(
            (t.status, t.payment, t.items),
            (Status::Expired, Payment::Failed, Items::Release)
        );
        assert!(transition(at(Status::Pending, Payment::Pending, false), Change::Expire).is_err());
        assert!(
            transition(
                at(Status::Confirmed, Payment::Completed, true),
                Change::Expire
            )
            .is_err()
        );
    }

    #[test]
    fn lifecycle_admin_revival_reclaims_and_ending_releases() {
        let revive = Change::Admin {
            status: Some(Status::Pending),
            payment: None,
        };
        let t = transition(at(Status::Expired, Payment::Failed, true), revive).unwrap();
        assert_eq!(t.items, Items::Reclaim { sold: false });
        let end = Change::Admin {
            status: Some(Status::Cancelled),
            payment: None,
        };
        let t = transition(at(Status::Confirmed, Payment::Completed, false), end).unwrap();
        assert_eq!((t.items, t.payment), (Items::Release, Payment::Refunded));
        assert!(refunds(Payment::Completed, &t));
        // every admin change between live and ended states moves the items exactly once
        for from in Status::ALL {
            for to in Status::ALL {
                let r = transition(
                    at(from, Payment::Pending, false),
                    Change::Admin {
                        status: Some(to),
                        payment: None,
                    },
                );
                if to == Status::Confirmed && from != Status::Confirmed {
                    assert_eq!(code(r), "PAYMENT_REQUIRED", "{from:?} -> {to:?}");
                    continue;
                }
                let t = r.unwrap();
                let moves = !matches!(t.items, Items::Keep | Items::Sell | Items::Unsell);
                assert_eq!(moves, from.is_live() != to.is_live(), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn lifecycle_admin_never_frees_a_paid_seat_without_its_refund() {
        let paid = at(Status::Confirmed, Payment::Completed, false);
        let admin = |status, payment| Change::Admin { status, payment };
        for to in [Status::Pending, Status::Expired] {
            assert_eq!(
                code(transition(paid, admin(Some(to), None))),
                "RESERVATION_PAID",
                "{to:?}"
            );
        }
        for p in [Payment::Pending, Payment::Failed, Payment::Refunded] {
            assert_eq!(
                code(transition(paid, admin(None, Some(p)))),
                "RESERVATION_PAID",
                "{p:?}"
            );
        }
        assert_eq!(
            code(transition(
                paid,
                admin(Some(Status::Cancelled), Some(Payment::Completed))
            )),
            "RESERVATION_PAID",
            "cancelled but the money kept"
        );
        for cancel in [
            admin(Some(Status::Cancelled), None),
            admin(Some(Status::Cancelled), Some(Payment::Refunded)),
        ] {
            let t = transition(paid, cancel).unwrap();
            assert_eq!(t.items, Items::Release);
            assert!(refunds(Payment::Completed, &t));
        }
        // nothing but a captured payment confirms or completes
        let unpaid = at(Status::Pending, Payment::Pending, false);
        assert_eq!(
            code(transition(unpaid, admin(None, Some(Payment::Completed)))),
            "PAYMENT_REQUIRED"
        );
        assert_eq!(
            code(transition(unpaid, admin(Some(Status::Confirmed), None))),
            "PAYMENT_REQUIRED"
        );
        // an unpaid reservation's payment status is the admin's to set
        let t = transition(unpaid, admin(None, Some(Payment::Failed))).unwrap();
        assert_eq!((t.status, t.items), (Status::Pending, Items::Keep));
    }

    #[test]
    fn lifecycle_a_lapsed_hold_shows_cancelled_expired() {
        let lapsed = [
            at(Status::Expired, Payment::Failed, true),
            at(Status::Pending, Payment::Pending, true),
        ];
        for now in lapsed {
            let s = shown(now);
            assert_eq!(
                (s.status, s.payment, s.reason),
                (Status::Cancelled, Payment::Failed, Some("expired")),
                "{now:?}"
            );
        }
        for now in [
            at(Status::Pending, Payment::Pending, false),
            at(Status::Confirmed, Payment::Completed, true),
            at(Status::Cancelled, Payment::Refunded, true),
        ] {
            let s = shown(now);
            assert_eq!(
                (s.status, s.payment, s.reason),
                (now.status, now.payment, None)
            );
        }
        // what every shown status reads as in the frontend is a status it knows
        for st in Status::ALL {
            for p in Payment::ALL {
                for over in [false, true] {
                    assert_ne!(shown(at(st, p, over)).status, Status::Expired);
                }
            }
        }
        assert_eq!(stored_for_filter("cancelled"), ["cancelled", "expired"]);
        assert_eq!(stored_for_filter("expired"), ["expired"]);
        assert_eq!(stored_for_filter("pending"), ["pending"]);
        assert!(stored_for_filter("bogus").is_empty());
    }
}
