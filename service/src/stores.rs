//! Connections to PostgreSQL and Redis, and the migrator.

use std::time::Duration;

use fred::{
    clients::Pool as RedisPool,
    prelude::{Builder, ClientLike, Config as RedisConfig, ReconnectPolicy},
};
use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A bounded pool: when every connection is busy a request waits `DB_ACQUIRE_TIMEOUT_MS` and then gets
/// 503 instead of opening more connections (the original died of "remaining connection slots").
/// Every connection starts with `statement_timeout` and `idle_in_transaction_session_timeout`, so a
/// statement stuck behind a lock, or a transaction left open, gives its connection back in bounded
/// time instead of draining the pool.
pub fn db_pool(cfg: &Config) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = cfg.database_url.parse()?;
    let options = options.options(session_timeouts(cfg));
    Ok(PgPoolOptions::new()
        .max_connections(cfg.db_pool_max)
        .min_connections(0)
        .acquire_timeout(Duration::from_millis(cfg.db_acquire_timeout_ms))
        .idle_timeout(Some(Duration::from_secs(300)))
        // sqlx pings every connection it hands out by default: one more round trip per statement
        // on the hot path (a seat hold is one statement). Only a connection that sat idle is pinged,
        // which is when a database restart or a dropped link would have broken it unseen.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// A pooled connection idle this long is pinged before use (see `db_pool`).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The per-session settings sent in the startup packet (no extra round trip); 0 disables a timeout.
pub fn session_timeouts(cfg: &Config) -> [(&'static str, String); 2] {
    [
        ("statement_timeout", cfg.db_statement_timeout_ms.to_string()),
        (
            "idle_in_transaction_session_timeout",
            cfg.db_idle_in_tx_timeout_ms.to_string(),
        ),
    ]
}

/// Connections of the Redis pool. `WAIT` blocks its connection until a replica acknowledges (a
/// replica round trip): with `REDIS_WAIT_REPLICAS` the pool gets more connections, so joins waiting
/// for their replica do not queue behind each other's waits.
fn redis_pool_size(cfg: &Config) -> usize {
    if cfg.redis_wait_replicas > 0 { 16 } else { 4 }
}

/// A Redis pool that never blocks a request for long: commands time out after 1 s during an outage
/// (the caller answers 503) and the pool reconnects in the background, forever.
pub async fn redis_pool(cfg: &Config) -> anyhow::Result<RedisPool> {
    let mut rc = RedisConfig::from_url(&cfg.redis_url)?;
    rc.fail_fast = false;
    let pool = Builder::from_config(rc)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_millis(1000))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 2;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
        .build_pool(redis_pool_size(cfg))?;
    pool.connect_pool();
    if tokio::time::timeout(Duration::from_secs(5), pool.wait_for_connect())
        .await
        .is_err()
    {
        tracing::warn!("redis not reachable yet; continuing, it will reconnect in the background");
    }
    Ok(pool)
}

/// Applies migrations on a connection of its own without the statement timeout: a migration may
/// rightly run longer, and a replica waiting for another's migration lock must not give up after 5 s.
/// The connection is closed afterwards so the setting never returns to the pool.
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    let mut conn = db.acquire().await?.detach();
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut conn)
        .await?;
    let applied = MIGRATOR.run(&mut conn).await;
    conn.close().await.ok();
    applied?;
    Ok(())
}
