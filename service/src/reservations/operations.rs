//! What the reservation endpoints do, one call each: the caller's limits and admission (`may_buy`),
//! the claim in its own transaction, the notices once it committed, and the metrics. Handlers parse
//! the request, call one of these and shape the answer.

use uuid::Uuid;

use super::{SeatHold, TicketBooking};
use crate::{effects, error::Error, metrics::KindLabels, state::AppState};

/// A seat hold (`POST /api/seats/reserve`). Its notices change no cached page (see
/// `Effects::add_notices`), only the seat map's snapshot: they go out and the map is marked stale.
pub async fn hold(
    state: &AppState,
    user_id: Uuid,
    ip: std::net::IpAddr,
    event_id: Uuid,
    seat_ids: &[Uuid],
) -> Result<SeatHold, Error> {
    let started = std::time::Instant::now();
    let admission = super::may_buy(state, user_id, ip, event_id).await?;
    let (hold, fx) = super::hold_seats(state, user_id, event_id, seat_ids, admission).await?;
    created(state, "seat");
    effects::apply(state, fx).await;
    state
        .metrics
        .hold_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(hold)
}

/// A ticket-type booking (`POST /api/reservations`); `items` are (ticket type, quantity ≥ 1). The
/// stock it takes changes the event's cached pages.
pub async fn book(
    state: &AppState,
    user_id: Uuid,
    ip: std::net::IpAddr,
    event_id: Uuid,
    items: &[(Uuid, i32)],
) -> Result<TicketBooking, Error> {
    let admission = super::may_buy(state, user_id, ip, event_id).await?;
    let (booking, fx) = super::book_tickets(state, user_id, event_id, items, admission).await?;
    created(state, "ticket");
    effects::apply(state, fx.event(Some(event_id))).await;
    Ok(booking)
}

/// The caller cancels one of their reservations (`POST /api/reservations/{id}/cancel`).
pub async fn cancel(state: &AppState, user_id: Uuid, id: Uuid) -> Result<(), Error> {
    let fx = super::cancel(state, user_id, id).await?;
    state
        .metrics
        .reservations_cancelled
        .get_or_create(&KindLabels {
            kind: "user_cancel",
        })
        .inc();
    effects::apply(state, fx).await;
    Ok(())
}

fn created(state: &AppState, kind: &'static str) {
    state
        .metrics
        .reservations_created
        .get_or_create(&KindLabels { kind })
        .inc();
}
