//! SQL of the admin console's dashboard and reservation lists; rows serialize to the contract's
//! field names.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_events: i64,
    pub total_reservations: i64,
    pub total_revenue: i64,
    pub today_reservations: i64,
}

/// Dashboard figures; "today" is the calendar day in `timezone`.
pub async fn stats(db: impl PgExecutor<'_>, timezone: &str) -> sqlx::Result<Stats> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events) AS total_events,
                (SELECT count(*) FROM reservations WHERE status IN ('pending', 'confirmed')) AS total_reservations,
                (SELECT coalesce(sum(total_amount), 0)::BIGINT FROM reservations WHERE payment_status = 'completed') AS total_revenue,
                (SELECT count(*) FROM reservations WHERE status IN ('pending', 'confirmed')
                 AND created_at >= date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1) AS today_reservations",
    )
    .bind(timezone)
    .fetch_one(db)
    .await
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct RecentReservation {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    pub status: String,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    pub user_name: String,
    pub user_email: String,
    pub event_title: String,
}

/// The ten newest reservations of events that still exist.
pub async fn recent(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<RecentReservation>> {
    sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.created_at,
                u.name AS user_name, u.email AS user_email, e.title AS event_title
         FROM (SELECT * FROM reservations ORDER BY created_at DESC LIMIT 10) r
         JOIN users u ON u.id = r.user_id JOIN events e ON e.id = r.event_id
         ORDER BY r.created_at DESC",
    )
    .fetch_all(db)
    .await
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ListedReservation {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    pub status: String,
    pub payment_status: String,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    pub user_name: String,
    pub user_email: String,
    /// Null once the event is deleted.
    pub event_title: Option<String>,
    pub venue: Option<String>,
    #[serde(with = "tiketi_core::time::wire_opt")]
    pub event_date: Option<DateTime<Utc>>,
}

/// One page of reservations, newest first, optionally of one status; and how many there are.
pub async fn list(
    db: &sqlx::PgPool,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<ListedReservation>, i64)> {
    let rows = sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status, r.created_at,
                u.name AS user_name, u.email AS user_email, e.title AS event_title, e.venue, e.event_date
         FROM (SELECT * FROM reservations WHERE ($1::TEXT IS NULL OR status = $1)
               ORDER BY created_at DESC LIMIT $2 OFFSET $3) r
         JOIN users u ON u.id = r.user_id LEFT JOIN events e ON e.id = r.event_id
         ORDER BY r.created_at DESC",
    )
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM reservations WHERE ($1::TEXT IS NULL OR status = $1)",
    )
    .bind(status)
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ReservationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Option<Uuid>,
    pub reservation_number: String,
    pub total_amount: i32,
    pub status: String,
    pub payment_method: Option<String>,
    pub payment_status: String,
    #[serde(with = "tiketi_core::time::wire_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub updated_at: DateTime<Utc>,
}

/// A reservation's row as the status change answers it.
pub async fn reservation(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<ReservationRow> {
    sqlx::query_as(
        "SELECT id, user_id, event_id, reservation_number, total_amount, status, payment_method,
                payment_status, expires_at, created_at, updated_at
         FROM reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
}
