//! The gate in force per event: the event's threshold and opening (PostgreSQL), capped by the
//! admission capacity the operator publishes (Redis), and how an arrival is treated.

use fred::prelude::KeysInterface;
use tiketi_core::rules::{CapacityRead, capacity_in_force};
use uuid::Uuid;

use super::{Gate, db, now_ms, opening};
use crate::{error::Error, state::AppState};

/// The event's own threshold and opening; `None` when the event does not exist.
pub async fn gate(state: &AppState, event_id: Uuid) -> Result<Option<Gate>, Error> {
    let row = db::gate(&state.db, event_id).await?;
    Ok(row.map(|r| Gate {
        threshold: i64::from(r.queue_threshold),
        opens_ms: r.sale_start_date.timestamp_millis(),
    }))
}

/// The admission capacity the operator published for this event, if any. A zero, stale or
/// unreadable value never closes admission silently: the last good value stands in for a while,
/// then the event's threshold alone applies; each such read is counted
/// (`tiketi_queue_capacity_fallbacks{kind}`) and logged.
pub async fn capacity(state: &AppState, event_id: Uuid) -> Option<i64> {
    let key = state.keys.capacity(event_id);
    let read = match state
        .redis_breaker
        .run(state.redis.get::<Option<String>, _>(&key))
        .await
    {
        Ok(None) => CapacityRead::Absent,
        Ok(Some(raw)) => serde_json::from_str(&raw)
            .map(CapacityRead::Published)
            .unwrap_or(CapacityRead::Unreadable),
        Err(_) => CapacityRead::Unreadable,
    };
    let (cap, fallback) = {
        let mut last_good = state
            .gates
            .last_good
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (cap, good, fallback) =
            capacity_in_force(&read, last_good.get(&key).copied(), now_ms(&state.config));
        match good {
            Some(g) => last_good.insert(key, g),
            None => last_good.remove(&key),
        };
        (cap, fallback)
    };
    if let Some(f) = fallback {
        state
            .metrics
            .queue_capacity_fallbacks
            .get_or_create(&crate::metrics::KindLabels { kind: f.label() })
            .inc();
        tracing::warn!(%event_id, reason = f.label(), ?cap, "published capacity not usable; falling back");
    }
    cap
}

/// The gate in force: the event's threshold capped by the published capacity, and its opening.
/// Kept in memory for `GATE_TTL`.
pub async fn limit(state: &AppState, event_id: Uuid) -> Result<Option<Gate>, Error> {
    if let Some(g) = state.gates.in_force.get(&event_id) {
        return Ok(Some(g));
    }
    let Some(g) = gate(state, event_id).await? else {
        return Ok(None);
    };
    let g = Gate {
        threshold: tiketi_core::rules::effective_threshold(
            g.threshold,
            capacity(state, event_id).await,
        ),
        ..g
    };
    state.gates.in_force.insert(event_id, g);
    Ok(Some(g))
}

/// How the waiting room treats someone arriving at `now` (see `opening`).
pub(super) fn arrival_at(state: &AppState, gate: Gate, now: i64) -> opening::Arrival {
    opening::classify(
        now,
        gate.opens_ms,
        state.config.fair_opening_lead_seconds,
        state.config.fair_opening_window_seconds,
        &mut rand::rng(),
    )
}
