//! The memory tier of the response cache (`cache`): bodies kept in this process for a second, and
//! each token user's role for a few. Apart from the Redis tier so `AppState` can hold it without
//! depending on the cache's functions, which take the state.

use std::time::Duration;

use axum::body::Bytes;
use uuid::Uuid;

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
