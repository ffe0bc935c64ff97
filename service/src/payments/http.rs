//! `POST /api/payments/process`, `GET /api/payments/methods`.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    error::{Code, Error, OrMessage, Result},
    extract::{AuthUser, Fields, JsonBody},
    metrics::PaymentLabels,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/payments/process", post(process))
        .route("/api/payments/methods", get(methods))
}

async fn process(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>> {
    let (Some(id), Some(method)) = (body.present("reservationId"), body.present("paymentMethod"))
    else {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "Missing required fields",
        ));
    };
    let id = id
        .as_str()
        .and_then(tiketi_core::ids::parse_uuid)
        .ok_or_else(|| Error::bad_request(Code::InvalidId, "Invalid reservationId format"))?;
    let method = method.as_str().filter(|m| super::method_name(m).is_some());
    let method = method.ok_or_else(|| {
        Error::bad_request(Code::InvalidPaymentMethod, "유효하지 않은 결제 수단입니다.")
    })?;
    crate::ratelimit::check(
        &state,
        "reserve",
        &user.id.to_string(),
        state.config.reserve_rate_limit,
    )
    .await?;
    let started = std::time::Instant::now();
    let outcome = super::pay(&state, user.id, id, method)
        .await
        .or_message("결제 처리 중 오류가 발생했습니다.");
    state
        .metrics
        .payment_duration
        .observe(started.elapsed().as_secs_f64());
    let status = if outcome.is_ok() { "success" } else { "failed" };
    state
        .metrics
        .payments
        .get_or_create(&PaymentLabels {
            status,
            payment_method: method.to_string(),
        })
        .inc();
    let paid = outcome?;
    if let Some(amount) = paid.pointer("/payment/totalAmount").and_then(Value::as_f64) {
        state.metrics.payment_amount.observe(amount);
    }
    Ok(Json(paid))
}

async fn methods() -> Json<Value> {
    let methods: Vec<Value> = super::METHODS
        .iter()
        .map(|(id, name, description)| {
            json!({ "id": id, "name": name, "description": description, "icon": format!("/images/{}.png", id.replace('_', "-")) })
        })
        .collect();
    Json(json!({ "methods": methods }))
}
