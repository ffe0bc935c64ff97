//! What the operator reads and publishes outside Kubernetes: the artist's sale history and the
//! forecast-vs-actual rows (PostgreSQL), the waiting-queue depth and the ready capacity (Redis).
//! Keys come from `tiketi_core::keys`, the same builders the service uses.

use chrono::{DateTime, Utc};
use fred::prelude::{Expiration, KeysInterface, SortedSetsInterface};
use sqlx::PgPool;
use uuid::Uuid;

use crate::plan::SalePeak;

/// Peak concurrent users of every past sale of `artist` (one per event), excluding `current`.
pub async fn history(db: &PgPool, artist: &str, current: Uuid) -> sqlx::Result<Vec<SalePeak>> {
    let rows: Vec<(Option<Uuid>, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event_id, peak_concurrent_users, last_minute FROM artist_sale_peaks
         WHERE lower(artist_name) = lower($1) AND event_id IS DISTINCT FROM $2
         ORDER BY last_minute DESC LIMIT 50",
    )
    .bind(artist)
    .bind(current)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(e, p, at)| SalePeak {
            event_id: e.map(|e| e.to_string()),
            peak_users: i64::from(p),
            at,
        })
        .collect())
}

/// The highest concurrent users the service recorded for this sale so far.
pub async fn actual_peak(db: &PgPool, event: Uuid) -> sqlx::Result<Option<i64>> {
    let peak: Option<i32> =
        sqlx::query_scalar("SELECT max(concurrent_users) FROM traffic_logs WHERE event_id = $1")
            .bind(event)
            .fetch_one(db)
            .await?;
    Ok(peak.map(i64::from))
}

pub struct Outcome<'a> {
    pub event: Uuid,
    pub artist: &'a str,
    pub ticket_event: &'a str,
    pub forecast_users: i64,
    pub forecast_replicas: i32,
    pub method: &'a str,
    pub peak_users: Option<i64>,
    pub peak_queue: Option<i64>,
}

/// Records forecast against actual for a finished sale (idempotent per TicketEvent and event).
pub async fn record_outcome(db: &PgPool, o: &Outcome<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sale_forecasts (event_id, artist_name, ticket_event, forecast_users, forecast_replicas, forecast_method,
                                     actual_peak_users, actual_peak_queue)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (ticket_event, event_id) DO UPDATE SET actual_peak_users = EXCLUDED.actual_peak_users,
             actual_peak_queue = EXCLUDED.actual_peak_queue, recorded_at = now()",
    )
    .bind(o.event)
    .bind(o.artist)
    .bind(o.ticket_event)
    .bind(o.forecast_users.min(i64::from(i32::MAX)) as i32)
    .bind(o.forecast_replicas)
    .bind(o.method)
    .bind(o.peak_users.map(|p| p.min(i64::from(i32::MAX)) as i32))
    .bind(o.peak_queue.map(|p| p.min(i64::from(i32::MAX)) as i32))
    .execute(db)
    .await?;
    Ok(())
}

/// Users waiting in the event's queue (ZCARD: O(1)).
pub async fn queue_depth(
    redis: &fred::clients::Pool,
    keys: &tiketi_core::keys::Keys,
    event: Uuid,
) -> Result<i64, fred::error::Error> {
    redis.zcard(keys.queue(event)).await
}

/// Publishes the ready user capacity; the waiting room never admits beyond it. It expires unless
/// refreshed, so a stopped operator cannot pin the service to a stale figure.
pub async fn publish_capacity(
    redis: &fred::clients::Pool,
    keys: &tiketi_core::keys::Keys,
    users: i64,
) -> Result<(), fred::error::Error> {
    redis
        .set(
            keys.capacity(),
            users,
            Some(Expiration::EX(120)),
            None,
            false,
        )
        .await
}
