//! The one after-commit path. An operation that changes state returns its `Effects` — what to
//! announce, which cached pages went stale, which captured payments to refund — and the caller
//! hands them to `apply` once the transaction has committed. Nothing announces, invalidates or
//! refunds from anywhere else, so no call site can forget a step or run one before the commit.

use tiketi_core::wire::Notice;
use uuid::Uuid;

use crate::{cache, seats, state::AppState};

#[derive(Debug, Default)]
#[must_use = "effects do nothing until applied after the commit"]
pub struct Effects {
    notices: Vec<Notice>,
    /// Events whose cached detail and waiting-room gate are stale.
    events: Vec<Uuid>,
    /// Events whose seat map snapshot is stale: every announced seat change, every stale event.
    seat_maps: Vec<Uuid>,
    /// The event list pages are stale (and the status updater re-plans).
    lists: bool,
    /// Reservations whose captured payment the committed change marked for refund
    /// (`refund_pending`): refunded at the provider now.
    refunds: Vec<Uuid>,
}

impl Effects {
    pub fn none() -> Self {
        Self::default()
    }

    /// Announce these; the events whose stock changed have stale cached pages too.
    pub fn notices(notices: Vec<Notice>) -> Self {
        let mut fx = Self::default();
        fx.add_notices(notices);
        fx
    }

    /// Announce these and nothing else (the waiting room's news changes no cached page, nor
    /// seat map).
    pub fn announce(notices: Vec<Notice>) -> Self {
        Self {
            notices,
            ..Self::default()
        }
    }

    /// Announce these too. Only a ticket type's stock is on a cached page (`GET /api/events/:id`
    /// shows each type's `available_quantity`); only the seat map shows seats, so a seat's hold or
    /// release leaves the page and the waiting-room gate alone. (Invalidating them on every hold
    /// cost a Redis DEL per hold and, during a sale, a PostgreSQL refill of the page per hold.)
    pub fn add_notices(&mut self, notices: Vec<Notice>) {
        self.seat_maps.extend(
            notices
                .iter()
                .filter(|n| matches!(n, Notice::SeatLocked { .. } | Notice::SeatReleased { .. }))
                .map(Notice::event_id),
        );
        self.events.extend(
            notices
                .iter()
                .filter(|n| matches!(n, Notice::TicketUpdated { .. }))
                .map(Notice::event_id),
        );
        self.notices.extend(notices);
    }

    /// An event itself changed (or a reservation of it): its cached pages are stale, its seat map
    /// too (a title, a layout, or a sold seat, which announces nothing).
    pub fn event(mut self, event_id: Option<Uuid>) -> Self {
        self.events.extend(event_id);
        self.seat_maps.extend(event_id);
        self
    }

    /// The event list changed (an event was created, edited, cancelled, deleted or moved status).
    pub fn lists(mut self) -> Self {
        self.lists = true;
        self
    }

    pub fn refund(mut self, reservation_id: Uuid) -> Self {
        self.refunds.push(reservation_id);
        self
    }

    pub fn merge(mut self, other: Effects) -> Self {
        self.notices.extend(other.notices);
        self.events.extend(other.events);
        self.seat_maps.extend(other.seat_maps);
        self.lists |= other.lists;
        self.refunds.extend(other.refunds);
        self
    }
}

/// Carries the effects out, in the order that keeps readers consistent: money first, then caches
/// (so a client told of a change re-reads fresh pages), then the announcements.
pub async fn apply(state: &AppState, fx: Effects) {
    let Effects {
        notices,
        mut events,
        mut seat_maps,
        lists,
        refunds,
    } = fx;
    for id in refunds {
        // the committed change marked the charges `refund_pending`; what fails here the payment
        // recovery job refunds later
        crate::payments::refund::refund_reservation(state, id).await;
    }
    if lists {
        cache::invalidate_lists(state).await;
        // a changed sale window or date: the event-status job re-plans its next transition now
        state.event_status_wake.notify_one();
    }
    events.sort_unstable();
    events.dedup();
    for id in events {
        state.gates.forget(id);
        cache::invalidate_event(state, id).await;
    }
    seat_maps.sort_unstable();
    seat_maps.dedup();
    seats::map::changed(state, &seat_maps).await;
    crate::realtime::notices::publish(state, notices).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_notices_mark_their_events_stale_once() {
        let (e, s) = (Uuid::new_v4(), Uuid::new_v4());
        let fx = Effects::notices(vec![
            Notice::SeatReleased {
                event_id: e,
                seat_id: s,
            },
            Notice::SeatReleased {
                event_id: e,
                seat_id: Uuid::new_v4(),
            },
        ])
        .event(Some(e))
        .merge(Effects::none().lists().refund(s));
        assert_eq!(fx.notices.len(), 2);
        assert!(fx.events.iter().all(|id| *id == e));
        assert!(fx.lists);
        assert_eq!(fx.refunds, vec![s]);
    }

    #[test]
    fn effects_only_stock_changes_make_a_page_stale() {
        let (e, other) = (Uuid::new_v4(), Uuid::new_v4());
        let seats = Effects::notices(vec![
            Notice::SeatLocked {
                event_id: e,
                seat_id: Uuid::new_v4(),
                user_id: Uuid::new_v4(),
            },
            Notice::SeatReleased {
                event_id: e,
                seat_id: Uuid::new_v4(),
            },
        ]);
        assert_eq!(seats.notices.len(), 2);
        assert!(seats.events.is_empty(), "a seat is on no cached page");
        assert_eq!(seats.seat_maps, vec![e, e], "but on the seat map");
        let stock = Effects::notices(vec![Notice::TicketUpdated {
            event_id: other,
            ticket_type_id: Uuid::new_v4(),
            available: 1,
            total: 2,
        }]);
        assert_eq!(stock.events, vec![other]);
        assert!(stock.seat_maps.is_empty(), "stock is not on the seat map");
        let edited = Effects::none().event(Some(other));
        assert_eq!(
            edited.seat_maps,
            vec![other],
            "an edited event's map is stale"
        );
    }
}
