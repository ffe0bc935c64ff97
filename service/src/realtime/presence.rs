//! Distinct users per event room across replicas: a Redis hash user -> open sockets in the room.
//! A replica that crashes leaves its counts behind until the hash expires (1 h after its last change).

use std::sync::LazyLock;

use fred::types::scripts::Script;
use uuid::Uuid;

use super::RealtimeCtx;

static CHANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
        local n = redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[2]))
        if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
        redis.call('EXPIRE', KEYS[1], 3600)
        return redis.call('HLEN', KEYS[1])
        "#,
    )
});

/// Adds (`delta` = 1) or removes (-1) one socket of `user`; returns the users now present.
pub async fn change(
    ctx: &RealtimeCtx,
    event: Uuid,
    user: Uuid,
    delta: i64,
) -> Result<i64, fred::error::Error> {
    CHANGE
        .evalsha_with_reload(
            ctx.redis.next(),
            vec![ctx.keys.presence(event)],
            vec![user.to_string(), delta.to_string()],
        )
        .await
}
