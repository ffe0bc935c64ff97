//! The Socket.IO layer of the service port, over the Redis adapter that fans rooms and broadcasts
//! out between replicas.

use std::{sync::Arc, time::Duration};

use fred::{
    prelude::{Builder, Config as RedisConfig, EventInterface, PubsubInterface, ReconnectPolicy},
    types::RespVersion,
};
use socketioxide::{SocketIo, handler::ConnectHandler, layer::SocketIoLayer};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tiketi_core::wire::room;

use super::{Adapter, Io, handlers};
use crate::{metrics::KindLabels, state::AppState};

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
    count_received(&sub, state);
    // a broadcast to one event room reaches only the replicas with sockets in it (patches/README.md)
    let adapter_config = RedisAdapterConfig::new()
        .with_prefix(state.keys.socketio_channel_prefix())
        .with_stream_buffer(8192);
    let adapter_config = if config.fanout_room_channels {
        adapter_config.with_room_channels_for(room::has_own_channel)
    } else {
        adapter_config
    };
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

/// After a Redis restart, subscribes again to every adapter channel, the rooms' included (fred tracks
/// them as the adapter subscribes and unsubscribes). (fred's `manage_subscriptions`
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

/// Counts what the adapter's subscriber receives, by kind of channel (`tiketi_fanout_received`):
/// with room channels a replica receives only the broadcasts of rooms it has sockets in.
fn count_received(sub: &fred::clients::SubscriberClient, state: &AppState) {
    let mut messages = sub.message_rx();
    let counted = state.metrics.fanout_received.clone();
    tokio::spawn(async move {
        loop {
            match messages.recv().await {
                Ok(m) => {
                    let kind = channel_kind(&m.channel);
                    counted.get_or_create(&KindLabels { kind }).inc();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // received, but past this counter before it could tell their channels
                    counted
                        .get_or_create(&KindLabels { kind: "uncounted" })
                        .inc_by(n);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The kind of an adapter channel: `{prefix}-request#{ns}#room#{room}#` is a room's,
/// `{prefix}-request#{ns}#` the namespace's; the rest (`-request#{ns}#{server}#`, `-response#…`)
/// carry requests to this replica alone and answers to its own.
fn channel_kind(channel: &str) -> &'static str {
    match channel.split_once("-request#") {
        Some((_, rest)) if rest.contains("#room#") => "room",
        Some((_, rest)) if rest.matches('#').count() == 1 => "namespace",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::channel_kind;

    #[test]
    fn fanout_channels_are_told_apart_by_name() {
        assert_eq!(
            channel_kind("tiketi-socket.io-request#/#room#seats:e1#"),
            "room"
        );
        assert_eq!(channel_kind("tiketi-socket.io-request#/#"), "namespace");
        assert_eq!(channel_kind("tiketi-socket.io-request#/#a1b2#"), "other");
        assert_eq!(channel_kind("tiketi-socket.io-response#/#a1b2#"), "other");
    }
}
