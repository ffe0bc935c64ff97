//! The admin console's changes to events, seats, ticket types and reservations. Each runs in one transaction and
//! applies its effects after the commit; the handlers (`events.rs`) parse, call one of these and
//! answer.

use sqlx::PgConnection;
use tiketi_core::wire::Notice;
use uuid::Uuid;

use super::{
    db::{self, EventFields, TicketType},
    input::{EventInput, TicketTypeInput, check_window},
    refusal::Refusal,
};
use crate::{
    effects::{self, Effects},
    error::{Error, Result},
    events::db::EventRow,
    reservations::{
        self, db as reservations_db, items,
        lifecycle::{self, Change, Payment, Status},
    },
    seats,
    state::AppState,
};

/// The effects of any change to an event: its cached pages and the list are stale, and the status
/// updater re-plans.
fn event_changed(event_id: Uuid) -> Effects {
    Effects::none().lists().event(Some(event_id))
}

/// Inserts a ticket type that passed `require_complete`.
async fn insert_ticket_type(
    tx: &mut PgConnection,
    event_id: Uuid,
    t: &TicketTypeInput,
) -> Result<TicketType> {
    let (Some(name), Some(price), Some(total)) = (&t.name, t.price, t.total_quantity) else {
        unreachable!("checked by require_complete")
    };
    let description = t.description.as_ref().and_then(Option::as_deref);
    Ok(db::insert_ticket_type(tx, event_id, name, price, total, description).await?)
}

/// A new event with its layout's seats and its ticket types (each passed `require_complete`).
pub async fn create_event(
    state: &AppState,
    fields: &EventFields<'_>,
    layout: Option<Uuid>,
    admin: Uuid,
    ticket_types: &[TicketTypeInput],
) -> Result<EventRow> {
    let mut tx = state.db.begin().await?;
    let event = db::insert_event(&mut *tx, fields, layout, admin)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.constraint() == Some("events_seat_layout_id_fkey") => {
                Error::from(Refusal::UnknownLayout)
            }
            _ => e.into(),
        })?;
    if let Some(layout) = layout {
        seats::db::insert_layout_seats(&mut tx, event.id, layout).await?;
    }
    for t in ticket_types {
        insert_ticket_type(&mut tx, event.id, t).await?;
    }
    tx.commit().await?;
    effects::apply(state, event_changed(event.id)).await;
    Ok(event)
}

/// Edits an event: fields left out keep their value; the status follows the (new) sale window
/// unless the event is cancelled.
pub async fn update_event(state: &AppState, id: Uuid, input: &EventInput) -> Result<EventRow> {
    let mut tx = state.db.begin().await?;
    let Some(current) = db::lock_event(&mut *tx, id).await? else {
        return Err(Error::from(Refusal::NoEventToEdit));
    };
    let sale_start = input.sale_start.unwrap_or(current.sale_start_date);
    let sale_end = input.sale_end.unwrap_or(current.sale_end_date);
    check_window(sale_start, sale_end)?;
    let status = if current.status == "cancelled" {
        current.status.clone()
    } else {
        tiketi_core::rules::sale_status(chrono::Utc::now(), sale_start, sale_end).to_string()
    };
    let pick = |new: &'_ Option<Option<String>>, old: &'_ Option<String>| -> Option<String> {
        new.clone().unwrap_or_else(|| old.clone())
    };
    let (description, address) = (
        pick(&input.description, &current.description),
        pick(&input.address, &current.address),
    );
    let (poster, artist) = (
        pick(&input.poster_image_url, &current.poster_image_url),
        pick(&input.artist_name, &current.artist_name),
    );
    let fields = EventFields {
        title: input.title.as_deref().unwrap_or(&current.title),
        description: description.as_deref(),
        venue: input.venue.as_deref().unwrap_or(&current.venue),
        address: address.as_deref(),
        event_date: input.event_date.unwrap_or(current.event_date),
        sale_start,
        sale_end,
        poster_image_url: poster.as_deref(),
        artist_name: artist.as_deref(),
        status: &status,
        queue_threshold: input.queue_threshold,
    };
    let event = db::update_event(&mut *tx, id, &fields).await?;
    tx.commit().await?;
    effects::apply(state, event_changed(id)).await;
    Ok(event)
}

/// Cancels the live reservations of an event through the lifecycle (captured payments refunded)
/// and releases what they hold; returns how many were cancelled and what to announce.
async fn cancel_reservations_of(tx: &mut PgConnection, event_id: Uuid) -> Result<(i64, Effects)> {
    use lifecycle::Current;
    let live = reservations_db::lock_live_of_event(&mut *tx, event_id).await?;
    let mut changes = Vec::with_capacity(live.len());
    let mut ids = Vec::new();
    let mut fx = Effects::none();
    let mut refunds = Vec::new();
    for r in &live {
        let (id, status, payment) = (&r.id, &r.status, &r.payment_status);
        let current = Current::parse(status, payment, false).ok_or_else(|| {
            Error::internal(anyhow::anyhow!(
                "reservation {id}: unknown status {status}/{payment}"
            ))
        })?;
        let t = lifecycle::transition(current, Change::CancelEvent)?;
        if t.items == lifecycle::Items::Release {
            ids.push(*id);
        }
        if lifecycle::refunds(current.payment, &t) {
            refunds.push(*id);
            fx = fx.refund(*id);
        }
        changes.push((*id, t.status.as_str(), t.payment.as_str()));
    }
    let notices = items::release(tx, &ids).await?;
    reservations_db::set_statuses(&mut *tx, &changes).await?;
    crate::payments::db::begin_refunds(&mut *tx, &refunds).await?;
    fx.add_notices(notices);
    Ok((changes.len() as i64, fx))
}

