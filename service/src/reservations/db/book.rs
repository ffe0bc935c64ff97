//! Booking: the sale state, the per-user lock and cap, the one-statement seat hold, ticket bookings
//! and their stock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::queue::Verdict;

/// What `may_buy` (migration 0009) answers for a purchase now, by PostgreSQL's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyCheck {
    Ok,
    NoEvent,
    NotOnSale,
    NotAdmitted,
    Unproven,
}

impl BuyCheck {
    fn parse(outcome: &str) -> Option<Self> {
        Some(match outcome {
            "ok" => BuyCheck::Ok,
            "no_event" => BuyCheck::NoEvent,
            "not_on_sale" => BuyCheck::NotOnSale,
            "not_admitted" => BuyCheck::NotAdmitted,
            "unproven" => BuyCheck::Unproven,
            _ => return None,
        })
    }
}

/// The waiting room's and the sale window's verdict on a purchase of `event_id` now, decided with
/// the database's clock from what the gate check saw (`admission`); run it inside the purchase's
/// transaction. `fair_window_secs` is `FAIR_OPENING_WINDOW_SECONDS`.
pub async fn may_buy(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    admission: Verdict,
    fair_window_secs: f64,
) -> sqlx::Result<BuyCheck> {
    let (kind, until) = admission.sql();
    let outcome: String = sqlx::query_scalar("SELECT may_buy($1, $2, $3, $4)")
        .bind(event_id)
        .bind(kind)
        .bind(until)
        .bind(fair_window_secs)
        .fetch_one(db)
        .await?;
    BuyCheck::parse(&outcome).ok_or(sqlx::Error::RowNotFound)
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct HeldSeat {
    pub id: Uuid,
    pub seat_label: String,
    pub price: i32,
}

/// What `hold_seats` (migration 0009) answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Held {
        seats: Vec<HeldSeat>,
        expires_at: DateTime<Utc>,
    },
    NoEvent,
    NotOnSale,
    /// The waiting room has not admitted the buyer (by the database's clock); nothing was written.
    NotAdmitted,
    /// The buyer's admission could not be proven (Redis unreadable); nothing was written.
    Unproven,
    OverCap,
    SeatNotFound,
    /// The labels of the requested seats someone else holds or bought, in label order.
    SeatTaken(String),
    AmountTooLarge,
    UserGone,
}

/// One seat hold's arguments.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub seat_ids: Vec<Uuid>,
    /// The new reservation's id and number.
    pub reservation_id: Uuid,
    pub number: String,
    pub hold_secs: f64,
    /// `MAX_SEATS_PER_USER_PER_EVENT` (0: no cap).
    pub cap: i32,
    /// What the waiting room's gate check saw; decided in the statement (`may_buy`).
    pub admission: Verdict,
    /// `FAIR_OPENING_WINDOW_SECONDS`.
    pub fair_window_secs: f64,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    outcome: String,
    held_seat: Option<Uuid>,
    held_label: Option<String>,
    held_price: Option<i32>,
    held_until: Option<DateTime<Utc>>,
}

