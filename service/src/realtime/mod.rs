//! Socket.IO on the service port: JWT in the CONNECT packet, the frontend's rooms, server pushes of
//! committed changes, session restore, and fan-out between replicas through the Redis adapter.

pub mod admission;
pub mod flood;
mod handlers;
pub mod presence;
pub mod room_info;
pub mod session;

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use fred::{
    prelude::{Builder, Config as RedisConfig, EventInterface, PubsubInterface, ReconnectPolicy},
    types::RespVersion,
};
use socketioxide::{SocketIo, adapter::Emitter, handler::ConnectHandler, layer::SocketIoLayer};
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tiketi_core::{
    time::to_wire,
    wire::{Notice, SeatLocked, SeatReleased, TicketUpdated, event, room},
};

use crate::{config::Config, state::AppState};

/// The adapter shares rooms and broadcasts between replicas through Redis pub/sub.
pub type Adapter = FredAdapter<Emitter>;
pub type Io = SocketIo<Adapter>;
pub type Socket = socketioxide::extract::SocketRef<Adapter>;

pub const MSG_AUTH_REQUIRED: &str = "Authentication required";
pub const MSG_INVALID_TOKEN: &str = "Invalid authentication token";

/// This replica's Socket.IO side, part of `AppState`: the handle for server pushes, the room-info
/// coalescer, this replica's presence and the per-socket flood limits.
pub struct Realtime {
    /// Attached by `build`, weakly: the handle's socket handlers hold this state, so a strong link
    /// would be a cycle that keeps a stopped service's pools alive. `Service` owns the handle.
    io: OnceLock<Weak<Io>>,
    pub room_info: room_info::RoomInfo,
    /// This replica's sockets per event room, for the presence heartbeat.
    pub presence: presence::RoomSockets,
    pub flood: flood::Limits,
    /// The cap and per-address rate of new sessions.
    pub admission: admission::Admission,
}

impl Realtime {
    pub fn new(config: &Config, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            io: OnceLock::new(),
            room_info: room_info::RoomInfo::default(),
            presence: presence::RoomSockets::new(Duration::from_secs(config.presence_ttl_seconds)),
            flood: flood::Limits::from_config(config),
            admission: admission::Admission::from_config(config, metrics),
        }
    }

    /// The Socket.IO handle while its service exists (`None` before `build` and after `serve`).
    pub fn io(&self) -> Option<Arc<Io>> {
        self.io.get()?.upgrade()
    }
}

/// Builds the Socket.IO layer and its handle over a Redis adapter (RESP3 subscriber, Redis >= 7),
/// and attaches the handle to `state`; the caller keeps the returned handle alive while it serves.
pub async fn build(state: &AppState) -> anyhow::Result<(SocketIoLayer<Adapter>, Arc<Io>)> {
    let config = &state.config;
    let mut rc = RedisConfig::from_url(&config.redis_url)?;
    rc.version = RespVersion::RESP3;
    rc.fail_fast = false;
    let sub = Builder::from_config(rc)
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
        .build_subscriber_client()?;
    resubscribe_on_reconnect(&sub);
    let adapter_config = RedisAdapterConfig::new()
        .with_prefix(state.keys.socketio_channel_prefix())
        .with_stream_buffer(8192);
    let adapter = tokio::time::timeout(
        Duration::from_secs(30),
        RedisAdapterCtr::new_with_fred_config(sub, adapter_config),
    )
    .await
    .map_err(|_| anyhow::anyhow!("redis not reachable for the Socket.IO adapter within 30 s"))??;
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(60))
        // an Engine.IO session without a Socket.IO CONNECT holds a place under the connection cap
        .connect_timeout(Duration::from_secs(config.socket_connect_timeout_seconds))
        .max_payload(100_000)
        // tungstenite allocates and zero-fills this per socket; client packets are ~100 bytes, and a
        // larger frame grows it as needed
        .ws_read_buffer_size(256)
        .with_state(state.clone())
        .with_adapter::<Adapter>(adapter)
        .build_layer();
    io.ns("/", handlers::on_connect.with(handlers::authenticate))
        .await?;
    let io = Arc::new(io);
    if state.realtime.io.set(Arc::downgrade(&io)).is_err() {
        anyhow::bail!("the Socket.IO layer was built twice for one state");
    }
    Ok((layer, io))
}

