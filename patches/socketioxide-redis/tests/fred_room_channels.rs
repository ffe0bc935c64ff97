//! Room channels against a real redis (standalone or cluster) with the fred driver: the messages
//! each server's subscriber connection receives. Runs when `REDIS_URL` is set (e.g.
//! `redis://127.0.0.1:6379` or `redis-cluster://127.0.0.1:7001`), skipped otherwise.
#![cfg(feature = "fred")]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fred::{
    prelude::{Builder, Config, EventInterface},
    types::RespVersion,
};
use socketioxide::{SocketIo, extract::SocketRef};
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};

/// A server whose subscriber connection counts the messages it receives.
async fn server(
    url: &str,
    config: RedisAdapterConfig,
    rooms: &'static [&'static str],
) -> (
    SocketIo<FredAdapter<socketioxide::adapter::Emitter>>,
    Arc<AtomicUsize>,
) {
    let mut rc = Config::from_url(url).unwrap();
    rc.version = RespVersion::RESP3;
    let client = Builder::from_config(rc).build_subscriber_client().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let mut messages = client.message_rx();
    let counted = received.clone();
    tokio::spawn(async move {
        while messages.recv().await.is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let adapter = RedisAdapterCtr::new_with_fred_config(client, config)
        .await
        .unwrap();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<FredAdapter<_>>(adapter)
        .build_svc();
    io.ns("/", async move |s: SocketRef<_>| s.join(rooms))
        .await
        .unwrap();
    (io, received)
}

/// Events A, B and C have sockets on servers {1}, {1, 2} and {1, 2, 3}; `n` broadcasts to each
/// event's room, published in turn by each server.
async fn received_per_server(url: &str, room_channels: bool, n: usize) -> [usize; 3] {
    let prefix = format!("room-channels-test-{}-{room_channels}", std::process::id());
    let config = RedisAdapterConfig::new()
        .with_prefix(prefix)
        .with_room_channels(room_channels);
    let servers = [
        server(url, config.clone(), &["A", "B", "C"]).await,
        server(url, config.clone(), &["B", "C"]).await,
        server(url, config, &["C"]).await,
    ];
    let mut sockets = Vec::new();
    for (io, _) in &servers {
        sockets.push(io.new_dummy_sock("/", ()).await);
    }
    // room subscriptions are made by a task of each adapter
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = servers.each_ref().map(|(_, r)| r.load(Ordering::Relaxed));
    for i in 0..n {
        for room in ["A", "B", "C"] {
            servers[i % 3].0.to(room).emit("seat", &i).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((_, rx), rooms) in sockets.iter_mut().zip([3, 2, 1]) {
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(
            got,
            1 + rooms * n,
            "connect packet and every broadcast of its rooms"
        );
    }
    let after = servers.each_ref().map(|(_, r)| r.load(Ordering::Relaxed));
    [0, 1, 2].map(|i| after[i] - before[i])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_messages_received_per_server_with_and_without_room_channels() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipped");
        return;
    };
    const N: usize = 40;
    let namespace_channel = received_per_server(&url, false, N).await;
    let room_channels = received_per_server(&url, true, N).await;
    println!("{N} broadcasts to each of A (server 1), B (1, 2), C (1, 2, 3), {url}");
    println!("namespace channel: {namespace_channel:?}, room channels: {room_channels:?}");
    assert_eq!(namespace_channel, [3 * N; 3]);
    assert_eq!(room_channels, [3 * N, 2 * N, N]);
}
