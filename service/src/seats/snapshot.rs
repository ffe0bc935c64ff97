//! The seat map of an event served from a snapshot per event and replica, so a herd of readers
//! costs one PostgreSQL read per change instead of one per request.
//!
//! A snapshot is the serialized response (shared `Bytes`, never re-serialized per request) with a
//! strong content `ETag`, plus what it was built from:
//! - this replica's change sequence of the event: the after-commit path (`effects::apply`) moves it
//!   for every seat it announces and every event it marks stale, so a change made here is served at
//!   once;
//! - the event's version token in Redis, which the same path replaces: another replica's change is
//!   seen at the next check of the token, at most `revalidate` after the last one;
//! - the build time: a snapshot older than `MAX_AGE` is rebuilt whatever Redis says, which bounds
//!   staleness when Redis is unreachable or a token write was lost.
//!
//! Concurrent misses of an event wait on one refresh (single flight): one version check or one
//! PostgreSQL read, then everyone serves its result. While a rebuild runs, readers holding a
//! snapshot confirmed within `revalidate` take that one instead of queueing (during a sale the
//! map changes with every hold, and readers would otherwise wait on rebuild after rebuild).
//!
//! Staleness bound: a change committed on this replica is on its map once the rebuild after it
//! completes (a reader that finds no rebuild running starts it); one committed on another replica
//! within `SEATMAP_REVALIDATE_MS` (250 ms) plus a rebuild; with Redis unreachable, `MAX_AGE`.
//!
//! This file holds the snapshots (`SeatMaps`, part of `AppState`) and the rules; `map` does the
//! reading and the Redis writes, so the state's parts do not depend on functions taking the state.

use std::{
    hash::{DefaultHasher, Hasher},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::body::Bytes;
use uuid::Uuid;

use crate::error::Error;

/// Longest a snapshot is served without rebuilding, whatever Redis says.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Memory for snapshots per replica (the largest layout's map is ≈ 600 KB).
const SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;
/// Events whose change sequence is tracked (a few words each).
const TRACKED_EVENTS: u64 = 10_000;

/// One event's serialized seat map.
#[derive(Clone)]
pub struct Snapshot {
    pub body: Bytes,
    /// Strong validator of `body` (quoted, as sent in `ETag`).
    pub etag: String,
    seq: u64,
    /// The Redis token read before the build: `None` when Redis could not be asked, `Some(None)`
    /// when it had no token.
    version: Option<Option<String>>,
    built: Instant,
    checked: Instant,
}

/// What to do with a request, given the event's current snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Serve,
    /// Ask Redis whether another replica changed the event; rebuild if so.
    Revalidate,
    Rebuild,
}

/// The freshness rule, apart from any IO: a snapshot from before a change made here, or older than
/// `MAX_AGE`, is rebuilt; one not checked against Redis for `revalidate` is checked.
pub fn judge(snapshot: Option<&Snapshot>, seq: u64, now: Instant, revalidate: Duration) -> Verdict {
    match snapshot {
        None => Verdict::Rebuild,
        Some(s) if s.seq != seq || now.saturating_duration_since(s.built) >= MAX_AGE => {
            Verdict::Rebuild
        }
        Some(s) if now.saturating_duration_since(s.checked) >= revalidate => Verdict::Revalidate,
        Some(_) => Verdict::Serve,
    }
}

/// While another request rebuilds the map, a reader takes the snapshot being replaced rather than
/// queue behind the rebuild, if that snapshot was confirmed current within the revalidation
/// interval: during a sale the map changes with every hold, and readers would otherwise wait on
/// rebuild after rebuild.
pub fn serves_during_refresh(s: &Snapshot, now: Instant, revalidate: Duration) -> bool {
    now.saturating_duration_since(s.checked) < revalidate
}

/// A strong `ETag` from the content, so every replica gives the same map the same tag.
pub fn etag_of(body: &[u8]) -> String {
    let mut a = DefaultHasher::new();
    a.write(body);
    let mut b = DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(body);
    format!(
        "\"{:016x}{:016x}-{:x}\"",
        a.finish(),
        b.finish(),
        body.len()
    )
}

