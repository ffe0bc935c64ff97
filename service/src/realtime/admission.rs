//! Admission of new Socket.IO (Engine.IO) sessions, before socketioxide sees the handshake: a cap on
//! the sessions this process holds at once, derived from its memory limit, and a per-address rate of
//! new sessions. A refused handshake is answered at once in the contract's error shape (503
//! `SERVER_BUSY` at the cap, 429 `RATE_LIMITED` over the rate, both with `Retry-After`) and counted
//! (`tiketi_socket_refused_total{kind}`); socket.io-client reports `connect_error` and retries with
//! its backoff.
//!
//! An admitted session holds a [`Slot`] for its whole life: the slot rides in the handshake request's
//! extensions, which engineioxide keeps with the session and drops when the session closes (a
//! session that never sends its Socket.IO CONNECT is closed after `SOCKET_CONNECT_TIMEOUT_SECONDS`).
//! Requests of an existing session (`sid=` in the query) pass untouched. The middleware is
//! `handshake::admit`.
//!
//! Everything here is per process: the cap protects this pod's memory, and the rate keeps one address
//! from taking a large part of it quickly.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{config::Config, error::Error, metrics::Metrics};

/// The cap when no memory limit can be read at all.
const FALLBACK_CAP: u32 = 10_000;
/// The least cap a derived one is raised to (a pod whose limit leaves less is misconfigured; it still
/// serves some sockets and says so in the log).
const MIN_CAP: u32 = 100;
/// What a refused client is told to wait at the cap.
const FULL_RETRY_AFTER_SECS: u32 = 5;
/// Addresses whose rate is tracked at once; beyond it (after dropping idle ones) new addresses are
/// admitted untracked, bounded by the cap alone.
const MAX_TRACKED: usize = 100_000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Why a handshake was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This process holds its cap of sessions.
    Full,
    /// The address opened its budget of sessions; one more is allowed after this long.
    Rate(Duration),
}

impl Refusal {
    pub(super) fn kind(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::Rate(_) => "rate",
        }
    }

    pub(super) fn error(self) -> Error {
        match self {
            Refusal::Full => Error::server_busy(FULL_RETRY_AFTER_SECS),
            Refusal::Rate(wait) => Error::TooManyRequests {
                retry_after_secs: u32::try_from(wait.as_secs_f64().ceil() as u64)
                    .unwrap_or(u32::MAX)
                    .max(1),
            },
        }
    }
}

/// The session cap for a memory limit: what is left after the reserve, per connection's budget.
pub fn cap_from_memory(limit: Option<u64>, reserved: u64, per_connection: u64) -> u32 {
    let Some(limit) = limit else {
        return FALLBACK_CAP;
    };
    let cap = limit.saturating_sub(reserved) / per_connection.max(1);
    u32::try_from(cap).unwrap_or(u32::MAX).max(MIN_CAP)
}

/// A cgroup memory limit file's value: bytes, or `None` for no limit (`max` in v2, a value near
/// `i64::MAX` in v1) and for anything unreadable.
pub fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < 1 << 60).then_some(n)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * KIB)
}

/// The files that may hold this process's memory limit, most specific first: its own cgroup's (v2
/// `memory.max`, v1 `memory.limit_in_bytes`) from `/proc/self/cgroup`, then the mount roots (what a
/// container with its own cgroup namespace sees).
pub fn limit_files(proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            files.push(PathBuf::from(format!("/sys/fs/cgroup{path}/memory.max")));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(PathBuf::from(format!(
                "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
            )));
        }
    }
    files.push("/sys/fs/cgroup/memory.max".into());
    files.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    files
}

/// This process's memory limit: its cgroup's, capped by the host's memory; `None` if neither reads.
fn memory_limit() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let limited = limit_files(&cgroup)
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|t| parse_limit(&t));
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| meminfo_total(&t));
    match (limited, host) {
        (Some(l), Some(h)) => Some(l.min(h)),
        (l, h) => l.or(h),
    }
}

