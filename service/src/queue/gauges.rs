//! The per-event waiting-room gauges of `/metrics`.

use fred::prelude::{SetsInterface, SortedSetsInterface};
use uuid::Uuid;

use super::{limit, now_ms, outflow};
use crate::state::AppState;

/// Refreshes the per-event waiting-room gauges (`/metrics` calls it before rendering): every event on
/// the admission loop's work list, from Redis, so every replica reports the same figures. Events that
/// left the list are dropped from the gauges.
pub async fn refresh(state: &AppState) {
    let events: Vec<String> = match state
        .redis_breaker
        .run(state.redis.smembers(state.keys.queue_index()))
        .await
    {
        Ok(events) => events,
        Err(_) => return,
    };
    let m = &state.metrics;
    for family in [&m.queue_waiting, &m.queue_admitted_users, &m.queue_capacity] {
        family.clear();
    }
    m.queue_admission_rate.clear();
    for id in events.iter().filter_map(|e| e.parse::<Uuid>().ok()) {
        let label = crate::metrics::EventLabels {
            event_id: id.to_string(),
        };
        let (q, a) = (state.keys.queue(id), state.keys.active(id));
        let counts: Result<(i64, i64), _> = state
            .redis_breaker
            .run(async {
                Ok((
                    state.redis.zcard(&q).await?,
                    state
                        .redis
                        .zcount(&a, now_ms(&state.config) as f64, f64::INFINITY)
                        .await?,
                ))
            })
            .await;
        let Ok((waiting, admitted)) = counts else {
            return;
        };
        m.queue_waiting.get_or_create(&label).set(waiting);
        m.queue_admitted_users.get_or_create(&label).set(admitted);
        if let Ok(Some(gate)) = limit(state, id).await {
            m.queue_capacity.get_or_create(&label).set(gate.threshold);
        }
        if let Some(o) = outflow(state, id).await {
            m.queue_admission_rate
                .get_or_create(&label)
                .set(o.admitted_per_second);
        }
    }
}
