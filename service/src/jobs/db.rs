//! SQL of the background jobs.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// Takes the job's lock for the current transaction; false when another replica is running it.
pub async fn try_lock(tx: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(id)
        .fetch_one(tx)
        .await
}

/// Moves events whose sale window or date passed to `on_sale` or `ended`; returns their ids.
pub async fn apply_status_transitions(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "UPDATE events SET status = CASE
             WHEN event_date < now() OR sale_end_date <= now() THEN 'ended'
             ELSE 'on_sale' END
         WHERE (status = 'upcoming' AND sale_start_date <= now() AND sale_end_date > now())
            OR (status IN ('upcoming', 'on_sale', 'sold_out') AND (sale_end_date <= now() OR event_date < now()))
         RETURNING id",
    )
    .fetch_all(db)
    .await
}

/// The next instant at which an event's status falls due to change, if any.
pub async fn next_status_boundary(db: impl PgExecutor<'_>) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT min(t) FROM (
             SELECT sale_start_date AS t FROM events WHERE status = 'upcoming' AND sale_start_date > now()
             UNION ALL SELECT sale_end_date FROM events WHERE status IN ('upcoming', 'on_sale', 'sold_out') AND sale_end_date > now()
             UNION ALL SELECT event_date FROM events WHERE status NOT IN ('ended', 'cancelled') AND event_date > now()) b",
    )
    .fetch_one(db)
    .await
}

/// An event in its sale window, as the traffic sampler logs it.
#[derive(Debug, sqlx::FromRow)]
pub struct OnSale {
    pub id: Uuid,
    pub artist_name: Option<String>,
}

/// The events in their sale window (not cancelled).
pub async fn events_on_sale(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<OnSale>> {
    sqlx::query_as(
        "SELECT id, artist_name FROM events
         WHERE status <> 'cancelled' AND now() >= sale_start_date AND now() < sale_end_date",
    )
    .fetch_all(db)
    .await
}

/// One minute's traffic figures of an event.
#[derive(Debug)]
pub struct TrafficSample<'a> {
    pub event_id: Uuid,
    pub artist_name: Option<&'a str>,
    pub concurrent_users: i32,
    pub queue_users: i32,
    pub replicas: i32,
    pub demand_users: i32,
}

/// Writes this minute's `traffic_logs` row; a second sample in the same minute keeps the larger
/// figures.
pub async fn upsert_traffic(db: impl PgExecutor<'_>, s: &TrafficSample<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO traffic_logs (event_id, artist_name, minute, concurrent_users, queue_users, replicas, demand_users)
         VALUES ($1, $2, date_trunc('minute', now()), $3, $4, $5, $6)
         ON CONFLICT (event_id, minute) DO UPDATE SET
             concurrent_users = GREATEST(traffic_logs.concurrent_users, EXCLUDED.concurrent_users),
             queue_users = GREATEST(traffic_logs.queue_users, EXCLUDED.queue_users),
             replicas = GREATEST(traffic_logs.replicas, EXCLUDED.replicas),
             demand_users = GREATEST(traffic_logs.demand_users, EXCLUDED.demand_users)",
    )
    .bind(s.event_id)
    .bind(s.artist_name)
    .bind(s.concurrent_users)
    .bind(s.queue_users)
    .bind(s.replicas)
    .bind(s.demand_users)
    .execute(db)
    .await?;
    Ok(())
}
