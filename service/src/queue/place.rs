//! A user's place in the queue, in Redis: entering (`check.lua`), reading it, leaving, and the
//! admin's clearing of the whole queue.

use std::sync::LazyLock;

use fred::{
    prelude::{KeysInterface, SetsInterface, SortedSetsInterface},
    types::{Limit, scripts::Script},
};
use tiketi_core::{keys::together, rules::OutflowRecord};
use uuid::Uuid;

use super::{
    ADMISSION_TTL_MS, Eta, EtaInputs, Gate, Verdict, estimate, limit::arrival_at, now_ms, opening,
    replicated,
};
use crate::{error::Error, state::AppState};

/// How long after the opening window a sale's lottery draws are kept.
const DRAWS_KEPT_MS: i64 = 24 * 3600 * 1000;

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("check.lua")));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub queued: bool,
    /// 1-based place in the queue; 0 when not queued.
    pub position: i64,
    pub current_users: i64,
    pub queue_size: i64,
}

/// Enters the user: around the sale's opening into the queue at a random place (`opening`); later
/// admitted at once while there is room and nobody waits, else queued. An existing place is kept.
/// The script also reads what the place's ETA is computed from; a queued waiter's event is then put
/// on the admission loop's work list (another slot on a Redis Cluster, so not in the script).
pub async fn check(
    state: &AppState,
    event_id: Uuid,
    user_id: Uuid,
    gate: Gate,
) -> Result<(Position, Eta), Error> {
    let now = now_ms(&state.config);
    let arrival = arrival_at(state, gate, now);
    let score = match arrival {
        opening::Arrival::Lottery(score) => score.to_string(),
        _ => now.to_string(),
    };
    let keys = together(state.keys.waiting_room_entry(event_id));
    // draws outlive the opening window by a day: long enough for every return during the sale
    let forget_draws_ms = gate
        .opens_ms
        .saturating_add(opening::window_ms(state.config.fair_opening_window_seconds))
        .saturating_add(DRAWS_KEPT_MS);
    let args = vec![
        user_id.to_string(),
        now.to_string(),
        gate.threshold.to_string(),
        ADMISSION_TTL_MS.to_string(),
        arrival.mode().to_string(),
        score,
        forget_draws_ms.to_string(),
    ];
    // one connection for the script and the wait for its replicas (WAIT counts this connection's
    // writes); a lagging replica is not an unreachable Redis, so the wait stays out of the breaker
    let client = state.redis.next();
    let queue = keys[0].clone();
    let reply: Vec<fred::types::Value> = state
        .redis_breaker
        .observe(CHECK.evalsha_with_reload(client, keys, args))
        .await?;
    replicated::on_replicas(client, &queue, &state.config).await?;
    let (position, inputs, verdict) = parse_check_reply(&reply).ok_or_else(|| {
        Error::internal(anyhow::anyhow!("unexpected queue script reply {reply:?}"))
    })?;
    // remembered for a Redis outage: this user keeps buying through this replica
    if let Some(seen) = verdict.admission() {
        state.admissions.record(event_id, user_id, seen);
    }
    if position.queued {
        index(state, event_id).await?;
    }
    let eta = estimate(
        position.position,
        gate,
        now,
        &inputs,
        state.config.admission_rate,
    );
    Ok((position, eta))
}

/// `check.lua`'s reply: {queued, position, current users, queue size, outflow JSON or '', the
/// deciding admission's expiry or '', the user's admission kind and expiry}.
fn parse_check_reply(reply: &[fred::types::Value]) -> Option<(Position, EtaInputs, Verdict)> {
    let [q, p, c, s, outflow, nth, admission @ ..] = reply else {
        return None;
    };
    let verdict = Verdict::parse(admission)?;
    let (queued, position, current_users, queue_size) =
        (q.as_i64()?, p.as_i64()?, c.as_i64()?, s.as_i64()?);
    let text = |v: &fred::types::Value| v.as_string().filter(|s| !s.is_empty());
    let inputs = EtaInputs {
        outflow: text(outflow).and_then(|raw| serde_json::from_str(&raw).ok()),
        live: current_users,
        nth_expiry_ms: text(nth)
            .and_then(|ms| ms.parse::<f64>().ok())
            .map(|ms| ms as i64),
    };
    Some((
        Position {
            queued: queued == 1,
            position,
            current_users,
            queue_size,
        },
        inputs,
        verdict,
    ))
}