/// The whole seat hold in one statement, one round trip: sale window and waiting room (`may_buy`,
/// with the database's clock), per-user cap (`cap` seats, 0 = none), the seat flips, the reservation
/// and its items (see migrations 0008 and 0009). Run it on the pool, not inside a transaction: the
/// statement is its own transaction.
pub async fn hold_seats(db: impl PgExecutor<'_>, h: &HoldRequest) -> sqlx::Result<HoldOutcome> {
    let (admission, admitted_until) = h.admission.sql();
    let rows: Result<Vec<HoldRow>, sqlx::Error> =
        sqlx::query_as("SELECT * FROM hold_seats($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(h.user_id)
            .bind(h.event_id)
            .bind(&h.seat_ids)
            .bind(h.reservation_id)
            .bind(&h.number)
            .bind(h.hold_secs)
            .bind(h.cap)
            .bind(admission)
            .bind(admitted_until)
            .bind(h.fair_window_secs)
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
        "not_admitted" => HoldOutcome::NotAdmitted,
        "unproven" => HoldOutcome::Unproven,
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

#[derive(sqlx::FromRow)]
struct BatchRow {
    request: i32,
    outcome: String,
    taken: Option<String>,
    held_seat: Option<Uuid>,
    held_label: Option<String>,
    held_price: Option<i32>,
    held_until: Option<DateTime<Utc>>,
}

/// `holds` decided as if `hold_seats` ran on each in order, in one statement and one transaction
/// (`hold_seats_batch`, migration 0013): one outcome per request, in request order. A refused
/// request never fails the others; an `Err` (the statement failed) means none of them was held.
pub async fn hold_seats_batch(
    db: impl PgExecutor<'_>,
    holds: &[HoldRequest],
) -> sqlx::Result<Vec<HoldOutcome>> {
    let n = holds.len();
    let mut admissions = Vec::with_capacity(n);
    let mut until = Vec::with_capacity(n);
    for h in holds {
        let (kind, at) = h.admission.sql();
        admissions.push(kind);
        until.push(at);
    }
    let counts: Vec<i32> = holds
        .iter()
        .map(|h| i32::try_from(h.seat_ids.len()).unwrap_or(i32::MAX))
        .collect();
    let seats: Vec<Uuid> = holds
        .iter()
        .flat_map(|h| h.seat_ids.iter().copied())
        .collect();
    let rows: Vec<BatchRow> = sqlx::query_as(
        "SELECT * FROM hold_seats_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(holds.iter().map(|h| h.user_id).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.event_id).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.reservation_id).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.number.as_str()).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.hold_secs).collect::<Vec<_>>())
    .bind(holds.iter().map(|h| h.cap).collect::<Vec<_>>())
    .bind(admissions)
    .bind(until)
    .bind(holds.iter().map(|h| h.fair_window_secs).collect::<Vec<_>>())
    .bind(counts)
    .bind(seats)
    .fetch_all(db)
    .await?;
    batch_outcomes(n, rows)
}

/// Groups the batch's rows into one outcome per request; a request without a row, or a row that
/// names no request of the batch, is an error (never a silent success).
fn batch_outcomes(n: usize, rows: Vec<BatchRow>) -> sqlx::Result<Vec<HoldOutcome>> {
    let mut out: Vec<Option<HoldOutcome>> = (0..n).map(|_| None).collect();
    for r in rows {
        let slot = usize::try_from(r.request)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or(sqlx::Error::RowNotFound)?;
        let outcome = match r.outcome.as_str() {
            "held" => {
                let expires_at = r.held_until.ok_or(sqlx::Error::RowNotFound)?;
                let mut seats = match slot.take() {
                    Some(HoldOutcome::Held { seats, .. }) => seats,
                    _ => Vec::new(),
                };
                if let (Some(id), Some(seat_label), Some(price)) =
                    (r.held_seat, r.held_label, r.held_price)
                {
                    seats.push(HeldSeat {
                        id,
                        seat_label,
                        price,
                    });
                }
                HoldOutcome::Held { seats, expires_at }
            }
            "no_event" => HoldOutcome::NoEvent,
            "not_on_sale" => HoldOutcome::NotOnSale,
            "not_admitted" => HoldOutcome::NotAdmitted,
            "unproven" => HoldOutcome::Unproven,
            "over_cap" => HoldOutcome::OverCap,
            "seat_not_found" => HoldOutcome::SeatNotFound,
            "seat_taken" => HoldOutcome::SeatTaken(r.taken.unwrap_or_default()),
            "amount_too_large" => HoldOutcome::AmountTooLarge,
            "user_gone" => HoldOutcome::UserGone,
            _ => return Err(sqlx::Error::RowNotFound),
        };
        *slot = Some(outcome);
    }
    out.into_iter()
        .map(|o| o.ok_or(sqlx::Error::RowNotFound))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(request: i32, outcome: &str, seat: Option<(Uuid, &str, i32)>) -> BatchRow {
        BatchRow {
            request,
            outcome: outcome.into(),
            taken: (outcome == "seat_taken").then(|| "A-1".into()),
            held_seat: seat.map(|s| s.0),
            held_label: seat.map(|s| s.1.into()),
            held_price: seat.map(|s| s.2),
            held_until: (outcome == "held").then(Utc::now),
        }
    }

    #[test]
    fn batch_rows_become_one_outcome_per_request_in_order() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let rows = vec![
            row(0, "held", Some((a, "A-1", 10))),
            row(0, "held", Some((b, "A-2", 20))),
            row(1, "seat_taken", None),
            row(2, "over_cap", None),
        ];
        let out = batch_outcomes(3, rows).unwrap();
        let HoldOutcome::Held { seats, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(seats.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(out[1], HoldOutcome::SeatTaken("A-1".into()));
        assert_eq!(out[2], HoldOutcome::OverCap);
    }

    #[test]
    fn a_request_left_unanswered_or_an_unknown_outcome_is_an_error() {
        assert!(batch_outcomes(2, vec![row(0, "over_cap", None)]).is_err());
        assert!(batch_outcomes(1, vec![row(1, "over_cap", None)]).is_err());
        assert!(batch_outcomes(1, vec![row(0, "maybe", None)]).is_err());
    }
}
