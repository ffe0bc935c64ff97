//! Per-socket flood limits: a token bucket over every incoming event and a cap on the rooms a socket
//! is in. A socket over either is disconnected (logged and counted once); other sockets, including
//! other sockets of the same user, keep their own budgets.
//!
//! In memory per socket (its extensions): a socket lives on one replica, so nothing is shared.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use crate::{config::Config, metrics::KindLabels};

use super::Socket;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub events_per_second: u32,
    pub burst: u32,
    pub max_rooms: usize,
}

impl Limits {
    pub fn from_config(c: &Config) -> Self {
        Self {
            events_per_second: c.socket_events_per_second,
            burst: c.socket_events_burst,
            max_rooms: c.socket_max_rooms as usize,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(rate);
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Inner {
    limits: Limits,
    bucket: Mutex<Bucket>,
    /// Held across the room count and the join, so concurrent joins cannot overshoot the cap.
    rooms: Mutex<()>,
    tripped: AtomicBool,
    /// Where a trip is counted (`tiketi_socket_floods_total`).
    metrics: Arc<crate::metrics::Metrics>,
}

/// One socket's budget (cloned out of its extensions; the state is shared).
#[derive(Clone)]
pub struct Guard(Arc<Inner>);

/// Gives a new socket its budget.
pub fn install(s: &Socket, limits: Limits, metrics: Arc<crate::metrics::Metrics>) {
    s.extensions.insert(Guard(Arc::new(Inner {
        limits,
        bucket: Mutex::new(Bucket::full(limits.burst, Instant::now())),
        rooms: Mutex::new(()),
        tripped: AtomicBool::new(false),
        metrics,
    })));
}

/// Spends one event of the socket's budget; false (and the socket is disconnected) when it is
/// flooding or was already cut off. Every handler calls this first.
pub fn admit(s: &Socket) -> bool {
    let Some(g) = s.extensions.get::<Guard>() else {
        return false;
    };
    if g.0.tripped.load(Ordering::Acquire) {
        return false;
    }
    let l = g.0.limits;
    let ok =
        g.0.bucket
            .lock()
            .map(|mut b| b.take(Instant::now(), l.events_per_second, l.burst))
            .unwrap_or(false);
    if !ok {
        trip(s, &g, "events");
    }
    ok
}

/// Joins `rooms` unless that would put the socket in more than its cap of rooms; then the socket
/// is disconnected and false returned.
pub fn join(s: &Socket, rooms: Vec<String>) -> bool {
    let Some(g) = s.extensions.get::<Guard>() else {
        return false;
    };
    if g.0.tripped.load(Ordering::Acquire) {
        return false;
    }
    let Ok(_held) = g.0.rooms.lock() else {
        return false;
    };
    let current: HashSet<String> = s.rooms().into_iter().map(|r| r.to_string()).collect();
    let new: Vec<String> = rooms
        .into_iter()
        .filter(|r| !current.contains(r))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if current.len() + new.len() > g.0.limits.max_rooms {
        trip(s, &g, "rooms");
        return false;
    }
    if !new.is_empty() {
        s.join(new);
    }
    true
}

/// Cuts the socket off, once: later events are ignored even if the DISCONNECT cannot be queued.
fn trip(s: &Socket, g: &Guard, kind: &'static str) {
    if g.0.tripped.swap(true, Ordering::AcqRel) {
        return;
    }
    let user = s.extensions.get::<super::SocketUser>().map(|u| u.user_id);
    tracing::warn!(sid = %s.id, ?user, kind, "socket flood: disconnected");
    g.0.metrics
        .socket_floods
        .get_or_create(&KindLabels { kind })
        .inc();
    if let Err(e) = s.clone().disconnect() {
        tracing::debug!(error = %e, "flooding socket not disconnected cleanly");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn flood_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(40, t0);
        assert_eq!((0..40).filter(|_| b.take(t0, 20, 40)).count(), 40);
        assert!(!b.take(t0, 20, 40), "the 41st event at once is refused");
        // 20 per second: after 100 ms, two more
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1, 20, 40));
        assert!(b.take(t1, 20, 40));
        assert!(!b.take(t1, 20, 40));
        // a long pause refills only up to the burst
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take(t2, 20, 40)).count(), 40);
    }

    #[test]
    fn flood_bucket_sustains_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(2, t0);
        // one event every 50 ms at 20/s never runs dry, even with a small burst
        for i in 0..1000 {
            assert!(
                b.take(t0 + Duration::from_millis(50 * i), 20, 2),
                "event {i}"
            );
        }
    }
}
