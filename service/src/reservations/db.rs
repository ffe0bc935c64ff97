//! SQL of reservations, seat holds and stock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor};
use tiketi_core::wire::Notice;
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

/// (seats, ticket units) `user_id` has in `event_id`: confirmed reservations and pending ones whose
/// hold has not expired (ticket bookings have no expiry); cancelled and expired ones do not count.
pub async fn user_event_counts(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    event_id: Uuid,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT coalesce(sum(ri.quantity) FILTER (WHERE ri.seat_id IS NOT NULL), 0)::BIGINT,
                coalesce(sum(ri.quantity) FILTER (WHERE ri.ticket_type_id IS NOT NULL), 0)::BIGINT
         FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
         WHERE r.user_id = $1 AND r.event_id = $2
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

#[derive(sqlx::FromRow)]
struct LockedSeat {
    id: Uuid,
    event_id: Uuid,
    seat_label: String,
    price: i32,
}

// Both seat lookups below are by primary key alone, with the event compared in Rust: given an
// `event_id = $2` condition, a generic plan under a fresh event's stale statistics chose to walk
// every seat of the event through seats_position_key (8 ms per hold on a 21k-seat event, growing
// with the venue) instead of fetching one row.

/// The hold itself: flips the requested seats from available to locked, all or nothing is decided by
/// the caller comparing counts. Concurrent holders of one seat serialise on its row; losers match 0
/// rows. A seat of another event makes the count differ (and the caller's transaction roll back).
pub async fn lock_available_seats(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    seat_ids: &[Uuid],
    reservation_id: Uuid,
) -> sqlx::Result<Vec<HeldSeat>> {
    let locked: Vec<LockedSeat> = sqlx::query_as(
        "UPDATE seats SET status = 'locked', held_by = $2
         WHERE id = ANY ($1) AND status = 'available'
         RETURNING id, event_id, seat_label, price",
    )
    .bind(seat_ids)
    .bind(reservation_id)
    .fetch_all(db)
    .await?;
    Ok(locked
        .into_iter()
        .filter(|s| s.event_id == event_id)
        .map(|s| HeldSeat {
            id: s.id,
            seat_label: s.seat_label,
            price: s.price,
        })
        .collect())
}

/// (label, status) of the requested seats that exist in the event, by label.
pub async fn seat_states(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    seat_ids: &[Uuid],
) -> sqlx::Result<Vec<(String, String)>> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT event_id, seat_label, status FROM seats WHERE id = ANY ($1)")
            .bind(seat_ids)
            .fetch_all(db)
            .await?;
    let mut found: Vec<(String, String)> = rows
        .into_iter()
        .filter(|(e, _, _)| *e == event_id)
        .map(|(_, label, status)| (label, status))
        .collect();
    found.sort();
    Ok(found)
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
    pub fn current(&self) -> Result<super::lifecycle::Current, crate::error::Error> {
        super::lifecycle::Current::parse(&self.status, &self.payment_status, self.expired)
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

/// Returns the stock and the seats still held by the live reservations `ids` to sale (callers hold
/// their row locks and decided the release through the lifecycle). A seat another reservation holds
/// now is never touched.
pub async fn release(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Notice>> {
    let mut notices = Vec::new();
    if ids.is_empty() {
        return Ok(notices);
    }
    let tickets: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT ticket_type_id, sum(quantity)::BIGINT FROM reservation_items
         WHERE reservation_id = ANY ($1) AND ticket_type_id IS NOT NULL GROUP BY ticket_type_id ORDER BY ticket_type_id",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    for (ticket_type_id, quantity) in tickets {
        let row: Option<(Uuid, i32, i32)> = sqlx::query_as(
            "UPDATE ticket_types SET available_quantity = LEAST(total_quantity, available_quantity + $2)
             WHERE id = $1 RETURNING event_id, available_quantity, total_quantity",
        )
        .bind(ticket_type_id)
        .bind(i32::try_from(quantity).unwrap_or(i32::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((event_id, available, total)) = row {
            notices.push(Notice::TicketUpdated {
                event_id,
                ticket_type_id,
                available,
                total,
            });
        }
    }
    let seats: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE seats s SET status = 'available', held_by = NULL
         FROM reservation_items ri
         WHERE ri.reservation_id = ANY ($1) AND s.id = ri.seat_id AND s.held_by = ri.reservation_id
         RETURNING s.id, s.event_id",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    notices.extend(
        seats
            .into_iter()
            .map(|(seat_id, event_id)| Notice::SeatReleased { event_id, seat_id }),
    );
    Ok(notices)
}

/// Marks the seats reservation `id` holds as sold (or back to held when `sold` is false); `false`
/// when one of its seats is no longer held by it (then nothing may be sold: roll back).
pub async fn set_seats_sold(tx: &mut PgConnection, id: Uuid, sold: bool) -> sqlx::Result<bool> {
    let (items, held): (i64, i64) = sqlx::query_as(
        "WITH items AS (SELECT seat_id FROM reservation_items WHERE reservation_id = $1 AND seat_id IS NOT NULL),
              held AS (UPDATE seats SET status = CASE WHEN $2 THEN 'reserved' ELSE 'locked' END
                       WHERE id IN (SELECT seat_id FROM items) AND held_by = $1 RETURNING id)
         SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM held)",
    )
    .bind(id)
    .bind(sold)
    .fetch_one(&mut *tx)
    .await?;
    Ok(items == held)
}

/// Claims again the seats and stock of an ended reservation that an admin revives: all of them or
/// nothing (`None`: something was sold meanwhile; the caller rolls back).
pub async fn reclaim(
    tx: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    sold: bool,
) -> sqlx::Result<Option<Vec<Notice>>> {
    let mut notices = Vec::new();
    let tickets: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT ticket_type_id, sum(quantity)::BIGINT FROM reservation_items
         WHERE reservation_id = $1 AND ticket_type_id IS NOT NULL GROUP BY ticket_type_id ORDER BY ticket_type_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    for (ticket_type_id, quantity) in tickets {
        let row: Option<(Uuid, i32, i32)> = sqlx::query_as(
            "UPDATE ticket_types SET available_quantity = available_quantity - $2
             WHERE id = $1 AND available_quantity >= $2 RETURNING event_id, available_quantity, total_quantity",
        )
        .bind(ticket_type_id)
        .bind(i32::try_from(quantity).unwrap_or(i32::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((event_id, available, total)) = row else {
            return Ok(None);
        };
        notices.push(Notice::TicketUpdated {
            event_id,
            ticket_type_id,
            available,
            total,
        });
    }
    let wanted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservation_items WHERE reservation_id = $1 AND seat_id IS NOT NULL",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let seats: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE seats s SET status = CASE WHEN $2 THEN 'reserved' ELSE 'locked' END, held_by = $1
         FROM reservation_items ri
         WHERE ri.reservation_id = $1 AND s.id = ri.seat_id AND s.status = 'available'
         RETURNING s.id, s.event_id",
    )
    .bind(id)
    .bind(sold)
    .fetch_all(&mut *tx)
    .await?;
    if seats.len() as i64 != wanted {
        return Ok(None);
    }
    notices.extend(
        seats
            .into_iter()
            .map(|(seat_id, event_id)| Notice::SeatLocked {
                event_id,
                seat_id,
                user_id,
            }),
    );
    Ok(Some(notices))
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

/// Locks the live reservations of an event (an admin cancels or deletes it).
pub async fn lock_live_of_event(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
) -> sqlx::Result<Vec<(Uuid, String, String)>> {
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
