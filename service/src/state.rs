//! The one shared state of the process, cloned into every handler and job.

use std::{sync::Arc, time::Instant};

use fred::clients::Pool as RedisPool;
use sqlx::PgPool;
use tiketi_core::keys::Keys;

use crate::{auth::jwt::JwtKeys, config::Config, metrics::Metrics};

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What every handler, job and socket shares. Behind one `Arc`: axum clones the state for every
/// extractor and middleware layer of every request, so a clone must be one reference count, not a
/// clone of each pool, cache and handle.
pub struct Shared {
    pub db: PgPool,
    pub redis: RedisPool,
    pub keys: Keys,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub metrics: Arc<Metrics>,
    /// The Socket.IO side: push handle, room-info coalescer, presence, flood limits.
    pub realtime: crate::realtime::Realtime,
    pub started: Instant,
    /// The in-process tier of the response cache.
    pub local: crate::cache::memory::Memory,
    /// Skips optional Redis steps at once during an outage (`breaker`).
    pub redis_breaker: Arc<crate::breaker::Breaker>,
    /// The waiting room's gate check on buying has its own breaker: an optional step's timeout does
    /// not make buyers unproven, and an open breaker never means "skip the queue" (`queue::admission`).
    pub gate_breaker: crate::breaker::Breaker,
    /// The waiting room's gates this replica keeps in memory (`queue::gate`; read by `queue::limit`).
    pub gates: crate::queue::Gates,
    /// Admissions this replica saw proven, for buying through a Redis outage (`queue::Verdict`).
    pub admissions: crate::queue::Remembered,
    /// The payment provider (the mock; `payments::provider` documents the interface).
    pub payments: Arc<dyn crate::payments::provider::Provider>,
    /// Bounded password hashing for the request paths.
    pub hasher: crate::auth::password::Hasher,
    /// Last observed dependency state and the draining flag (readiness).
    pub health: crate::health::deps::DependencyState,
    /// Seat map snapshots, one per event (`seats::snapshot`).
    pub seat_maps: crate::seats::snapshot::SeatMaps,
    /// News views counted here and not yet written (`news::views`).
    pub news_views: crate::news::pending::Views,
    /// Wakes the event-status job early: this replica changed an event's dates or sale window
    /// (`jobs::event_status`).
    pub event_status_wake: tokio::sync::Notify,
    /// The per-event seat hold writers (`reservations::batch`).
    pub hold_batches: crate::reservations::batch::Batcher,
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
        let metrics = Arc::new(Metrics::default());
        let payments = Arc::new(crate::payments::provider::MockProvider::new(
            config.payment_delay_min_ms,
            config.payment_delay_max_ms,
        ));
        let hasher = crate::auth::password::Hasher::new(
            config.password_hash_concurrency,
            std::time::Duration::from_millis(config.password_hash_wait_ms),
            metrics.clone(),
        );
        let seat_maps = crate::seats::snapshot::SeatMaps::new(std::time::Duration::from_millis(
            config.seatmap_revalidate_ms,
        ));
        let hold_batches = crate::reservations::batch::Batcher::on_pool(
            crate::reservations::batch::Limits::of(&config),
            db.clone(),
        );
        Self {
            db,
            redis,
            keys: Keys::new(config.redis_prefix.clone()),
            jwt,
            realtime: crate::realtime::Realtime::new(&config, metrics.clone()),
            config: Arc::new(config),
            metrics: metrics.clone(),
            started: Instant::now(),
            local: crate::cache::memory::Memory::default(),
            payments,
            redis_breaker: Arc::new(crate::breaker::Breaker::new(metrics.clone())),
            gate_breaker: crate::breaker::Breaker::new(metrics.clone()),
            gates: Default::default(),
            admissions: Default::default(),
            hasher,
            health: crate::health::deps::DependencyState::new(metrics.clone()),
            seat_maps,
            news_views: crate::news::pending::Views::default(),
            event_status_wake: tokio::sync::Notify::new(),
            hold_batches,
        }
    }
}
