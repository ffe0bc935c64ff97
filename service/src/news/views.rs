//! News views counted in memory (`pending`) and written in batches: a read never takes the post's
//! row lock (an `UPDATE` per read queued every reader of a popular post on one row while each held
//! a pool connection). Each replica adds its own counts, so the stored total is the sum over
//! replicas, behind by at most one flush period (`NEWS_VIEWS_FLUSH_MS`) plus a failed flush's
//! retries.

use std::time::Duration;

use uuid::Uuid;

use super::db;
use crate::state::AppState;

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
