//! SQL of the waiting room.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// The columns of an event the waiting room reads.
#[derive(Debug, sqlx::FromRow)]
pub struct GateRow {
    pub queue_threshold: i32,
    pub sale_start_date: DateTime<Utc>,
}

/// The event's threshold and sale opening; `None` when the event does not exist.
pub async fn gate(db: impl PgExecutor<'_>, event_id: Uuid) -> sqlx::Result<Option<GateRow>> {
    sqlx::query_as("SELECT queue_threshold, sale_start_date FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(db)
        .await
}
