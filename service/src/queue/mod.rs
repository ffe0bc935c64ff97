//! Virtual waiting room (Redis): a queue per event (a random order for the crowd at the sale's
//! opening, see `opening`, then FIFO) and a set of admitted users whose admissions expire one by one.
//! `admission` moves users from the queue into the admitted set.

pub mod admission;
mod db;
pub mod gauges;
pub mod http;
pub mod opening;

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use fred::{
    prelude::{KeysInterface, SetsInterface, SortedSetsInterface},
    types::{Limit, scripts::Script},
};
use tiketi_core::rules::{CapacityRead, CapacityRecord, OutflowRecord, capacity_in_force};
use uuid::Uuid;

use crate::{
    error::{Code, Error},
    state::AppState,
};

/// How long an admission lasts without renewal.
pub const ADMISSION_TTL_MS: i64 = 5 * 60 * 1000;

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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

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

/// The last good capacity per capacity key (prefix and event), for when the published one is zero,
/// stale or unreadable.
static LAST_GOOD: LazyLock<Mutex<HashMap<String, CapacityRecord>>> =
    LazyLock::new(Default::default);

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
        let mut last_good = LAST_GOOD.lock().unwrap_or_else(|e| e.into_inner());
        let (cap, good, fallback) =
            capacity_in_force(&read, last_good.get(&key).copied(), now_ms());
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
/// Kept in memory for `cache::LOCAL_TTL`: during a join storm every check asks the same question,
/// and an admin change on this replica clears it at once (`cache::invalidate_event`).
pub async fn limit(state: &AppState, event_id: Uuid) -> Result<Option<Gate>, Error> {
    if let Some(g) = state.local.gates.get(&event_id) {
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
    state.local.gates.insert(event_id, g);
    Ok(Some(g))
}

/// How the waiting room treats someone arriving at `now` (see `opening`).
fn arrival_at(state: &AppState, gate: Gate, now: i64) -> opening::Arrival {
    opening::classify(
        now,
        gate.opens_ms,
        state.config.fair_opening_lead_seconds,
        state.config.fair_opening_window_seconds,
        &mut rand::rng(),
    )
}

/// Enters the user: around the sale's opening into the queue at a random place (`opening`); later
/// admitted at once while there is room and nobody waits, else queued. An existing place is kept.
/// One round trip: the script also registers a waiter's event with the admission loop and reads
/// what the place's ETA is computed from.
pub async fn check(
    state: &AppState,
    event_id: Uuid,
    user_id: Uuid,
    gate: Gate,
) -> Result<(Position, Eta), Error> {
    let now = now_ms();
    let arrival = arrival_at(state, gate, now);
    let score = match arrival {
        opening::Arrival::Lottery(score) => score.to_string(),
        _ => now.to_string(),
    };
    let keys = vec![
        state.keys.queue(event_id),
        state.keys.active(event_id),
        state.keys.lottery_draws(event_id),
        state.keys.queue_index(),
        state.keys.outflow(event_id),
    ];
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
        event_id.to_string(),
    ];
    let reply: Vec<fred::types::Value> = state
        .redis_breaker
        .observe(CHECK.evalsha_with_reload(state.redis.next(), keys, args))
        .await?;
    let (position, inputs) = parse_check_reply(&reply).ok_or_else(|| {
        Error::internal(anyhow::anyhow!("unexpected queue script reply {reply:?}"))
    })?;
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
/// deciding admission's expiry or ''}.
fn parse_check_reply(reply: &[fred::types::Value]) -> Option<(Position, EtaInputs)> {
    let [q, p, c, s, outflow, nth] = reply else {
        return None;
    };
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
                    .zcount(&a, now_ms() as f64, f64::INFINITY)
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

/// Puts the event on the admission loop's work list (idempotent).
async fn index(state: &AppState, event_id: Uuid) -> Result<(), Error> {
    let _: i64 = state
        .redis
        .sadd(state.keys.queue_index(), event_id.to_string())
        .await?;
    Ok(())
}

/// How long a place in the queue will wait, and how the figure was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eta {
    pub secs: i64,
    /// Measured from the queue's real outflow (false: an estimate from holds or the configured rate).
    pub known: bool,
    /// `outflow`, `holdExpiry` (nobody left the queue lately and the room is full: when the holds
    /// in front run out), `admissionRate` (nothing measured yet, room not full), `opening`/`none`.
    pub basis: &'static str,
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

/// What the ETA is computed from, read in the same step as the place itself (`check.lua`) or
/// separately (`eta`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EtaInputs {
    /// The admission loop's published outflow, if any.
    pub outflow: Option<OutflowRecord>,
    /// Live admissions.
    pub live: i64,
    /// When the admission `(position - 1) % live` places from the oldest expires (ms), if any.
    pub nth_expiry_ms: Option<i64>,
}

/// When `position` gets in: until the sale opens, then from the measured outflow of the last
/// minutes. Without one (nobody left the queue lately) and a full room, places open no later than
/// the admissions in front of it expire, so that is the estimate; with room to spare and nothing
/// measured yet, the configured admission rate.
pub fn estimate(
    position: i64,
    gate: Gate,
    now: i64,
    inputs: &EtaInputs,
    admission_rate: u32,
) -> Eta {
    if position <= 0 {
        return Eta {
            secs: 0,
            known: true,
            basis: "none",
        };
    }
    let until_open = ((gate.opens_ms - now).max(0) + 999) / 1000;
    if let Some(secs) = tiketi_core::rules::queue_eta_from_outflow(position, inputs.outflow) {
        return Eta {
            secs: until_open + secs,
            known: true,
            basis: if until_open > 0 { "opening" } else { "outflow" },
        };
    }
    let live = inputs.live;
    if live > 0
        && live >= gate.threshold
        && let Some(expires_ms) = inputs.nth_expiry_ms
    {
        let rounds = (position - 1) / live;
        let first = ((expires_ms - now).max(0) + 999) / 1000;
        return Eta {
            secs: until_open.max(first + rounds * (ADMISSION_TTL_MS / 1000)),
            known: false,
            basis: "holdExpiry",
        };
    }
    let rate = f64::from(admission_rate.max(1));
    Eta {
        secs: until_open + tiketi_core::rules::queue_eta_secs(position, rate),
        known: false,
        basis: if until_open > 0 {
            "opening"
        } else {
            "admissionRate"
        },
    }
}

/// `estimate` for a place read without `check` (status, admin): reads its inputs first.
pub async fn eta(state: &AppState, event_id: Uuid, gate: Gate, position: i64) -> Eta {
    let now = now_ms();
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

/// `queue-cleared`'s message.
pub const MSG_CLEARED: &str = "관리자가 대기열을 초기화했습니다.";

pub const MSG_WAIT_YOUR_TURN: &str =
    "대기열 순서를 기다려주세요. 입장이 허용된 후 예매할 수 있습니다.";

static ADMITTED: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("admitted.lua")));

