//! Admin event management: create, edit, cancel, delete, seats and ticket types.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, post, put},
};
use serde_json::{Value, json};
use sqlx::PgConnection;
use tiketi_core::{rules::sale_status, wire::Notice};
use uuid::Uuid;

use super::{
    db::{self, EventFields, TicketType},
    input::{EventBody, EventInput, TicketTypeBody, TicketTypeInput, check_window},
    refusal::Refusal,
};
use crate::{
    body::Body,
    effects::{self, Effects},
    error::{Error, OrMessage, Result},
    events::db::EventRow,
    extract::{AuthUser, path_id},
    reservations::{db as reservations_db, items},
    seats::{self, http::layouts_json},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/seat-layouts", get(layouts))
        .route("/api/admin/events", post(create))
        .route("/api/admin/events/{id}", put(update).delete(remove))
        .route("/api/admin/events/{id}/cancel", post(cancel))
        .route(
            "/api/admin/events/{id}/generate-seats",
            post(generate_seats),
        )
        .route("/api/admin/events/{id}/seats", delete(delete_seats))
        .route("/api/admin/events/{id}/tickets", post(create_ticket))
        .route("/api/admin/tickets/{id}", put(update_ticket))
}

async fn layouts(State(state): State<AppState>) -> Result<Json<Value>> {
    async {
        Ok(Json(
            layouts_json(&state, seats::db::LayoutOrder::ByName).await?,
        ))
    }
    .await
    .or_message("좌석 레이아웃을 불러오는데 실패했습니다.")
}

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

async fn create(
    State(state): State<AppState>,
    admin: AuthUser,
    Body(body): Body<EventBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let input = EventInput::parse(&body, state.config.timezone)?;
    input.require_complete()?;
    let (Some(title), Some(venue), Some(event_date), Some(sale_start), Some(sale_end)) = (
        &input.title,
        &input.venue,
        input.event_date,
        input.sale_start,
        input.sale_end,
    ) else {
        unreachable!("checked by require_complete")
    };
    check_window(sale_start, sale_end)?;
    let mut ticket_types = Vec::new();
    if body.ticket_types.present() {
        let list = body.ticket_types.get();
        for t in list.ok_or(Refusal::Invalid("ticketTypes는 배열이어야 합니다."))? {
            let t = t.get();
            let t = TicketTypeInput::parse(
                t.ok_or(Refusal::Invalid("티켓 정보가 올바르지 않습니다."))?,
            )?;
            t.require_complete()?;
            ticket_types.push(t);
        }
    }
    let event = async {
        let mut tx = state.db.begin().await?;
        fn given(v: &Option<Option<String>>) -> Option<&str> {
            v.as_ref().and_then(Option::as_deref)
        }
        let fields = EventFields {
            title,
            description: given(&input.description),
            venue,
            address: given(&input.address),
            event_date,
            sale_start,
            sale_end,
            poster_image_url: given(&input.poster_image_url),
            artist_name: given(&input.artist_name),
            status: sale_status(chrono::Utc::now(), sale_start, sale_end),
            queue_threshold: input.queue_threshold,
        };
        let event = db::insert_event(&mut *tx, &fields, input.seat_layout_id, admin.id)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d)
                    if d.constraint() == Some("events_seat_layout_id_fkey") =>
                {
                    Error::from(Refusal::UnknownLayout)
                }
                _ => e.into(),
            })?;
        if let Some(layout) = input.seat_layout_id {
            seats::db::insert_layout_seats(&mut tx, event.id, layout).await?;
        }
        for t in &ticket_types {
            insert_ticket_type(&mut tx, event.id, t).await?;
        }
        tx.commit().await?;
        Ok(event)
    }
    .await
    .or_message("이벤트 생성에 실패했습니다.")?;
    effects::apply(&state, event_changed(event.id)).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "message": "이벤트가 생성되었습니다.", "event": event })),
    ))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<EventBody>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let input = EventInput::parse(&body, state.config.timezone)?;
    let event = async {
        let mut tx = state.db.begin().await?;
        let Some(current) = db::lock_event(&mut *tx, id).await? else {
            return Err(Error::from(Refusal::NoEventToEdit));
        };
        // Fields left out keep their value (the original overwrote them with NULL).
        let sale_start = input.sale_start.unwrap_or(current.sale_start_date);
        let sale_end = input.sale_end.unwrap_or(current.sale_end_date);
        check_window(sale_start, sale_end)?;
        let status = if current.status == "cancelled" {
            current.status.clone()
        } else {
            sale_status(chrono::Utc::now(), sale_start, sale_end).to_string()
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
        Ok(event)
    }
    .await
    .or_message("이벤트 수정에 실패했습니다.")?;
    effects::apply(&state, event_changed(id)).await;
    Ok(Json(
        json!({ "message": "이벤트가 수정되었습니다.", "event": event }),
    ))
}

