//! Background jobs. Each run takes a transaction-scoped PostgreSQL advisory lock, so across all
//! replicas exactly one runs it at a time, and a replica that dies mid-run releases it with its
//! connection. Every job is idempotent: running it twice changes nothing more. (The payment recovery
//! job, `payments::recovery`, calls the provider between its transactions, so it runs under a Redis
//! lease instead.)

mod db;
pub mod event_status;
pub mod hold_expiry;
pub mod traffic;

pub use db::try_lock;

use crate::state::AppState;

/// Advisory lock ids (arbitrary constants, one per job).
pub const LOCK_HOLD_EXPIRY: i64 = 0x7469_6b65_7401;
pub const LOCK_EVENT_STATUS: i64 = 0x7469_6b65_7402;
pub const LOCK_TRAFFIC: i64 = 0x7469_6b65_7403;

pub fn spawn_all(state: &AppState) {
    tokio::spawn(hold_expiry::run(state.clone()));
    tokio::spawn(event_status::run(state.clone()));
    tokio::spawn(crate::queue::admission::run(state.clone()));
    tokio::spawn(traffic::run(state.clone()));
    tokio::spawn(crate::payments::recovery::run(state.clone()));
}
