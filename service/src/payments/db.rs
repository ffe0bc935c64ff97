//! SQL of payments: what a confirmed payment answers about its event and seats.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct PaidEvent {
    pub title: String,
    pub venue: String,
    #[serde(with = "tiketi_core::time::wire")]
    pub event_date: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct PaidSeat {
    pub id: Uuid,
    pub seat_label: String,
    pub section: String,
    pub row_number: i32,
    pub seat_number: i32,
    pub unit_price: i32,
}

/// `{event, seats}` of the payment answer: the event (null once deleted) and the paid seats.
#[derive(Debug, Serialize)]
pub struct PaidDetails {
    pub event: Option<PaidEvent>,
    pub seats: Vec<PaidSeat>,
}

pub async fn event(
    db: impl PgExecutor<'_>,
    event_id: Option<Uuid>,
) -> sqlx::Result<Option<PaidEvent>> {
    sqlx::query_as("SELECT title, venue, event_date FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(db)
        .await
}

pub async fn seats(db: impl PgExecutor<'_>, reservation_id: Uuid) -> sqlx::Result<Vec<PaidSeat>> {
    sqlx::query_as(
        "SELECT s.id, s.seat_label, s.section, s.row_number, s.seat_number, ri.unit_price
         FROM reservation_items ri JOIN seats s ON s.id = ri.seat_id
         WHERE ri.reservation_id = $1 ORDER BY s.seat_label",
    )
    .bind(reservation_id)
    .fetch_all(db)
    .await
}