/// Cancels the live reservations of an event through the lifecycle (captured payments refunded)
/// and releases what they hold; returns how many were cancelled and what to announce.
async fn cancel_reservations_of(tx: &mut PgConnection, event_id: Uuid) -> Result<(i64, Effects)> {
    use crate::reservations::lifecycle::{self, Change, Current, Payment};
    let live = reservations_db::lock_live_of_event(&mut *tx, event_id).await?;
    let mut changes = Vec::with_capacity(live.len());
    let mut ids = Vec::new();
    let mut fx = Effects::none();
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
        if current.payment == Payment::Completed && t.payment == Payment::Refunded {
            fx = fx.refund(*id);
        }
        changes.push((*id, t.status.as_str(), t.payment.as_str()));
    }
    let notices = items::release(tx, &ids).await?;
    reservations_db::set_statuses(&mut *tx, &changes).await?;
    fx.add_notices(notices);
    Ok((changes.len() as i64, fx))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let msg = "이벤트 취소에 실패했습니다.";
    let (event, cancelled, fx) = async {
        let mut tx = state.db.begin().await?;
        let event = db::mark_cancelled(&mut *tx, id).await?;
        let event: EventRow = event.ok_or(Refusal::NotCancellable)?;
        let (cancelled, fx) = cancel_reservations_of(&mut tx, id).await?;
        tx.commit().await?;
        Ok((event, cancelled, fx))
    }
    .await
    .or_message(msg)?;
    effects::apply(&state, event_changed(id).merge(fx)).await;
    Ok(Json(json!({
        "message": "이벤트가 취소되었습니다. 모든 예약이 취소되고 결제 완료된 예약은 환불 처리되었습니다.",
        "event": event,
        "cancelledReservations": cancelled,
    })))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (cancelled, fx) = async {
        let mut tx = state.db.begin().await?;
        if !db::lock_event_id(&mut *tx, id).await? {
            return Err(Error::from(Refusal::EventNotFound));
        }
        let (cancelled, fx) = cancel_reservations_of(&mut tx, id).await?;
        db::delete_event(&mut *tx, id).await?;
        tx.commit().await?;
        Ok((cancelled, fx))
    }
    .await
    .or_message("이벤트 삭제에 실패했습니다.")?;
    effects::apply(&state, event_changed(id).merge(fx)).await;
    Ok(Json(
        json!({ "message": "이벤트가 삭제되었습니다.", "cancelledReservations": cancelled }),
    ))
}

async fn generate_seats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (created, title) = async {
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
        Ok((created, title))
    }
    .await
    .or_message("좌석 생성에 실패했습니다.")?;
    effects::apply(&state, Effects::none().event(Some(id))).await;
    Ok(Json(
        json!({ "message": "좌석이 생성되었습니다.", "seatsCreated": created, "eventTitle": title }),
    ))
}

async fn delete_seats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let deleted = async {
        let mut tx = state.db.begin().await?;
        // an unknown event has no seats: 0 deleted, as the original answered
        db::lock_event_id(&mut *tx, id).await?;
        if db::seats_in_use(&mut *tx, id).await? {
            return Err(Error::from(Refusal::SeatsBooked));
        }
        let deleted = db::delete_seats(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(deleted)
    }
    .await
    .or_message("좌석 삭제에 실패했습니다.")?;
    effects::apply(&state, Effects::none().event(Some(id))).await;
    Ok(Json(
        json!({ "message": "좌석이 삭제되었습니다.", "seatsDeleted": deleted }),
    ))
}

async fn create_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<TicketTypeBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let event_id = path_id(&id, "Invalid eventId format")?;
    let input = TicketTypeInput::parse(&body)?;
    input.require_complete()?;
    let ticket = async {
        let mut tx = state.db.begin().await?;
        if !db::event_exists(&mut *tx, event_id).await? {
            return Err(Error::from(Refusal::EventNotFound));
        }
        let t = insert_ticket_type(&mut tx, event_id, &input).await?;
        tx.commit().await?;
        Ok(t)
    }
    .await
    .or_message("티켓 등록에 실패했습니다.")?;
    effects::apply(&state, event_changed(event_id)).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "message": "티켓이 등록되었습니다.", "ticketType": ticket })),
    ))
}

async fn update_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<TicketTypeBody>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let input = TicketTypeInput::parse(&body)?;
    let (ticket, event_id) = async {
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
        Ok((t, event_id))
    }
    .await
    .or_message("티켓 수정에 실패했습니다.")?;
    let notice = Notice::TicketUpdated {
        event_id,
        ticket_type_id: id,
        available: ticket.available_quantity,
        total: ticket.total_quantity,
    };
    effects::apply(
        &state,
        event_changed(event_id).merge(Effects::notices(vec![notice])),
    )
    .await;
    Ok(Json(
        json!({ "message": "티켓이 수정되었습니다.", "ticketType": ticket }),
    ))
}
