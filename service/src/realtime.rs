//! Socket.IO on the service port: JWT in the CONNECT packet, the frontend's rooms, and the server
//! pushes of committed changes. Handlers are registered in the connect middleware, before the CONNECT
//! is acknowledged, so a `join-*` sent right after connecting is never lost (the original lost them).

use std::{collections::HashSet, sync::Arc, time::Duration};

use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef, State, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use tiketi_core::{
    ids::parse_uuid,
    time::to_wire,
    wire::{Notice, SeatLocked, SeatReleased, TicketUpdated, event, room},
};
use uuid::Uuid;

use crate::{auth::jwt::JwtKeys, state::AppState};

pub const MSG_AUTH_REQUIRED: &str = "Authentication required";
pub const MSG_INVALID_TOKEN: &str = "Invalid authentication token";

/// Who a socket belongs to (from its token).
#[derive(Clone, Debug)]
pub struct SocketUser {
    pub user_id: Uuid,
    pub role: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectRefused(&'static str);

/// Builds the Socket.IO layer and its handle; the handle goes into [`AppState`] for emits.
pub fn build(jwt: Arc<JwtKeys>) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(60))
        .max_payload(100_000)
        .with_state(jwt)
        .build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}

async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<Value>,
    State(jwt): State<Arc<JwtKeys>>,
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
    let claims = jwt
        .verify(&token)
        .map_err(|_| ConnectRefused(MSG_INVALID_TOKEN))?;
    s.extensions.insert(SocketUser {
        user_id: claims.user_id,
        role: claims.role,
    });
    s.on(event::JOIN_EVENT, on_join_event);
    s.on(event::LEAVE_EVENT, on_leave_event);
    s.on(event::JOIN_QUEUE, on_join_queue);
    s.on(event::JOIN_SEAT_SELECTION, on_join_seats);
    Ok(())
}

async fn on_connect(s: SocketRef) {
    tracing::debug!(sid = %s.id, "socket connected");
}

fn event_id_of(data: &Value) -> Option<Uuid> {
    data.get("eventId")
        .and_then(Value::as_str)
        .and_then(parse_uuid)
}

/// Distinct users (not sockets) in a room of this process.
fn user_count(io: &SocketIo, room_name: &str) -> usize {
    let users: HashSet<Uuid> = io
        .within(room_name.to_string())
        .sockets()
        .iter()
        .filter_map(|s| s.extensions.get::<SocketUser>())
        .map(|u| u.user_id)
        .collect();
    users.len()
}

async fn emit_room_info(io: &SocketIo, event_id: Uuid) {
    let name = room::event(event_id);
    let info = json!({ "eventId": event_id, "userCount": user_count(io, &name) });
    if let Err(e) = io.to(name).emit(event::ROOM_INFO, &info).await {
        tracing::warn!(error = %e, "room-info not delivered");
    }
}

async fn on_join_event(s: SocketRef, io: SocketIo, TryData(data): TryData<Value>) {
    let Some(event_id) = data.ok().as_ref().and_then(event_id_of) else {
        return;
    };
    s.join(room::event(event_id));
    emit_room_info(&io, event_id).await;
}

async fn on_leave_event(s: SocketRef, io: SocketIo, TryData(data): TryData<Value>) {
    let Some(event_id) = data.ok().as_ref().and_then(event_id_of) else {
        return;
    };
    s.leave(room::event(event_id));
    emit_room_info(&io, event_id).await;
}

async fn on_join_queue(s: SocketRef, TryData(data): TryData<Value>) {
    if let Some(event_id) = data.ok().as_ref().and_then(event_id_of) {
        s.join(room::queue(event_id));
    }
}

async fn on_join_seats(s: SocketRef, Data(data): Data<Value>) {
    if let Some(event_id) = event_id_of(&data) {
        s.join(room::seats(event_id));
    }
}

/// Announces committed changes to the rooms that show them.
pub async fn publish(state: &AppState, notices: Vec<Notice>) {
    let now = to_wire(&chrono::Utc::now());
    for notice in notices {
        let sent = match notice {
            Notice::SeatLocked {
                event_id,
                seat_id,
                user_id,
            } => {
                let p = SeatLocked {
                    seat_id,
                    user_id,
                    status: "locked".into(),
                    timestamp: now.clone(),
                };
                let to = state.io.to(room::seats(event_id));
                // the frontend listens to `seat-selected`; `seat-locked` is the original's name
                match to.clone().emit(event::SEAT_LOCKED, &p).await {
                    Ok(()) => to.emit(event::SEAT_SELECTED, &p).await,
                    Err(e) => Err(e),
                }
            }
            Notice::SeatReleased { event_id, seat_id } => {
                state.metrics.seats_released.inc();
                let p = SeatReleased {
                    seat_id,
                    status: "available".into(),
                    timestamp: now.clone(),
                };
                state
                    .io
                    .to(room::seats(event_id))
                    .emit(event::SEAT_RELEASED, &p)
                    .await
            }
            Notice::TicketUpdated {
                event_id,
                ticket_type_id,
                available,
                total,
            } => {
                let p = TicketUpdated {
                    ticket_type_id,
                    available_quantity: available,
                    total_quantity: total,
                    timestamp: now.clone(),
                };
                state
                    .io
                    .to(room::event(event_id))
                    .emit(event::TICKET_UPDATED, &p)
                    .await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "realtime notice not delivered");
        }
    }
}
