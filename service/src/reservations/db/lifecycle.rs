//! The lifecycle's SQL: locking a reservation, status changes, releasing and reclaiming its seats and
//! stock, expiry.
//!
//! Every statement here that writes seats first locks them in id order ([`lock_item_seats`]), the
//! order the grouped hold (`hold_seats_batch`) takes them in: a payment or a release that locked a
//! reservation's second seat first would deadlock with a hold that took its first seat and waits for
//! the second (PostgreSQL then aborts one of them).

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor};
use tiketi_core::wire::Notice;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct LockedReservation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Option<Uuid>,
    pub reservation_number: String,
    pub total_amount: i32,
    pub status: String,
    pub payment_status: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// `expires_at` has passed (by the database clock).
    pub expired: bool,
}

impl LockedReservation {
    /// Where the lifecycle finds this reservation.
    pub fn current(&self) -> Result<crate::reservations::lifecycle::Current, crate::error::Error> {
        crate::reservations::lifecycle::Current::parse(
            &self.status,
            &self.payment_status,
            self.expired,
        )
        .ok_or_else(|| {
            crate::error::Error::internal(anyhow::anyhow!(
                "reservation {} has unknown status {}/{}",
                self.id,
                self.status,
                self.payment_status
            ))
        })
    }
}

const RESERVATION_SELECT: &str =
    "SELECT id, user_id, event_id, reservation_number, total_amount, status,
        payment_status, expires_at, coalesce(expires_at < now(), FALSE) AS expired
     FROM reservations WHERE id = $1 AND ($2::UUID IS NULL OR user_id = $2)";

/// Locks a reservation row for a state change; `owner` restricts it to that user's reservations.
pub async fn lock_reservation(
    db: impl PgExecutor<'_>,
    id: Uuid,
    owner: Option<Uuid>,
) -> sqlx::Result<Option<LockedReservation>> {
    sqlx::query_as(AssertSqlSafe(format!("{RESERVATION_SELECT} FOR UPDATE")))
        .bind(id)
        .bind(owner)
        .fetch_optional(db)
        .await
}

/// The same read without a lock (payment pre-check).
pub async fn get_reservation(
    db: impl PgExecutor<'_>,
    id: Uuid,
    owner: Uuid,
) -> sqlx::Result<Option<LockedReservation>> {
    sqlx::query_as(RESERVATION_SELECT)
        .bind(id)
        .bind(owner)
        .fetch_optional(db)
        .await
}

// The lifecycle's writes (`items.rs` composes them; callers hold the reservations' row locks).

/// Ticket units of one ticket type in some reservations.
#[derive(Debug, sqlx::FromRow)]
pub struct TicketUnits {
    pub ticket_type_id: Uuid,
    pub quantity: i32,
}

/// The ticket units the reservations `ids` hold, per ticket type in id order.
pub async fn ticket_units_of(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> sqlx::Result<Vec<TicketUnits>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT ticket_type_id, sum(quantity)::BIGINT FROM reservation_items
         WHERE reservation_id = ANY ($1) AND ticket_type_id IS NOT NULL GROUP BY ticket_type_id ORDER BY ticket_type_id",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(ticket_type_id, quantity)| TicketUnits {
            ticket_type_id,
            quantity: i32::try_from(quantity).unwrap_or(i32::MAX),
        })
        .collect())
}

/// A ticket type's stock after a change.
#[derive(Debug, sqlx::FromRow)]
pub struct StockChange {
    pub event_id: Uuid,
    pub available_quantity: i32,
    pub total_quantity: i32,
}

impl StockChange {
    pub fn notice(&self, ticket_type_id: Uuid) -> Notice {
        Notice::TicketUpdated {
            event_id: self.event_id,
            ticket_type_id,
            available: self.available_quantity,
            total: self.total_quantity,
        }
    }
}

/// Puts `quantity` units back on sale (never above the total); `None` when the type is gone.
pub async fn return_stock(
    db: impl PgExecutor<'_>,
    ticket_type_id: Uuid,
    quantity: i32,
) -> sqlx::Result<Option<StockChange>> {
    sqlx::query_as(
        "UPDATE ticket_types SET available_quantity = LEAST(total_quantity, available_quantity + $2)
         WHERE id = $1 RETURNING event_id, available_quantity, total_quantity",
    )
    .bind(ticket_type_id)
    .bind(quantity)
    .fetch_optional(db)
    .await
}

/// Takes `quantity` units again if that many are left; `None` otherwise (or when the type is gone).
pub async fn take_back_stock(
    db: impl PgExecutor<'_>,
    ticket_type_id: Uuid,
    quantity: i32,
) -> sqlx::Result<Option<StockChange>> {
    sqlx::query_as(
        "UPDATE ticket_types SET available_quantity = available_quantity - $2
         WHERE id = $1 AND available_quantity >= $2 RETURNING event_id, available_quantity, total_quantity",
    )
    .bind(ticket_type_id)
    .bind(quantity)
    .fetch_optional(db)
    .await
}

/// A seat and its event.
#[derive(Debug, sqlx::FromRow)]
pub struct EventSeat {
    pub id: Uuid,
    pub event_id: Uuid,
}

