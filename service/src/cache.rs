//! Read-through response cache in Redis. A cache failure never fails a request: reads fall back to
//! PostgreSQL and the short TTLs bound staleness if an invalidation is lost.

use fred::prelude::{Expiration, KeysInterface};
use uuid::Uuid;

use crate::state::AppState;

pub const LIST_TTL_SECS: i64 = 30;
pub const DETAIL_TTL_SECS: i64 = 10;

pub async fn get(state: &AppState, key: &str) -> Option<String> {
    match state.redis.get::<Option<String>, _>(key).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "cache read skipped");
            None
        }
    }
}

pub async fn put(state: &AppState, key: &str, value: &str, ttl_secs: i64) {
    if let Err(e) = state
        .redis
        .set::<(), _, _>(key, value, Some(Expiration::EX(ttl_secs)), None, false)
        .await
    {
        tracing::debug!(error = %e, "cache write skipped");
    }
}

/// The current generation of the event list cache (0 when unknown or Redis is down).
pub async fn list_generation(state: &AppState) -> Option<i64> {
    state
        .redis
        .get::<Option<i64>, _>(state.keys.events_list_generation())
        .await
        .ok()
        .map(|g| g.unwrap_or(0))
}

/// Drops every cached event list page at once by moving to a new generation.
pub async fn invalidate_lists(state: &AppState) {
    if let Err(e) = state
        .redis
        .incr::<i64, _>(state.keys.events_list_generation())
        .await
    {
        tracing::warn!(error = %e, "event list cache not invalidated; it expires within {LIST_TTL_SECS}s");
    }
}

pub async fn invalidate_event(state: &AppState, event_id: Uuid) {
    if let Err(e) = state
        .redis
        .del::<i64, _>(state.keys.event_detail_cache(event_id))
        .await
    {
        tracing::warn!(error = %e, "event cache not invalidated; it expires within {DETAIL_TTL_SECS}s");
    }
}