/// Cancels an event and every live reservation of it (captured payments refunded); returns the
/// event and how many reservations were cancelled.
pub async fn cancel_event(state: &AppState, id: Uuid) -> Result<(EventRow, i64)> {
    let mut tx = state.db.begin().await?;
    let event = db::mark_cancelled(&mut *tx, id).await?;
    let event: EventRow = event.ok_or(Refusal::NotCancellable)?;
    let (cancelled, fx) = cancel_reservations_of(&mut tx, id).await?;
    tx.commit().await?;
    effects::apply(state, event_changed(id).merge(fx)).await;
    Ok((event, cancelled))
}

/// Deletes an event after cancelling its live reservations; returns how many were cancelled.
pub async fn delete_event(state: &AppState, id: Uuid) -> Result<i64> {
    let mut tx = state.db.begin().await?;
    if !db::lock_event_id(&mut *tx, id).await? {
        return Err(Error::from(Refusal::EventNotFound));
    }
    let (cancelled, fx) = cancel_reservations_of(&mut tx, id).await?;
    db::delete_event(&mut *tx, id).await?;
    tx.commit().await?;
    effects::apply(state, event_changed(id).merge(fx)).await;
    Ok(cancelled)
}

/// Creates the seats of the event's layout (none may exist yet); returns how many and the title.
pub async fn generate_seats(state: &AppState, id: Uuid) -> Result<(u64, String)> {
    let mut tx = state.db.begin().await?;
    let (title, layout) = db::lock_seat_setup(&mut *tx, id)
        .await?
        .ok_or(Refusal::EventNotFound)?;
    let layout = layout.ok_or(Refusal::NoSeatLayout)?;
    let existing = db::seat_count(&mut *tx, id).await?;
    if existing > 0 {
        return Err(Error::from(Refusal::SeatsExist(existing)));
    }
    let created = seats::db::insert_layout_seats(&mut tx, id, layout)
        .await?
        .unwrap_or(0);
    tx.commit().await?;
    effects::apply(state, Effects::none().event(Some(id))).await;
    Ok((created, title))
}

/// Deletes the event's seats unless one is held or booked; an unknown event has none (0 deleted,
/// as the original answered).
pub async fn delete_seats(state: &AppState, id: Uuid) -> Result<u64> {
    let mut tx = state.db.begin().await?;
    db::lock_event_id(&mut *tx, id).await?;
    if db::seats_in_use(&mut *tx, id).await? {
        return Err(Error::from(Refusal::SeatsBooked));
    }
    let deleted = db::delete_seats(&mut *tx, id).await?;
    tx.commit().await?;
    effects::apply(state, Effects::none().event(Some(id))).await;
    Ok(deleted)
}

/// Adds a ticket type (it passed `require_complete`) to an event.
pub async fn create_ticket_type(
    state: &AppState,
    event_id: Uuid,
    input: &TicketTypeInput,
) -> Result<TicketType> {
    let mut tx = state.db.begin().await?;
    if !db::event_exists(&mut *tx, event_id).await? {
        return Err(Error::from(Refusal::EventNotFound));
    }
    let t = insert_ticket_type(&mut tx, event_id, input).await?;
    tx.commit().await?;
    effects::apply(state, event_changed(event_id)).await;
    Ok(t)
}

/// Edits a ticket type; a new total keeps what is sold (never below it) and moves what is left.
pub async fn update_ticket_type(
    state: &AppState,
    id: Uuid,
    input: &TicketTypeInput,
) -> Result<TicketType> {
    let mut tx = state.db.begin().await?;
    let current = db::lock_ticket_stock(&mut *tx, id).await?;
    let (event_id, total, available) = current.ok_or(Refusal::TicketTypeNotFound)?;
    let new_total = input.total_quantity.unwrap_or(total);
    let new_available = i64::from(new_total) - i64::from(total - available);
    if new_available < 0 {
        return Err(Error::from(Refusal::BelowSold));
    }
    let description = input.description.as_ref().map(Option::as_deref);
    let t = db::update_ticket_type(
        &mut *tx,
        id,
        input.name.as_deref(),
        input.price,
        (new_total, new_available as i32),
        description,
    )
    .await?;
    tx.commit().await?;
    let notice = Notice::TicketUpdated {
        event_id,
        ticket_type_id: id,
        available: t.available_quantity,
        total: t.total_quantity,
    };
    effects::apply(
        state,
        event_changed(event_id).merge(Effects::notices(vec![notice])),
    )
    .await;
    Ok(t)
}

/// Moves a reservation to the given status and/or payment status through the lifecycle, which moves
/// seats and stock with it: ending a live reservation releases them, reviving an ended one claims
/// them again (409 when they were sold meanwhile). Returns the reservation as the console shows it.
pub async fn set_reservation_status(
    state: &AppState,
    id: Uuid,
    status: Option<Status>,
    payment: Option<Payment>,
) -> Result<db::ReservationRow> {
    let mut tx = state.db.begin().await?;
    let current = reservations_db::lock_reservation(&mut *tx, id, None).await?;
    let current = current.ok_or(Refusal::ReservationNotFound)?;
    let t = lifecycle::transition(current.current()?, Change::Admin { status, payment })?;
    let (notices, _) = reservations::apply(&mut tx, state, &current, t, None).await?;
    let row = db::reservation(&mut *tx, id).await?;
    tx.commit().await?;
    effects::apply(state, reservations::after(&current, t, notices)).await;
    Ok(row)
}
