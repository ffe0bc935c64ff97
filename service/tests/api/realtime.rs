//! Socket.IO with the real socket.io-client: authentication, pushes after commits, presence, the
//! waiting room's admissions, session restore, and abuse — across two service replicas sharing
//! PostgreSQL and Redis.

use serde_json::{Value, json};

use crate::{common::TestApp, sio::Clients};

fn join(event: &str, event_id: uuid::Uuid) -> Value {
    json!([[event, { "eventId": event_id }]])
}

#[tokio::test]
async fn realtime_rejects_connections_with_the_contract_messages() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let mut c = Clients::start();
    c.send(json!({ "op": "connect", "id": "none", "url": app.base }))
        .await;
    assert_eq!(
        c.expect("none", "connect_error", |_| true).await,
        "Authentication required"
    );
    c.send(json!({ "op": "connect", "id": "bad", "url": app.base, "token": "not-a-jwt" }))
        .await;
    // the frontend logs out on exactly this text
    assert_eq!(
        c.expect("bad", "connect_error", |_| true).await,
        "Invalid authentication token"
    );
    c.connect("ok", &app, &user.token, json!([])).await;
}

#[tokio::test]
async fn realtime_seat_hold_on_one_replica_reaches_a_client_on_the_other() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let (event, seats) = a.seat_event().await;
    let (viewer, buyer) = (a.user().await, a.user().await);
    let mut c = Clients::start();
    // joined from the connect handler: an early join must not be lost
    let joins = json!([["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]]);
    c.connect("viewer", &b, &viewer.token, joins).await;
    c.expect("viewer", "room-info", |d| d["userCount"] == 1)
        .await;

    a.hold_ok(&buyer.token, event, seats[0]).await;
    let want = |d: &Value| d["seatId"] == json!(seats[0]);
    let locked = c.expect("viewer", "seat-locked", want).await;
    assert_eq!(locked["userId"], json!(buyer.id));
    assert_eq!(locked["status"], "locked");
    let selected = c.expect("viewer", "seat-selected", want).await;
    assert_eq!(
        selected, locked,
        "seat-selected carries the seat-locked payload"
    );
}

#[tokio::test]
async fn realtime_room_info_counts_users_not_sockets_across_replicas() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let (event, _) = a.ticket_event(10).await;
    let (u1, u2) = (a.user().await, a.user().await);
    let mut c = Clients::start();
    c.connect("u1a", &a, &u1.token, join("join-event", event))
        .await;
    c.expect("u1a", "room-info", |d| {
        d["userCount"] == 1 && d["eventId"] == json!(event)
    })
    .await;
    c.connect("u1b", &b, &u1.token, join("join-event", event))
        .await;
    c.expect("u1b", "room-info", |d| d["userCount"] == 1).await;
    c.connect("u2b", &b, &u2.token, join("join-event", event))
        .await;
    c.expect("u1a", "room-info", |d| d["userCount"] == 2).await;
    c.disconnect("u2b").await;
    c.expect("u1a", "room-info", |d| d["userCount"] == 1).await;
}

/// How many replicas are subscribed to `room`'s own adapter channel (fred sends PUBSUB SHARDNUMSUB
/// to the node that owns the channel's slot on a cluster).
async fn room_channel_subscribers(app: &TestApp, room: &str) -> u16 {
    use fred::prelude::PubsubInterface;
    let chan = format!("{}room#{room}#", namespace_channel(app));
    let (_, n): (String, u16) = app
        .state
        .redis
        .next()
        .pubsub_shardnumsub(chan)
        .await
        .expect("PUBSUB SHARDNUMSUB");
    n
}

/// The adapter's channel for the broadcasts of the whole namespace.
fn namespace_channel(app: &TestApp) -> String {
    format!("{}-request#/#", app.state.keys.socketio_channel_prefix())
}

/// Counts the messages on the namespace channel that carry `event`.
async fn count_on_namespace_channel(
    app: &TestApp,
    event: &'static str,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use fred::prelude::{Builder, ClientLike, Config, EventInterface, PubsubInterface};
    let mut config = Config::from_url(&crate::common::redis_url()).expect("redis url");
    config.version = fred::types::RespVersion::RESP3;
    let sub = Builder::from_config(config)
        .build_subscriber_client()
        .expect("subscriber");
    sub.init().await.expect("subscriber connects");
    sub.ssubscribe(namespace_channel(app))
        .await
        .expect("SSUBSCRIBE");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let mut messages = sub.message_rx();
    tokio::spawn(async move {
        let _sub = sub;
        while let Ok(msg) = messages.recv().await {
            let bytes = msg.value.as_bytes().unwrap_or_default();
            if bytes.windows(event.len()).any(|w| w == event.as_bytes()) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    count
}

#[tokio::test]
async fn realtime_seat_updates_reach_only_the_replicas_with_sockets_in_the_event_across_replicas() {
    use crate::common::eventually;
    use std::{sync::atomic::Ordering, time::Duration};
    let a = TestApp::spawn().await;
    let (b, c) = (a.replica().await, a.replica().await);
    let (event, seats) = a.seat_event().await;
    let (elsewhere, _) = a.seat_event().await;
    let (seats_room, event_room) = (format!("seats:{event}"), format!("event:{event}"));
    let users = a.users(4).await;
    let on_namespace_channel = count_on_namespace_channel(&a, "seat-locked").await;
    let joins = |event: uuid::Uuid| json!([["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]]);
    let mut cl = Clients::start();
    cl.connect("on-a", &a, &users[0].token, joins(event)).await;
    cl.connect("on-b", &b, &users[1].token, joins(event)).await;
    // the third replica serves sockets, none of them in the event's rooms
    cl.connect("on-c", &c, &users[2].token, joins(elsewhere))
        .await;
    for id in ["on-a", "on-b", "on-c"] {
        cl.expect(id, "room-info", |_| true).await;
    }
    for room in [&seats_room, &event_room] {
        let two = eventually(Duration::from_secs(5), || async {
            room_channel_subscribers(&a, room).await == 2
        });
        assert!(
            two.await,
            "the two replicas with sockets subscribe to {room}"
        );
    }
    assert_eq!(
        room_channel_subscribers(&a, &format!("seats:{elsewhere}")).await,
        1
    );
    // a user's own room stays on the namespace channel: no subscription per connected user
    let user_room = format!("user:{}", users[0].id);
    assert_eq!(room_channel_subscribers(&a, &user_room).await, 0);

    // published by the third replica, received by the two others only
    let before =
        futures::future::join_all([&a, &b, &c].map(|app| fanout_received(app, "room"))).await;
    c.hold_ok(&users[3].token, event, seats[0]).await;
    let want = |d: &Value| d["seatId"] == json!(seats[0]);
    cl.expect("on-a", "seat-locked", want).await;
    cl.expect("on-b", "seat-locked", want).await;
    let stray = cl.within("on-c", "seat-locked", |_| true, Duration::from_millis(300));
    assert!(stray.await.is_none());
    assert_eq!(
        on_namespace_channel.load(Ordering::SeqCst),
        0,
        "the seat update is not on the channel every replica reads"
    );
    // what each replica's subscriber received meanwhile, as its metrics count it (the third one
    // reads the room channels of the other event, where its own socket is)
    let wants = [("a", &a, true), ("b", &b, true), ("c", &c, false)];
    for ((name, app, wants), before) in wants.into_iter().zip(before) {
        let received = fanout_received(app, "room").await - before;
        assert_eq!(
            received > 0,
            wants,
            "replica {name} received {received} room messages during the hold"
        );
    }

    cl.disconnect("on-a").await;
    cl.disconnect("on-b").await;
    for room in [&seats_room, &event_room] {
        let none = eventually(Duration::from_secs(5), || async {
            room_channel_subscribers(&a, room).await == 0
        });
        assert!(none.await, "no replica stays subscribed to {room}");
    }
}

/// `FANOUT_ROOM_CHANNELS=false` (every replica of an install set alike, as when rolling out over a
/// version without room channels): a seat update travels on the namespace channel and reaches every
/// replica, sockets in the event or not, and no room channel is subscribed.
#[tokio::test]
async fn realtime_with_room_channels_off_seat_updates_reach_every_replica_on_the_namespace_channel()
{
    use std::sync::atomic::Ordering;
    let a = TestApp::spawn_with(|c| c.fanout_room_channels = false).await;
    let (b, c) = (a.replica().await, a.replica().await);
    let (event, seats) = a.seat_event().await;
    let users = a.users(2).await;
    let on_namespace_channel = count_on_namespace_channel(&a, "seat-locked").await;
    let mut cl = Clients::start();
    let joins = json!([["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]]);
    cl.connect("on-a", &a, &users[0].token, joins).await;
    cl.expect("on-a", "room-info", |_| true).await;
    let before = fanout_received(&b, "namespace").await;

    c.hold_ok(&users[1].token, event, seats[0]).await;
    cl.expect("on-a", "seat-locked", |d| d["seatId"] == json!(seats[0]))
        .await;
    assert!(on_namespace_channel.load(Ordering::SeqCst) > 0);
    assert_eq!(
        room_channel_subscribers(&a, &format!("seats:{event}")).await,
        0
    );
    let b_got_it = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        fanout_received(&b, "namespace").await > before
    });
    assert!(
        b_got_it.await,
        "a replica without sockets in the event still reads its updates"
    );
    assert_eq!(fanout_received(&b, "room").await, 0);
}

/// `tiketi_fanout_received_total{kind}` of `app`'s replica.
async fn fanout_received(app: &TestApp, kind: &str) -> u64 {
    let prefix = format!(r#"tiketi_fanout_received_total{{kind="{kind}"}} "#);
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn realtime_polling_client_joins_upgrades_and_gets_pushes() {
    // the Socket.IO layer sees only the headers engineioxide reads (app::detach_socket_request):
    // the polling POST's Content-Type and the upgrade's Sec-WebSocket-Key must still get through
    let app = TestApp::spawn().await;
    let (sevent, seats) = app.seat_event().await;
    let user = app.user().await;
    let mut c = Clients::start();
    let joins = json!([["join-seat-selection", { "eventId": sevent }], ["join-event", { "eventId": sevent }]]);
    c.connect_polling("p", &app, &user.token, joins).await;
    c.expect("p", "room-info", |_| true).await;
    // pushes arrive before and after the client's upgrade to a WebSocket
    app.hold_ok(&user.token, sevent, seats[0]).await;
    c.expect("p", "seat-locked", |d| d["seatId"] == json!(seats[0]))
        .await;
    c.expect("p", "upgrade", |t| t == &json!("websocket")).await;
    app.hold_ok(&user.token, sevent, seats[1]).await;
    c.expect("p", "seat-locked", |d| d["seatId"] == json!(seats[1]))
        .await;
    assert_eq!(c.count("p", "disconnect"), 0);
}

#[tokio::test]
async fn realtime_ticket_and_seat_changes_are_pushed_after_commit() {
    let app = TestApp::spawn().await;
    let (tevent, ticket_type) = app.ticket_event(10).await;
    let (sevent, seats) = app.seat_event().await;
    let user = app.user().await;
    let mut c = Clients::start();
    let joins = json!([["join-seat-selection", { "eventId": sevent }], ["join-event", { "eventId": tevent }]]);
    c.connect("w", &app, &user.token, joins).await;
    c.expect("w", "room-info", |_| true).await;

    let (status, _) = app
        .post(
            "/api/reservations",
            Some(&user.token),
            json!({ "eventId": tevent, "items": [{ "ticketTypeId": ticket_type, "quantity": 3 }] }),
        )
        .await;
    assert_eq!(status, 201);
    let t = c.expect("w", "ticket-updated", |_| true).await;
    assert_eq!(
        (
            t["ticketTypeId"].clone(),
            t["availableQuantity"].clone(),
            t["totalQuantity"].clone()
        ),
        (json!(ticket_type), json!(7), json!(10))
    );

    let hold = app.hold_ok(&user.token, sevent, seats[1]).await;
    c.expect("w", "seat-locked", |d| d["seatId"] == json!(seats[1]))
        .await;
    let (status, _) = app
        .post(
            &format!("/api/reservations/{hold}/cancel"),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let released = c
        .expect("w", "seat-released", |d| d["seatId"] == json!(seats[1]))
        .await;
    assert_eq!(released["status"], "available");
}

#[tokio::test]
async fn realtime_queue_admits_in_fifo_order_once_each_across_replicas() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let third = a.replica().await;
    // every replica runs the admission loop; the lease lets one admit at a time
    for app in [&a, &b, &third] {
        app.start_jobs();
    }
    let (event, _) = a.ticket_event(10).await;
    a.set_queue_threshold(event, 2).await;
    let users = a.users(5).await;
    let check = |i: usize| {
        let (a, t) = (&a, users[i].token.clone());
        async move {
            a.post(&format!("/api/queue/check/{event}"), Some(&t), json!({}))
                .await
                .1
        }
    };
    assert_eq!(check(0).await["queued"], false);
    assert_eq!(check(1).await["queued"], false);
    for (i, position) in [(2, 1), (3, 2), (4, 3)] {
        assert_eq!(check(i).await["position"], position);
    }
    // waiting-room sockets on both replicas (the frontend's modal joins the queue room on connect)
    let mut c = Clients::start();
    for (i, app) in [(0, &a), (2, &a), (3, &b), (4, &third)] {
        c.connect(
            &format!("u{i}"),
            app,
            &users[i].token,
            join("join-queue", event),
        )
        .await;
    }
    // make sure the joins are in before places free up
    c.emit("u0", "join-event", json!({ "eventId": event }))
        .await;
    c.expect("u0", "room-info", |_| true).await;

    for (leaver, admitted) in [(0, 2), (1, 3), (2, 4)] {
        let (status, _) = a
            .post(
                &format!("/api/queue/leave/{event}"),
                Some(&users[leaver].token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        let msg = c
            .expect(&format!("u{admitted}"), "queue-entry-allowed", |_| true)
            .await;
        assert_eq!(msg["userId"], json!(users[admitted].id));
        assert_eq!(
            msg["message"],
            "입장이 허용되었습니다. 잠시 후 자동으로 이동합니다."
        );
        // the next in line is still waiting, and now first
        if admitted < 4 {
            let (_, s) = a
                .get(
                    &format!("/api/queue/status/{event}"),
                    Some(&users[admitted + 1].token),
                )
                .await;
            assert_eq!(
                (s["queued"].clone(), s["position"].clone()),
                (json!(true), json!(1))
            );
        }
    }
    c.expect("u4", "queue-updated", |d| d["queueSize"] == 0)
        .await;
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("tiketi_queue_admitted_total"),
        "admissions are exported"
    );
    // each admission went to its user's sockets only, exactly once
    for i in [0, 2, 3, 4] {
        assert_eq!(
            c.count(&format!("u{i}"), "queue-entry-allowed"),
            0,
            "u{i} got a second or foreign admission"
        );
    }
    // an admin emptying the waiting room tells the queue room, whatever replica they are on
    let admin = a.admin().await;
    let (status, _) = a
        .post(
            &format!("/api/queue/admin/clear/{event}"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let cleared = c.expect("u4", "queue-cleared", |_| true).await;
    assert_eq!(
        cleared,
        json!({ "message": "관리자가 대기열을 초기화했습니다." })
    );
}

#[tokio::test]
async fn realtime_reconnecting_to_another_replica_restores_the_session() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let (event, seats) = a.seat_event().await;
    let (user, buyer) = (a.user().await, a.user().await);
    let mut c = Clients::start();
    let joins = json!([["join-queue", { "eventId": event }], ["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]]);
    c.connect("first", &a, &user.token, joins).await;
    c.expect("first", "room-info", |_| true).await;
    // the join handlers save the session after answering: a client cannot tell when, so wait for it
    let saved = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        use fred::prelude::HashesInterface;
        let session: std::collections::HashMap<String, String> = a
            .state
            .redis
            .hgetall(a.state.keys.session(user.id))
            .await
            .unwrap_or_default();
        ["eventId", "queueEventId", "seatEventId"]
            .iter()
            .all(|f| session.contains_key(*f))
    })
    .await;
    assert!(saved, "the session was not saved");
    c.disconnect("first").await;
    c.expect("first", "disconnect", |_| true).await;

    c.connect("again", &b, &user.token, json!([])).await;
    let restored = c.expect("again", "session-restored", |_| true).await;
    assert_eq!(restored["eventId"], json!(event));
    assert_eq!(restored["queueEventId"], json!(event));
    assert_eq!(restored["seatEventId"], json!(event));
    // rooms are rejoined without the client asking
    a.hold_ok(&buyer.token, event, seats[2]).await;
    c.expect("again", "seat-locked", |d| d["seatId"] == json!(seats[2]))
        .await;
}

#[tokio::test]
async fn realtime_malformed_oversize_and_flooding_clients_do_not_hurt_others() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let (good, bad, buyer) = (app.user().await, app.user().await, app.user().await);
    let mut c = Clients::start();
    c.connect("good", &app, &good.token, json!([["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]])).await;
    c.expect("good", "room-info", |_| true).await;

    // raw Engine.IO/Socket.IO frames: a valid CONNECT, then garbage, an unknown event, then 200 kB
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let frames = json!([
        format!("40{}", json!({ "token": bad.token })),
        "42[\"join-event\"",
        "42[\"no-such-event\",{}]",
        "4xyz",
        format!("42[\"join-event\",\"{}\"]", "x".repeat(200_000)),
    ]);
    c.send(json!({ "op": "raw", "id": "raw", "url": url, "frames": frames }))
        .await;
    c.expect("raw", "raw-close", |_| true).await;

    // a flood of joins and unknown events from a well-formed client
    c.connect("flood", &app, &bad.token, json!([])).await;
    for i in 0..500 {
        c.emit(
            "flood",
            "join-seat-selection",
            json!({ "eventId": uuid::Uuid::new_v4() }),
        )
        .await;
        c.emit("flood", "whatever", json!({ "i": i })).await;
    }
    app.hold_ok(&buyer.token, event, seats[3]).await;
    c.expect("good", "seat-locked", |d| d["seatId"] == json!(seats[3]))
        .await;
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn realtime_traffic_sampler_records_users_queue_and_replicas() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    a.start_jobs();
    b.start_jobs();
    let (event, _) = a.ticket_event(10).await;
    a.set_queue_threshold(event, 1).await;
    let users = a.users(3).await;
    for u in &users {
        a.post(
            &format!("/api/queue/check/{event}"),
            Some(&u.token),
            json!({}),
        )
        .await;
    }
    let mut c = Clients::start();
    c.connect("p0", &a, &users[0].token, join("join-event", event))
        .await;
    c.connect("p1", &b, &users[1].token, join("join-event", event))
        .await;
    c.expect("p0", "room-info", |d| d["userCount"] == 2).await;

    let sampled = crate::common::eventually(std::time::Duration::from_secs(15), || async {
        tiketi_service::jobs::traffic::sample(&a.state).await.unwrap();
        // users, queue, replicas, artist, demand
        type Row = (i32, i32, i32, Option<String>, Option<i32>);
        let row: Option<Row> =
            sqlx::query_as("SELECT concurrent_users, queue_users, replicas, artist_name, demand_users FROM traffic_logs WHERE event_id = $1")
                .bind(event)
                .fetch_optional(&a.db)
                .await
                .unwrap();
        // 2 users on the page, 2 waiting behind the one admitted, 2 live replicas; the demand is the
        // 3 distinct users (the one on the page and in the queue counted once)
        row == Some((2, 2, 2, Some("TEST ARTIST".into()), Some(3)))
    })
    .await;
    assert!(sampled, "traffic_logs never showed the sale's figures");
}

#[tokio::test]
async fn realtime_room_info_is_coalesced_during_a_join_storm() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    let users = app.users(40).await;
    let mut c = Clients::start();
    c.connect("first", &app, &users[0].token, join("join-event", event))
        .await;
    c.expect("first", "room-info", |d| d["userCount"] == 1)
        .await;
    // 39 more join at once: one packet per join would be 39 room-infos for "first"
    for (i, u) in users.iter().enumerate().skip(1) {
        c.connect(&format!("u{i}"), &app, &u.token, join("join-event", event))
            .await;
    }
    // everyone ends up with the final count ...
    c.expect("first", "room-info", |d| d["userCount"] == 40)
        .await;
    c.expect("u1", "room-info", |d| d["userCount"] == 40).await;
    c.expect("u39", "room-info", |d| d["userCount"] == 40).await;
    // ... in a few packets, not one per join
    let seen = c.count("first", "room-info") + 1;
    assert!(seen < 10, "{seen} room-info packets for 39 joins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_presence_of_a_dead_replica_lapses_within_its_ttl() {
    // a few seconds, so the test is quick; with less, a loaded machine delays live heartbeats past it
    let ttl = std::time::Duration::from_secs(4);
    let a = TestApp::spawn_with(|c| c.presence_ttl_seconds = ttl.as_secs()).await;
    let b = a.replica().await;
    let (event, _) = a.ticket_event(10).await;
    let (u1, u2, u3) = (a.user().await, a.user().await, a.user().await);
    let mut c = Clients::start();
    c.connect("u1a", &a, &u1.token, join("join-event", event))
        .await;
    c.expect("u1a", "room-info", |d| d["userCount"] == 1).await;
    c.connect("u2b", &b, &u2.token, join("join-event", event))
        .await;
    c.connect("u3b", &b, &u3.token, join("join-event", event))
        .await;
    c.expect("u1a", "room-info", |d| d["userCount"] == 3).await;

    // B dies without a word: its loops stop, and its sockets never leave (like a SIGKILL, whose
    // clients' TCP connections stay half-open until they time out)
    drop(b);
    let died = std::time::Instant::now();
    let count =
        || tiketi_service::realtime::presence::count(&a.state.redis, &a.state.keys, event, ttl);
    c.expect("u1a", "room-info", |d| d["userCount"] == 1).await;
    assert!(
        died.elapsed() < ttl * 3,
        "B's users were still counted {:?} after it died",
        died.elapsed()
    );
    // the traffic sampler's figure agrees, and B's sockets were never disconnected
    let agrees = crate::common::eventually(ttl, || async { count().await.unwrap() == 1 }).await;
    assert!(agrees, "the sampler's count differs from room-info");
    assert_eq!(
        c.count("u2b", "disconnect") + c.count("u3b", "disconnect"),
        0
    );

    // A's own users keep being vouched for: past their first expiry they are still counted (a
    // heartbeat delayed by a loaded machine may drop them for a moment; the next counts them again)
    c.connect("u2a", &a, &u2.token, join("join-event", event))
        .await;
    c.expect("u1a", "room-info", |d| d["userCount"] == 2).await;
    let joined = std::time::Instant::now();
    let kept = crate::common::eventually(ttl * 3, || async {
        joined.elapsed() > ttl && count().await.unwrap() == 2
    })
    .await;
    assert!(kept, "a live replica's users were not counted past the TTL");
}

#[tokio::test]
async fn realtime_presence_lost_in_redis_is_counted_again_by_the_heartbeat() {
    use fred::prelude::KeysInterface;
    let ttl = std::time::Duration::from_secs(2);
    let a = TestApp::spawn_with(|c| c.presence_ttl_seconds = ttl.as_secs()).await;
    let (event, _) = a.ticket_event(10).await;
    let u1 = a.user().await;
    let mut c = Clients::start();
    c.connect("u1", &a, &u1.token, join("join-event", event))
        .await;
    c.expect("u1", "room-info", |d| d["userCount"] == 1).await;

    // as after a Redis restart without persistence
    let k = &a.state.keys;
    let _: i64 = a
        .state
        .redis
        .del(vec![k.presence(event), k.presence_seen(event)])
        .await
        .unwrap();
    let count = || tiketi_service::realtime::presence::count(&a.state.redis, k, event, ttl);
    assert_eq!(count().await.unwrap(), 0);
    let back = crate::common::eventually(ttl * 3, || async { count().await.unwrap() == 1 }).await;
    assert!(back, "the heartbeat did not count the connected user again");
}

#[tokio::test]
async fn realtime_shutdown_closes_sockets_so_clients_reconnect_elsewhere() {
    // Found on real pods (e2e real_pods::sockets): a draining replica left its WebSocket connections
    // open until the process exited, so clients only noticed a dead TCP peer.
    let (app, stop) = TestApp::spawn_stoppable().await;
    let user = app.user().await;
    let mut c = Clients::start();
    c.connect("a", &app, &user.token, json!([])).await;
    stop.send(()).expect("the server runs");
    // "transport close": socket.io-client reconnects by itself ("io server disconnect" would not).
    let reason = c.expect("a", "disconnect", |_| true).await;
    assert_eq!(reason, "transport close");
}

/// An Engine.IO session that never sends its Socket.IO CONNECT (no token, nothing) is closed by the
/// server within SOCKET_CONNECT_TIMEOUT_SECONDS, and its place under the connection cap is free again.
#[tokio::test]
async fn realtime_a_session_that_never_connects_is_closed_within_the_timeout() {
    let app = TestApp::spawn_with(|c| c.socket_connect_timeout_seconds = 2).await;
    let mut c = Clients::start();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    c.send(json!({ "op": "raw", "id": "idle", "url": url, "frames": [] }))
        .await;
    let open = c.expect("idle", "raw-message", |_| true).await;
    assert!(open.as_str().is_some_and(|m| m.starts_with("0{")), "{open}");
    assert_eq!(app.state.realtime.admission.open(), 1);
    // the server closes it: 2 s, plus slack for a loaded machine (the default was 45 s)
    let closed = c
        .within(
            "idle",
            "raw-close",
            |_| true,
            std::time::Duration::from_secs(8),
        )
        .await;
    assert!(
        closed.is_some(),
        "the session without CONNECT is still open"
    );
    let freed = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        app.state.realtime.admission.open() == 0
    })
    .await;
    assert!(freed, "the closed session still holds its place");
}
