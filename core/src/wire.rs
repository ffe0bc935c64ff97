//! Socket.IO event names, rooms and server→client payloads, fixed by the existing frontend
//! (docs/wire-contract.md §2). The service emits these; tests and the load generator read them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod event {
    pub const JOIN_EVENT: &str = "join-event";
    pub const LEAVE_EVENT: &str = "leave-event";
    pub const JOIN_QUEUE: &str = "join-queue";
    pub const JOIN_SEAT_SELECTION: &str = "join-seat-selection";
    pub const SEAT_SELECTION_CHANGED: &str = "seat-selection-changed";
    pub const ROOM_INFO: &str = "room-info";
    pub const TICKET_UPDATED: &str = "ticket-updated";
    pub const SEAT_LOCKED: &str = "seat-locked";
    /// What the frontend actually listens to; emitted beside `seat-locked` with the same payload.
    pub const SEAT_SELECTED: &str = "seat-selected";
    pub const SEAT_RELEASED: &str = "seat-released";
    pub const QUEUE_ENTRY_ALLOWED: &str = "queue-entry-allowed";
    pub const QUEUE_UPDATED: &str = "queue-updated";
    pub const QUEUE_CLEARED: &str = "queue-cleared";
    pub const SESSION_RESTORED: &str = "session-restored";
}

pub mod room {
    use uuid::Uuid;

    pub fn event(id: Uuid) -> String {
        format!("event:{id}")
    }
    pub fn queue(id: Uuid) -> String {
        format!("queue:{id}")
    }
    pub fn seats(id: Uuid) -> String {
        format!("seats:{id}")
    }
    /// Every socket of one user (server-side only; never announced to clients).
    pub fn user(id: Uuid) -> String {
        format!("user:{id}")
    }
    /// The waiting-room sockets of one user for one event: `queue-entry-allowed` goes only here.
    pub fn user_queue(event: Uuid, user: Uuid) -> String {
        format!("queue:{event}:user:{user}")
    }
    /// Whether the Socket.IO adapter gives the room a Redis channel of its own: an event's rooms,
    /// shared by its viewers. A user's rooms stay on the namespace channel, or each connected user
    /// would cost every replica with their sockets a subscription, for a few pushes.
    pub fn has_own_channel(room: &str) -> bool {
        !(room.starts_with("user:") || room.contains(":user:"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_the_rooms_of_an_event_have_their_own_channel() {
            let (e, u) = (Uuid::new_v4(), Uuid::new_v4());
            for room in [event(e), queue(e), seats(e)] {
                assert!(has_own_channel(&room), "{room}");
            }
            for room in [user(u), user_queue(e, u)] {
                assert!(!has_own_channel(&room), "{room}");
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatLocked {
    pub seat_id: Uuid,
    pub user_id: Uuid,
    /// Always `"locked"`.
    pub status: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatReleased {
    pub seat_id: Uuid,
    /// Always `"available"`.
    pub status: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdated {
    pub ticket_type_id: Uuid,
    pub available_quantity: i32,
    pub total_quantity: i32,
    pub timestamp: String,
}

/// A change to announce once its transaction has committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    SeatLocked {
        event_id: Uuid,
        seat_id: Uuid,
        user_id: Uuid,
    },
    SeatReleased {
        event_id: Uuid,
        seat_id: Uuid,
    },
    TicketUpdated {
        event_id: Uuid,
        ticket_type_id: Uuid,
        available: i32,
        total: i32,
    },
    /// The waiting room admitted `user_id` (to that user's waiting-room sockets only).
    QueueEntryAllowed {
        event_id: Uuid,
        user_id: Uuid,
    },
    /// The waiting room's length changed (to the queue room).
    QueueUpdated {
        event_id: Uuid,
        queue_size: i64,
    },
    /// An admin emptied the waiting room (to the queue room).
    QueueCleared {
        event_id: Uuid,
    },
}

impl Notice {
    /// The event whose rooms hear it.
    pub fn event_id(&self) -> Uuid {
        match self {
            Notice::SeatLocked { event_id, .. }
            | Notice::SeatReleased { event_id, .. }
            | Notice::TicketUpdated { event_id, .. }
            | Notice::QueueEntryAllowed { event_id, .. }
            | Notice::QueueUpdated { event_id, .. }
            | Notice::QueueCleared { event_id } => *event_id,
        }
    }
}

/// What a user's sockets were doing, restored on reconnect (`session-restored` payload).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub event_id: Option<Uuid>,
    pub queue_event_id: Option<Uuid>,
    pub seat_event_id: Option<Uuid>,
    pub selected_seats: Option<serde_json::Value>,
}

impl Session {
    pub fn is_empty(&self) -> bool {
        self.event_id.is_none() && self.queue_event_id.is_none() && self.seat_event_id.is_none()
    }
}
