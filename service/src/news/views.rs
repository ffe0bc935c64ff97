//! News views counted in memory and written in batches: a read never takes the post's row lock
//! (an `UPDATE` per read queued every reader of a popular post on one row while each held a pool
//! connection). Each replica adds its own counts, so the stored total is the sum over replicas,
//! behind by at most one flush period (`NEWS_VIEWS_FLUSH_MS`) plus a failed flush's retries.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use uuid::Uuid;

use super::db;
use crate::state::AppState;

/// Views counted here and not yet written, per post.
#[derive(Default)]
pub struct Views {
    pending: Mutex<HashMap<Uuid, i64>>,
}

impl Views {
    /// Counts one view of `id`; returns this replica's unwritten views of it, this one included.
    pub fn add(&self, id: Uuid) -> i64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let n = pending.entry(id).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Takes every pending count (to be written, or put back if the write fails).
    fn take(&self) -> HashMap<Uuid, i64> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn put_back(&self, counts: HashMap<Uuid, i64>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (id, n) in counts {
            let p = pending.entry(id).or_insert(0);
            *p = p.saturating_add(n);
        }
    }
}

/// Writes the pending views in one statement; on failure they stay pending for the next flush.
/// Returns how many views were written.
pub async fn flush(state: &AppState) -> sqlx::Result<i64> {
    let counts = state.news_views.take();
    if counts.is_empty() {
        return Ok(0);
    }
    let (ids, views): (Vec<Uuid>, Vec<i64>) = counts.iter().map(|(id, n)| (*id, *n)).unzip();
    match db::add_views(&state.db, &ids, &views).await {
        Ok(()) => {
            let total = views.iter().sum();
            state
                .metrics
                .news_views_flushed
                .inc_by(u64::try_from(total).unwrap_or(0));
            Ok(total)
        }
        Err(e) => {
            state.news_views.put_back(counts);
            Err(e)
        }
    }
}

/// Flushes every `NEWS_VIEWS_FLUSH_MS` for as long as the replica serves (and once more after it
/// stops: `Service::serve`).
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.news_views_flush_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = flush(&state).await {
            tracing::warn!(error = %e, "news views not written; retried at the next flush");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_add_counts_per_post_and_put_back_keeps_later_views() {
        let v = Views::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(v.add(a), 1);
        assert_eq!(v.add(a), 2);
        assert_eq!(v.add(b), 1);
        let taken = v.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(v.add(a), 1, "a flush in flight starts a new count");
        v.put_back(taken);
        assert_eq!(v.take(), HashMap::from([(a, 3), (b, 1)]));
    }
}
