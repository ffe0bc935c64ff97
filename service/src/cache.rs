//! Read-through response cache in two tiers: a one-second copy in process memory, then Redis
//! (shared by the replicas, invalidated on every change). A cache failure never fails a request:
//! reads fall back to PostgreSQL and the short TTLs bound staleness if an invalidation is lost.
//!
//! The memory tier exists for the opening minute, when most requests are the same few pages: a hit
//! costs no network round trip at all. Its one second is the only staleness another replica's
//! change can add (this replica's own changes clear it at once), well inside the Redis tier's TTLs.

use std::time::Duration;

use axum::body::Bytes;
use fred::prelude::{Expiration, KeysInterface};
use uuid::Uuid;

use crate::state::AppState;

pub const LIST_TTL_SECS: i64 = 30;
pub const DETAIL_TTL_SECS: i64 = 10;
pub const LOCAL_TTL: Duration = Duration::from_secs(1);
/// Entries per memory tier (bodies are a few KiB; search pages are many but rarely repeated).
const LOCAL_CAPACITY: u64 = 4096;
/// Bytes of list pages kept in memory (a `limit=1000` page is hundreds of KiB, so a count of
/// entries alone would not bound it).
const LOCAL_LIST_BYTES: u64 = 16 * 1024 * 1024;

/// Response bodies kept in this process for `LOCAL_TTL`.
#[derive(Clone)]
pub struct Memory {
    pub lists: moka::sync::Cache<String, Bytes>,
    pub details: moka::sync::Cache<Uuid, Bytes>,
    /// Each token user's current role from the database (`None`: the user is gone), for
    /// `ROLE_TTL`: a demoted admin loses admin routes within seconds, not when the 7-day token
    /// expires, and a request costs no user lookup in the hot minute.
    pub roles: moka::sync::Cache<Uuid, Option<String>>,
}

/// How long a user's role is trusted without asking the database again.
pub const ROLE_TTL: Duration = Duration::from_secs(5);

fn tier<K, V>() -> moka::sync::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(LOCAL_CAPACITY)
        .time_to_live(LOCAL_TTL)
        .build()
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            lists: moka::sync::Cache::builder()
                .max_capacity(LOCAL_LIST_BYTES)
                .weigher(|k: &String, v: &Bytes| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(LOCAL_TTL)
                .build(),
            details: tier(),
            roles: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ROLE_TTL)
                .build(),
        }
    }
}

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