/// The configured cap, or the one derived from the memory limit.
pub fn configured_cap(c: &Config) -> u32 {
    if c.socket_max_connections > 0 {
        return c.socket_max_connections;
    }
    let hashing =
        u64::from(c.password_hash_concurrency) * u64::from(argon2::Params::DEFAULT_M_COST) * KIB;
    let reserved = c.socket_memory_reserved_mib * MIB + hashing;
    let limit = memory_limit();
    let cap = cap_from_memory(limit, reserved, c.socket_memory_per_connection_kib * KIB);
    match limit {
        Some(l)
            if l.saturating_sub(reserved) / (c.socket_memory_per_connection_kib * KIB)
                < u64::from(MIN_CAP) =>
        {
            tracing::warn!(
                limit_mib = l / MIB,
                reserved_mib = reserved / MIB,
                cap,
                "the memory limit leaves almost nothing for Socket.IO connections"
            );
        }
        Some(l) => tracing::info!(limit_mib = l / MIB, cap, "Socket.IO connection cap"),
        None => tracing::warn!(
            cap,
            "no memory limit readable: Socket.IO connection cap is a fixed default"
        ),
    }
    cap
}

/// A token bucket of `per_minute` tokens, refilled evenly over a minute.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(per_minute: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, per_minute: u32) {
        let rate = f64::from(per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(per_minute));
        self.at = now;
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, now: Instant, per_minute: u32) -> Result<(), Duration> {
        self.refill(now, per_minute);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let rate = f64::from(per_minute) / 60.0;
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }

    /// Full again: forgetting it changes nothing.
    fn idle(&self, now: Instant, per_minute: u32) -> bool {
        let mut b = *self;
        b.refill(now, per_minute);
        b.tokens >= f64::from(per_minute)
    }
}

/// This process's admission state (part of `Realtime`).
pub struct Admission {
    cap: u32,
    per_address: u32,
    open: Arc<AtomicU32>,
    buckets: Mutex<Buckets>,
    metrics: Arc<Metrics>,
}

struct Buckets {
    by_address: HashMap<String, Bucket>,
    /// Size at which idle entries are dropped next (doubles with the live ones, so pruning stays
    /// amortised O(1) per handshake).
    prune_at: usize,
}

/// One admitted session's place under the cap, given back when the last clone drops.
#[derive(Clone)]
pub struct Slot {
    _held: Arc<Held>,
}

struct Held {
    open: Arc<AtomicU32>,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.socket_sessions.dec();
    }
}

impl Admission {
    pub fn new(cap: u32, per_address: u32, metrics: Arc<Metrics>) -> Self {
        metrics.socket_max_sessions.set(i64::from(cap));
        Self {
            cap,
            per_address,
            metrics,
            open: Arc::default(),
            buckets: Mutex::new(Buckets {
                by_address: HashMap::new(),
                prune_at: 10_000,
            }),
        }
    }

    pub fn from_config(c: &Config, metrics: Arc<Metrics>) -> Self {
        Self::new(configured_cap(c), c.socket_handshakes_per_address, metrics)
    }

    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// Sessions admitted and not yet closed.
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// Admits one new session of `address` (`client_ip::limit_key`), or says why not.
    pub fn admit(&self, address: &str, now: Instant) -> Result<Slot, Refusal> {
        let cap = self.cap;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .map_err(|_| Refusal::Full)?;
        let slot = Slot {
            _held: Arc::new(Held {
                open: self.open.clone(),
                metrics: self.metrics.clone(),
            }),
        };
        self.metrics.socket_sessions.inc();
        // refused by the rate, the slot drops and gives its place back
        self.take(address, now).map_err(Refusal::Rate)?;
        Ok(slot)
    }

    fn take(&self, address: &str, now: Instant) -> Result<(), Duration> {
        let per_minute = self.per_address;
        if per_minute == 0 {
            return Ok(());
        }
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        if let Some(bucket) = b.by_address.get_mut(address) {
            return bucket.take(now, per_minute);
        }
        if b.by_address.len() >= b.prune_at {
            b.by_address.retain(|_, v| !v.idle(now, per_minute));
            b.prune_at = (b.by_address.len() * 2).max(10_000);
        }
        if b.by_address.len() >= MAX_TRACKED {
            return Ok(());
        }
        let mut bucket = Bucket::full(per_minute, now);
        let taken = bucket.take(now, per_minute);
        b.by_address.insert(address.to_string(), bucket);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_millis(1)
    }

