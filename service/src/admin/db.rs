//! SQL of the admin console: dashboard, reservation lists, and the event and ticket-type editor;
//! rows serialize to the contract's field names.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgExecutor};
use uuid::Uuid;

use crate::{
    events::db::{EVENT_COLUMNS, EventRow},
    reservations::views::{Stored, StoredStatus},
};

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
    /// `status` and `status_reason` as clients see them (`lifecycle::shown`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub state: StoredStatus,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    pub user_name: String,
    pub user_email: String,
    pub event_title: String,
}

/// The ten newest reservations of events that still exist.
pub async fn recent(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<RecentReservation>> {
    sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status,
                coalesce(r.expires_at < now(), FALSE) AS hold_over, r.created_at, u.name AS user_name, u.email AS user_email, e.title AS event_title
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
    /// `status`, `payment_status` and `status_reason` as clients see them (`lifecycle::shown`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub state: Stored,
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

/// One page of reservations, newest first, optionally only those stored with one of `statuses`
/// (`lifecycle::stored_for_filter`); and how many there are.
pub async fn list(
    db: &sqlx::PgPool,
    statuses: Option<&[&str]>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<ListedReservation>, i64)> {
    let rows = sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status,
                coalesce(r.expires_at < now(), FALSE) AS hold_over, r.created_at,
                u.name AS user_name, u.email AS user_email, e.title AS event_title, e.venue, e.event_date
         FROM (SELECT * FROM reservations WHERE ($1::TEXT[] IS NULL OR status = ANY ($1))
               ORDER BY created_at DESC LIMIT $2 OFFSET $3) r
         JOIN users u ON u.id = r.user_id LEFT JOIN events e ON e.id = r.event_id
         ORDER BY r.created_at DESC",
    )
    .bind(statuses)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM reservations WHERE ($1::TEXT[] IS NULL OR status = ANY ($1))",
    )
    .bind(statuses)
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
    /// `status`, `payment_status` and `status_reason` as clients see them (`lifecycle::shown`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub state: Stored,
    pub payment_method: Option<String>,
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
                payment_status, coalesce(expires_at < now(), FALSE) AS hold_over, expires_at, created_at,
                updated_at
         FROM reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

// ---- events and ticket types (the admin event editor) ----

/// A ticket type as the admin answers show it (`ticketType`).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TicketType {
    pub id: Uuid,
    pub event_id: Uuid,
    pub name: String,
    pub price: i32,
    pub total_quantity: i32,
    pub available_quantity: i32,
    pub description: Option<String>,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub updated_at: DateTime<Utc>,
}

const TICKET_COLUMNS: &str = "id, event_id, name, price, total_quantity, available_quantity, description, \
     created_at, updated_at";

/// The columns of an event as written; `None` of an optional column is NULL.
pub struct EventFields<'a> {
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub venue: &'a str,
    pub address: Option<&'a str>,
    pub event_date: DateTime<Utc>,
    pub sale_start: DateTime<Utc>,
    pub sale_end: DateTime<Utc>,
    pub poster_image_url: Option<&'a str>,
    pub artist_name: Option<&'a str>,
    pub status: &'a str,
    /// `None` keeps the current threshold (the default 1000 for a new event).
    pub queue_threshold: Option<i32>,
}

/// Inserts an event created by `created_by`.
pub async fn insert_event(
    db: impl PgExecutor<'_>,
    f: &EventFields<'_>,
    seat_layout_id: Option<Uuid>,
    created_by: Uuid,
) -> sqlx::Result<EventRow> {
    let q = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO events (title, description, venue, address, event_date, sale_start_date, sale_end_date,
                             poster_image_url, artist_name, seat_layout_id, status, created_by, queue_threshold)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $12, $10, $13, coalesce($11, 1000))
         RETURNING {EVENT_COLUMNS}"
    )));
    bind_fields(q, f)
        .bind(seat_layout_id)
        .bind(created_by)
        .fetch_one(db)
        .await
}

type EventQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, EventRow, sqlx::postgres::PgArguments>;

