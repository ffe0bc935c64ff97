//! The admin console API: every route sits behind the admin guard (`extract::require_admin`).

pub mod db;
pub mod events;
pub mod input;
pub mod operations;
pub mod refusal;
pub mod reservations;

use axum::{Router, middleware, routing::any};

use crate::{extract::require_admin, state::AppState};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(events::router())
        .merge(reservations::router())
        // unknown admin paths (and the bare prefix) still answer 401/403 first, as the original did
        .route("/api/admin", any(unknown))
        .route("/api/admin/", any(unknown))
        .route("/api/admin/{*rest}", any(unknown))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
}

async fn unknown() -> crate::error::Error {
    crate::error::Error::not_found(crate::error::Code::NotFound, "Not found")
}
