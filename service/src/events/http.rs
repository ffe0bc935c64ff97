//! `GET /api/events`, `GET /api/events/:id`, `GET /api/tickets/*`.

use axum::body::Bytes;
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tiketi_core::rules::total_pages;

use super::db::{self, ListFilter};
use crate::{
    cache,
    error::{Code, Error, OrMessage, Result},
    extract::path_id,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(list))
        .route("/api/events/{id}", get(detail))
        .route("/api/tickets/event/{event_id}", get(ticket_types))
        .route(
            "/api/tickets/availability/{ticket_type_id}",
            get(availability),
        )
}

pub const MAX_PAGE_SIZE: i64 = 1000;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    page: Option<String>,
    limit: Option<String>,
}

/// Page and limit like the original's `parseInt`, bounded: page ≥ 1, 1 ≤ limit ≤ 1000.
pub fn paging(page: Option<&str>, limit: Option<&str>, default_limit: i64) -> (i64, i64) {
    let num = |s: Option<&str>| s.and_then(|s| s.trim().parse::<i64>().ok());
    let page = num(page).filter(|p| *p >= 1).unwrap_or(1).min(1_000_000);
    let limit = num(limit)
        .filter(|l| *l >= 1)
        .unwrap_or(default_limit)
        .min(MAX_PAGE_SIZE);
    (page, limit)
}

fn json_response(body: impl Into<axum::body::Body>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Response> {
    // PostgreSQL text cannot hold NUL (the query would fail with a 500): refuse it plainly
    if [&q.status, &q.q]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| s.contains('\0')))
    {
        return Err(crate::error::Error::bad_request(
            Code::InvalidInput,
            "Invalid query",
        ));
    }
    let (page, limit) = paging(q.page.as_deref(), q.limit.as_deref(), 10);
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let query = serde_json::to_string(&(status, page, limit, search)).unwrap_or_default();
    if let Some(hit) = state.local.lists.get(&query) {
        return Ok(json_response(hit));
    }
    let generation = cache::list_generation(&state).await;
    let cache_key = generation.map(|g| state.keys.events_list_cache(g, &query));
    if let Some(key) = &cache_key
        && let Some(hit) = cache::get(&state, key).await
    {
        let hit = Bytes::from(hit);
        state.local.lists.insert(query, hit.clone());
        return Ok(json_response(hit));
    }
    async {
        let patterns = match search {
            Some(s) => Some(db::search_patterns(&state.db, s).await?),
            None => None,
        };
        let filter = ListFilter { status, patterns: patterns.as_deref(), limit, offset: (page - 1) * limit };
        let (events, total) = tokio::try_join!(db::list(&state.db, &filter), db::count(&state.db, &filter))?;
        let body = json!({
            "events": events,
            "pagination": { "page": page, "limit": limit, "total": total, "totalPages": total_pages(total, limit) },
        })
        .to_string();
        if let Some(key) = &cache_key {
            cache::put(&state, key, &body, cache::LIST_TTL_SECS).await;
        }
        let body = Bytes::from(body);
        state.local.lists.insert(query, body.clone());
        Ok(json_response(body))
    }
    .await
    .or_message("이벤트 목록을 불러오는데 실패했습니다.")
}

async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let id = path_id(&id, "Invalid id format")?;
    if let Some(hit) = state.local.details.get(&id) {
        return Ok(json_response(hit));
    }
    let key = state.keys.event_detail_cache(id);
    if let Some(hit) = cache::get(&state, &key).await {
        let hit = Bytes::from(hit);
        state.local.details.insert(id, hit.clone());
        return Ok(json_response(hit));
    }
    async {
        let Some(event) = db::find(&state.db, id).await? else {
            return Err(Error::not_found(
                Code::EventNotFound,
                "이벤트를 찾을 수 없습니다.",
            ));
        };
        let ticket_types = db::ticket_types(&state.db, id).await?;
        let body = json!({ "event": event, "ticketTypes": ticket_types }).to_string();
        cache::put(&state, &key, &body, cache::DETAIL_TTL_SECS).await;
        let body = Bytes::from(body);
        state.local.details.insert(id, body.clone());
        Ok(json_response(body))
    }
    .await
    .or_message("이벤트 정보를 불러오는데 실패했습니다.")
}

async fn ticket_types(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid eventId format")?;
    async {
        Ok(Json(
            json!({ "ticketTypes": db::ticket_types(&state.db, id).await? }),
        ))
    }
    .await
    .or_message("티켓 정보를 불러오는데 실패했습니다.")
}

async fn availability(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid ticketTypeId format")?;
    async {
        match db::availability(&state.db, id).await? {
            Some((available, total)) => Ok(Json(
                json!({ "available_quantity": available, "total_quantity": total }),
            )),
            None => Err(Error::not_found(
                Code::TicketTypeNotFound,
                "티켓 타입을 찾을 수 없습니다.",
            )),
        }
    }
    .await
    .or_message("재고 확인에 실패했습니다.")
}
