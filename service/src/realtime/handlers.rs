//! Connect middleware and event handlers. Handlers are registered in the middleware, before the
//! CONNECT is acknowledged, so a `join-*` sent right after connecting is never lost.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};
use socketioxide::extract::{State, TryData};
use tiketi_core::{
    ids::parse_uuid,
    wire::{event, room},
};
use uuid::Uuid;

use super::{
    Io, MSG_AUTH_REQUIRED, MSG_INVALID_TOKEN, Socket, SocketUser, flood, presence, session,
};
use crate::state::AppState;

/// Event rooms this socket counts in (for presence bookkeeping on leave and disconnect).
#[derive(Clone, Default)]
struct EventRooms(Arc<Mutex<HashSet<Uuid>>>);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectRefused(&'static str);

pub async fn authenticate(
    s: Socket,
    TryData(auth): TryData<Value>,
    State(state): State<AppState>,
) -> Result<(), ConnectRefused> {
    let token = auth
        .ok()
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(ConnectRefused(MSG_AUTH_REQUIRED))?;
    let claims = state
        .jwt
        .verify(&token)
        .map_err(|_| ConnectRefused(MSG_INVALID_TOKEN))?;
    s.extensions.insert(SocketUser {
        user_id: claims.user_id,
    });
    s.extensions.insert(EventRooms::default());
    flood::install(&s, state.realtime.flood, state.metrics.clone());
    s.on(event::JOIN_EVENT, on_join_event);
    s.on(event::LEAVE_EVENT, on_leave_event);
    s.on(event::JOIN_QUEUE, on_join_queue);
    s.on(event::JOIN_SEAT_SELECTION, on_join_seats);
    s.on(event::SEAT_SELECTION_CHANGED, on_selection_changed);
    // unknown events spend the budget too
    s.on_fallback(async |s: Socket| {
        flood::admit(&s);
    });
    s.on_disconnect(on_disconnect);
    state.metrics.sockets_open.inc();
    Ok(())
}

fn user_of(s: &Socket) -> Option<Uuid> {
    s.extensions.get::<SocketUser>().map(|u| u.user_id)
}

fn event_id_of(data: Result<Value, impl std::fmt::Debug>) -> Option<Uuid> {
    data.ok()?.get("eventId")?.as_str().and_then(parse_uuid)
}

/// A `join-*`/`leave-*` request within the socket's event budget (see `flood`): its user and event.
fn event_request(s: &Socket, data: Result<Value, impl std::fmt::Debug>) -> Option<(Uuid, Uuid)> {
    if !flood::admit(s) {
        return None;
    }
    match (user_of(s), event_id_of(data)) {
        (Some(user), Some(event_id)) => Some((user, event_id)),
        _ => None,
    }
}

/// After the CONNECT: the user's private room, then what their session held before.
pub async fn on_connect(s: Socket, io: Io, State(state): State<AppState>) {
    let Some(user) = user_of(&s) else { return };
    join(&s, vec![room::user(user)]);
    let restored = match session::load(&state, user).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "session not restored");
            return;
        }
    };
    if restored.is_empty() {
        return;
    }
    if let Some(e) = restored.event_id {
        enter_event(&s, &io, &state, user, e).await;
    }
    if let Some(e) = restored.queue_event_id {
        join(&s, vec![room::queue(e), room::user_queue(e, user)]);
    }
    if let Some(e) = restored.seat_event_id {
        join(&s, vec![room::seats(e)]);
    }
    let payload = json!({
        "eventId": restored.event_id,
        "queueEventId": restored.queue_event_id,
        "seatEventId": restored.seat_event_id,
        "selectedSeats": restored.selected_seats,
    });
    if let Err(e) = s.emit(event::SESSION_RESTORED, &payload) {
        tracing::debug!(error = %e, "session-restored not sent");
    }
}

/// Joins within the socket's room cap (see `flood`); false when the socket was cut off instead.
fn join(s: &Socket, rooms: Vec<String>) -> bool {
    flood::join(s, rooms)
}

async fn enter_event(s: &Socket, io: &Io, state: &AppState, user: Uuid, event_id: Uuid) -> bool {
    if !join(s, vec![room::event(event_id)]) {
        return false;
    }
    let first = s.extensions.get::<EventRooms>().is_some_and(|r| {
        r.0.lock()
            .map(|mut set| set.insert(event_id))
            .unwrap_or(false)
    });
    count_presence(state, io, event_id, user, i64::from(first)).await;
    true
}

/// Changes the user's presence in the event by `delta` (0: refreshes it) and updates its room info.
async fn count_presence(state: &AppState, io: &Io, event_id: Uuid, user: Uuid, delta: i64) {
    match presence::change(state, event_id, user, delta).await {
        Ok(n) => state.realtime.room_info.update(io, event_id, n).await,
        Err(e) => tracing::warn!(error = %e, "presence not counted"),
    }
}

async fn on_join_event(
    s: Socket,
    io: Io,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
) {
    let Some((user, event_id)) = event_request(&s, data) else {
        return;
    };
    if !enter_event(&s, &io, &state, user, event_id).await {
        return;
    }
    session::set(&state, user, session::Field::Event, Some(event_id)).await;
}

async fn on_leave_event(
    s: Socket,
    io: Io,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
) {
    let Some((user, event_id)) = event_request(&s, data) else {
        return;
    };
    s.leave(room::event(event_id));
    let was_in = s.extensions.get::<EventRooms>().is_some_and(|r| {
        r.0.lock()
            .map(|mut set| set.remove(&event_id))
            .unwrap_or(false)
    });
    if was_in {
        count_presence(&state, &io, event_id, user, -1).await;
    }
    session::set(&state, user, session::Field::Event, None).await;
}

async fn on_join_queue(s: Socket, State(state): State<AppState>, TryData(data): TryData<Value>) {
    let Some((user, event_id)) = event_request(&s, data) else {
        return;
    };
    if !join(
        &s,
        vec![room::queue(event_id), room::user_queue(event_id, user)],
    ) {
        return;
    }
    session::set(&state, user, session::Field::Queue, Some(event_id)).await;
}

async fn on_join_seats(s: Socket, State(state): State<AppState>, TryData(data): TryData<Value>) {
    let Some((user, event_id)) = event_request(&s, data) else {
        return;
    };
    if !join(&s, vec![room::seats(event_id)]) {
        return;
    }
    session::set(&state, user, session::Field::Seats, Some(event_id)).await;
}

async fn on_selection_changed(
    s: Socket,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
) {
    if !flood::admit(&s) {
        return;
    }
    let Some(user) = user_of(&s) else { return };
    let Ok(data) = data else { return };
    let Some(event_id) = data
        .get("eventId")
        .and_then(Value::as_str)
        .and_then(parse_uuid)
    else {
        return;
    };
    let seats = data.get("seats").cloned().unwrap_or(Value::Null);
    session::set_selection(&state, user, event_id, &seats).await;
}

async fn on_disconnect(s: Socket, io: Io, State(state): State<AppState>) {
    state.metrics.sockets_open.dec();
    let Some(user) = user_of(&s) else { return };
    let rooms: Vec<Uuid> = s
        .extensions
        .get::<EventRooms>()
        .and_then(|r| r.0.lock().ok().map(|set| set.iter().copied().collect()))
        .unwrap_or_default();
    for event_id in rooms {
        count_presence(&state, &io, event_id, user, -1).await;
    }
}