/// Whether an `If-None-Match` value names `etag` (`*`, or a list; `W/` compares weakly as the
/// header's rules say).
pub fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Per event: one refresh at a time, and this replica's change sequence.
struct Slot {
    refresh: tokio::sync::Mutex<()>,
    seq: AtomicU64,
}

/// The snapshots of this replica.
pub struct SeatMaps {
    snapshots: moka::sync::Cache<Uuid, Arc<Snapshot>>,
    slots: moka::sync::Cache<Uuid, Arc<Slot>>,
    /// Source of change sequences: a slot created anew (first use, or after eviction) gets a value
    /// no snapshot has recorded, so it can never vouch for an old snapshot.
    next_seq: AtomicU64,
    builds: AtomicU64,
    revalidate: Duration,
}

impl SeatMaps {
    pub fn new(revalidate: Duration) -> Self {
        Self {
            snapshots: moka::sync::Cache::builder()
                .max_capacity(SNAPSHOT_BYTES)
                .weigher(|_, s: &Arc<Snapshot>| u32::try_from(s.body.len()).unwrap_or(u32::MAX))
                .time_to_live(MAX_AGE)
                .build(),
            slots: moka::sync::Cache::builder()
                .max_capacity(TRACKED_EVENTS)
                .build(),
            next_seq: AtomicU64::new(1),
            builds: AtomicU64::new(0),
            revalidate,
        }
    }

