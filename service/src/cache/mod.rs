//! Read-through response cache in two tiers: a one-second copy in process memory, then Redis
//! (shared by the replicas, invalidated on every change). A cache failure never fails a request:
//! reads fall back to PostgreSQL and the short TTLs bound staleness if an invalidation is lost.
//!
//! The memory tier exists for the opening minute, when most requests are the same few pages: a hit
//! costs no network round trip at all. Its one second is the only staleness another replica's
//! change can add (this replica's own changes clear it at once), well inside the Redis tier's TTLs.

pub mod memory;

use fred::prelude::{Expiration, KeysInterface};
use uuid::Uuid;

use crate::state::AppState;

pub const LIST_TTL_SECS: i64 = 30;
pub const DETAIL_TTL_SECS: i64 = 10;

pub async fn get(state: &AppState, key: &str) -> Option<String> {
    match state
        .redis_breaker
        .run(state.redis.get::<Option<String>, _>(key))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = ?e, "cache read skipped");
            None
        }
    }
}

pub async fn put(state: &AppState, key: &str, value: &str, ttl_secs: i64) {
    if let Err(e) = state
        .redis_breaker
        .run(
            state
                .redis
                .set::<(), _, _>(key, value, Some(Expiration::EX(ttl_secs)), None, false),
        )
        .await
    {
        tracing::debug!(error = ?e, "cache write skipped");
    }
}

/// The current generation of the event list cache (0 when unknown or Redis is down).
pub async fn list_generation(state: &AppState) -> Option<i64> {
    state
        .redis_breaker
        .run(
            state
                .redis
                .get::<Option<i64>, _>(state.keys.events_list_generation()),
        )
        .await
        .ok()
        .map(|g| g.unwrap_or(0))
}

/// Drops every cached event list page at once by moving to a new generation.
pub async fn invalidate_lists(state: &AppState) {
    state.local.lists.invalidate_all();
    if let Err(e) = state
        .redis_breaker
        .run(
            state
                .redis
                .incr::<i64, _>(state.keys.events_list_generation()),
        )
        .await
    {
        tracing::warn!(error = ?e, "event list cache not invalidated; it expires within {LIST_TTL_SECS}s");
    }
}

pub async fn invalidate_event(state: &AppState, event_id: Uuid) {
    state.local.details.invalidate(&event_id);
    if let Err(e) = state
        .redis_breaker
        .run(
            state
                .redis
                .del::<i64, _>(state.keys.event_detail_cache(event_id)),
        )
        .await
    {
        tracing::warn!(error = ?e, "event cache not invalidated; it expires within {DETAIL_TTL_SECS}s");
    }
}
