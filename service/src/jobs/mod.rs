//! Background jobs. Each run takes a transaction-scoped PostgreSQL advisory lock, so across all
//! replicas exactly one runs it at a time, and a replica that dies mid-run releases it with its
//! connection. Every job is idempotent: running it twice changes nothing more.

pub mod event_status;
pub mod hold_expiry;
pub mod traffic;

use sqlx::PgConnection;

use crate::state::AppState;

/// Advisory lock ids (arbitrary constants, one per job).
pub const LOCK_HOLD_EXPIRY: i64 = 0x7469_6b65_7401;
pub const LOCK_EVENT_STATUS: i64 = 0x7469_6b65_7402;
pub const LOCK_TRAFFIC: i64 = 0x7469_6b65_7403;

/// Takes the job's lock for the current transaction; false when another replica is running it.
pub async fn try_lock(tx: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(id)
        .fetch_one(tx)
        .await
}

pub fn spawn_all(state: &AppState) {
    tokio::spawn(hold_expiry::run(state.clone()));
    tokio::spawn(event_status::run(state.clone()));
    tokio::spawn(crate::queue::admission::run(state.clone()));
    tokio::spawn(traffic::run(state.clone()));
}
