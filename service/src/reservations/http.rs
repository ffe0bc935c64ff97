//! `/api/reservations*`: ticket-type bookings, the caller's reservations, cancellation.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use crate::{
    effects,
    error::{Code, Error, OrMessage, Result},
    extract::{AuthUser, Fields, JsonBody, path_id},
    metrics::KindLabels,
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

async fn book(
    State(state): State<AppState>,
    user: AuthUser,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>)> {
    let event_id = body
        .uuid_of("eventId")
        .ok_or_else(|| Error::bad_request(Code::InvalidId, "Invalid eventId format"))?;
    let items = body
        .field("items")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let items =
        items.ok_or_else(|| Error::bad_request(Code::InvalidInput, "티켓을 선택해주세요."))?;
    // every id is checked before any quantity, as the original validated the id list first
    let ids = items
        .iter()
        .map(|item| item.uuid_of("ticketTypeId"))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::bad_request(Code::InvalidInput, "Invalid ticketTypeId list"))?;
    let mut parsed = Vec::with_capacity(items.len());
    for (item, id) in items.iter().zip(ids) {
        let quantity = item.int_of("quantity").filter(|q| *q >= 1);
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
    crate::reservations::may_buy(&state, user.id, ip, event_id).await?;
    let (booking, fx) = super::book_tickets(&state, user.id, event_id, &parsed)
        .await
        .or_message("예매에 실패했습니다.")?;
    state
        .metrics
        .reservations_created
        .get_or_create(&KindLabels { kind: "ticket" })
        .inc();
    effects::apply(&state, fx.event(Some(event_id))).await;
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

const ITEMS_JSON: &str = "coalesce((
    SELECT json_agg(json_build_object(
               'ticketTypeName', coalesce(tt.name, s.seat_label), 'quantity', ri.quantity,
               'unitPrice', ri.unit_price, 'subtotal', ri.subtotal,
               'seatLabel', s.seat_label, 'section', s.section) ORDER BY ri.created_at, s.seat_label, tt.name)
    FROM reservation_items ri
    LEFT JOIN ticket_types tt ON tt.id = ri.ticket_type_id
    LEFT JOIN seats s ON s.id = ri.seat_id
    WHERE ri.reservation_id = r.id), '[]'::json)";

async fn mine(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>> {
    async {
        let sql = format!(
            "SELECT coalesce(json_agg(json_build_object(
                 'id', r.id, 'reservation_number', r.reservation_number, 'total_amount', r.total_amount,
                 'status', r.status, 'payment_status', r.payment_status, 'created_at', wire_ts(r.created_at),
                 'event_title', e.title, 'venue', e.venue, 'event_date', wire_ts(e.event_date),
                 'items', {ITEMS_JSON}) ORDER BY r.created_at DESC), '[]'::json)
             FROM (SELECT * FROM reservations WHERE user_id = $1 ORDER BY created_at DESC LIMIT 500) r
             LEFT JOIN events e ON e.id = r.event_id"
        );
        let list: Value = sqlx::query_scalar(AssertSqlSafe(sql)).bind(user.id).fetch_one(&state.db).await?;
        // the list shows only the item name and amounts
        let list = strip_item_keys(list, &["seatLabel", "section"]);
        Ok(Json(json!({ "reservations": list })))
    }
    .await
    .or_message("예매 내역을 불러오는데 실패했습니다.")
}

fn strip_item_keys(mut list: Value, keys: &[&str]) -> Value {
    for r in list.as_array_mut().into_iter().flatten() {
        for item in r
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(o) = item.as_object_mut() {
                for k in keys {
                    o.remove(*k);
                }
            }
        }
    }
    list
}

async fn one(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    async {
        let sql = format!(
            "SELECT json_build_object(
                 'id', r.id, 'reservation_number', r.reservation_number, 'total_amount', r.total_amount,
                 'status', r.status, 'payment_status', r.payment_status, 'payment_method', r.payment_method,
                 'created_at', wire_ts(r.created_at), 'event_id', r.event_id, 'event_title', e.title,
                 'venue', e.venue, 'event_date', wire_ts(e.event_date), 'address', e.address,
                 'items', {ITEMS_JSON})
             FROM reservations r LEFT JOIN events e ON e.id = r.event_id
             WHERE r.id = $1 AND r.user_id = $2"
        );
        let found: Option<Value> = sqlx::query_scalar(AssertSqlSafe(sql)).bind(id).bind(user.id).fetch_optional(&state.db).await?;
        let reservation = found.ok_or_else(|| Error::not_found(Code::ReservationNotFound, "예매 내역을 찾을 수 없습니다."))?;
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
    let fx = super::cancel(&state, user.id, id)
        .await
        .or_message("예매 취소에 실패했습니다.")?;
    state
        .metrics
        .reservations_cancelled
        .get_or_create(&KindLabels {
            kind: "user_cancel",
        })
        .inc();
    effects::apply(&state, fx).await;
    Ok(Json(json!({ "message": "예매가 취소되었습니다." })))
}
