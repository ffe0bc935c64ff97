//! The admission loop: one replica at a time (Redis lease) moves users from the head of each event's
//! queue into its admitted set at `ADMISSION_RATE` per second while there is room under the threshold
//! (capped by the operator's published capacity), never before the sale opens, tells each admitted
//! user's waiting-room sockets (`queue-entry-allowed`, on any replica) and the rest of the room
//! (`queue-updated`).

use std::{
    collections::{HashMap, VecDeque},
    sync::LazyLock,
    time::{Duration, Instant},
};

use fred::{
    prelude::{Expiration, KeysInterface, SetsInterface, SortedSetsInterface},
    types::scripts::Script,
};
use tiketi_core::{
    rules::{OutflowRecord, effective_threshold},
    wire::Notice,
};
use uuid::Uuid;

use super::{ADMISSION_TTL_MS, Gate};
use crate::{
    effects::{self, Effects},
    lease::Lease,
    state::AppState,
};

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("admit.lua")));

const LEASE_TTL: Duration = Duration::from_secs(3);
const THRESHOLD_CACHE: Duration = Duration::from_secs(5);
/// How often the measured outflow is published.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// The outflow is measured over the last this long (or since the lane started, if shorter).
const OUTFLOW_WINDOW: Duration = Duration::from_secs(120);

/// Per-event bookkeeping of the leader (rebuilt from Redis by a new leader).
#[derive(Default)]
struct EventLane {
    /// fractional admissions carried between ticks, so low rates still admit
    credit: f64,
    last_size: Option<i64>,
    last_update: Option<Instant>,
    window_admitted: u64,
    window_start: Option<Instant>,
    /// Since when this lane measures, and (when, admitted, left the queue) per publication window.
    measured_since: Option<Instant>,
    moves: VecDeque<(Instant, u64, u64)>,
    /// Admitted users not told yet: their admission is not on a replica yet (`REDIS_WAIT_REPLICAS`).
    unannounced: Vec<Uuid>,
}

/// Admissions kept for a later announcement at most (older ones are dropped: by then their users
/// have checked their place, which says they are admitted).
const UNANNOUNCED_MAX: usize = 10_000;

pub async fn run(state: AppState) {
    let tick = Duration::from_millis(state.config.admission_tick_ms.max(20));
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease = Lease::new(&state, "admission", LEASE_TTL);
    let mut lanes: HashMap<Uuid, EventLane> = HashMap::new();
    let mut gates: HashMap<Uuid, (Gate, Instant)> = HashMap::new();
    loop {
        timer.tick().await;
        if !lease.hold(&state).await {
            lanes.clear();
            continue;
        }
        if let Err(e) = tick_once(&state, tick, &mut lanes, &mut gates).await {
            tracing::warn!(error = %e, "admission tick failed");
        }
    }
}

/// The event's gate, cached; re-read every tick until the sale opens, so a changed opening is
/// honoured to the tick.
async fn gate(
    state: &AppState,
    cache: &mut HashMap<Uuid, (Gate, Instant)>,
    event_id: Uuid,
) -> Option<Gate> {
    if let Some((g, at)) = cache.get(&event_id)
        && at.elapsed() < THRESHOLD_CACHE
        && chrono::Utc::now().timestamp_millis() >= g.opens_ms
    {
        return Some(*g);
    }
    match super::gate(state, event_id).await {
        Ok(Some(g)) => {
            cache.insert(event_id, (g, Instant::now()));
            Some(g)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "event unavailable; keeping its last threshold and opening");
            cache.get(&event_id).map(|(t, _)| *t)
        }
    }
}

