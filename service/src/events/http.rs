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

/// Every status an event can have (the column's check constraint).
const STATUSES: &[&str] = &["upcoming", "on_sale", "sold_out", "ended", "cancelled"];
/// Page sizes worth caching: the default, the admin console's `limit=1000`, a few round sizes.
const CACHED_LIMITS: &[i64] = &[10, 20, 50, 100, 1000];
/// Pages past this are read straight from PostgreSQL.
const CACHED_PAGES: i64 = 20;
/// Longer search texts are read straight from PostgreSQL.
const CACHED_SEARCH_CHARS: usize = 64;

/// Where a list page may be cached. Cache keys are built only from the normalised parameters
/// (unknown ones are dropped by the extractor), and only a bounded set of them reaches Redis:
/// anything else would let a client fill Redis, whose `noeviction` then refuses the waiting
/// room's writes.
#[derive(Debug, PartialEq, Eq)]
pub enum ListTier {
    /// In memory and in Redis (a few hundred possible pages per list generation, each bounded by
    /// the size of the event list).
    Shared,
    /// In this replica's memory only (bounded in bytes): searches, whose texts are unbounded.
    Local,
    /// Not cached: outside the parameters the frontend sends.
    Uncached,
}

pub fn list_tier(status: Option<&str>, page: i64, limit: i64, search: Option<&str>) -> ListTier {
    if status.is_some_and(|s| !STATUSES.contains(&s))
        || page > CACHED_PAGES
        || !CACHED_LIMITS.contains(&limit)
    {
        return ListTier::Uncached;
    }
    match search {
        None => ListTier::Shared,
        Some(q) if q.chars().count() <= CACHED_SEARCH_CHARS => ListTier::Local,
        Some(_) => ListTier::Uncached,
    }
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
    let tier = list_tier(status, page, limit, search);
    let query = serde_json::to_string(&(status, page, limit, search)).unwrap_or_default();
    if tier != ListTier::Uncached
        && let Some(hit) = state.local.lists.get(&query)
    {
        return Ok(json_response(hit));
    }
    let generation = match tier {
        ListTier::Shared => cache::list_generation(&state).await,
        ListTier::Local | ListTier::Uncached => None,
    };
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
        if tier != ListTier::Uncached {
            state.local.lists.insert(query, body.clone());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tier_caches_only_the_normal_parameters() {
        assert_eq!(list_tier(None, 1, 10, None), ListTier::Shared);
        assert_eq!(list_tier(Some("on_sale"), 2, 1000, None), ListTier::Shared);
        assert_eq!(
            list_tier(Some("on_sale"), 1, 10, Some("방탄")),
            ListTier::Local
        );
        assert_eq!(list_tier(Some("onsale"), 1, 10, None), ListTier::Uncached);
        assert_eq!(list_tier(None, 1, 11, None), ListTier::Uncached);
        assert_eq!(
            list_tier(None, CACHED_PAGES + 1, 10, None),
            ListTier::Uncached
        );
        let long = "가".repeat(CACHED_SEARCH_CHARS + 1);
        assert_eq!(list_tier(None, 1, 10, Some(&long)), ListTier::Uncached);
    }

    #[test]
    fn list_paging_clamps_into_range() {
        assert_eq!(paging(None, None, 10), (1, 10));
        assert_eq!(paging(Some("0"), Some("-5"), 10), (1, 10));
        assert_eq!(paging(Some(" 3 "), Some("5000"), 10), (3, MAX_PAGE_SIZE));
        assert_eq!(paging(Some("x"), Some("1.5"), 20), (1, 20));
    }
}