/// The user's place without entering.
pub async fn status(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<Position, Error> {
    let (q, a) = (state.keys.queue(event_id), state.keys.active(event_id));
    let (rank, queue_size, current_users): (Option<i64>, i64, i64) = state
        .redis_breaker
        .observe(async {
            Ok((
                state.redis.zrank(&q, user_id.to_string(), false).await?,
                state.redis.zcard(&q).await?,
                state
                    .redis
                    .zcount(&a, now_ms(&state.config) as f64, f64::INFINITY)
                    .await?,
            ))
        })
        .await?;
    let position = rank.map_or(0, |r| r + 1);
    if position > 0 {
        index(state, event_id).await?;
    }
    Ok(Position {
        queued: position > 0,
        position,
        current_users,
        queue_size,
    })
}

/// Puts the event on the admission loop's work list (idempotent; once a second per replica).
async fn index(state: &AppState, event_id: Uuid) -> Result<(), Error> {
    if state.gates.indexed.contains_key(&event_id) {
        return Ok(());
    }
    let _: i64 = state
        .redis
        .sadd(state.keys.queue_index(), event_id.to_string())
        .await?;
    state.gates.indexed.insert(event_id, ());
    Ok(())
}

/// The event's measured outflow (`None` before the admission loop published one).
pub async fn outflow(state: &AppState, event_id: Uuid) -> Option<OutflowRecord> {
    state
        .redis
        .get::<Option<String>, _>(state.keys.outflow(event_id))
        .await
        .ok()
        .flatten()
        .and_then(|raw| serde_json::from_str(&raw).ok())
}

/// `estimate` for a place read without `check` (status, admin): reads its inputs first.
pub async fn eta(state: &AppState, event_id: Uuid, gate: Gate, position: i64) -> Eta {
    let now = now_ms(&state.config);
    let mut inputs = EtaInputs::default();
    if position > 0 {
        inputs.outflow = outflow(state, event_id).await;
        let active = state.keys.active(event_id);
        inputs.live = state
            .redis
            .zcount(&active, now as f64, f64::INFINITY)
            .await
            .unwrap_or(0);
        if inputs.outflow.is_none() && inputs.live > 0 && inputs.live >= gate.threshold {
            let nth = (position - 1) % inputs.live;
            let holds: Vec<(String, f64)> = state
                .redis
                .zrangebyscore(
                    &active,
                    now as f64,
                    f64::INFINITY,
                    true,
                    Some(Limit::from((nth, 1))),
                )
                .await
                .unwrap_or_default();
            inputs.nth_expiry_ms = holds.first().map(|(_, ms)| *ms as i64);
        }
    }
    estimate(position, gate, now, &inputs, state.config.admission_rate)
}

pub async fn leave(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<(), Error> {
    state.admissions.forget(event_id, user_id);
    let left: i64 = state
        .redis
        .zrem(state.keys.queue(event_id), user_id.to_string())
        .await?;
    if left > 0 {
        // part of the queue's outflow (the admission loop folds it into the measurement)
        let _: i64 = state.redis.incr(state.keys.queue_left(event_id)).await?;
    }
    let _: i64 = state
        .redis
        .zrem(state.keys.active(event_id), user_id.to_string())
        .await?;
    Ok(())
}

pub async fn clear(state: &AppState, event_id: Uuid) -> Result<(), Error> {
    state.admissions.forget_event(event_id);
    let _: i64 = state
        .redis
        .del(together(state.keys.waiting_room(event_id)))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use fred::types::Value;

    use super::*;

    #[test]
    fn check_reply_carries_the_place_and_the_eta_inputs() {
        let reply = [
            Value::Integer(1),
            Value::Integer(7),
            Value::Integer(2),
            Value::Integer(9),
            Value::from(""),
            Value::from("1234.0"),
            Value::from("none"),
            Value::Integer(0),
        ];
        let (p, inputs, verdict) = parse_check_reply(&reply).unwrap();
        assert_eq!(verdict, Verdict::NotAdmitted);
        assert_eq!(
            p,
            Position {
                queued: true,
                position: 7,
                current_users: 2,
                queue_size: 9
            }
        );
        assert_eq!(
            inputs,
            EtaInputs {
                outflow: None,
                live: 2,
                nth_expiry_ms: Some(1234)
            }
        );
        assert!(
            parse_check_reply(&reply[..6]).is_none(),
            "the old reply shape is refused"
        );
        let mut admitted = reply.to_vec();
        admitted[6] = Value::from("gate");
        admitted[7] = Value::Integer(99);
        assert_eq!(
            parse_check_reply(&admitted).unwrap().2,
            Verdict::AtGate { until_ms: 99 }
        );
    }
}
