//! What this replica last saw of its shared dependencies, and whether it is ready to serve.
//!
//! Readiness means "this replica can serve", never "PostgreSQL and Redis are fine": they are shared,
//! so a saturated pool or a Redis blip would take every replica out of the Service at once, turning
//! clear 503 answers with `Retry-After` (and live Socket.IO rooms) into connection errors, and piling
//! the load onto whichever replica comes back first. Dependency state is reported in `/health/all`,
//! `/health/ready`'s body and `tiketi_dependency_up`, for alerts, not for routing.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI8, Ordering},
};

use serde_json::{Value, json};

/// A dependency's last observed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Unknown,
    Up,
    Down,
}

impl Seen {
    fn load(a: &AtomicI8) -> Self {
        match a.load(Ordering::Relaxed) {
            1 => Seen::Up,
            0 => Seen::Down,
            _ => Seen::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Unknown => "unknown",
            Seen::Up => "ok",
            Seen::Down => "error",
        }
    }
}

/// Shared by the probes, the watcher and the shutdown path.
#[derive(Clone)]
pub struct DependencyState(Arc<Inner>);

struct Inner {
    db: AtomicI8,
    redis: AtomicI8,
    draining: AtomicBool,
    /// Redis `maxmemory-policy` as last read (see `stores::eviction`), `None` when unreadable.
    redis_policy: Mutex<Option<String>>,
    /// `tiketi_dependency_up` follows what was seen.
    metrics: Arc<crate::metrics::Metrics>,
}

/// Ready unless shutting down; dependencies do not enter into it (see the module comment).
pub fn ready(draining: bool, _db: Seen, _redis: Seen) -> bool {
    !draining
}

impl DependencyState {
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        DependencyState(Arc::new(Inner {
            db: AtomicI8::new(-1),
            redis: AtomicI8::new(-1),
            draining: AtomicBool::new(false),
            redis_policy: Mutex::new(None),
            metrics,
        }))
    }
    pub fn saw_db(&self, up: bool) {
        self.0.db.store(i8::from(up), Ordering::Relaxed);
        self.gauge("database", up);
    }
    pub fn saw_redis(&self, up: bool) {
        self.0.redis.store(i8::from(up), Ordering::Relaxed);
        self.gauge("redis", up);
    }
    fn gauge(&self, dependency: &'static str, up: bool) {
        self.0
            .metrics
            .dependency_up
            .get_or_create(&crate::metrics::DependencyLabels { dependency })
            .set(i64::from(up));
    }
    /// The policy as read (`None`: unreadable), for the readiness report and
    /// `tiketi_redis_maxmemory_policy` (1 on the policy in force, 0 on the one before).
    pub fn set_redis_policy(&self, policy: Option<String>) {
        let label = |p: Option<&str>| p.unwrap_or("unknown").to_string();
        let gauge = &self.0.metrics.redis_maxmemory_policy;
        if let Ok(mut p) = self.0.redis_policy.lock() {
            let old = crate::metrics::PolicyLabels {
                policy: label(p.as_deref()),
            };
            gauge.get_or_create(&old).set(0);
            let new = crate::metrics::PolicyLabels {
                policy: label(policy.as_deref()),
            };
            gauge.get_or_create(&new).set(1);
            *p = policy;
        }
    }
    pub fn redis_policy(&self) -> Option<String> {
        self.0.redis_policy.lock().ok().and_then(|p| p.clone())
    }
    /// Graceful shutdown began: stop taking new work.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        ready(
            self.0.draining.load(Ordering::Relaxed),
            Seen::load(&self.0.db),
            Seen::load(&self.0.redis),
        )
    }
    /// The `/health/ready` body.
    pub fn report(&self) -> Value {
        json!({
            "status": if self.is_ready() { "ok" } else { "draining" },
            "dependencies": {
                "database": Seen::load(&self.0.db).as_str(),
                "redis": Seen::load(&self.0.redis).as_str(),
                "redisMaxmemoryPolicy": self.redis_policy(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_dependency_gauge_follows_what_was_seen() {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let line = |dep: &str| {
            let text = metrics.render_registry();
            text.lines()
                .find(|l| l.starts_with(&format!("tiketi_dependency_up{{dependency=\"{dep}\"}}")))
                .map(str::to_string)
        };
        let deps = DependencyState::new(metrics.clone());
        deps.saw_redis(false);
        assert_eq!(
            line("redis").as_deref(),
            Some(r#"tiketi_dependency_up{dependency="redis"} 0"#)
        );
        deps.saw_redis(true);
        assert_eq!(
            line("redis").as_deref(),
            Some(r#"tiketi_dependency_up{dependency="redis"} 1"#)
        );
    }

    #[test]
    fn health_readiness_ignores_shared_dependencies() {
        for db in [Seen::Unknown, Seen::Up, Seen::Down] {
            for redis in [Seen::Unknown, Seen::Up, Seen::Down] {
                assert!(ready(false, db, redis), "{db:?} {redis:?}");
                assert!(!ready(true, db, redis));
            }
        }
    }
}
