//! `room-info` coalescing. Every join and leave changes an event room's user count, and the
//! original sent the new count to the whole room each time: at a sale's opening, N joins cost
//! N²/2 packets (10,000 joins ≈ 50 million), which starves every other broadcast. Here each replica
//! sends a room's count at once when the room was quiet, and otherwise at most once per `WINDOW`
//! with the latest value, so every member still ends up with the current count.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use tiketi_core::wire::{event, room};
use tokio::time::Instant;
use uuid::Uuid;

use super::Io;

/// At most one `room-info` per room and replica within this window.
pub const WINDOW: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Room {
    last_sent: Option<Instant>,
    /// A count waiting for the window to end (a timer is running).
    pending: Option<i64>,
}

#[derive(Clone, Default)]
pub struct RoomInfo {
    rooms: Arc<Mutex<HashMap<Uuid, Room>>>,
}

impl RoomInfo {
    /// The room of `event_id` now has `users`: send it now or at the end of the window.
    pub async fn update(&self, io: &Io, event_id: Uuid, users: i64) {
        let now = Instant::now();
        let send_now = {
            let Ok(mut rooms) = self.rooms.lock() else {
                return;
            };
            let r = rooms.entry(event_id).or_default();
            if r.pending.is_some() {
                r.pending = Some(users);
                false
            } else if r.last_sent.is_none_or(|t| now.duration_since(t) >= WINDOW) {
                r.last_sent = Some(now);
                true
            } else {
                r.pending = Some(users);
                let due = r.last_sent.map_or(now, |t| t + WINDOW);
                let (this, io) = (self.clone(), io.clone());
                tokio::spawn(async move { this.flush_at(io, event_id, due).await });
                false
            }
        };
        if send_now {
            send(io, event_id, users).await;
        }
    }

    async fn flush_at(self, io: Io, event_id: Uuid, due: Instant) {
        tokio::time::sleep_until(due).await;
        let users = {
            let Ok(mut rooms) = self.rooms.lock() else {
                return;
            };
            let Some(r) = rooms.get_mut(&event_id) else {
                return;
            };
            r.last_sent = Some(Instant::now());
            r.pending.take()
        };
        if let Some(users) = users {
            send(&io, event_id, users).await;
        }
        // forget rooms that have been quiet for a while
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.retain(|_, r| {
                r.pending.is_some() || r.last_sent.is_some_and(|t| t.elapsed() < WINDOW * 20)
            });
        }
    }
}

async fn send(io: &Io, event_id: Uuid, users: i64) {
    let info = json!({ "eventId": event_id, "userCount": users });
    if let Err(e) = io
        .to(room::event(event_id))
        .emit(event::ROOM_INFO, &info)
        .await
    {
        tracing::warn!(error = %e, "room-info not delivered");
    }
}
