//! The traffic sampler: once a minute, for every event in its sale window, one `traffic_logs` row with
//! the users on its page (distinct, across replicas), its queue length, the demand (the distinct
//! users on the page or in the queue, the figure the operator forecasts from; the peak sample of the
//! minute) and the live replica count.
//! This is the history the operator forecasts the next sale of the same artist from.
//! Every replica heartbeats into a Redis set so the count of replicas needs no Kubernetes access.

use std::time::Duration;

use fred::prelude::SortedSetsInterface;
use uuid::Uuid;

use crate::{metrics::KindLabels, state::AppState};

const HEARTBEAT: Duration = Duration::from_secs(10);
const HEARTBEAT_TTL_MS: i64 = 30_000;

pub async fn run(state: AppState) {
    let instance = Uuid::new_v4().to_string();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut sample_every = tokio::time::interval(Duration::from_secs(
        state.config.traffic_sample_seconds.max(1),
    ));
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let expiry = (chrono::Utc::now().timestamp_millis() + HEARTBEAT_TTL_MS) as f64;
                let beat: Result<(), _> = state.redis.zadd(state.keys.replicas(), None, None, false, false, (expiry, instance.as_str())).await;
                if let Err(e) = beat {
                    tracing::debug!(error = %e, "replica heartbeat skipped");
                }
            }
            _ = sample_every.tick() => {
                if let Err(e) = sample(&state).await {
                    tracing::warn!(error = %e, "traffic sample failed");
                }
            }
        }
    }
}

/// Writes this minute's row for every event on sale; returns how many. Idempotent within a minute
/// (a second sample keeps the larger figures).
pub async fn sample(state: &AppState) -> anyhow::Result<usize> {
    let mut tx = state.db.begin().await?;
    if !super::try_lock(&mut tx, super::LOCK_TRAFFIC).await? {
        return Ok(0);
    }
    let events = super::db::events_on_sale(&mut *tx).await?;
    let now_ms = chrono::Utc::now().timestamp_millis() as f64;
    let replicas: i64 = state
        .redis
        .zcount(state.keys.replicas(), now_ms, f64::INFINITY)
        .await?;
    for event in &events {
        let event_id = event.id;
        let on_page = crate::realtime::presence::count(
            &state.redis,
            &state.keys,
            event_id,
            Duration::from_secs(state.config.presence_ttl_seconds),
        )
        .await?;
        let admitted: i64 = state
            .redis
            .zcount(state.keys.active(event_id), now_ms, f64::INFINITY)
            .await?;
        let queued: i64 = state.redis.zcard(state.keys.queue(event_id)).await?;
        let both =
            crate::realtime::presence::also_queued(&state.redis, &state.keys, event_id).await?;
        let users = on_page.max(admitted);
        // demand: the distinct users on the page or in the queue. Those waiting on the page are in
        // both (counted once); admitted users off the page and queued ones never overlap
        let demand = (on_page + queued - both).max(admitted + queued);
        let sample = super::db::TrafficSample {
            event_id,
            artist_name: event.artist_name.as_deref(),
            concurrent_users: users as i32,
            queue_users: queued as i32,
            replicas: replicas.max(1) as i32,
            // demand, not admissions (admission caps concurrent_users)
            demand_users: demand.clamp(0, i64::from(i32::MAX)) as i32,
        };
        super::db::upsert_traffic(&mut *tx, &sample).await?;
    }
    tx.commit().await?;
    if !events.is_empty() {
        state
            .metrics
            .job_runs
            .get_or_create(&KindLabels {
                kind: "traffic_sample",
            })
            .inc();
    }
    Ok(events.len())
}
