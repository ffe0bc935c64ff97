//! The waiting room enforced on every buying path: the gate check (`admitted.lua`) reports a
//! `Verdict`, and the hold's or booking's own transaction decides with PostgreSQL's clock
//! (`may_buy`, migration 0009). The admission check and the purchase are one decision at one instant,
//! whatever this replica's clock says and however long the request then waits for a connection.
//!
//! Redis unreadable (timeout, outage, the gate's breaker open): the verdict is the admission this
//! replica saw proven for the caller, if still live, else `Unproven` — refused with 503
//! `QUEUE_UNAVAILABLE` + `Retry-After` while the sale is open. Admitted users keep buying, everyone
//! else waits for Redis: the gate fails closed. The gate has its own breaker (`Shared::gate_breaker`):
//! a timeout of an optional step (cache, rate limit) neither makes buyers unproven nor lets anyone
//! skip the queue.

use std::sync::LazyLock;

use fred::types::scripts::Script;
use uuid::Uuid;

use super::{ADMISSION_TTL_MS, Verdict, limit, limit::arrival_at, now_ms};
use crate::{
    error::{Code, Error},
    state::AppState,
};

pub const MSG_WAIT_YOUR_TURN: &str =
    "대기열 순서를 기다려주세요. 입장이 허용된 후 예매할 수 있습니다.";
pub const MSG_QUEUE_UNAVAILABLE: &str =
    "대기열 상태를 확인할 수 없습니다. 잠시 후 다시 시도해주세요.";

static ADMITTED: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("admitted.lua")));

/// What the waiting room says about `user_id` buying in `event_id` now: a live admission, a place
/// taken at an open first-come gate (nobody waits, there is room, the opening lottery is over by
/// this replica's clock), not admitted, "not open yet" by this replica's clock, or unproven (Redis
/// unreadable and no admission of the caller on record here). Decides nothing by itself: pass it to
/// the hold or booking.
pub async fn admission(state: &AppState, event_id: Uuid, user_id: Uuid) -> Result<Verdict, Error> {
    let Some(gate) = limit(state, event_id).await? else {
        return Ok(Verdict::NotAdmitted); // no such event: the reservation answers that
    };
    let now = now_ms(&state.config);
    let mode = if now < gate.opens_ms {
        "closed"
    } else {
        arrival_at(state, gate, now).mode()
    };
    let keys = tiketi_core::keys::together(state.keys.waiting_room(event_id));
    let args = vec![
        user_id.to_string(),
        now.to_string(),
        gate.threshold.to_string(),
        ADMISSION_TTL_MS.to_string(),
        mode.to_string(),
    ];
    let reply = state
        .gate_breaker
        .run(
            ADMITTED.evalsha_with_reload::<Vec<fred::types::Value>, _, _>(
                state.redis.next(),
                keys,
                args,
            ),
        )
        .await;
    let verdict = match reply {
        Ok(reply) => Verdict::parse(&reply).ok_or_else(|| {
            Error::internal(anyhow::anyhow!("unexpected gate script reply {reply:?}"))
        })?,
        Err(e) => {
            if let Some(e) = e {
                tracing::warn!(error = %e, "waiting room unreadable: only remembered admissions may buy");
            }
            Verdict::from_memory(state.admissions.get(event_id, user_id), now)
        }
    };
    if let Some(seen) = verdict.admission() {
        state.admissions.record(event_id, user_id, seen);
    }
    Ok(verdict)
}

/// The refusal of a hold or booking the database found not admitted.
pub fn not_admitted(state: &AppState) -> Error {
    count(state, "queue_not_admitted");
    Error::forbidden(Code::QueueNotAdmitted, MSG_WAIT_YOUR_TURN)
}

/// The refusal of a hold or booking whose admission could not be proven (Redis unreadable).
pub fn unproven(state: &AppState) -> Error {
    count(state, "queue_unavailable");
    Error::Unavailable {
        code: Code::QueueUnavailable,
        message: MSG_QUEUE_UNAVAILABLE,
        retry_after_secs: 2,
    }
}

fn count(state: &AppState, kind: &'static str) {
    state
        .metrics
        .rate_limited
        .get_or_create(&crate::metrics::KindLabels { kind })
        .inc();
}
