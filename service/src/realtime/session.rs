//! Per-user realtime session in Redis (a hash, so concurrent sockets update fields without races):
//! which event, queue and seat rooms the user was in. Restored on reconnect to any replica.

use fred::prelude::{HashesInterface, KeysInterface};
use serde_json::Value;
use tiketi_core::wire::Session;
use uuid::Uuid;

use crate::state::AppState;

pub const TTL_SECS: i64 = 3600;

pub enum Field {
    Event,
    Queue,
    Seats,
}

impl Field {
    fn name(&self) -> &'static str {
        match self {
            Field::Event => "eventId",
            Field::Queue => "queueEventId",
            Field::Seats => "seatEventId",
        }
    }
}

pub async fn load(state: &AppState, user: Uuid) -> Result<Session, fred::error::Error> {
    let map: std::collections::HashMap<String, String> =
        state.redis.hgetall(state.keys.session(user)).await?;
    let id = |k: &str| map.get(k).and_then(|v| v.parse().ok());
    Ok(Session {
        event_id: id("eventId"),
        queue_event_id: id("queueEventId"),
        seat_event_id: id("seatEventId"),
        selected_seats: map
            .get("selectedSeats")
            .and_then(|s| serde_json::from_str(s).ok()),
    })
}

/// Sets (or with `None` clears) one room of the session and renews its expiry.
pub async fn set(state: &AppState, user: Uuid, field: Field, event: Option<Uuid>) {
    let key = state.keys.session(user);
    let done: Result<(), fred::error::Error> = async {
        match event {
            Some(e) => {
                state
                    .redis
                    .hset::<(), _, _>(&key, (field.name(), e.to_string()))
                    .await?
            }
            None => state.redis.hdel::<(), _, _>(&key, field.name()).await?,
        }
        state.redis.expire::<(), _>(&key, TTL_SECS, None).await
    }
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "session not saved");
    }
}

/// Records the seat selection the client reports (bounded: it is stored as given).
pub async fn set_selection(state: &AppState, user: Uuid, event: Uuid, seats: &Value) {
    let key = state.keys.session(user);
    let json = seats.to_string();
    if json.len() > 4096 {
        return;
    }
    let done: Result<(), fred::error::Error> = async {
        state
            .redis
            .hset::<(), _, _>(
                &key,
                vec![("seatEventId", event.to_string()), ("selectedSeats", json)],
            )
            .await?;
        state.redis.expire::<(), _>(&key, TTL_SECS, None).await
    }
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "seat selection not saved");
    }
}
