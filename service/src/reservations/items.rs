//! SQL that carries out the lifecycle's decisions (`lifecycle.rs`): releasing, selling and
//! re-claiming a reservation's seats and stock, and writing its status. Callers hold the
//! reservations' row locks.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use tiketi_core::wire::Notice;
use uuid::Uuid;

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
