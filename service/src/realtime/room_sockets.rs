//! This replica's sockets per event room, in memory: the source of its presence heartbeats
//! (`presence`). Apart from `presence` so that `Realtime` (part of `AppState`) holds them without
//! depending on the presence functions, which take the state.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use uuid::Uuid;

/// This replica's sockets per event room and user.
#[derive(Clone)]
pub struct RoomSockets {
    rooms: Arc<Mutex<HashMap<Uuid, HashMap<Uuid, i64>>>>,
    ttl: Duration,
}

impl RoomSockets {
    pub fn new(ttl: Duration) -> Self {
        Self {
            rooms: Arc::default(),
            ttl: ttl.max(Duration::from_secs(1)),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(super) fn change(&self, event: Uuid, user: Uuid, delta: i64) {
        let Ok(mut rooms) = self.rooms.lock() else {
            return;
        };
        let room = rooms.entry(event).or_default();
        let n = room.entry(user).or_default();
        *n += delta;
        if *n <= 0 {
            room.remove(&user);
        }
        if room.is_empty() {
            rooms.remove(&event);
        }
    }

    pub(super) fn snapshot(&self) -> Vec<(Uuid, Vec<(Uuid, i64)>)> {
        self.rooms
            .lock()
            .map(|rooms| {
                rooms
                    .iter()
                    .map(|(e, users)| (*e, users.iter().map(|(u, n)| (*u, *n)).collect()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_local_counts_sockets_and_forgets_empty_rooms() {
        let local = RoomSockets::new(Duration::from_secs(30));
        let (e, u1, u2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        local.change(e, u1, 1);
        local.change(e, u1, 1);
        local.change(e, u2, 1);
        local.change(e, u1, 0);
        let mut users = local.snapshot().pop().unwrap().1;
        users.sort();
        let mut want = vec![(u1, 2), (u2, 1)];
        want.sort();
        assert_eq!(users, want);
        local.change(e, u1, -1);
        local.change(e, u1, -1);
        local.change(e, u2, -1);
        assert!(local.snapshot().is_empty());
    }
}
