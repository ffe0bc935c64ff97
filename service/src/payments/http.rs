//! `POST /api/payments/process`, `GET /api/payments/methods`.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    body::{Body, Field},
    error::{Code, Error, Result},
    extract::AuthUser,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/payments/process", post(process))
        .route("/api/payments/methods", get(methods))
}

/// `POST /api/payments/process`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessBody {
    #[serde(default)]
    #[schema(value_type = String, format = "uuid")]
    reservation_id: Field<Uuid>,
    #[serde(default)]
    #[schema(value_type = String)]
    payment_method: Field<String>,
}

async fn process(
    State(state): State<AppState>,
    user: AuthUser,
    Body(body): Body<ProcessBody>,
) -> Result<Json<Value>> {
    if !body.reservation_id.present() || !body.payment_method.present() {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "Missing required fields",
        ));
    }
    let id = *body
        .reservation_id
        .get()
        .ok_or_else(|| Error::bad_request(Code::InvalidId, "Invalid reservationId format"))?;
    let method = body.payment_method.get().map(String::as_str);
    let method = method.filter(|m| super::method_name(m).is_some());
    let method = method.ok_or_else(|| {
        Error::bad_request(Code::InvalidPaymentMethod, "유효하지 않은 결제 수단입니다.")
    })?;
    let paid = super::operations::process(&state, user.id, id, method).await?;
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
