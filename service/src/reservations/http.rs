//! `/api/reservations*`: ticket-type bookings, the caller's reservations, cancellation.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    body::{Body, Field},
    error::{Code, Error, OrMessage, Result},
    extract::{AuthUser, path_id},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reservations", post(book))
        .route("/api/reservations/my", get(mine))
        .route("/api/reservations/{id}", get(one))
        .route("/api/reservations/{id}/cancel", post(cancel))
}

/// Largest quantity of one ticket type in one booking (protects totals from overflow).
const MAX_QUANTITY: i64 = 100;

/// `POST /api/reservations`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookBody {
    #[serde(default)]
    #[schema(value_type = String, format = "uuid")]
    event_id: Field<Uuid>,
    #[serde(default)]
    #[schema(value_type = Vec<BookItem>)]
    items: Field<Vec<Field<BookItem>>>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookItem {
    #[serde(default)]
    #[schema(value_type = String, format = "uuid")]
    ticket_type_id: Field<Uuid>,
    #[serde(default)]
    #[schema(value_type = i64)]
    quantity: Field<i64>,
}
crate::nested_body!(BookItem);

async fn book(
    State(state): State<AppState>,
    user: AuthUser,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    Body(body): Body<BookBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let event_id = *body
        .event_id
        .get()
        .ok_or_else(|| Error::bad_request(Code::InvalidId, "Invalid eventId format"))?;
    let items = body.items.get().filter(|a| !a.is_empty());
    let items =
        items.ok_or_else(|| Error::bad_request(Code::InvalidInput, "티켓을 선택해주세요."))?;
    // every id is checked before any quantity, as the original validated the id list first
    let ids = items
        .iter()
        .map(|item| item.get()?.ticket_type_id.get().copied())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::bad_request(Code::InvalidInput, "Invalid ticketTypeId list"))?;
    let mut parsed = Vec::with_capacity(items.len());
    for (item, id) in items.iter().filter_map(Field::get).zip(ids) {
        let quantity = item.quantity.get().copied().filter(|q| *q >= 1);
        let quantity = quantity
            .ok_or_else(|| Error::rejected(Code::InvalidInput, "수량은 1개 이상이어야 합니다."))?;
        if quantity > MAX_QUANTITY {
            return Err(Error::rejected(
                Code::InvalidInput,
                format!("한 번에 최대 {MAX_QUANTITY}매까지 예매할 수 있습니다."),
            ));
        }
        parsed.push((id, quantity as i32));
    }
    let booking = super::operations::book(&state, user.id, ip, event_id, &parsed)
        .await
        .or_message("예매에 실패했습니다.")?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "message": "예매가 완료되었습니다.",
            "reservation": {
                "id": booking.id,
                "reservationNumber": booking.reservation_number,
                "totalAmount": booking.total_amount,
            },
        })),
    ))
}

async fn mine(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>> {
    async {
        let list = super::views::mine(&state.db, user.id).await?;
        Ok(Json(json!({ "reservations": list })))
    }
    .await
    .or_message("예매 내역을 불러오는데 실패했습니다.")
}

async fn one(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    async {
        let found = super::views::one(&state.db, user.id, id).await?;
        let reservation = found.ok_or_else(|| {
            Error::not_found(Code::ReservationNotFound, "예매 내역을 찾을 수 없습니다.")
        })?;
        Ok(Json(json!({ "reservation": reservation })))
    }
    .await
    .or_message("예매 정보를 불러오는데 실패했습니다.")
}

async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    super::operations::cancel(&state, user.id, id)
        .await
        .or_message("예매 취소에 실패했습니다.")?;
    Ok(Json(json!({ "message": "예매가 취소되었습니다." })))
}
