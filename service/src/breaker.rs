//! A circuit breaker for Redis steps. One instance (`Shared::redis_breaker`) serves every optional
//! Redis step of a request (rate limits, cache reads/writes/invalidations, cross-replica
//! publishes). During an outage each such step otherwise waits out the command timeout on its own
//! — a hold took ~9 s — while none of them is needed for correctness. The first failure opens the
//! breaker for `OPEN_FOR`; while open, the steps are skipped at once (rate limits fail open,
//! publishes stay local); then one request probes, and success closes it again.
//!
//! The waiting room's gate check on buying is not optional and has its own instance
//! (`Shared::gate_breaker`), so a cache or rate-limit timeout does not touch it. While that one is
//! open the check is not skipped but answered from the admissions this replica saw proven, else
//! "unproven", and the hold is refused (`queue::enforce`): the gate fails closed.
//!
//! Endpoints that cannot work without Redis (the waiting room's check and status) still try, answer
//! 503 + `Retry-After` when Redis is down, and their first success closes the breaker again.
//! Publishes while open reach this replica's sockets only; their outcome is not recorded (the
//! Redis adapter reconnects and re-subscribes on its own schedule).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use fred::error::{Error as RedisError, ErrorKind};

use crate::metrics::Metrics;

/// How long the breaker stays open after a failure before one request probes again.
pub const OPEN_FOR: Duration = Duration::from_secs(2);

pub struct Breaker {
    /// 0: closed; else the instant (ms) until which it is open.
    open_until_ms: AtomicI64,
    /// A probe is in flight (half-open): everyone else still skips.
    probing: AtomicBool,
    metrics: Arc<Metrics>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Errors that say "Redis is unreachable", as opposed to a bad command.
fn is_outage(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure
    )
}

impl Breaker {
    /// A closed breaker counting its openings and skips in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            open_until_ms: AtomicI64::new(0),
            probing: AtomicBool::new(false),
            metrics,
        }
    }

    /// Whether a Redis step may run now (closed, or this caller is the half-open probe).
    pub fn allow(&self) -> bool {
        self.allow_at(now_ms())
    }

    fn allow_at(&self, now: i64) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        now >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    /// Gives the half-open probe slot back without a verdict.
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    pub fn success(&self) {
        self.open_until_ms.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    pub fn failure(&self) {
        self.failure_at(now_ms());
    }

    fn failure_at(&self, now: i64) {
        let was_closed = self
            .open_until_ms
            .swap(now + OPEN_FOR.as_millis() as i64, Ordering::AcqRel)
            == 0;
        self.probing.store(false, Ordering::Release);
        if was_closed {
            self.metrics.redis_breaker_opened.inc();
            tracing::warn!(
                "redis unreachable: breaker open, skipping its steps for {OPEN_FOR:?} at a time"
            );
        }
    }

    /// Runs a step that cannot be skipped (the waiting room needs Redis) and records its outcome:
    /// its success is what closes the breaker soonest after Redis returns.
    pub async fn observe<T>(
        &self,
        step: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let r = step.await;
        match &r {
            Err(e) if is_outage(e) => self.failure(),
            _ => self.success(),
        }
        r
    }

    /// Runs an optional Redis step through the breaker: `Err(None)` when skipped because it is open,
    /// `Err(Some(e))` when the step failed.
    pub async fn run<T>(
        &self,
        step: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Option<RedisError>> {
        if !self.allow() {
            self.metrics.redis_steps_skipped.inc();
            return Err(None);
        }
        match step.await {
            Ok(v) => {
                self.success();
                Ok(v)
            }
            Err(e) => {
                if is_outage(&e) {
                    self.failure();
                } else {
                    self.success();
                }
                Err(Some(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_on_failure_skips_then_lets_one_probe() {
        let b = Breaker::new(Arc::default());
        assert!(b.allow_at(0));
        b.failure_at(1_000);
        assert!(b.is_open());
        assert!(!b.allow_at(1_500), "open: skipped");
        let later = 1_000 + OPEN_FOR.as_millis() as i64;
        assert!(b.allow_at(later), "one probe");
        assert!(!b.allow_at(later), "only one probe at a time");
        b.failure_at(later);
        assert!(!b.allow_at(later + 1), "the failed probe re-opens it");
        b.success();
        assert!(
            b.allow_at(later + 2) && b.allow_at(later + 2),
            "closed again"
        );
        assert!(!b.is_open());
    }
}
