//! `/api/queue/*` and the `/api/api/queue/*` aliases the frontend's waiting room requests.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use serde_json::{Value, json};
use tiketi_core::wire::Notice;
use uuid::Uuid;

use crate::{
    effects::{self, Effects},
    error::{Code, Error, OrMessage, Result},
    extract::{AuthUser, Buyer, path_id},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/queue/check/{event_id}", post(check))
        .route("/api/queue/status/{event_id}", get(status))
        .route("/api/queue/leave/{event_id}", post(leave))
        .route("/api/api/queue/status/{event_id}", get(status))
        .route("/api/api/queue/leave/{event_id}", post(leave))
        .route("/api/queue/admin/{event_id}", get(admin_info))
        .route("/api/queue/admin/clear/{event_id}", post(admin_clear))
}

async fn gate_of(state: &AppState, event_id: Uuid) -> Result<super::Gate> {
    super::limit(state, event_id)
        .await?
        .ok_or_else(|| Error::not_found(Code::EventNotFound, "이벤트를 찾을 수 없습니다."))
}

async fn check(
    State(state): State<AppState>,
    user: Buyer,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let event_id = path_id(&id, "Invalid event ID format")?;
    crate::ratelimit::check(
        &state,
        "queue-check",
        &user.id.to_string(),
        state.config.queue_check_rate_limit,
    )
    .await?;
    crate::ratelimit::check(
        &state,
        "queue-check-ip",
        &crate::client_ip::limit_key(ip),
        state.config.queue_check_rate_limit_per_ip,
    )
    .await?;
    async {
        let gate = gate_of(&state, event_id).await?;
        let threshold = gate.threshold;
        let (p, eta) = super::check(&state, event_id, user.id, gate).await?;
        Ok(Json(if p.queued {
            json!({ "queued": true, "position": p.position, "estimatedWait": eta.secs,
                    "estimatedWaitKnown": eta.known, "estimatedWaitBasis": eta.basis,
                    "threshold": threshold, "currentUsers": p.current_users })
        } else {
            json!({ "queued": false, "currentUsers": p.current_users, "threshold": threshold })
        }))
    }
    .await
    .or_message("대기열 확인에 실패했습니다.")
}

async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let event_id = path_id(&id, "Invalid event ID format")?;
    async {
        let gate = gate_of(&state, event_id).await?;
        let threshold = gate.threshold;
        let p = super::status(&state, event_id, user.id).await?;
        let eta = super::eta(&state, event_id, gate, p.position).await;
        Ok(Json(json!({
            "queued": p.queued, "position": p.position, "queueSize": p.queue_size,
            "estimatedWait": eta.secs, "estimatedWaitKnown": eta.known, "estimatedWaitBasis": eta.basis,
            "currentUsers": p.current_users, "threshold": threshold,
        })))
    }
    .await
    .or_message("대기열 상태 조회에 실패했습니다.")
}

async fn leave(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let event_id = path_id(&id, "Invalid event ID format")?;
    async {
        super::leave(&state, event_id, user.id).await?;
        Ok(Json(json!({ "message": "대기열에서 나왔습니다." })))
    }
    .await
    .or_message("대기열 나가기에 실패했습니다.")
}

async fn admin_info(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    user.require_admin()?;
    let event_id = path_id(&id, "Invalid event ID format")?;
    async {
        let threshold = gate_of(&state, event_id).await?.threshold;
        let p = super::status(&state, event_id, user.id).await?;
        Ok(Json(json!({
            "eventId": event_id, "queueSize": p.queue_size, "currentUsers": p.current_users,
            "threshold": threshold, "available": (threshold - p.current_users).max(0),
        })))
    }
    .await
    .or_message("대기열 정보 조회에 실패했습니다.")
}

async fn admin_clear(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    user.require_admin()?;
    let event_id = path_id(&id, "Invalid event ID format")?;
    async {
        super::clear(&state, event_id).await?;
        let cleared = Notice::QueueCleared { event_id };
        effects::apply(&state, Effects::announce(vec![cleared])).await;
        Ok(Json(json!({ "message": "대기열이 초기화되었습니다." })))
    }
    .await
    .or_message("대기열 초기화에 실패했습니다.")
}
