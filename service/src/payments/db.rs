//! SQL of payments: the payment intents, and what a confirmed payment answers about its event
//! and seats.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::intent::{Move, State};

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

// ---- payment intents (`intent.rs` decides every move; each is a compare-and-set on the state) ----

/// A payment intent as the payment path and the recovery job read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IntentRow {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub amount: i32,
    pub method: String,
    pub state: String,
}

impl IntentRow {
    pub fn state(&self) -> Result<State, crate::error::Error> {
        State::parse(&self.state).ok_or_else(|| {
            crate::error::Error::internal(anyhow::anyhow!(
                "payment intent {} has unknown state {}",
                self.id,
                self.state
            ))
        })
    }
}

const OPEN_STATES: &str = "('created', 'charged', 'captured')";

/// The reservation's intent that may still take or holds money, recording a new one (`id`, state
/// `created`) when there is none. Concurrent calls for one reservation get the same intent (the
/// unique index on open intents); `None` when a concurrent insert committed after this
/// statement's snapshot (call again).
pub async fn open_intent(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reservation_id: Uuid,
    amount: i32,
    method: &str,
) -> sqlx::Result<Option<IntentRow>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "WITH new AS (
             INSERT INTO payment_intents (id, reservation_id, amount, method) VALUES ($1, $2, $3, $4)
             ON CONFLICT (reservation_id) WHERE state IN {OPEN_STATES} DO NOTHING
             RETURNING id, reservation_id, amount, method, state)
         SELECT * FROM new
         UNION ALL
         SELECT id, reservation_id, amount, method, state FROM payment_intents
         WHERE reservation_id = $2 AND state IN {OPEN_STATES} AND NOT EXISTS (SELECT 1 FROM new)"
    )))
    .bind(id)
    .bind(reservation_id)
    .bind(amount)
    .bind(method)
    .fetch_optional(db)
    .await
}

/// Makes `mv` on the intent if its state allows it; returns the state it is in afterwards (the
/// new one, or the latest committed one that refused the move). `None`: no such intent.
///
/// The refused state is read by a second statement on purpose: a statement that finds the row
/// changed by a transaction committing while it waited re-checks only its `UPDATE`; any other read
/// in it still sees the statement's snapshot, i.e. the state *before* that commit. A caller told
/// `created` when the intent is in fact `charged` by a concurrent request would give back money
/// that request is about to confirm the seat on.
pub async fn make_move(conn: &mut PgConnection, id: Uuid, mv: Move) -> sqlx::Result<Option<State>> {
    compare_and_set(conn, id, mv, None).await
}

/// `make_move` only if the intent is still untouched for `grace_secs` when the move is made (the
/// recovery job: a request that started driving the intent since it was listed keeps it).
pub async fn move_if_stale(
    db: &PgPool,
    id: Uuid,
    mv: Move,
    grace_secs: f64,
) -> sqlx::Result<Option<State>> {
    compare_and_set(&mut *db.acquire().await?, id, mv, Some(grace_secs)).await
}

async fn compare_and_set(
    conn: &mut PgConnection,
    id: Uuid,
    mv: Move,
    stale_secs: Option<f64>,
) -> sqlx::Result<Option<State>> {
    let (from, to) = mv.edge();
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let moved: Option<String> = sqlx::query_scalar(
        "UPDATE payment_intents SET state = $3
         WHERE id = $1 AND state = ANY ($2)
           AND ($4::float8 IS NULL OR updated_at <= now() - make_interval(secs => $4))
         RETURNING state",
    )
    .bind(id)
    .bind(&from)
    .bind(to.as_str())
    .bind(stale_secs)
    .fetch_optional(&mut *conn)
    .await?;
    let state = match moved {
        Some(s) => Some(s),
        // a new statement, a new snapshot: it sees every move committed before the refusal
        None => {
            sqlx::query_scalar("SELECT state FROM payment_intents WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    Ok(state.as_deref().and_then(State::parse))
}

/// Marks the intent driven by a request about to call the provider: its age restarts, so the
/// recovery job leaves it alone for its grace (longer than the provider call). False when it can no
/// longer be charged (given up meanwhile: the request must not charge it).
pub async fn drive(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE payment_intents SET updated_at = now() WHERE id = $1 AND state IN ('created', 'charged')",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `make_move` on a pooled connection of its own (outside any transaction).
pub async fn move_now(db: &PgPool, id: Uuid, mv: Move) -> sqlx::Result<Option<State>> {
    make_move(&mut *db.acquire().await?, id, mv).await
}

/// The intent's state, its row locked for the rest of the transaction.
pub async fn lock_intent(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<State>> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM payment_intents WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(state.as_deref().and_then(State::parse))
}

/// Marks the captured charges of the reservations `ids` for refund (they were cancelled; callers
/// hold their row locks). The refunds are made after the commit (`Effects::refund`).
pub async fn begin_refunds(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE payment_intents SET state = 'refund_pending'
         WHERE reservation_id = ANY ($1) AND state = 'captured'",
    )
    .bind(ids)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// The intents of a reservation waiting for their refund.
pub async fn refunds_pending_of(
    db: impl PgExecutor<'_>,
    reservation_id: Uuid,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM payment_intents WHERE reservation_id = $1 AND state = 'refund_pending'",
    )
    .bind(reservation_id)
    .fetch_all(db)
    .await
}

/// Up to `limit` unresolved intents untouched for `grace_secs`, oldest first.
pub async fn stale_intents(
    db: impl PgExecutor<'_>,
    grace_secs: f64,
    limit: i64,
) -> sqlx::Result<Vec<IntentRow>> {
    sqlx::query_as(
        "SELECT id, reservation_id, amount, method, state FROM payment_intents
         WHERE state IN ('created', 'charged', 'refund_pending')
           AND updated_at <= now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2",
    )
    .bind(grace_secs)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The ledger's invariant, as rows that break it (none when it holds): every captured charge
/// belongs to exactly one confirmed, paid reservation of its amount, and every confirmed
/// reservation has exactly one captured charge.
pub const LEDGER_VIOLATIONS: &str = "
    SELECT p.reservation_id, 'captured charge without its confirmed, paid reservation' AS problem
    FROM payment_intents p JOIN reservations r ON r.id = p.reservation_id
    WHERE p.state = 'captured'
      AND NOT (r.status = 'confirmed' AND r.payment_status = 'completed' AND r.total_amount = p.amount)
    UNION ALL
    SELECT r.id, 'confirmed reservation with ' || count(p.id) || ' captured charges'
    FROM reservations r LEFT JOIN payment_intents p ON p.reservation_id = r.id AND p.state = 'captured'
    WHERE r.status = 'confirmed'
    GROUP BY r.id HAVING count(p.id) <> 1";

/// The rows breaking the ledger's invariant (`LEDGER_VIOLATIONS`).
pub async fn ledger_violations(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(Uuid, String)>> {
    sqlx::query_as(LEDGER_VIOLATIONS).fetch_all(db).await
}
