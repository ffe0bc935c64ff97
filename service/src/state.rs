//! The one shared state of the process, cloned into every handler and job.

use std::{sync::Arc, time::Instant};

use fred::clients::Pool as RedisPool;
use sqlx::PgPool;
use tiketi_core::keys::Keys;

use crate::{auth::jwt::JwtKeys, config::Config, metrics::Metrics};

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What every handler, job and socket shares. Behind one `Arc`: axum clones the state for every
/// extractor and middleware layer of every request, and cloning the fields themselves (pools, four
/// moka caches, the Socket.IO handle, several `Arc`s) was ≈ 3 % of the service's samples in the
/// hold path's profile (clone plus drop); a clone is now one reference count.
pub struct Shared {
    pub db: PgPool,
    pub redis: RedisPool,
    pub keys: Keys,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub metrics: &'static Metrics,
    /// The Socket.IO side: push handle, room-info coalescer, presence, flood limits.
    pub realtime: crate::realtime::Realtime,
    pub started: Instant,
    /// The in-process tier of the response cache.
    pub local: crate::cache::Local,
    /// Skips optional Redis steps at once during an outage (`breaker`).
    pub redis_breaker: Arc<crate::breaker::Breaker>,
    /// The payment provider (the mock; `payments::provider` documents the interface).
    pub payments: Arc<dyn crate::payments::provider::Provider>,
    /// Bounded password hashing for the request paths.
    pub hasher: crate::auth::password::Hasher,
    /// Last observed dependency state and the draining flag (readiness).
    pub health: crate::health::deps::Deps,
}

impl AppState {
    pub fn new(db: PgPool, redis: RedisPool, jwt: Arc<JwtKeys>, config: Config) -> Self {
        Self(Arc::new(Shared::new(db, redis, jwt, config)))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    fn new(db: PgPool, redis: RedisPool, jwt: Arc<JwtKeys>, config: Config) -> Self {
        let payments = Arc::new(crate::payments::provider::MockProvider::new(
            config.payment_delay_min_ms,
            config.payment_delay_max_ms,
        ));
        let hasher = crate::auth::password::Hasher::new(
            config.password_hash_concurrency,
            std::time::Duration::from_millis(config.password_hash_wait_ms),
        );
        Self {
            db,
            redis,
            keys: Keys::new(config.redis_prefix.clone()),
            jwt,
            realtime: crate::realtime::Realtime::new(&config),
            config: Arc::new(config),
            metrics: crate::metrics::global(),
            started: Instant::now(),
            local: crate::cache::Local::default(),
            payments,
            redis_breaker: Arc::default(),
            hasher,
            health: crate::health::deps::Deps::default(),
        }
    }
}
