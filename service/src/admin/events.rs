//! Admin event management: create, edit, cancel, delete, seats and ticket types.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, post, put},
};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use sqlx::PgConnection;
use tiketi_core::{rules::sale_status, wire::Notice};
use uuid::Uuid;

use super::input::{EventInput, TicketTypeInput, check_window};
use crate::{
    effects::{self, Effects},
    error::{Code, Error, OrMessage, Result},
    events::db::{EVENT_COLUMNS, EventRow},
    extract::{AuthUser, Fields, JsonBody, path_id},
    reservations::items,
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

async fn insert_ticket_type(
    tx: &mut PgConnection,
    event_id: Uuid,
    t: &TicketTypeInput,
) -> Result<Value> {
    let row: Value = sqlx::query_scalar(
        "INSERT INTO ticket_types AS t (event_id, name, price, total_quantity, available_quantity, description)
         VALUES ($1, $2, $3, $4, $4, $5)
         RETURNING json_build_object('id', t.id, 'event_id', t.event_id, 'name', t.name, 'price', t.price,
             'total_quantity', t.total_quantity, 'available_quantity', t.available_quantity, 'description', t.description,
             'created_at', wire_ts(t.created_at), 'updated_at', wire_ts(t.updated_at))",
    )
    .bind(event_id)
    .bind(&t.name)
    .bind(t.price)
    .bind(t.total_quantity)
    .bind(t.description.clone().flatten())
    .fetch_one(&mut *tx)
    .await?;
    Ok(row)
}

async fn create(
    State(state): State<AppState>,
    admin: AuthUser,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>)> {
    let input = EventInput::parse(&body, state.config.timezone)?;
    input.require_complete()?;
    let (Some(sale_start), Some(sale_end)) = (input.sale_start, input.sale_end) else {
        unreachable!("checked")
    };
    check_window(sale_start, sale_end)?;
    let mut ticket_types = Vec::new();
    if let Some(list) = body.present("ticketTypes") {
        for t in list.as_array().ok_or_else(|| {
            Error::bad_request(Code::InvalidInput, "ticketTypes는 배열이어야 합니다.")
        })? {
            let t = TicketTypeInput::parse(t.as_object().ok_or_else(|| {
                Error::bad_request(Code::InvalidInput, "티켓 정보가 올바르지 않습니다.")
            })?)?;
            t.require_complete()?;
            ticket_types.push(t);
        }
    }
    let event = async {
        let mut tx = state.db.begin().await?;
        let status = sale_status(chrono::Utc::now(), sale_start, sale_end);
        let event: EventRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO events (title, description, venue, address, event_date, sale_start_date, sale_end_date,
                                 poster_image_url, artist_name, seat_layout_id, status, created_by, queue_threshold)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, 1000))
             RETURNING {EVENT_COLUMNS}"
        )))
        .bind(&input.title)
        .bind(input.description.clone().flatten())
        .bind(&input.venue)
        .bind(input.address.clone().flatten())
        .bind(input.event_date)
        .bind(sale_start)
        .bind(sale_end)
        .bind(input.poster_image_url.clone().flatten())
        .bind(input.artist_name.clone().flatten())
        .bind(input.seat_layout_id)
        .bind(status)
        .bind(admin.id)
        .bind(input.queue_threshold)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.constraint() == Some("events_seat_layout_id_fkey") => {
                Error::bad_request(Code::InvalidInput, "존재하지 않는 좌석 레이아웃입니다.")
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
    JsonBody(body): JsonBody,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let input = EventInput::parse(&body, state.config.timezone)?;
    let event = async {
        let mut tx = state.db.begin().await?;
        let current: Option<EventRow> =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 FOR UPDATE"))).bind(id).fetch_optional(&mut *tx).await?;
        let Some(current) = current else {
            return Err(Error::Failure(StatusCode::NOT_FOUND, Code::EventNotFound, "이벤트를 찾을 수 없습니다.".into()));
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
        let pick = |new: &Option<Option<String>>, old: &Option<String>| new.clone().unwrap_or_else(|| old.clone());
        let event: EventRow = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE events SET title = $2, description = $3, venue = $4, address = $5, event_date = $6,
                    sale_start_date = $7, sale_end_date = $8, poster_image_url = $9, artist_name = $10, status = $11,
                    queue_threshold = coalesce($12, queue_threshold)
             WHERE id = $1 RETURNING {EVENT_COLUMNS}"
        )))
        .bind(id)
        .bind(input.title.clone().unwrap_or(current.title.clone()))
        .bind(pick(&input.description, &current.description))
        .bind(input.venue.clone().unwrap_or(current.venue.clone()))
        .bind(pick(&input.address, &current.address))
        .bind(input.event_date.unwrap_or(current.event_date))
        .bind(sale_start)
        .bind(sale_end)
        .bind(pick(&input.poster_image_url, &current.poster_image_url))
        .bind(pick(&input.artist_name, &current.artist_name))
        .bind(status)
        .bind(input.queue_threshold)
        .fetch_one(&mut *tx)
        .await?;
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
    let live = items::lock_live_of_event(&mut *tx, event_id).await?;
    let mut changes = Vec::with_capacity(live.len());
    let mut ids = Vec::new();
    let mut fx = Effects::none();
    for (id, status, payment) in &live {
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
    items::set_statuses(&mut *tx, &changes).await?;
    fx.add_notices(notices);
    Ok((changes.len() as i64, fx))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let msg = "이벤트 취소에 실패했습니다.";
    let (event, cancelled, fx) = async {
        let mut tx = state.db.begin().await?;
        let event: Option<EventRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE events SET status = 'cancelled' WHERE id = $1 AND status <> 'cancelled' RETURNING {EVENT_COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let event = event.ok_or_else(|| Error::Failure(StatusCode::NOT_FOUND, Code::EventNotFound, msg.into()))?;
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
        let exists: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM events WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(Error::not_found(
                Code::EventNotFound,
                "이벤트를 찾을 수 없습니다.",
            ));
        }
        let (cancelled, fx) = cancel_reservations_of(&mut tx, id).await?;
        sqlx::query("DELETE FROM events WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
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
        let event: Option<(String, Option<Uuid>)> =
            sqlx::query_as("SELECT title, seat_layout_id FROM events WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (title, layout) = event
            .ok_or_else(|| Error::not_found(Code::EventNotFound, "이벤트를 찾을 수 없습니다."))?;
        let layout = layout.ok_or_else(|| {
            Error::bad_request(Code::Conflict, "좌석 레이아웃이 설정되지 않았습니다.")
        })?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM seats WHERE event_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            return Err(Error::PlainWith(
                StatusCode::BAD_REQUEST,
                Code::Conflict,
                "이미 좌석이 생성되어 있습니다.".into(),
                json!({ "existingSeats": existing }),
            ));
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
        sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *tx).await?;
        let in_use: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
                            WHERE r.event_id = $1 AND r.status IN ('pending', 'confirmed') AND ri.seat_id IS NOT NULL)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if in_use {
            return Err(Error::bad_request(Code::Conflict, "예약된 좌석이 있어 삭제할 수 없습니다."));
        }
        let done = sqlx::query("DELETE FROM seats WHERE event_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
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
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>)> {
    let event_id = path_id(&id, "Invalid eventId format")?;
    let input = TicketTypeInput::parse(&body)?;
    input.require_complete()?;
    let ticket = async {
        let mut tx = state.db.begin().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)")
            .bind(event_id)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(Error::not_found(
                Code::EventNotFound,
                "이벤트를 찾을 수 없습니다.",
            ));
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
    JsonBody(body): JsonBody,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let input = TicketTypeInput::parse(&body)?;
    let (ticket, event_id) = async {
        let mut tx = state.db.begin().await?;
        let current: Option<(Uuid, i32, i32)> =
            sqlx::query_as("SELECT event_id, total_quantity, available_quantity FROM ticket_types WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (event_id, total, available) = current.ok_or_else(|| Error::not_found(Code::TicketTypeNotFound, "티켓을 찾을 수 없습니다."))?;
        let new_total = input.total_quantity.unwrap_or(total);
        let new_available = i64::from(new_total) - i64::from(total - available);
        if new_available < 0 {
            return Err(Error::bad_request(Code::Conflict, "판매된 티켓 수보다 적은 수량으로 변경할 수 없습니다."));
        }
        let t: Value = sqlx::query_scalar(
            "UPDATE ticket_types t SET name = coalesce($2, name), price = coalesce($3, price), total_quantity = $4,
                    available_quantity = $5, description = CASE WHEN $6 THEN $7 ELSE description END
             WHERE id = $1
             RETURNING json_build_object('id', t.id, 'event_id', t.event_id, 'name', t.name, 'price', t.price,
                 'total_quantity', t.total_quantity, 'available_quantity', t.available_quantity,
                 'description', t.description, 'created_at', wire_ts(t.created_at), 'updated_at', wire_ts(t.updated_at))",
        )
        .bind(id)
        .bind(&input.name)
        .bind(input.price)
        .bind(new_total)
        .bind(new_available as i32)
        .bind(input.description.is_some())
        .bind(input.description.clone().flatten())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((t, event_id))
    }
    .await
    .or_message("티켓 수정에 실패했습니다.")?;
    let notice = Notice::TicketUpdated {
        event_id,
        ticket_type_id: id,
        available: ticket
            .field("available_quantity")
            .and_then(Value::as_i64)
            .unwrap_or(0) as i32,
        total: ticket
            .field("total_quantity")
            .and_then(Value::as_i64)
            .unwrap_or(0) as i32,
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
