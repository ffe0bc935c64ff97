//! Socket.IO on the service port: JWT in the CONNECT packet, the frontend's rooms, server pushes of
//! committed changes, session restore, and fan-out between replicas through the Redis adapter.

pub mod admission;
pub mod flood;
mod handlers;
pub mod handshake;
pub mod layer;
pub mod notices;
pub mod presence;
pub mod room_info;
pub mod room_sockets;
pub mod session;

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use socketioxide::{SocketIo, adapter::Emitter};
use socketioxide_redis::FredAdapter;

use crate::config::Config;

/// The adapter shares rooms and broadcasts between replicas through Redis pub/sub.
pub type Adapter = FredAdapter<Emitter>;
pub type Io = SocketIo<Adapter>;
pub type Socket = socketioxide::extract::SocketRef<Adapter>;

/// Who a socket belongs to (from its token; `handlers` sets it, `flood` names it in its log).
#[derive(Clone, Debug)]
pub struct SocketUser {
    pub user_id: uuid::Uuid,
}

pub const MSG_AUTH_REQUIRED: &str = "Authentication required";
pub const MSG_INVALID_TOKEN: &str = "Invalid authentication token";

/// This replica's Socket.IO side, part of `AppState`: the handle for server pushes, the room-info
/// coalescer, this replica's presence and the per-socket flood limits.
pub struct Realtime {
    /// Attached by `layer::build`, weakly: the handle's socket handlers hold this state, so a strong
    /// link would be a cycle that keeps a stopped service's pools alive. `Service` owns the handle.
    io: OnceLock<Weak<Io>>,
    pub room_info: room_info::RoomInfo,
    /// This replica's sockets per event room, for the presence heartbeat.
    pub presence: room_sockets::RoomSockets,
    pub flood: flood::Limits,
    /// The cap and per-address rate of new sessions.
    pub admission: admission::Admission,
}

impl Realtime {
    pub fn new(config: &Config, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            io: OnceLock::new(),
            room_info: room_info::RoomInfo::default(),
            presence: room_sockets::RoomSockets::new(Duration::from_secs(
                config.presence_ttl_seconds,
            )),
            flood: flood::Limits::from_config(config),
            admission: admission::Admission::from_config(config, metrics),
        }
    }

    /// The Socket.IO handle while its service exists (`None` before `layer::build` and after
    /// `serve`).
    pub fn io(&self) -> Option<Arc<Io>> {
        self.io.get()?.upgrade()
    }
}
