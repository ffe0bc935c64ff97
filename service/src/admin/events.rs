//! Admin event management: create, edit, cancel, delete, seats and ticket types. Each handler
//! parses, calls one operation (`operations`) and answers.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, post, put},
};
use serde_json::{Value, json};
use tiketi_core::rules::sale_status;

use super::{
    db::EventFields,
    input::{EventBody, EventInput, TicketTypeBody, TicketTypeInput, check_window},
    operations,
    refusal::Refusal,
};
use crate::{
    body::Body,
    error::{OrMessage, Result},
    extract::{AuthUser, path_id},
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
    let event = operations::create_event(
        &state,
        &fields,
        input.seat_layout_id,
        admin.id,
        &ticket_types,
    )
    .await
    .or_message("이벤트 생성에 실패했습니다.")?;
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
    let event = operations::update_event(&state, id, &input)
        .await
        .or_message("이벤트 수정에 실패했습니다.")?;
    Ok(Json(
        json!({ "message": "이벤트가 수정되었습니다.", "event": event }),
    ))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (event, cancelled) = operations::cancel_event(&state, id)
        .await
        .or_message("이벤트 취소에 실패했습니다.")?;
    Ok(Json(json!({
        "message": "이벤트가 취소되었습니다. 모든 예약이 취소되고 결제 완료된 예약은 환불 처리되었습니다.",
        "event": event,
        "cancelledReservations": cancelled,
    })))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let cancelled = operations::delete_event(&state, id)
        .await
        .or_message("이벤트 삭제에 실패했습니다.")?;
    Ok(Json(
        json!({ "message": "이벤트가 삭제되었습니다.", "cancelledReservations": cancelled }),
    ))
}

async fn generate_seats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (created, title) = operations::generate_seats(&state, id)
        .await
        .or_message("좌석 생성에 실패했습니다.")?;
    Ok(Json(
        json!({ "message": "좌석이 생성되었습니다.", "seatsCreated": created, "eventTitle": title }),
    ))
}

async fn delete_seats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let deleted = operations::delete_seats(&state, id)
        .await
        .or_message("좌석 삭제에 실패했습니다.")?;
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
    let ticket = operations::create_ticket_type(&state, event_id, &input)
        .await
        .or_message("티켓 등록에 실패했습니다.")?;
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
    let ticket = operations::update_ticket_type(&state, id, &input)
        .await
        .or_message("티켓 수정에 실패했습니다.")?;
    Ok(Json(
        json!({ "message": "티켓이 수정되었습니다.", "ticketType": ticket }),
    ))
}
