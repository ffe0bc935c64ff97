//! Virtual waiting room (Redis): a FIFO queue per event and a set of admitted users whose admissions
//! expire one by one. Admission from the queue runs in the realtime layer.

pub mod http;

use std::sync::LazyLock;

use fred::{
    prelude::{KeysInterface, SortedSetsInterface},
    types::scripts::Script,
};
use uuid::Uuid;

use crate::{error::Error, state::AppState};

/// How long an admission lasts without renewal.
pub const ADMISSION_TTL_MS: i64 = 5 * 60 * 1000;
/// Assumed admissions per second for the wait estimate until a measured rate is available.
pub const DEFAULT_ADMISSION_RATE: i64 = 50;

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("check.lua")));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub queued: bool,
    /// 1-based place in the queue; 0 when not queued.
    pub position: i64,
    pub current_users: i64,
    pub queue_size: i64,
}

pub fn estimated_wait_secs(position: i64) -> i64 {
    (position + DEFAULT_ADMISSION_RATE - 1) / DEFAULT_ADMISSION_RATE
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The event's threshold; `None` when the event does not exist.
pub async fn threshold(state: &AppState, event_id: Uuid) -> Result<Option<i64>, Error> {
    let t: Option<i32> = sqlx::query_scalar("SELECT queue_threshold FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(&state.db)
        .await?;
    Ok(t.map(i64::from))
}

/// Enters the user: admitted at once while there is room and nobody waits, else queued (keeping an
/// existing place on refresh).
pub async fn check(
    state: &AppState,
    event_id: Uuid,
    user_id: Uuid,
    threshold: i64,
) -> Result<Position, Error> {
    let keys = vec![state.keys.queue(event_id), state.keys.active(event_id)];
    let args = vec![
        user_id.to_string(),
        now_ms().to_string(),
        threshold.to_string(),
        ADMISSION_TTL_MS.to_string(),
    ];
    let r: Vec<i64> = CHECK
        .evalsha_with_reload(state.redis.next(), keys, args)
        .await?;
    match r.as_slice() {
        [q, p, c, s] => Ok(Position {
            queued: *q == 1,
            position: *p,
            current_users: *c,
            queue_size: *s,
        }),
        _ => Err(Error::internal(anyhow::anyhow!(
            "unexpected queue script reply {r:?}"
        ))),
    }
}

/// The user's place without entering.
pub async fn status(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<Position, Error> {
    let (q, a) = (state.keys.queue(event_id), state.keys.active(event_id));
    let rank: Option<i64> = state.redis.zrank(&q, user_id.to_string(), false).await?;
    let queue_size: i64 = state.redis.zcard(&q).await?;
    let current_users: i64 = state
        .redis
        .zcount(&a, now_ms() as f64, f64::INFINITY)
        .await?;
    let position = rank.map_or(0, |r| r + 1);
    Ok(Position {
        queued: position > 0,
        position,
        current_users,
        queue_size,
    })
}

pub async fn leave(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<(), Error> {
    let _: i64 = state
        .redis
        .zrem(state.keys.queue(event_id), user_id.to_string())
        .await?;
    let _: i64 = state
        .redis
        .zrem(state.keys.active(event_id), user_id.to_string())
        .await?;
    Ok(())
}

pub async fn clear(state: &AppState, event_id: Uuid) -> Result<(), Error> {
    let _: i64 = state
        .redis
        .del(vec![
            state.keys.queue(event_id),
            state.keys.active(event_id),
        ])
        .await?;
    Ok(())
}
