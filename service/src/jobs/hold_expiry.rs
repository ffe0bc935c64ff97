//! Expires unpaid seat holds past `expires_at`: the reservation becomes `expired`/`failed`, its seats
//! return to sale and `seat-released` is announced. Sweeps every `HOLD_SWEEP_SECONDS` (default 5 s).

use std::time::Duration;

use crate::{
    effects::{self, Effects},
    metrics::KindLabels,
    reservations::{db as reservations_db, items},
    state::AppState,
};

const BATCH: i64 = 500;

pub async fn run(state: AppState) {
    let mut tick =
        tokio::time::interval(Duration::from_secs(state.config.hold_sweep_seconds.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "hold expiry sweep failed; retrying next tick");
        }
    }
}

/// One sweep; returns how many holds expired. Safe to call from any replica at any time.
pub async fn sweep(state: &AppState) -> sqlx::Result<i64> {
    let mut total = 0;
    loop {
        let mut tx = state.db.begin().await?;
        if !super::try_lock(&mut tx, super::LOCK_HOLD_EXPIRY).await? {
            return Ok(total);
        }
        let ids = reservations_db::expire_holds(&mut *tx, BATCH).await?;
        let expired = ids.len() as i64;
        let notices = items::release(&mut tx, &ids).await?;
        tx.commit().await?;
        if expired > 0 {
            total += expired;
            state.metrics.holds_expired.inc_by(expired as u64);
            state
                .metrics
                .job_runs
                .get_or_create(&KindLabels {
                    kind: "hold_expiry",
                })
                .inc();
            tracing::info!(expired, released = notices.len(), "expired unpaid holds");
        }
        effects::apply(state, Effects::notices(notices)).await;
        if expired < BATCH {
            return Ok(total);
        }
    }
}