async fn tick_once(
    state: &AppState,
    tick: Duration,
    lanes: &mut HashMap<Uuid, EventLane>,
    gates: &mut HashMap<Uuid, (Gate, Instant)>,
) -> Result<(), fred::error::Error> {
    let events: Vec<String> = state.redis.smembers(state.keys.queue_index()).await?;
    let now = Instant::now();
    let per_tick = state.config.admission_rate as f64 * tick.as_secs_f64();
    for id in events {
        let Ok(event_id) = id.parse::<Uuid>() else {
            continue;
        };
        let Some(event_gate) = gate(state, gates, event_id).await else {
            // the event is gone: forget its queue
            let _: i64 = state.redis.srem(state.keys.queue_index(), id).await?;
            continue;
        };
        let capacity = super::capacity(state, event_id).await;
        let limit = effective_threshold(event_gate.threshold, capacity);
        let lane = lanes.entry(event_id).or_default();
        lane.credit = (lane.credit + per_tick).min(per_tick.max(1.0) * 2.0);
        let max = lane.credit.floor() as i64;
        let keys = tiketi_core::keys::together(state.keys.waiting_room(event_id));
        let args = vec![
            chrono::Utc::now().timestamp_millis().to_string(),
            limit.to_string(),
            ADMISSION_TTL_MS.to_string(),
            max.to_string(),
            event_gate.opens_ms.to_string(),
        ];
        let client = state.redis.next();
        let queue = keys[0].clone();
        let reply: Vec<String> = ADMIT.evalsha_with_reload(client, keys, args).await?;
        let size: i64 = reply.first().and_then(|s| s.parse().ok()).unwrap_or(0);
        let admitted = &reply[1.min(reply.len())..];
        lane.credit -= admitted.len() as f64;
        // told once a replica has them (REDIS_WAIT_REPLICAS): an admission a failover could still
        // undo waits for a later tick's wait to succeed
        lane.unannounced
            .extend(admitted.iter().filter_map(|u| u.parse::<Uuid>().ok()));
        let excess = lane.unannounced.len().saturating_sub(UNANNOUNCED_MAX);
        lane.unannounced.drain(..excess);
        if !lane.unannounced.is_empty() {
            match super::replicated::on_replicas(client, &queue, &state.config).await {
                Ok(()) => {
                    let allowed = lane
                        .unannounced
                        .drain(..)
                        .map(|user_id| Notice::QueueEntryAllowed { event_id, user_id })
                        .collect();
                    effects::apply(state, Effects::announce(allowed)).await;
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    %event_id,
                    waiting = lane.unannounced.len(),
                    "admissions not announced yet: not on a replica"
                ),
            }
        }
        state.metrics.queue_admitted.inc_by(admitted.len() as u64);

        // measured outflow (admissions and users leaving the queue), for the waiters' ETAs and the
        // operator's drain-time rule
        let since = *lane.measured_since.get_or_insert(now);
        let start = *lane.window_start.get_or_insert(now);
        lane.window_admitted += admitted.len() as u64;
        if now.duration_since(start) >= RATE_WINDOW {
            let left: Option<u64> = state.redis.getdel(state.keys.queue_left(event_id)).await?;
            lane.moves
                .push_back((now, lane.window_admitted, left.unwrap_or(0)));
            while lane
                .moves
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > OUTFLOW_WINDOW)
            {
                lane.moves.pop_front();
            }
            lane.window_admitted = 0;
            lane.window_start = Some(now);
            let window = now.duration_since(since).min(OUTFLOW_WINDOW).as_secs_f64();
            let (admitted_n, left_n) = lane
                .moves
                .iter()
                .fold((0u64, 0u64), |(a, l), (_, x, y)| (a + x, l + y));
            let replicas: i64 = state
                .redis
                .zcount(
                    state.keys.replicas(),
                    chrono::Utc::now().timestamp_millis() as f64,
                    f64::INFINITY,
                )
                .await?;
            let record = OutflowRecord {
                per_second: (admitted_n + left_n) as f64 / window.max(1.0),
                admitted_per_second: admitted_n as f64 / window.max(1.0),
                window_secs: window,
                at_ms: chrono::Utc::now().timestamp_millis(),
                replicas: (replicas > 0).then_some(replicas),
            };
            let _: () = state
                .redis
                .set(
                    state.keys.outflow(event_id),
                    serde_json::to_string(&record).unwrap_or_default(),
                    Some(Expiration::EX(300)),
                    None,
                    false,
                )
                .await?;
        }

        // tell the room when the queue changed: at once when it was quiet, else at most once per
        // QUEUE_UPDATE_MS (see `update_due`)
        let interval = Duration::from_millis(state.config.queue_update_ms);
        let changed = lane.last_size != Some(size);
        if changed && update_due(lane.last_update, Instant::now(), interval) {
            let updated = Notice::QueueUpdated {
                event_id,
                queue_size: size,
            };
            effects::apply(state, Effects::announce(vec![updated])).await;
            lane.last_size = Some(size);
            lane.last_update = Some(now);
        }
        if size == 0 && !changed {
            // idle: drop it from the work list, unless someone queued meanwhile (a replica adds an
            // event it indexed at most once a second, so its next joiner may not add it back)
            let _: i64 = state
                .redis
                .srem(state.keys.queue_index(), event_id.to_string())
                .await?;
            let waiting: i64 = state.redis.zcard(state.keys.queue(event_id)).await?;
            if waiting > 0 {
                let _: i64 = state
                    .redis
                    .sadd(state.keys.queue_index(), event_id.to_string())
                    .await?;
            }
            lanes.remove(&event_id);
        }
    }
    Ok(())
}

/// Whether a changed queue length goes to the room on this tick: at once when the last update is at
/// least `interval` old (a quiet queue's first change waits for nothing but the tick), otherwise on
/// the first tick after the interval, with the latest length. Under a join storm the oldest change
/// an update reports is therefore at most `interval` rounded up to the tick, plus the broadcast;
/// the default (400 ms on 200 ms ticks) keeps that within the 1 s the waiting room promises.
fn update_due(last_update: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last_update.is_none_or(|t| now.duration_since(t) >= interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the default settings, a join storm that changes the queue on every tick gets its news
    /// to the room within 600 ms of the change (the rest of the 1 s goes to the broadcast), and a
    /// quiet queue's first change goes out on the next tick.
    #[test]
    fn queue_updates_under_a_storm_leave_room_for_the_broadcast_within_a_second() {
        let config = crate::config::Config::for_tests("postgres://x", "redis://x", "t");
        let tick = Duration::from_millis(config.admission_tick_ms.max(20));
        let interval = Duration::from_millis(config.queue_update_ms);
        let start = Instant::now();
        // quiet: the first change is sent on the tick that sees it
        assert!(update_due(None, start, interval));
        assert!(update_due(
            Some(start - Duration::from_secs(5)),
            start,
            interval
        ));
        // a storm: the queue changes before every tick for 10 s
        let (mut last, mut oldest_unsent, mut worst) = (Some(start), None, Duration::ZERO);
        let mut sent = 0;
        for n in 1..=(10_000 / tick.as_millis() as u32) {
            let now = start + tick * n;
            let changed_at = now - tick + Duration::from_millis(1);
            let oldest = *oldest_unsent.get_or_insert(changed_at);
            if update_due(last, now, interval) {
                worst = worst.max(now - oldest);
                last = Some(now);
                oldest_unsent = None;
                sent += 1;
            }
        }
        assert!(
            worst <= Duration::from_millis(600),
            "the oldest change waited {worst:?} for its update"
        );
        // coalesced all the same: not one broadcast per tick
        assert!(
            sent <= 10_000 / interval.as_millis() as u32,
            "{sent} updates in 10 s"
        );
    }
}
