//! Moves events through upcoming → on_sale → ended as their sale windows and dates pass. It sleeps
//! until the next known boundary (at most 30 s, so boundaries set by other replicas are seen soon)
//! and wakes early when this replica changes an event.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    effects::{self, Effects},
    metrics::KindLabels,
    state::AppState,
};

const MAX_SLEEP: Duration = Duration::from_secs(30);
const MIN_SLEEP: Duration = Duration::from_millis(200);

pub async fn run(state: AppState) {
    loop {
        let sleep = match update(&state).await {
            Ok(next) => next
                .and_then(|t| (t - Utc::now()).to_std().ok())
                .map(|d| (d + Duration::from_millis(100)).clamp(MIN_SLEEP, MAX_SLEEP))
                .unwrap_or(MAX_SLEEP),
            Err(e) => {
                tracing::warn!(error = %e, "event status update failed");
                MAX_SLEEP
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = state.event_status_wake.notified() => {}
        }
    }
}

/// Applies due transitions; returns the next instant at which one falls due.
pub async fn update(state: &AppState) -> sqlx::Result<Option<DateTime<Utc>>> {
    let mut tx = state.db.begin().await?;
    let changed: Vec<Uuid> = if super::try_lock(&mut tx, super::LOCK_EVENT_STATUS).await? {
        super::db::apply_status_transitions(&mut *tx).await?
    } else {
        Vec::new()
    };
    let next = super::db::next_status_boundary(&mut *tx).await?;
    tx.commit().await?;
    if !changed.is_empty() {
        state
            .metrics
            .job_runs
            .get_or_create(&KindLabels {
                kind: "event_status",
            })
            .inc();
        tracing::info!(changed = changed.len(), "event statuses updated");
        let fx = changed
            .into_iter()
            .fold(Effects::none().lists(), |fx, id| fx.event(Some(id)));
        effects::apply(state, fx).await;
    }
    Ok(next)
}