    /// How many snapshots this replica has built (PostgreSQL reads of a whole map).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    fn slot(&self, event_id: Uuid) -> Arc<Slot> {
        self.slots.get_with(event_id, || {
            Arc::new(Slot {
                refresh: tokio::sync::Mutex::new(()),
                seq: AtomicU64::new(self.next_seq.fetch_add(1, Ordering::Relaxed)),
            })
        })
    }

    /// A change of the event committed here: its snapshot is stale for this replica at once (its
    /// sequence no longer matches). It stays cached for the readers that arrive while the rebuild
    /// runs (`serves_during_refresh`): dropped, every one of them would queue behind the rebuild.
    pub(super) fn changed_here(&self, event_id: Uuid) {
        let slot = self.slot(event_id);
        slot.seq.store(
            self.next_seq.fetch_add(1, Ordering::Relaxed),
            Ordering::Release,
        );
    }

    /// The current snapshot of the event: the cached one while `judge` serves it; otherwise, one
    /// refresh at a time, the event's version token (`version`: `None` when Redis could not be
    /// asked) is compared and the map rebuilt (`build`) if it changed. Each is awaited only when
    /// needed, at most once.
    pub async fn current(
        &self,
        event_id: Uuid,
        version: impl Future<Output = Option<Option<String>>>,
        build: impl Future<Output = Result<Bytes, Error>>,
    ) -> Result<Arc<Snapshot>, Error> {
        let slot = self.slot(event_id);
        let cached = self.snapshots.get(&event_id);
        let seq = slot.seq.load(Ordering::Acquire);
        if let Some(s) = &cached
            && judge(Some(s), seq, Instant::now(), self.revalidate) == Verdict::Serve
        {
            return Ok(Arc::clone(s));
        }
        let _one = match slot.refresh.try_lock() {
            Ok(one) => one,
            Err(_) => {
                if let Some(s) = cached
                    && serves_during_refresh(&s, Instant::now(), self.revalidate)
                {
                    return Ok(s);
                }
                slot.refresh.lock().await
            }
        };
        // the refresh another request just finished may have done the work
        let seq = slot.seq.load(Ordering::Acquire);
        let cached = self.snapshots.get(&event_id);
        let verdict = judge(cached.as_deref(), seq, Instant::now(), self.revalidate);
        let known = match (cached, verdict) {
            (Some(s), Verdict::Serve) => return Ok(s),
            (Some(s), Verdict::Revalidate) => {
                let now = version.await;
                // an unanswered check keeps the snapshot until `MAX_AGE`
                if now.is_none() || now == s.version {
                    let checked = Arc::new(Snapshot {
                        checked: Instant::now(),
                        ..(*s).clone()
                    });
                    self.snapshots.insert(event_id, Arc::clone(&checked));
                    return Ok(checked);
                }
                now
            }
            _ => version.await,
        };
        // the version and sequence are read before the map, so a change committed during the read
        // leaves the snapshot marked older than it is, never newer
        self.builds.fetch_add(1, Ordering::Relaxed);
        let body = build.await?;
        let now = Instant::now();
        let snapshot = Arc::new(Snapshot {
            etag: etag_of(&body),
            body,
            seq,
            version: known,
            built: now,
            checked: now,
        });
        self.snapshots.insert(event_id, Arc::clone(&snapshot));
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(seq: u64, built: Instant, checked: Instant) -> Snapshot {
        Snapshot {
            body: Bytes::from_static(b"{}"),
            etag: etag_of(b"{}"),
            seq,
            version: Some(None),
            built,
            checked,
        }
    }

    #[test]
    fn snapshot_judged_by_local_change_age_and_last_check() {
        let t = Instant::now();
        let r = Duration::from_millis(250);
        assert_eq!(judge(None, 1, t, r), Verdict::Rebuild);
        let s = snap(7, t, t);
        assert_eq!(judge(Some(&s), 7, t, r), Verdict::Serve);
        assert_eq!(judge(Some(&s), 8, t, r), Verdict::Rebuild, "changed here");
        assert_eq!(
            judge(Some(&s), 7, t + Duration::from_millis(249), r),
            Verdict::Serve
        );
        assert_eq!(judge(Some(&s), 7, t + r, r), Verdict::Revalidate);
        assert_eq!(judge(Some(&s), 7, t + MAX_AGE, r), Verdict::Rebuild);
        let checked_late = snap(7, t, t + Duration::from_secs(4));
        assert_eq!(
            judge(Some(&checked_late), 7, t + MAX_AGE, r),
            Verdict::Rebuild,
            "checks never extend a snapshot past its age"
        );
    }

    #[test]
    fn snapshot_a_change_here_keeps_the_replaced_map_for_readers_during_the_rebuild() {
        let r = Duration::from_millis(250);
        let maps = SeatMaps::new(r);
        let id = Uuid::new_v4();
        let t = Instant::now();
        let before = maps.slot(id).seq.load(Ordering::Acquire);
        maps.snapshots.insert(id, Arc::new(snap(before, t, t)));
        maps.changed_here(id);
        let seq = maps.slot(id).seq.load(Ordering::Acquire);
        let kept = maps
            .snapshots
            .get(&id)
            .expect("the replaced map stays for the readers of the rebuild");
        assert_eq!(
            judge(Some(&kept), seq, t, r),
            Verdict::Rebuild,
            "never current"
        );
        assert!(serves_during_refresh(&kept, t, r));
        assert!(
            !serves_during_refresh(&kept, t + r, r),
            "nor served once unconfirmed"
        );
    }

    #[test]
    fn snapshot_etag_follows_content() {
        let a = etag_of(br#"{"seats":[{"status":"available"}]}"#);
        let b = etag_of(br#"{"seats":[{"status":"locked"}]}"#);
        assert_ne!(a, b);
        assert_eq!(a, etag_of(br#"{"seats":[{"status":"available"}]}"#));
        assert!(a.starts_with('"') && a.ends_with('"'));
    }

    #[test]
    fn snapshot_if_none_match_lists_star_and_weak_tags() {
        let tag = "\"abc-1\"";
        assert!(none_match("\"abc-1\"", tag));
        assert!(none_match("\"x\", \"abc-1\"", tag));
        assert!(none_match("W/\"abc-1\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"abc-2\"", tag));
        assert!(!none_match("abc-1", tag));
        assert!(!none_match("", tag));
    }
}
