//! `/api/seats/*`.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tiketi_core::time::to_wire;
use uuid::Uuid;

use super::{db, map, snapshot};
use crate::{
    body::{Body, Field},
    error::{Code, Error, OrMessage, Result},
    extract::{AuthUser, Buyer, path_id},
    reservations,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/seats/layouts", get(layouts))
        .route("/api/seats/events/{event_id}", get(seat_map))
        .route("/api/seats/reserve", post(reserve))
        .route("/api/seats/reservation/{reservation_id}", get(reservation))
}

pub const MAX_SEATS_PER_RESERVATION: usize = 1;

/// All layouts as `{layouts:[…]}`.
pub async fn layouts_json(state: &AppState, order: db::LayoutOrder) -> sqlx::Result<Value> {
    Ok(json!({ "layouts": db::layouts(&state.db, order).await? }))
}

async fn layouts(State(state): State<AppState>) -> Result<Json<Value>> {
    async { Ok(Json(layouts_json(&state, db::LayoutOrder::BySize).await?)) }
        .await
        .or_message("좌석 레이아웃을 불러오는데 실패했습니다.")
}

/// The seat map from the event's snapshot (`snapshot`), with a strong `ETag`: a client that sends
/// it back in `If-None-Match` gets `304` and no body while the map is unchanged.
async fn seat_map(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let event_id = path_id(&event_id, "Invalid event ID format")?;
    let map = map::current(&state, event_id)
        .await
        .or_message("Failed to fetch seats")?;
    let etag = HeaderValue::from_str(&map.etag).map_err(Error::internal)?;
    // every request revalidates: the map changes with every hold
    let no_cache = HeaderValue::from_static("no-cache");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| snapshot::none_match(v, &map.etag));
    if unchanged {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, no_cache)],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, no_cache),
        ],
        map.body.clone(),
    )
        .into_response())
}

/// `POST /api/seats/reserve`: `eventId` and `seatIds` (at most one seat).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct HoldBody {
    #[serde(default, rename = "eventId")]
    #[schema(value_type = String, format = "uuid")]
    event_id: Field<Uuid>,
    #[serde(default, rename = "seatIds")]
    #[schema(value_type = Vec<String>)]
    seat_ids: Field<Vec<Field<Uuid>>>,
}

async fn reserve(
    State(state): State<AppState>,
    user: Buyer,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    Body(body): Body<HoldBody>,
) -> Result<(StatusCode, Json<Value>)> {
    // the contract's checks, in its order
    let event_id = *body
        .event_id
        .get()
        .ok_or_else(|| Error::bad_request(Code::InvalidId, "Invalid event ID format"))?;
    let seat_ids = body.seat_ids.get().filter(|a| !a.is_empty());
    let seat_ids = seat_ids
        .ok_or_else(|| Error::bad_request(Code::InvalidInput, "Please select at least one seat"))?;
    if seat_ids.len() > MAX_SEATS_PER_RESERVATION {
        return Err(Error::bad_request(
            Code::InvalidInput,
            format!("최대 {MAX_SEATS_PER_RESERVATION}석까지 선택 가능합니다."),
        ));
    }
    let mut ids: Vec<Uuid> = Vec::with_capacity(seat_ids.len());
    for seat in seat_ids {
        let id = *seat
            .get()
            .ok_or_else(|| Error::bad_request(Code::InvalidId, "Invalid seat ID format"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let hold = reservations::operations::hold(&state, user.id, ip, event_id, &ids)
        .await
        .or_message("좌석 예약에 실패했습니다.")?;
    let seats: Vec<Value> = hold
        .seats
        .iter()
        .map(|s| json!({ "id": s.id, "seat_label": s.seat_label, "price": s.price, "status": "locked" }))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "message": "좌석이 선택되었습니다.",
            "reservation": {
                "id": hold.id,
                "reservationNumber": hold.reservation_number,
                "totalAmount": hold.total_amount,
                "expiresAt": to_wire(&hold.expires_at),
                "seats": seats,
            },
        })),
    ))
}

async fn reservation(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid reservation ID format")?;
    async {
        let reservation = db::held_reservation(&state.db, id, user.id)
            .await?
            .ok_or_else(|| {
                Error::not_found(Code::ReservationNotFound, "예약을 찾을 수 없습니다.")
            })?;
        Ok(Json(json!({ "reservation": reservation })))
    }
    .await
    .or_message("Failed to fetch reservation")
}
