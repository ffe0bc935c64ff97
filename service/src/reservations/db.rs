//! SQL of reservations, seat holds and stock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgExecutor};
use tiketi_core::wire::Notice;
use uuid::Uuid;

use super::views::{Detail, Listed};

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

/// Frees the seats the reservations `ids` still hold (a seat held by another is not touched).
pub async fn release_seats(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<EventSeat>> {
    sqlx::query_as(
        "UPDATE seats s SET status = 'available', held_by = NULL
         FROM reservation_items ri
         WHERE ri.reservation_id = ANY ($1) AND s.id = ri.seat_id AND s.held_by = ri.reservation_id
         RETURNING s.id, s.event_id",
    )
    .bind(ids)
    .fetch_all(db)
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
    db: impl PgExecutor<'_>,
    id: Uuid,
    sold: bool,
) -> sqlx::Result<Vec<EventSeat>> {
    sqlx::query_as(
        "UPDATE seats s SET status = CASE WHEN $2 THEN 'reserved' ELSE 'locked' END, held_by = $1
         FROM reservation_items ri
         WHERE ri.reservation_id = $1 AND s.id = ri.seat_id AND s.status = 'available'
         RETURNING s.id, s.event_id",
    )
    .bind(id)
    .bind(sold)
    .fetch_all(db)
    .await
}

/// Marks the seats reservation `id` holds as sold (or back to held when `sold` is false); `false`
/// when one of its seats is no longer held by it (then nothing may be sold: roll back).
pub async fn set_seats_sold(db: impl PgExecutor<'_>, id: Uuid, sold: bool) -> sqlx::Result<bool> {
    let (items, held): (i64, i64) = sqlx::query_as(
        "WITH items AS (SELECT seat_id FROM reservation_items WHERE reservation_id = $1 AND seat_id IS NOT NULL),
              held AS (UPDATE seats SET status = CASE WHEN $2 THEN 'reserved' ELSE 'locked' END
                       WHERE id IN (SELECT seat_id FROM items) AND held_by = $1 RETURNING id)
         SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM held)",
    )
    .bind(id)
    .bind(sold)
    .fetch_one(db)
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

// The caller's reservations as `views` shows them.

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
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status, r.created_at,
                e.title AS event_title, e.venue, e.event_date
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
        "SELECT r.id, r.reservation_number, r.total_amount, r.status, r.payment_status, r.payment_method,
                r.created_at, r.event_id, e.title AS event_title, e.venue, e.event_date, e.address
         FROM reservations r LEFT JOIN events e ON e.id = r.event_id
         WHERE r.id = $1 AND r.user_id = $2",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(db)
    .await
}
