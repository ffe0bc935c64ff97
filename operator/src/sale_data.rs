//! What the operator reads and publishes outside Kubernetes: the artist's sale history and the
//! forecast-vs-actual rows (PostgreSQL), the waiting-queue depth and the ready capacity (Redis).
//! Keys come from `tiketi_core::keys`, the same builders the service uses.

use chrono::{DateTime, Utc};
use fred::prelude::{Expiration, KeysInterface, SortedSetsInterface};
use sqlx::PgPool;
use tiketi_core::rules::{CapacityRecord, OutflowRecord};
use uuid::Uuid;

use crate::plan::SalePeak;

/// Peak demand of every past sale of `artist` (one per event), excluding `current`: the users on the
/// page plus those waiting in the queue, the highest minute (`artist_sale_peaks.peak_demand_users`),
/// so a sale whose admissions were capped still teaches the next forecast its real demand.
pub async fn history(db: &PgPool, artist: &str, current: Uuid) -> sqlx::Result<Vec<SalePeak>> {
    let rows: Vec<(Option<Uuid>, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event_id, peak_demand_users, last_minute FROM artist_sale_peaks
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

/// This sale's peak demand so far: the distinct users on the page or in the queue, the highest
/// minute — the measure the forecast is made in (`artist_sale_peaks.peak_demand_users`), so forecast
/// and actual compare like for like (admissions alone are capped by the waiting room).
pub async fn actual_peak(db: &PgPool, event: Uuid) -> sqlx::Result<Option<i64>> {
    let peak: Option<i32> = sqlx::query_scalar(
        "SELECT max(COALESCE(demand_users, concurrent_users + queue_users)) FROM traffic_logs
         WHERE event_id = $1",
    )
    .bind(event)
    .fetch_one(db)
    .await?;
    Ok(peak.map(i64::from))
}

pub struct SaleOutcome<'a> {
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
pub async fn record_outcome(db: &PgPool, o: &SaleOutcome<'_>) -> sqlx::Result<()> {
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

/// Publishes the event's admission capacity with its publication time; the waiting room never
/// admits beyond it while it is fresh (and falls back when it is zero or stale). It expires after
/// a day unless refreshed, so a removed operator leaves nothing behind for long.
pub async fn publish_capacity(
    redis: &fred::clients::Pool,
    keys: &tiketi_core::keys::Keys,
    event: Uuid,
    users: i64,
    now: DateTime<Utc>,
) -> Result<(), fred::error::Error> {
    let record = CapacityRecord {
        users,
        at_ms: now.timestamp_millis(),
    };
    let value = serde_json::to_string(&record).unwrap_or_default();
    redis
        .set(
            keys.capacity(event),
            value,
            Some(Expiration::EX(86_400)),
            None,
            false,
        )
        .await
}

/// Removes the event's capacity (the sale is over): its waiting room is bounded by its threshold.
pub async fn remove_capacity(
    redis: &fred::clients::Pool,
    keys: &tiketi_core::keys::Keys,
    event: Uuid,
) -> Result<(), fred::error::Error> {
    let _: i64 = redis.del(keys.capacity(event)).await?;
    Ok(())
}

/// The waiting room's outflow the service measured (`None` when it published none).
pub async fn outflow(
    redis: &fred::clients::Pool,
    keys: &tiketi_core::keys::Keys,
    event: Uuid,
) -> Result<Option<OutflowRecord>, fred::error::Error> {
    let raw: Option<String> = redis.get(keys.outflow(event)).await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}
