//! The waiting room enforced on the reservation API (`admitted.lua`).

use std::sync::LazyLock;

use fred::types::scripts::Script;
use uuid::Uuid;

use super::{ADMISSION_TTL_MS, gate::arrival_at, limit, now_ms};
use crate::{
    error::{Code, Error},
    state::AppState,
};

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
