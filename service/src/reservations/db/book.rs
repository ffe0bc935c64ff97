//! Booking: the sale state, the per-user lock and cap, the one-statement seat hold, ticket bookings
//! and their stock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

/// `Some(true)` when the event exists and sells now (not cancelled/ended, inside its sale window).
pub async fn event_sale_state(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "SELECT status IN ('upcoming', 'on_sale', 'sold_out') AND now() >= sale_start_date AND now() < sale_end_date
         FROM events WHERE id = $1",
    )
    .bind(event_id)
    .fetch_optional(db)
    .await
}

/// Serialises one user's holds and bookings of one event until the transaction ends, so a per-user
/// cap is checked and consumed as one step. The two-int4 form keeps these keys apart from the jobs'
/// bigint locks; a hash collision only makes two unrelated buyers wait for each other briefly.
pub async fn lock_user_event(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    event_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1::TEXT), hashtext($2::TEXT))")
        .bind(user_id)
        .bind(event_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Ticket units `user_id` has in `event_id`: confirmed bookings and pending ones whose hold has not
/// expired (ticket bookings have no expiry); cancelled and expired ones do not count.
pub async fn user_event_tickets(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    event_id: Uuid,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(ri.quantity), 0)::BIGINT
         FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
         WHERE r.user_id = $1 AND r.event_id = $2 AND ri.ticket_type_id IS NOT NULL
           AND (r.status = 'confirmed' OR (r.status = 'pending' AND coalesce(r.expires_at > now(), TRUE)))",
    )
    .bind(user_id)
    .bind(event_id)
    .fetch_one(db)
    .await
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct HeldSeat {
    pub id: Uuid,
    pub seat_label: String,
    pub price: i32,
}

/// What `hold_seats` (migration 0008) answered.
#[derive(Debug)]
pub enum HoldOutcome {
    Held {
        seats: Vec<HeldSeat>,
        expires_at: DateTime<Utc>,
    },
    NoEvent,
    NotOnSale,
    OverCap,
    SeatNotFound,
    /// The labels of the requested seats someone else holds or bought, in label order.
    SeatTaken(String),
    AmountTooLarge,
    UserGone,
}

/// One seat hold's arguments.
pub struct HoldRequest<'a> {
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub seat_ids: &'a [Uuid],
    /// The new reservation's id and number.
    pub reservation_id: Uuid,
    pub number: &'a str,
    pub hold_secs: f64,
    /// `MAX_SEATS_PER_USER_PER_EVENT` (0: no cap).
    pub cap: i32,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    outcome: String,
    held_seat: Option<Uuid>,
    held_label: Option<String>,
    held_price: Option<i32>,
    held_until: Option<DateTime<Utc>>,
}

/// The whole seat hold in one statement, one round trip: sale window, per-user cap (`cap` seats,
/// 0 = none), the seat flips, the reservation and its items (see migration 0008). Run it on the
/// pool, not inside a transaction: the statement is its own transaction.
pub async fn hold_seats(db: impl PgExecutor<'_>, h: &HoldRequest<'_>) -> sqlx::Result<HoldOutcome> {
    let rows: Result<Vec<HoldRow>, sqlx::Error> =
        sqlx::query_as("SELECT * FROM hold_seats($1, $2, $3, $4, $5, $6, $7)")
            .bind(h.user_id)
            .bind(h.event_id)
            .bind(h.seat_ids)
            .bind(h.reservation_id)
            .bind(h.number)
            .bind(h.hold_secs)
            .bind(h.cap)
            .fetch_all(db)
            .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e)) => {
            return match (e.code().as_deref(), e.constraint()) {
                (Some("TKS01"), _) => Ok(HoldOutcome::SeatNotFound),
                (Some("TKS02"), _) => Ok(HoldOutcome::SeatTaken(e.message().to_owned())),
                (Some("TKS03"), _) => Ok(HoldOutcome::AmountTooLarge),
                (Some("23503"), Some("reservations_user_id_fkey")) => Ok(HoldOutcome::UserGone),
                _ => Err(sqlx::Error::Database(e)),
            };
        }
        Err(e) => return Err(e),
    };
    let Some(first) = rows.first() else {
        return Err(sqlx::Error::RowNotFound);
    };
    Ok(match first.outcome.as_str() {
        "no_event" => HoldOutcome::NoEvent,
        "not_on_sale" => HoldOutcome::NotOnSale,
        "over_cap" => HoldOutcome::OverCap,
        _ => {
            let expires_at = first.held_until.ok_or(sqlx::Error::RowNotFound)?;
            let seats = rows
                .into_iter()
                .filter_map(|r| {
                    Some(HeldSeat {
                        id: r.held_seat?,
                        seat_label: r.held_label?,
                        price: r.held_price?,
                    })
                })
                .collect();
            HoldOutcome::Held { seats, expires_at }
        }
    })
}

/// Inserts a pending reservation; a hold gets `expires_at = now() + hold_secs`.
pub async fn insert_reservation(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
    event_id: Uuid,
    number: &str,
    total: i32,
    hold_secs: Option<i64>,
) -> sqlx::Result<(Uuid, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "INSERT INTO reservations (id, user_id, event_id, reservation_number, total_amount, expires_at)
         VALUES ($6, $1, $2, $3, $4, now() + make_interval(secs => $5))
         RETURNING id, expires_at",
    )
    .bind(user_id)
    .bind(event_id)
    .bind(number)
    .bind(total)
    .bind(hold_secs.map(|s| s as f64))
    .bind(id)
    .fetch_one(db)
    .await
}

pub async fn insert_item(
    db: impl PgExecutor<'_>,
    reservation_id: Uuid,
    ticket_type_id: Option<Uuid>,
    seat_id: Option<Uuid>,
    quantity: i32,
    unit_price: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO reservation_items (reservation_id, ticket_type_id, seat_id, quantity, unit_price, subtotal)
         VALUES ($1, $2, $3, $4, $5, $4 * $5)",
    )
    .bind(reservation_id)
    .bind(ticket_type_id)
    .bind(seat_id)
    .bind(quantity)
    .bind(unit_price)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct Stock {
    pub price: i32,
    pub available_quantity: i32,
    pub total_quantity: i32,
}

/// Takes `quantity` units if that many are left; `None` otherwise. Never drives stock below zero.
pub async fn take_stock(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    ticket_type_id: Uuid,
    quantity: i32,
) -> sqlx::Result<Option<Stock>> {
    sqlx::query_as(
        "UPDATE ticket_types SET available_quantity = available_quantity - $3
         WHERE id = $1 AND event_id = $2 AND available_quantity >= $3
         RETURNING price, available_quantity, total_quantity",
    )
    .bind(ticket_type_id)
    .bind(event_id)
    .bind(quantity)
    .fetch_optional(db)
    .await
}

pub async fn stock_of(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    ticket_type_id: Uuid,
) -> sqlx::Result<Option<(String, i32)>> {
    sqlx::query_as(
        "SELECT name, available_quantity FROM ticket_types WHERE id = $1 AND event_id = $2",
    )
    .bind(ticket_type_id)
    .bind(event_id)
    .fetch_optional(db)
    .await
}