/// The waiting room, enforced whenever its gate is closed: a user may hold seats or book tickets
/// only with a live admission, or — when nobody waits and there is room, outside the opening
/// lottery — by taking a place exactly as a check would. Otherwise 403 `QUEUE_NOT_ADMITTED`, on
/// every replica: a script calling the reserve API directly cannot skip the queue, even in the
/// moment the queue is empty but the admitted set is full. Before the sale opens PostgreSQL's sale
/// window answers instead. If Redis is unreachable the check is skipped (logged): the queue cannot
/// run then either, and PostgreSQL still prevents overselling.
pub async fn ensure_admitted(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<(), Error> {
    let Some(gate) = limit(state, event_id).await? else {
        return Ok(()); // no such event: the reservation answers that
    };
    let now = now_ms();
    let arrival = arrival_at(state, gate, now);
    let mode = if now < gate.opens_ms {
        "closed" // not on sale yet
    } else {
        arrival.mode()
    };
    let keys = vec![state.keys.queue(event_id), state.keys.active(event_id)];
    let args = vec![
        user_id.to_string(),
        now.to_string(),
        gate.threshold.to_string(),
        ADMISSION_TTL_MS.to_string(),
        mode.to_string(),
    ];
    match state
        .redis_breaker
        .run(ADMITTED.evalsha_with_reload::<i64, _, _>(state.redis.next(), keys, args))
        .await
    {
        Ok(1) => Ok(()),
        Ok(_) => {
            state
                .metrics
                .rate_limited
                .get_or_create(&crate::metrics::KindLabels {
                    kind: "queue_not_admitted",
                })
                .inc();
            Err(Error::forbidden(Code::QueueNotAdmitted, MSG_WAIT_YOUR_TURN))
        }
        Err(e) => {
            if let Some(e) = e {
                tracing::warn!(error = %e, "waiting room not enforced: redis unavailable");
            }
            Ok(())
        }
    }
}

pub async fn leave(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<(), Error> {
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
    let _: i64 = state
        .redis
        .del(vec![
            state.keys.queue(event_id),
            state.keys.active(event_id),
        ])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use fred::types::Value;

    use super::*;

    const GATE: Gate = Gate {
        threshold: 2,
        opens_ms: 0,
    };

    #[test]
    fn estimate_follows_the_outflow_then_the_holds_then_the_rate() {
        let now = 1_000_000;
        let outflow = OutflowRecord {
            per_second: 2.0,
            admitted_per_second: 2.0,
            window_secs: 60.0,
            at_ms: now,
            replicas: None,
        };
        let measured = EtaInputs {
            outflow: Some(outflow),
            live: 2,
            nth_expiry_ms: None,
        };
        let eta = estimate(10, GATE, now, &measured, 5);
        assert_eq!((eta.known, eta.basis), (true, "outflow"));

        // a full room and nothing measured: place 3 waits for the first admission's end, one round later
        let full = EtaInputs {
            outflow: None,
            live: 2,
            nth_expiry_ms: Some(now + 30_000),
        };
        let eta = estimate(3, GATE, now, &full, 5);
        assert_eq!(
            (eta.secs, eta.known, eta.basis),
            (30 + ADMISSION_TTL_MS / 1000, false, "holdExpiry")
        );

        let room = EtaInputs::default();
        let eta = estimate(10, GATE, now, &room, 5);
        assert_eq!((eta.known, eta.basis), (false, "admissionRate"));
        assert_eq!(estimate(0, GATE, now, &room, 5).basis, "none");
        // before the opening the wait runs at least until then
        let later = Gate {
            opens_ms: now + 60_000,
            ..GATE
        };
        let eta = estimate(1, later, now, &room, 5);
        assert!(eta.secs >= 60 && eta.basis == "opening", "{eta:?}");
    }

    #[test]
    fn check_reply_carries_the_place_and_the_eta_inputs() {
        let reply = [
            Value::Integer(1),
            Value::Integer(7),
            Value::Integer(2),
            Value::Integer(9),
            Value::from(""),
            Value::from("1234.0"),
        ];
        let (p, inputs) = parse_check_reply(&reply).unwrap();
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
            parse_check_reply(&reply[..4]).is_none(),
            "the old reply shape is refused"
        );
    }
}