/// Binds the fields as the next eleven parameters, in `EventFields` order.
fn bind_fields<'q>(q: EventQuery<'q>, f: &EventFields<'q>) -> EventQuery<'q> {
    q.bind(f.title)
        .bind(f.description)
        .bind(f.venue)
        .bind(f.address)
        .bind(f.event_date)
        .bind(f.sale_start)
        .bind(f.sale_end)
        .bind(f.poster_image_url)
        .bind(f.artist_name)
        .bind(f.status)
        .bind(f.queue_threshold)
}

/// The event's row, locked for the rest of the transaction.
pub async fn lock_event(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Whether the event exists, locking it if so.
pub async fn lock_event_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM events WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(found.is_some())
}

pub async fn event_exists(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)")
        .bind(id)
        .fetch_one(db)
        .await
}

/// Rewrites every editable column of the event.
pub async fn update_event(
    db: impl PgExecutor<'_>,
    id: Uuid,
    f: &EventFields<'_>,
) -> sqlx::Result<EventRow> {
    let q = sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE events SET title = $1, description = $2, venue = $3, address = $4, event_date = $5,
                sale_start_date = $6, sale_end_date = $7, poster_image_url = $8, artist_name = $9, status = $10,
                queue_threshold = coalesce($11, queue_threshold)
         WHERE id = $12 RETURNING {EVENT_COLUMNS}"
    )));
    bind_fields(q, f).bind(id).fetch_one(db).await
}

/// Marks the event cancelled; `None` when it does not exist or already was.
pub async fn mark_cancelled(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE events SET status = 'cancelled' WHERE id = $1 AND status <> 'cancelled' RETURNING {EVENT_COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Deletes the event (its seats and ticket types cascade; reservations keep a NULL event).
pub async fn delete_event(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM events WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// The event's title and seat layout, locked; `None` when it does not exist.
pub async fn lock_seat_setup(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<(String, Option<Uuid>)>> {
    sqlx::query_as("SELECT title, seat_layout_id FROM events WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn seat_count(db: impl PgExecutor<'_>, event_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM seats WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(db)
        .await
}

/// Whether a live (pending or confirmed) reservation of the event holds a seat.
pub async fn seats_in_use(db: impl PgExecutor<'_>, event_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
                        WHERE r.event_id = $1 AND r.status IN ('pending', 'confirmed') AND ri.seat_id IS NOT NULL)",
    )
    .bind(event_id)
    .fetch_one(db)
    .await
}

/// Deletes every seat of the event; returns how many.
pub async fn delete_seats(db: impl PgExecutor<'_>, event_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM seats WHERE event_id = $1")
        .bind(event_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

pub async fn insert_ticket_type(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    name: &str,
    price: i32,
    total_quantity: i32,
    description: Option<&str>,
) -> sqlx::Result<TicketType> {
    sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity, description)
         VALUES ($1, $2, $3, $4, $4, $5)
         RETURNING {TICKET_COLUMNS}"
    )))
    .bind(event_id)
    .bind(name)
    .bind(price)
    .bind(total_quantity)
    .bind(description)
    .fetch_one(db)
    .await
}

/// A ticket type's event, total and available stock, locked; `None` when it does not exist.
pub async fn lock_ticket_stock(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<(Uuid, i32, i32)>> {
    sqlx::query_as(
        "SELECT event_id, total_quantity, available_quantity FROM ticket_types WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Edits a ticket type: `None` of name/price keeps them; `description` `None` keeps it,
/// `Some(None)` clears it.
pub async fn update_ticket_type(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: Option<&str>,
    price: Option<i32>,
    (total, available): (i32, i32),
    description: Option<Option<&str>>,
) -> sqlx::Result<TicketType> {
    sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE ticket_types SET name = coalesce($2, name), price = coalesce($3, price), total_quantity = $4,
                available_quantity = $5, description = CASE WHEN $6 THEN $7 ELSE description END
         WHERE id = $1
         RETURNING {TICKET_COLUMNS}"
    )))
    .bind(id)
    .bind(name)
    .bind(price)
    .bind(total)
    .bind(available)
    .bind(description.is_some())
    .bind(description.flatten())
    .fetch_one(db)
    .await
}