/// After a Redis restart, subscribes again to every adapter channel. (fred's `manage_subscriptions`
/// first sends a SUBSCRIBE without channels, which Redis refuses, and never gets to the shard channels
/// the adapter uses.)
fn resubscribe_on_reconnect(sub: &fred::clients::SubscriberClient) {
    let sub = sub.clone();
    let mut reconnects = sub.reconnect_rx();
    tokio::spawn(async move {
        while reconnects.recv().await.is_ok() {
            for channel in sub.tracked_shard_channels() {
                if let Err(e) = sub.ssubscribe(channel.to_string()).await {
                    tracing::warn!(error = %e, %channel, "adapter channel not resubscribed");
                }
            }
            tracing::info!("socket.io adapter resubscribed after a redis reconnect");
        }
    });
}

/// Announces committed changes to the rooms that show them, on every replica.
pub async fn publish(state: &AppState, notices: Vec<Notice>) {
    if notices.is_empty() {
        return;
    }
    let Some(io) = state.realtime.io() else {
        tracing::debug!("realtime notices dropped: this service no longer serves Socket.IO");
        return;
    };
    let now = to_wire(&chrono::Utc::now());
    // while Redis is unreachable, this replica's own sockets still hear the change at once instead of
    // every emit waiting out the adapter's timeout
    let remote = state.redis_breaker.allow();
    if !remote {
        state.metrics.redis_steps_skipped.inc();
    }
    let rooms = |r: String| {
        if remote { io.to(r) } else { io.local().to(r) }
    };
    // Every emit is started before any is awaited: their adapter publishes go out together (one Redis
    // round trip, in order on the adapter's one connection), and the local broadcasts then run back
    // to back, so each socket's writer finds a hold's `seat-locked` and `seat-selected` (and the
    // other notices) queued together and sends them in one write.
    let mut sends: Vec<futures::future::BoxFuture<'_, _>> = Vec::with_capacity(notices.len());
    for notice in notices {
        let send: futures::future::BoxFuture<'_, _> = match notice {
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
                let to = rooms(room::seats(event_id));
                // the frontend listens to `seat-selected`; `seat-locked` is the original's name
                Box::pin(async move {
                    let (locked, selected) = futures::join!(
                        to.clone().emit(event::SEAT_LOCKED, &p),
                        to.emit(event::SEAT_SELECTED, &p)
                    );
                    locked.and(selected)
                })
            }
            Notice::SeatReleased { event_id, seat_id } => {
                state.metrics.seats_released.inc();
                let p = SeatReleased {
                    seat_id,
                    status: "available".into(),
                    timestamp: now.clone(),
                };
                let to = rooms(room::seats(event_id));
                Box::pin(async move { to.emit(event::SEAT_RELEASED, &p).await })
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
                let to = rooms(room::event(event_id));
                Box::pin(async move { to.emit(event::TICKET_UPDATED, &p).await })
            }
            Notice::QueueEntryAllowed { event_id, user_id } => {
                let p = serde_json::json!({
                    "userId": user_id,
                    "message": crate::queue::admission::MSG_ENTRY_ALLOWED,
                });
                let to = rooms(room::user_queue(event_id, user_id));
                Box::pin(async move { to.emit(event::QUEUE_ENTRY_ALLOWED, &p).await })
            }
            Notice::QueueUpdated {
                event_id,
                queue_size,
            } => {
                let p = serde_json::json!({ "queueSize": queue_size, "timestamp": now });
                let to = rooms(room::queue(event_id));
                Box::pin(async move { to.emit(event::QUEUE_UPDATED, &p).await })
            }
            Notice::QueueCleared { event_id } => {
                let p = serde_json::json!({ "message": crate::queue::MSG_CLEARED });
                let to = rooms(room::queue(event_id));
                Box::pin(async move { to.emit(event::QUEUE_CLEARED, &p).await })
            }
        };
        sends.push(send);
    }
    for sent in futures::future::join_all(sends).await {
        if let Err(e) = sent {
            tracing::warn!(error = %e, "realtime notice not delivered");
        }
    }
    if remote {
        // a publish that was let through as the half-open probe does not hold the probe slot
        state.redis_breaker.release_probe();
    }
}
