//! SQL of seats.

use sqlx::{PgConnection, PgExecutor};
use tiketi_core::rules::{LayoutConfig, layout_seats};
use uuid::Uuid;

/// Creates every seat of the layout for the event; returns how many.
pub async fn insert_layout_seats(
    tx: &mut PgConnection,
    event_id: Uuid,
    layout_id: Uuid,
) -> sqlx::Result<Option<u64>> {
    let config: Option<sqlx::types::Json<LayoutConfig>> =
        sqlx::query_scalar("SELECT layout_config FROM seat_layouts WHERE id = $1")
            .bind(layout_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(config) = config else {
        return Ok(None);
    };
    let seats = layout_seats(&config.0);
    let (mut sections, mut rows, mut numbers, mut labels, mut prices) =
        (vec![], vec![], vec![], vec![], vec![]);
    for s in seats {
        sections.push(s.section);
        rows.push(s.row_number);
        numbers.push(s.seat_number);
        labels.push(s.seat_label);
        prices.push(s.price);
    }
    let done = sqlx::query(
        "INSERT INTO seats (event_id, section, row_number, seat_number, seat_label, price)
         SELECT $1, * FROM unnest($2::TEXT[], $3::INT[], $4::INT[], $5::TEXT[], $6::INT[])",
    )
    .bind(event_id)
    .bind(&sections)
    .bind(&rows)
    .bind(&numbers)
    .bind(&labels)
    .bind(&prices)
    .execute(&mut *tx)
    .await?;
    Ok(Some(done.rows_affected()))
}

#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct Layout {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub total_seats: i32,
    pub layout_config: sqlx::types::Json<serde_json::Value>,
}

/// How a layout list is ordered (a fixed column list, never user input).
#[derive(Debug, Clone, Copy)]
pub enum LayoutOrder {
    /// Smallest venue first (the public list).
    BySize,
    /// By name (the admin console).
    ByName,
}

pub async fn layouts(db: impl PgExecutor<'_>, order: LayoutOrder) -> sqlx::Result<Vec<Layout>> {
    let order_by = match order {
        LayoutOrder::BySize => "total_seats ASC, name",
        LayoutOrder::ByName => "name",
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, name, description, total_seats, layout_config FROM seat_layouts ORDER BY {order_by}"
    )))
    .fetch_all(db)
    .await
}

/// (id, title, layout config) of an event; the config is `None` without a seat map.
pub async fn event_layout(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
) -> sqlx::Result<Option<(Uuid, String, Option<sqlx::types::Json<serde_json::Value>>)>> {
    sqlx::query_as(
        "SELECT e.id, e.title, l.layout_config FROM events e LEFT JOIN seat_layouts l ON l.id = e.seat_layout_id
         WHERE e.id = $1",
    )
    .bind(event_id)
    .fetch_optional(db)
    .await
}

#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct MapSeat {
    pub id: Uuid,
    pub section: String,
    pub row_number: i32,
    pub seat_number: i32,
    pub seat_label: String,
    pub price: i32,
    pub status: String,
}

/// Every seat of an event, in venue order.
pub async fn event_seats(db: impl PgExecutor<'_>, event_id: Uuid) -> sqlx::Result<Vec<MapSeat>> {
    sqlx::query_as(
        "SELECT id, section, row_number, seat_number, seat_label, price, status
         FROM seats WHERE event_id = $1 ORDER BY section, row_number, seat_number",
    )
    .bind(event_id)
    .fetch_all(db)
    .await
}

/// A seat reservation as the payment page reads it (`GET /api/seats/reservation/:id`).
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct HeldReservation {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    /// `status`, `payment_status` and `status_reason` as clients see them (`lifecycle::shown`).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub state: crate::reservations::views::Stored,
    pub payment_method: Option<String>,
    #[serde(with = "tiketi_core::time::wire_opt")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub event_id: Option<Uuid>,
    pub event_title: String,
    pub venue: String,
    #[serde(with = "tiketi_core::time::wire")]
    pub event_date: chrono::DateTime<chrono::Utc>,
    #[sqlx(skip)]
    pub seats: Vec<HeldReservationSeat>,
    /// Present (and true) only when the hold time has passed, as in the original.
    #[serde(rename = "isExpired", skip_serializing_if = "std::ops::Not::not")]
    pub is_expired: bool,
}

#[derive(Debug, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct HeldReservationSeat {
    pub seat_id: Option<Uuid>,
    pub seat_label: Option<String>,
    pub section: Option<String>,
    pub row_number: Option<i32>,
    pub seat_number: Option<i32>,
    pub price: i32,
}

/// The caller's reservation with its seats (ticket items have null seat fields).
pub async fn held_reservation(
    db: &sqlx::PgPool,
    id: Uuid,
    owner: Uuid,
) -> sqlx::Result<Option<HeldReservation>> {
    let found: Option<HeldReservation> = sqlx::query_as(
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status,
                coalesce(r.expires_at < now(), FALSE) AS hold_over, r.payment_method, r.expires_at, r.created_at, r.event_id, e.title AS event_title, e.venue, e.event_date,
                coalesce(r.expires_at < now(), FALSE) AS is_expired
         FROM reservations r JOIN events e ON e.id = r.event_id
         WHERE r.id = $1 AND r.user_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    let Some(mut r) = found else {
        return Ok(None);
    };
    r.seats = sqlx::query_as(
        "SELECT s.id AS seat_id, s.seat_label, s.section, s.row_number, s.seat_number, ri.unit_price AS price
         FROM reservation_items ri LEFT JOIN seats s ON s.id = ri.seat_id
         WHERE ri.reservation_id = $1 ORDER BY s.seat_label",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(Some(r))
}
