//! A lease in Redis that lets exactly one replica run a singleton loop (the waiting-room admission).
//! The holder renews it every tick; if the holder dies the lease lapses after its TTL and another
//! replica takes over. Renewal and release compare the holder's random token (Lua), so a replica whose
//! lease already lapsed can never extend or delete its successor's.

use std::{sync::LazyLock, time::Duration};

use fred::{
    prelude::{Expiration, KeysInterface, SetOptions},
    types::scripts::Script,
};

use crate::state::AppState;

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    )
});
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

pub struct Lease {
    key: String,
    token: String,
    ttl: Duration,
    held: bool,
}

impl Lease {
    pub fn new(state: &AppState, name: &str, ttl: Duration) -> Self {
        Self {
            key: state.keys.lease(name),
            token: uuid::Uuid::new_v4().to_string(),
            ttl,
            held: false,
        }
    }

    /// Renews the lease if held, else tries to take it. True while this replica holds it.
    pub async fn hold(&mut self, state: &AppState) -> bool {
        let ttl_ms = self.ttl.as_millis() as i64;
        let result: Result<bool, fred::error::Error> = if self.held {
            RENEW
                .evalsha_with_reload::<i64, _, _>(
                    state.redis.next(),
                    vec![self.key.clone()],
                    vec![self.token.clone(), ttl_ms.to_string()],
                )
                .await
                .map(|n| n == 1)
        } else {
            state
                .redis
                .set::<Option<String>, _, _>(
                    &self.key,
                    &self.token,
                    Some(Expiration::PX(ttl_ms)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map(|r| r.is_some())
        };
        let now_held = result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, lease = %self.key, "lease not renewed");
            false
        });
        if now_held != self.held {
            tracing::info!(lease = %self.key, held = now_held, "lease changed hands");
        }
        self.held = now_held;
        now_held
    }

    pub async fn release(&mut self, state: &AppState) {
        if self.held {
            let _: Result<i64, _> = RELEASE
                .evalsha_with_reload(
                    state.redis.next(),
                    vec![self.key.clone()],
                    vec![self.token.clone()],
                )
                .await;
            self.held = false;
        }
    }
}
