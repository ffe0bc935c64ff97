use std::time::Duration;

use socketioxide::{SocketIo, adapter::Emitter, extract::SocketRef};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig};

mod fixture;
use fixture::StubDriver;

type Io = SocketIo<CustomRedisAdapter<Emitter, StubDriver>>;

const ROOM1_CHAN: &str = "socket.io-request#/#room#room1#";

fn room_channels() -> RedisAdapterConfig {
    RedisAdapterConfig::new().with_room_channels(true)
}

/// Each server's sockets join the given rooms on connection.
async fn serve(servers: &[(Io, StubDriver)], rooms: &[&'static [&'static str]]) {
    for ((io, _), rooms) in servers.iter().zip(rooms) {
        let rooms = *rooms;
        io.ns("/", async move |s: SocketRef<_>| s.join(rooms))
            .await
            .unwrap();
    }
}

/// Waits until `cond` holds (room subscriptions are made by a task of the adapter).
async fn until(what: &str, cond: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(1), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
pub async fn single_room_broadcast_reaches_only_the_servers_with_sockets_in_the_room() {
    let servers = fixture::spawn_servers_with_config::<3>(room_channels());
    serve(&servers, &[&["room1"], &["room1"], &["room2"]]).await;
    let [(io1, d1), (io2, d2), (io3, d3)] = servers;
    let ((_tx1, mut rx1), (_tx2, mut rx2), (_tx3, mut rx3)) = tokio::join!(
        io1.new_dummy_sock("/", ()),
        io2.new_dummy_sock("/", ()),
        io3.new_dummy_sock("/", ())
    );
    timeout_rcv!(&mut rx1); // Connect "/" packet
    timeout_rcv!(&mut rx2);
    timeout_rcv!(&mut rx3);
    until("the two servers with sockets in room1 subscribe", || {
        d1.is_subscribed(ROOM1_CHAN) && d2.is_subscribed(ROOM1_CHAN)
    })
    .await;
    assert!(!d3.is_subscribed(ROOM1_CHAN));
    settle().await;
    let before = d3.received();

    io3.to("room1").emit("test", &1).await.unwrap();
    assert_eq!(timeout_rcv!(&mut rx1), r#"42["test",1]"#);
    assert_eq!(timeout_rcv!(&mut rx2), r#"42["test",1]"#);
    timeout_rcv_err!(&mut rx3);
    settle().await;
    assert_eq!(d3.received(), before, "the server without sockets in room1");

    // emptied by a local leave and by a remote one
    io1.local().leave("room1").await.unwrap();
    io3.to("room1").leave("room1").await.unwrap();
    until("the rooms' last sockets left", || {
        !d1.is_subscribed(ROOM1_CHAN) && !d2.is_subscribed(ROOM1_CHAN)
    })
    .await;
    io3.to("room1").emit("test", &2).await.unwrap();
    timeout_rcv_err!(&mut rx1);
    timeout_rcv_err!(&mut rx2);
}

#[tokio::test]
pub async fn a_room_left_and_joined_again_stays_subscribed_once() {
    let servers = fixture::spawn_servers_with_config::<2>(room_channels());
    serve(&servers, &[&["room1"], &[]]).await;
    let [(io1, d1), (io2, _d2)] = servers;
    let (_tx1, mut rx1) = io1.new_dummy_sock("/", ()).await;
    timeout_rcv!(&mut rx1); // Connect "/" packet
    until("room1 is subscribed", || d1.is_subscribed(ROOM1_CHAN)).await;

    for _ in 0..10 {
        io1.local().leave("room1").await.unwrap();
        io1.local().join("room1").await.unwrap();
    }
    settle().await;
    assert!(d1.is_subscribed(ROOM1_CHAN));

    // delivered once: the server is subscribed to room1's channel only
    io2.to("room1").emit("test", &1).await.unwrap();
    assert_eq!(timeout_rcv!(&mut rx1), r#"42["test",1]"#);
    timeout_rcv_err!(&mut rx1);
}

/// Broadcasts to several rooms, to a room of one server and with acks need every server (the
/// ack count is per server), so they stay on the namespace channel.
#[tokio::test]
pub async fn other_broadcasts_stay_on_the_namespace_channel() {
    let servers = fixture::spawn_servers_with_config::<2>(room_channels());
    serve(&servers, &[&["room1"], &["room2"]]).await;
    let [(io1, d1), (io2, d2)] = servers;
    let ((_tx1, mut rx1), (_tx2, mut rx2)) =
        tokio::join!(io1.new_dummy_sock("/", ()), io2.new_dummy_sock("/", ()));
    timeout_rcv!(&mut rx1); // Connect "/" packet
    timeout_rcv!(&mut rx2);
    until("both rooms are subscribed", || {
        d1.is_subscribed(ROOM1_CHAN) && d2.is_subscribed("socket.io-request#/#room#room2#")
    })
    .await;
    settle().await;
    let before = d2.received();
    io1.to(["room1", "room2"]).emit("test", &1).await.unwrap();
    assert_eq!(timeout_rcv!(&mut rx1), r#"42["test",1]"#);
    assert_eq!(timeout_rcv!(&mut rx2), r#"42["test",1]"#);
    settle().await;
    assert_eq!(d2.received(), before + 1);

    let sockets = io1.fetch_sockets().await.unwrap();
    assert_eq!(sockets.len(), 2);
    assert_eq!(io1.rooms().await.unwrap().len(), 2);
}

/// Events A, B and C have sockets on servers {1}, {1, 2} and {1, 2, 3}; `n` broadcasts to each
/// event's room, published in turn by each server. Returns the messages each server's adapter
/// received.
async fn received_per_server(config: RedisAdapterConfig, n: usize) -> [usize; 3] {
    let servers = fixture::spawn_servers_with_config::<3>(config);
    serve(&servers, &[&["A", "B", "C"], &["B", "C"], &["C"]]).await;
    let [(io1, d1), (io2, d2), (io3, d3)] = servers;
    let ((_tx1, mut rx1), (_tx2, mut rx2), (_tx3, mut rx3)) = tokio::join!(
        io1.new_dummy_sock("/", ()),
        io2.new_dummy_sock("/", ()),
        io3.new_dummy_sock("/", ())
    );
    settle().await;
    let ios = [&io1, &io2, &io3];
    let before = [d1.received(), d2.received(), d3.received()];
    for i in 0..n {
        for room in ["A", "B", "C"] {
            ios[i % 3].to(room).emit("seat", &i).await.unwrap();
        }
    }
    settle().await;
    let received = [d1.received(), d2.received(), d3.received()];
    // every socket got every broadcast of its rooms
    for (rx, rooms) in [(&mut rx1, 3), (&mut rx2, 2), (&mut rx3, 1)] {
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 1 + rooms * n, "connect packet and broadcasts");
    }
    [0, 1, 2].map(|i| received[i] - before[i])
}

#[tokio::test]
pub async fn messages_received_per_server_with_and_without_room_channels() {
    const N: usize = 20;
    let namespace_channel = received_per_server(RedisAdapterConfig::new(), N).await;
    let room_channels = received_per_server(room_channels(), N).await;
    println!("{N} broadcasts to each of A (server 1), B (1, 2), C (1, 2, 3)");
    println!("namespace channel: {namespace_channel:?}, room channels: {room_channels:?}");
    assert_eq!(namespace_channel, [3 * N; 3]);
    assert_eq!(room_channels, [3 * N, 2 * N, N]);
}

#[tokio::test]
pub async fn rooms_left_out_by_the_filter_stay_on_the_namespace_channel() {
    let config = RedisAdapterConfig::new().with_room_channels_for(|room| room != "user1");
    let servers = fixture::spawn_servers_with_config::<2>(config);
    serve(&servers, &[&["room1", "user1"], &[]]).await;
    let [(io1, d1), (io2, d2)] = servers;
    let (_tx1, mut rx1) = io1.new_dummy_sock("/", ()).await;
    timeout_rcv!(&mut rx1); // Connect "/" packet
    until("room1 is subscribed", || d1.is_subscribed(ROOM1_CHAN)).await;
    settle().await;
    assert!(!d1.is_subscribed("socket.io-request#/#room#user1#"));
    assert_eq!(d1.handler_cnt(), 4, "three namespace channels and room1's");

    // every server receives it
    let before = d2.received();
    io2.to("user1").emit("test", &1).await.unwrap();
    assert_eq!(timeout_rcv!(&mut rx1), r#"42["test",1]"#);
    settle().await;
    assert_eq!(d2.received(), before + 1);
}
