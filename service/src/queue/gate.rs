//! The waiting room's gate per event: the event's threshold and opening (PostgreSQL), capped by
//! the admission capacity the operator publishes (Redis), and how an arrival is treated.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use fred::prelude::KeysInterface;
use tiketi_core::rules::{CapacityRead, CapacityRecord, capacity_in_force};
use uuid::Uuid;

use super::{db, now_ms, opening};
use crate::{error::Error, state::AppState};

/// What the waiting room needs to know about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Admitted users before newcomers queue.
    pub threshold: i64,
    /// When the sale opens (ms since the epoch): nobody is admitted before.
    pub opens_ms: i64,
}

/// The event's own threshold and opening; `None` when the event does not exist.
pub async fn gate(state: &AppState, event_id: Uuid) -> Result<Option<Gate>, Error> {
    let row = db::gate(&state.db, event_id).await?;
    Ok(row.map(|r| Gate {
        threshold: i64::from(r.queue_threshold),
        opens_ms: r.sale_start_date.timestamp_millis(),
    }))
}

/// How long a replica keeps an event's gate in memory: during a join storm every check asks the same
/// question. An admin change on this replica clears it at once (`Gates::forget`); another replica's
/// change is seen within this time.
const GATE_TTL: Duration = Duration::from_secs(1);

/// This replica's memory of the gates.
pub struct Gates {
    /// The gate in force per event, for `GATE_TTL`.
    in_force: moka::sync::Cache<Uuid, Gate>,
    /// The last good capacity per capacity key (prefix and event), for when the published one is
    /// zero, stale or unreadable.
    last_good: Mutex<HashMap<String, CapacityRecord>>,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            in_force: moka::sync::Cache::builder()
                .max_capacity(4096)
                .time_to_live(GATE_TTL)
                .build(),
            last_good: Mutex::default(),
        }
    }
}

impl Gates {
    /// The event changed on this replica (threshold, opening, capacity): read its gate afresh.
    pub fn forget(&self, event_id: Uuid) {
        self.in_force.invalidate(&event_id);
    }
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
            capacity_in_force(&read, last_good.get(&key).copied(), now_ms(state));
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
