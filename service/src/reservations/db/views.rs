//! The caller's reservations as `views` shows them.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::reservations::views::{Detail, Listed};

/// A line of a reservation as read (`views::Item` shows it).
#[derive(sqlx::FromRow)]
pub struct ItemRow {
    pub reservation_id: Uuid,
    pub ticket_type_name: Option<String>,
    pub quantity: i32,
    pub unit_price: i32,
    pub subtotal: i32,
    pub seat_label: Option<String>,
    pub section: Option<String>,
}

/// The items of the reservations, in each one's order (oldest line first, then by seat and name).
pub async fn item_rows(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<ItemRow>> {
    sqlx::query_as(
        "SELECT ri.reservation_id, coalesce(tt.name, s.seat_label) AS ticket_type_name, ri.quantity,
                ri.unit_price, ri.subtotal, s.seat_label, s.section
         FROM reservation_items ri
         LEFT JOIN ticket_types tt ON tt.id = ri.ticket_type_id
         LEFT JOIN seats s ON s.id = ri.seat_id
         WHERE ri.reservation_id = ANY ($1)
         ORDER BY ri.reservation_id, ri.created_at, s.seat_label, tt.name",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// The user's 500 newest reservations, newest first, without their items.
pub async fn my_reservations(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status,
                coalesce(r.expires_at < now(), FALSE) AS hold_over, r.created_at, e.title AS event_title, e.venue, e.event_date
         FROM (SELECT * FROM reservations WHERE user_id = $1 ORDER BY created_at DESC LIMIT 500) r
         LEFT JOIN events e ON e.id = r.event_id
         ORDER BY r.created_at DESC",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// The reservation if it is the user's, without its items.
pub async fn my_reservation(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Detail>> {
    sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status,
                coalesce(r.expires_at < now(), FALSE) AS hold_over, r.payment_method, r.created_at, r.event_id, e.title AS event_title, e.venue, e.event_date, e.address
         FROM reservations r LEFT JOIN events e ON e.id = r.event_id
         WHERE r.id = $1 AND r.user_id = $2",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(db)
    .await
}
