//! Distinct users per event room across replicas. Two keys per event (one cluster slot):
//! - a hash user -> open sockets in the room, summed over replicas (its length is the user count);
//! - a sorted set user -> expiry (Redis clock), pushed forward by every replica that has the user,
//!   on each join and on a heartbeat every `PRESENCE_TTL_SECONDS / 3`.
//!
//! A replica that is SIGKILLed never sends its leaves, so its users' expiries lapse within the TTL;
//! every change, heartbeat and count first drops lapsed users from both keys, so their counts leave
//! `room-info` and `traffic_logs` instead of inflating them for the rest of the sale. Each replica
//! keeps its own sockets per room in memory (`room_sockets`), the source of its heartbeats.

use std::{sync::LazyLock, time::Duration};

use fred::{clients::Pool, types::scripts::Script};
use tiketi_core::keys::Keys;
use uuid::Uuid;

use crate::state::AppState;

/// Drops users whose expiry passed (their replica stopped vouching for them). Shared head of every
/// script: KEYS[1] = counts hash, KEYS[2] = expiries; defines `now` (ms) and `dropped`.
const PRUNE: &str = r#"
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
    for _, u in ipairs(lapsed) do redis.call('HDEL', KEYS[1], u) end
    if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
    local dropped = #lapsed
"#;

/// ARGV: user, socket delta (1, -1 or 0 to just count), ttl ms. Returns {users, dropped}.
static CHANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{PRUNE}{}",
        r#"
        local d = tonumber(ARGV[2])
        if d > 0 then
            redis.call('HINCRBY', KEYS[1], ARGV[1], d)
            redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
        elseif d < 0 then
            local n = redis.call('HINCRBY', KEYS[1], ARGV[1], d)
            if n <= 0 then
                redis.call('HDEL', KEYS[1], ARGV[1])
                redis.call('ZREM', KEYS[2], ARGV[1])
            end
        end
        redis.call('EXPIRE', KEYS[1], 3600)
        redis.call('EXPIRE', KEYS[2], 3600)
        return {redis.call('HLEN', KEYS[1]), dropped}
        "#
    ))
});

/// ARGV: ttl ms, then (user, this replica's sockets) pairs. Pushes the users' expiries forward and
/// counts a user again whose entry was lost (Redis restarted, or an outage outlasted the TTL).
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "{PRUNE}{}",
        r#"
        local expiry = now + tonumber(ARGV[1])
        for i = 2, #ARGV, 2 do
            if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
                redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
            end
            redis.call('ZADD', KEYS[2], expiry, ARGV[i])
        end
        redis.call('EXPIRE', KEYS[1], 3600)
        redis.call('EXPIRE', KEYS[2], 3600)
        return {redis.call('HLEN', KEYS[1]), dropped}
        "#
    ))
});

/// Users per heartbeat script call (bounds the script's run time in a 10k-user room).
const REFRESH_BATCH: usize = 500;

fn keys_of(keys: &Keys, event: Uuid) -> Vec<String> {
    tiketi_core::keys::together(keys.presence_pair(event))
}

/// The user count of a script's `{users, dropped}` answer.
fn first(counts: &[i64]) -> i64 {
    counts.first().copied().unwrap_or(0)
}

fn ttl_ms(ttl: Duration) -> String {
    ttl.as_millis().to_string()
}

/// Adds (`delta` = 1) or removes (-1) one socket of `user`, or only counts (0); returns the users now
/// present.
pub async fn change(
    state: &AppState,
    event: Uuid,
    user: Uuid,
    delta: i64,
) -> Result<i64, fred::error::Error> {
    state.realtime.presence.change(event, user, delta);
    let counts: Vec<i64> = CHANGE
        .evalsha_with_reload(
            state.redis.next(),
            keys_of(&state.keys, event),
            vec![
                user.to_string(),
                delta.to_string(),
                ttl_ms(state.realtime.presence.ttl()),
            ],
        )
        .await?;
    Ok(first(&counts))
}

/// The users present in `event`'s room, lapsed ones dropped first (the traffic sampler's figure).
pub async fn count(
    redis: &Pool,
    keys: &Keys,
    event: Uuid,
    ttl: Duration,
) -> Result<i64, fred::error::Error> {
    let counts: Vec<i64> = CHANGE
        .evalsha_with_reload(
            redis.next(),
            keys_of(keys, event),
            vec![Uuid::nil().to_string(), "0".into(), ttl_ms(ttl)],
        )
        .await?;
    Ok(first(&counts))
}

/// The users present in `event`'s room who are also waiting in its queue (ZINTERCARD of the two
/// sorted sets, one cluster slot): the traffic sampler counts them once in the demand.
pub async fn also_queued(
    redis: &Pool,
    keys: &Keys,
    event: Uuid,
) -> Result<i64, fred::error::Error> {
    use fred::{interfaces::ClientLike, types::ClusterHash, types::CustomCommand};
    let cmd = CustomCommand::new_static("ZINTERCARD", ClusterHash::FirstKey, false);
    redis
        .custom(
            cmd,
            vec![
                "2".to_string(),
                keys.presence_seen(event),
                keys.queue(event),
            ],
        )
        .await
}

/// Vouches for this replica's users every TTL / 3 (two missed beats are tolerated) and sends the new
/// `room-info` when lapsed users of a dead replica were dropped. Runs beside the server.
pub async fn heartbeat(state: AppState) {
    let mut tick = tokio::time::interval(state.realtime.presence.ttl() / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (event, users) in state.realtime.presence.snapshot() {
            match refresh(&state, event, &users).await {
                Ok((n, dropped)) if dropped > 0 => {
                    if let Some(io) = state.realtime.io() {
                        state.realtime.room_info.update(&io, event, n).await
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "presence heartbeat skipped"),
            }
        }
    }
}

async fn refresh(
    state: &AppState,
    event: Uuid,
    users: &[(Uuid, i64)],
) -> Result<(i64, i64), fred::error::Error> {
    let mut out = (0, 0);
    for batch in users.chunks(REFRESH_BATCH) {
        let mut args = Vec::with_capacity(1 + batch.len() * 2);
        args.push(ttl_ms(state.realtime.presence.ttl()));
        for (user, sockets) in batch {
            args.push(user.to_string());
            args.push(sockets.to_string());
        }
        let counts: Vec<i64> = REFRESH
            .evalsha_with_reload(state.redis.next(), keys_of(&state.keys, event), args)
            .await?;
        out = (first(&counts), out.1 + counts.get(1).copied().unwrap_or(0));
    }
    Ok(out)
}