    #[test]
    fn admission_cap_from_memory_leaves_the_reserve() {
        // the chart's pod: 512 MiB, 64 MiB reserved + 4 argon2 slots, 32 KiB per connection
        let reserved = 64 * MIB + 4 * 19 * MIB;
        assert_eq!(
            cap_from_memory(Some(512 * MIB), reserved, 32 * KIB),
            (512 - 64 - 76) * 32
        );
        assert_eq!(
            cap_from_memory(Some(2 * 1024 * MIB), 0, 64 * KIB),
            32 * 1024
        );
        // too small a pod still serves a few; no limit known: the fixed default
        assert_eq!(cap_from_memory(Some(64 * MIB), reserved, 32 * KIB), MIN_CAP);
        assert_eq!(cap_from_memory(None, reserved, 32 * KIB), FALLBACK_CAP);
        assert_eq!(cap_from_memory(Some(u64::MAX), 0, 1), u32::MAX);
    }

    #[test]
    fn admission_reads_cgroup_v2_v1_and_meminfo() {
        assert_eq!(parse_limit("536870912\n"), Some(512 * MIB));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None, "v1 unlimited");
        assert_eq!(parse_limit(""), None);
        assert_eq!(
            meminfo_total("MemTotal:        8000000 kB\nMemFree: 1 kB\n"),
            Some(8_000_000 * KIB)
        );
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        let v2 = limit_files("0::/kubepods.slice/pod1/cri-abc\n");
        assert_eq!(
            v2[0],
            PathBuf::from("/sys/fs/cgroup/kubepods.slice/pod1/cri-abc/memory.max")
        );
        assert_eq!(
            limit_files("0::/\n")[0],
            PathBuf::from("/sys/fs/cgroup/memory.max")
        );
        let v1 = limit_files("12:cpu,cpuacct:/x\n4:memory:/kubepods/pod1/abc\n");
        assert_eq!(
            v1[0],
            PathBuf::from("/sys/fs/cgroup/memory/kubepods/pod1/abc/memory.limit_in_bytes")
        );
        assert_eq!(v1.len(), 3, "the cpu line names no memory file");
    }

    #[test]
    fn admission_bucket_allows_a_minute_at_once_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(600, t0);
        assert_eq!((0..600).filter(|_| b.take(t0, 600).is_ok()).count(), 600);
        let wait = b.take(t0, 600).unwrap_err();
        assert!(
            near(wait, Duration::from_millis(100)),
            "10 per second: {wait:?}"
        );
        let t1 = t0 + Duration::from_millis(101);
        assert!(b.take(t1, 600).is_ok());
        assert!(b.take(t1, 600).is_err());
        assert!(b.idle(t0 + Duration::from_secs(61), 600));
        assert!(!b.idle(t0 + Duration::from_secs(30), 600));
    }

    #[test]
    fn admission_caps_sessions_and_gives_places_back() {
        let a = Admission::new(2, 0, Arc::default());
        let now = Instant::now();
        let one = a.admit("1.1.1.1", now).unwrap();
        let two = a.admit("2.2.2.2", now).unwrap();
        assert_eq!(a.admit("3.3.3.3", now).err(), Some(Refusal::Full));
        let kept = two.clone();
        drop(two);
        assert_eq!(a.open(), 2, "a clone still holds the place");
        drop(kept);
        assert_eq!(a.open(), 1);
        assert!(a.admit("3.3.3.3", now).is_ok());
        drop(one);
    }

    #[test]
    fn admission_rate_is_per_address_and_a_refusal_holds_no_place() {
        let a = Admission::new(100, 3, Arc::default());
        let now = Instant::now();
        let held: Vec<Slot> = (0..3).map(|_| a.admit("1.1.1.1", now).unwrap()).collect();
        let Err(Refusal::Rate(wait)) = a.admit("1.1.1.1", now) else {
            panic!("the fourth handshake of a minute is refused");
        };
        assert!(near(wait, Duration::from_secs(20)), "{wait:?}");
        assert_eq!(a.open(), 3);
        assert!(
            a.admit("2.2.2.2", now).is_ok(),
            "another address has its own"
        );
        assert!(
            a.admit("1.1.1.1", now + Duration::from_millis(20_001))
                .is_ok()
        );
        drop(held);
    }
}
