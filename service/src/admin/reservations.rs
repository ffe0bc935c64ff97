//! Admin dashboard and reservation management.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, patch},
};
use serde_json::{Value, json};
use tiketi_core::rules::total_pages;

use crate::{
    effects,
    error::{Code, Error, OrMessage, Result},
    events::http::paging,
    extract::{Fields, JsonBody, QueryParams, path_id},
    reservations::{
        self, db as rdb,
        lifecycle::{self, Change, Payment, Status},
    },
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/dashboard/stats", get(stats))
        .route("/api/admin/reservations", get(list))
        .route("/api/admin/reservations/{id}/status", patch(set_status))
}

async fn stats(State(state): State<AppState>) -> Result<Json<Value>> {
    async {
        // "today" is the calendar day in the configured time zone
        let stats: Value = sqlx::query_scalar(
            "SELECT json_build_object(
                 'totalEvents', (SELECT count(*) FROM events),
                 'totalReservations', (SELECT count(*) FROM reservations WHERE status IN ('pending', 'confirmed')),
                 'totalRevenue', (SELECT coalesce(sum(total_amount), 0) FROM reservations WHERE payment_status = 'completed'),
                 'todayReservations', (SELECT count(*) FROM reservations WHERE status IN ('pending', 'confirmed')
                                       AND created_at >= date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1))",
        )
        .bind(state.config.timezone.name())
        .fetch_one(&state.db)
        .await?;
        let recent: Value = sqlx::query_scalar(
            "SELECT coalesce(json_agg(json_build_object('id', r.id, 'reservation_number', r.reservation_number,
                    'total_amount', r.total_amount, 'status', r.status, 'created_at', wire_ts(r.created_at),
                    'user_name', u.name, 'user_email', u.email, 'event_title', e.title) ORDER BY r.created_at DESC), '[]'::json)
             FROM (SELECT * FROM reservations ORDER BY created_at DESC LIMIT 10) r
             JOIN users u ON u.id = r.user_id JOIN events e ON e.id = r.event_id",
        )
        .fetch_one(&state.db)
        .await?;
        Ok(Json(json!({ "stats": stats, "recentReservations": recent })))
    }
    .await
    .or_message("통계 정보를 불러오는데 실패했습니다.")
}

async fn list(State(state): State<AppState>, QueryParams(q): QueryParams) -> Result<Json<Value>> {
    let (page, limit) = paging(
        q.get("page").map(String::as_str),
        q.get("limit").map(String::as_str),
        20,
    );
    let status = q
        .get("status")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    async {
        let rows: Value = sqlx::query_scalar(
            "SELECT coalesce(json_agg(json_build_object('id', r.id, 'reservation_number', r.reservation_number,
                    'total_amount', r.total_amount, 'status', r.status, 'payment_status', r.payment_status,
                    'created_at', wire_ts(r.created_at), 'user_name', u.name, 'user_email', u.email,
                    'event_title', e.title, 'venue', e.venue, 'event_date', wire_ts(e.event_date)) ORDER BY r.created_at DESC), '[]'::json)
             FROM (SELECT * FROM reservations WHERE ($1::TEXT IS NULL OR status = $1)
                   ORDER BY created_at DESC LIMIT $2 OFFSET $3) r
             JOIN users u ON u.id = r.user_id LEFT JOIN events e ON e.id = r.event_id",
        )
        .bind(status)
        .bind(limit)
        .bind((page - 1) * limit)
        .fetch_one(&state.db)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE ($1::TEXT IS NULL OR status = $1)")
            .bind(status)
            .fetch_one(&state.db)
            .await?;
        Ok(Json(json!({
            "reservations": rows,
            "pagination": { "page": page, "limit": limit, "total": total, "totalPages": total_pages(total, limit) },
        })))
    }
    .await
    .or_message("예매 내역을 불러오는데 실패했습니다.")
}

async fn set_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let status = body.present("status");
    let payment_status = body.present("paymentStatus");
    if status.is_none() && payment_status.is_none() {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "변경할 상태를 지정해주세요.",
        ));
    }
    let bad = || Error::bad_request(Code::InvalidStatusChange, "유효하지 않은 상태 값입니다.");
    let status = match status {
        None => None,
        Some(v) => Some(v.as_str().and_then(Status::parse).ok_or_else(bad)?),
    };
    let payment = match payment_status {
        None => None,
        Some(v) => Some(v.as_str().and_then(Payment::parse).ok_or_else(bad)?),
    };
    let (reservation, fx) = async {
        let mut tx = state.db.begin().await?;
        let current = rdb::lock_reservation(&mut *tx, id, None).await?;
        let current = current.ok_or_else(|| {
            Error::not_found(Code::ReservationNotFound, "예매를 찾을 수 없습니다.")
        })?;
        // the lifecycle moves seats and stock with the status: ending a live reservation releases
        // them, reviving an ended one claims them again (409 when they were sold meanwhile)
        let t = lifecycle::transition(current.current()?, Change::Admin { status, payment })?;
        let (notices, _) = reservations::apply(&mut tx, &state, &current, t, None).await?;
        let row: Value = sqlx::query_scalar(
            "SELECT json_build_object('id', r.id, 'user_id', r.user_id, 'event_id', r.event_id,
                 'reservation_number', r.reservation_number, 'total_amount', r.total_amount, 'status', r.status,
                 'payment_method', r.payment_method, 'payment_status', r.payment_status,
                 'expires_at', wire_ts(r.expires_at), 'created_at', wire_ts(r.created_at), 'updated_at', wire_ts(r.updated_at))
             FROM reservations r WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((row, reservations::after(&current, t, notices)))
    }
    .await
    .or_message("예매 상태 변경에 실패했습니다.")?;
    effects::apply(&state, fx).await;
    Ok(Json(
        json!({ "message": "예매 상태가 변경되었습니다.", "reservation": reservation }),
    ))
}
