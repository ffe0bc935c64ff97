//! Admin dashboard and reservation management.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, patch},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tiketi_core::rules::total_pages;

use super::{db, refusal::Refusal};
use crate::{
    body::{Body, Field},
    error::{OrMessage, Result},
    events::http::paging,
    extract::{QueryParams, path_id},
    reservations::lifecycle::{self, Payment, Status},
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
        let stats = db::stats(&state.db, state.config.timezone.name()).await?;
        let recent = db::recent(&state.db).await?;
        Ok(Json(
            json!({ "stats": stats, "recentReservations": recent }),
        ))
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
    // by the status clients see: `cancelled` finds the expired holds too (they show `cancelled`
    // with `status_reason: "expired"`), `expired` only those
    let statuses = q
        .get("status")
        .filter(|s| !s.is_empty())
        .map(|s| lifecycle::stored_for_filter(s));
    async {
        let (rows, total) =
            db::list(&state.db, statuses.as_deref(), limit, (page - 1) * limit).await?;
        Ok(Json(json!({
            "reservations": rows,
            "pagination": { "page": page, "limit": limit, "total": total, "totalPages": total_pages(total, limit) },
        })))
    }
    .await
    .or_message("예매 내역을 불러오는데 실패했습니다.")
}

/// `PATCH /api/admin/reservations/:id/status`: either or both.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    #[serde(default)]
    #[schema(value_type = String)]
    status: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    payment_status: Field<String>,
}

async fn set_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<StatusBody>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (status, payment_status) = (&body.status, &body.payment_status);
    if !status.present() && !payment_status.present() {
        return Err(Refusal::NoStatusGiven.into());
    }
    // each one given must be a status the lifecycle knows
    let status = (status.present())
        .then(|| status.get().and_then(|s| Status::parse(s)))
        .map(|s| s.ok_or(Refusal::UnknownStatus))
        .transpose()?;
    let payment = (payment_status.present())
        .then(|| payment_status.get().and_then(|s| Payment::parse(s)))
        .map(|p| p.ok_or(Refusal::UnknownStatus))
        .transpose()?;
    let reservation = super::operations::set_reservation_status(&state, id, status, payment)
        .await
        .or_message("예매 상태 변경에 실패했습니다.")?;
    Ok(Json(
        json!({ "message": "예매 상태가 변경되었습니다.", "reservation": reservation }),
    ))
}