/// Locks the seats among the items of the reservations `ids`, in id order.
async fn lock_item_seats(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT s.id FROM seats s
         WHERE s.id IN (SELECT seat_id FROM reservation_items WHERE reservation_id = ANY ($1))
         ORDER BY s.id FOR UPDATE",
    )
    .bind(ids)
    .execute(tx)
    .await?;
    Ok(())
}

/// Frees the seats the reservations `ids` still hold (a seat held by another is not touched).
pub async fn release_seats(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<EventSeat>> {
    lock_item_seats(&mut *tx, ids).await?;
    sqlx::query_as(
        "UPDATE seats s SET status = 'available', held_by = NULL
         FROM reservation_items ri
         WHERE ri.reservation_id = ANY ($1) AND s.id = ri.seat_id AND s.held_by = ri.reservation_id
         RETURNING s.id, s.event_id",
    )
    .bind(ids)
    .fetch_all(tx)
    .await
}

/// How many seats reservation `id` has among its items.
pub async fn seat_item_count(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM reservation_items WHERE reservation_id = $1 AND seat_id IS NOT NULL",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

/// Claims for reservation `id` those of its seats that are available again, sold or held.
pub async fn reclaim_seats(
    tx: &mut PgConnection,
    id: Uuid,
    sold: bool,
) -> sqlx::Result<Vec<EventSeat>> {
    lock_item_seats(&mut *tx, &[id]).await?;
    sqlx::query_as(
        "UPDATE seats s SET status = CASE WHEN $2 THEN 'reserved' ELSE 'locked' END, held_by = $1
         FROM reservation_items ri
         WHERE ri.reservation_id = $1 AND s.id = ri.seat_id AND s.status = 'available'
         RETURNING s.id, s.event_id",
    )
    .bind(id)
    .bind(sold)
    .fetch_all(tx)
    .await
}

/// Marks the seats reservation `id` holds as sold (or back to held when `sold` is false); `false`
/// when one of its seats is no longer held by it (then nothing may be sold: roll back).
pub async fn set_seats_sold(tx: &mut PgConnection, id: Uuid, sold: bool) -> sqlx::Result<bool> {
    lock_item_seats(&mut *tx, &[id]).await?;
    let (items, held): (i64, i64) = sqlx::query_as(
        "WITH items AS (SELECT seat_id FROM reservation_items WHERE reservation_id = $1 AND seat_id IS NOT NULL),
              held AS (UPDATE seats SET status = CASE WHEN $2 THEN 'reserved' ELSE 'locked' END
                       WHERE id IN (SELECT seat_id FROM items) AND held_by = $1 RETURNING id)
         SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM held)",
    )
    .bind(id)
    .bind(sold)
    .fetch_one(tx)
    .await?;
    Ok(items == held)
}

/// Writes a decided status change; a revived hold gets a fresh hold time. Returns `updated_at`.
pub async fn set_status(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: &str,
    payment: &str,
    method: Option<&str>,
    renew_hold_secs: Option<i64>,
) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar(
        "UPDATE reservations SET status = $2, payment_status = $3, payment_method = coalesce($4, payment_method),
                expires_at = CASE WHEN $5::FLOAT8 IS NOT NULL AND expires_at IS NOT NULL
                                  THEN now() + make_interval(secs => $5) ELSE expires_at END
         WHERE id = $1 RETURNING updated_at",
    )
    .bind(id)
    .bind(status)
    .bind(payment)
    .bind(method)
    .bind(renew_hold_secs.map(|s| s as f64))
    .fetch_one(db)
    .await
}

/// A live reservation of an event, as its cancellation reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct LiveReservation {
    pub id: Uuid,
    pub status: String,
    pub payment_status: String,
}

/// Locks the live reservations of an event (an admin cancels or deletes it).
pub async fn lock_live_of_event(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
) -> sqlx::Result<Vec<LiveReservation>> {
    sqlx::query_as(
        "SELECT id, status, payment_status FROM reservations
         WHERE event_id = $1 AND status IN ('pending', 'confirmed') ORDER BY id FOR UPDATE",
    )
    .bind(event_id)
    .fetch_all(db)
    .await
}

/// Writes many decided status changes at once: (id, status, payment status).
pub async fn set_statuses(
    db: impl PgExecutor<'_>,
    changes: &[(Uuid, &'static str, &'static str)],
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = changes.iter().map(|c| c.0).collect();
    let statuses: Vec<&str> = changes.iter().map(|c| c.1).collect();
    let payments: Vec<&str> = changes.iter().map(|c| c.2).collect();
    sqlx::query(
        "UPDATE reservations r SET status = u.status, payment_status = u.payment
         FROM unnest($1::UUID[], $2::TEXT[], $3::TEXT[]) AS u(id, status, payment) WHERE r.id = u.id",
    )
    .bind(ids)
    .bind(statuses)
    .bind(payments)
    .execute(db)
    .await?;
    Ok(())
}

/// Expires up to `batch` unpaid holds past their `expires_at` (the lifecycle's `Change::Expire`) and
/// returns their ids; their seats are released by `release`. Rows locked by an in-flight payment are
/// skipped this round (that payment either commits or sees them expired).
pub async fn expire_holds(db: impl PgExecutor<'_>, batch: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "UPDATE reservations SET status = 'expired', payment_status = 'failed'
         WHERE id IN (SELECT id FROM reservations
                      WHERE status = 'pending' AND payment_status = 'pending' AND expires_at < now()
                      ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(batch)
    .fetch_all(db)
    .await
}
