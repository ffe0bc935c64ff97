//! Per-socket flood limits with the real socket.io-client: a socket that sends too many events, or
//! joins too many rooms, is disconnected; everyone else, the same user's other sockets included, is
//! not. Then arbitrary payloads to every client→server event (bounded property test).

use std::time::Duration;

use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config as ProptestConfig, TestRunner},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    common::{TestApp, eventually},
    fuzz::{arb_json, huge_string},
    sio::Clients,
};

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of `tiketi_socket_floods_total{kind}` (process-wide: other tests add to it too).
fn floods(text: &str, kind: &str) -> u64 {
    let prefix = format!("tiketi_socket_floods_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn flood_an_event_flooder_is_disconnected_and_others_keep_their_broadcasts() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let (good, bad, buyer) = (app.user().await, app.user().await, app.user().await);
    let mut c = Clients::start();
    // the frontend's seat page: two joins on connect, then a few selection changes
    let joins = json!([["join-seat-selection", { "eventId": event }], ["join-event", { "eventId": event }]]);
    c.connect("good", &app, &good.token, joins.clone()).await;
    c.connect("bad-other", &app, &bad.token, joins.clone())
        .await;
    c.connect("flood", &app, &bad.token, joins).await;
    c.expect("good", "room-info", |d| d["userCount"] == 2).await;
    for seat in &seats[..5] {
        c.emit(
            "good",
            "seat-selection-changed",
            json!({ "eventId": event, "seats": [seat] }),
        )
        .await;
    }

    let before = floods(&metrics(&app).await, "events");
    for i in 0..300 {
        c.emit(
            "flood",
            "seat-selection-changed",
            json!({ "eventId": event, "seats": [i] }),
        )
        .await;
    }
    let reason = c.expect("flood", "disconnect", |_| true).await;
    // the server's DISCONNECT packet usually arrives first; on a loaded machine the closing socket
    // can beat it (seen in a full run beside CI), so the client reports the transport instead. The
    // flood counter below tells that the server cut it.
    assert!(
        reason == "io server disconnect" || reason == "transport close",
        "{reason}"
    );

    // the room still gets its broadcasts, on the good socket and the flooder's user's other socket
    app.hold_ok(&buyer.token, event, seats[7]).await;
    for id in ["good", "bad-other"] {
        c.expect(id, "seat-locked", |d| d["seatId"] == json!(seats[7]))
            .await;
    }
    // both still have working handlers (room-info answers a join)
    let (other, _) = app.ticket_event(5).await;
    for id in ["good", "bad-other"] {
        c.emit(id, "join-event", json!({ "eventId": other })).await;
        c.expect(id, "room-info", |d| d["eventId"] == json!(other))
            .await;
    }
    assert_eq!(c.count("good", "disconnect"), 0);
    assert_eq!(c.count("bad-other", "disconnect"), 0);
    // counted once, for this flooder (other tests may count theirs meanwhile)
    let after = floods(&metrics(&app).await, "events");
    assert!(after > before, "flood not counted: {before} -> {after}");
    assert_eq!(app.get("/health", None).await.0, 200);
}

#[tokio::test]
async fn flood_a_room_join_flood_is_stopped_at_the_room_cap() {
    // a generous event budget, so only the room cap applies
    let app = TestApp::spawn_with(|c| {
        c.socket_events_per_second = 100_000;
        c.socket_events_burst = 100_000;
        c.socket_max_rooms = 12;
    })
    .await;
    let (event, _) = app.ticket_event(5).await;
    let (good, bad) = (app.user().await, app.user().await);
    let mut c = Clients::start();
    c.connect(
        "good",
        &app,
        &good.token,
        json!([["join-event", { "eventId": event }]]),
    )
    .await;
    c.connect("joiner", &app, &bad.token, json!([])).await;
    c.expect("good", "room-info", |_| true).await;

    let before = floods(&metrics(&app).await, "rooms");
    // one join at a time: each is answered until the cap (the user room plus 11 event rooms)
    let mut joined = 0;
    for _ in 0..100 {
        let id = Uuid::new_v4();
        c.emit("joiner", "join-event", json!({ "eventId": id }))
            .await;
        match answer_or_cut(&mut c, "joiner", id).await {
            Some(()) => joined += 1,
            None => break,
        }
    }
    assert_eq!(joined, 11, "joins accepted before the cap of 12 rooms");
    let reason = c.expect("joiner", "disconnect", |_| true).await;
    assert_eq!(reason, "io server disconnect");

    // and a blast of 2000 joins from another socket of the same user is stopped the same way
    c.connect("blast", &app, &bad.token, json!([])).await;
    for _ in 0..2000 {
        c.emit("blast", "join-event", json!({ "eventId": Uuid::new_v4() }))
            .await;
    }
    // cut off either way: the DISCONNECT packet, or (its send queue full of the blast's answers) the
    // transport closed behind it; the server's count below says it was the room cap
    let reason = c.expect("blast", "disconnect", |_| true).await;
    assert!(
        reason == "io server disconnect" || reason == "transport close",
        "{reason}"
    );
    let after = floods(&metrics(&app).await, "rooms");
    assert!(
        after >= before + 2,
        "room floods not counted: {before} -> {after}"
    );

    // the rooms of the cut-off socket are gone: its presence left every event it entered
    c.emit("good", "join-event", json!({ "eventId": event }))
        .await;
    c.expect("good", "room-info", |d| d["userCount"] == 1).await;
    assert_eq!(c.count("good", "disconnect"), 0);
}

/// Waits until `id` gets the `room-info` of `event` (Some) or is disconnected (None).
async fn answer_or_cut(c: &mut Clients, id: &str, event: Uuid) -> Option<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        let pred = |d: &Value| d["eventId"] == json!(event);
        if c.within(id, "room-info", pred, Duration::from_millis(50))
            .await
            .is_some()
        {
            return Some(());
        }
        if c.count(id, "disconnect") > 0 {
            return None;
        }
    }
    panic!("{id} neither joined {event} nor was disconnected");
}

#[tokio::test]
async fn flood_normal_frontend_use_stays_far_below_the_limits() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let user = app.user().await;
    let mut c = Clients::start();
    // the three hooks of one user (event page, waiting room, seat page), each its own socket,
    // and one socket that does all of it plus a session restore
    let all = json!([
        ["join-event", { "eventId": event }],
        ["join-queue", { "eventId": event }],
        ["join-seat-selection", { "eventId": event }],
    ]);
    c.connect("all", &app, &user.token, all).await;
    c.expect("all", "room-info", |_| true).await;
    c.disconnect("all").await;
    c.expect("all", "disconnect", |_| true).await;
    let again = json!([["join-event", { "eventId": event }], ["join-seat-selection", { "eventId": event }]]);
    c.connect("again", &app, &user.token, again).await;
    c.expect("again", "session-restored", |_| true).await;
    // a user clicking through seats: 30 selection changes in a row stay inside the burst
    for i in 0..30 {
        c.emit(
            "again",
            "seat-selection-changed",
            json!({ "eventId": event, "seats": [seats[i % 4]] }),
        )
        .await;
    }
    c.emit("again", "leave-event", json!({ "eventId": event }))
        .await;
    c.emit("again", "join-event", json!({ "eventId": event }))
        .await;
    c.expect("again", "room-info", |d| d["eventId"] == json!(event))
        .await;
    assert_eq!(c.count("again", "disconnect"), 0);
}

const CLIENT_EVENTS: &[&str] = &[
    "join-event",
    "leave-event",
    "join-queue",
    "join-seat-selection",
    "seat-selection-changed",
    "no-such-event",
];

/// Arbitrary JSON (and huge strings under the 100 kB frame limit) to every client→server event: the
/// socket keeps working after each batch and the service stays healthy.
#[test]
fn flood_arbitrary_payloads_to_every_client_event_never_hurt_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, user, event) = rt.block_on(async {
        let app = TestApp::spawn_with(|c| {
            // the payloads, not the flood limit, are under test here
            c.socket_events_per_second = 100_000;
            c.socket_events_burst = 100_000;
            c.socket_max_rooms = 100_000;
        })
        .await;
        let user = app.user().await;
        let (event, _) = app.ticket_event(5).await;
        (app, user, event)
    });
    let mut c = rt.block_on(async {
        let mut c = Clients::start();
        c.connect("fz", &app, &user.token, json!([])).await;
        c
    });
    let payload = prop_oneof![
        8 => arb_json(),
        1 => huge_string().prop_map(Value::String),
        1 => huge_string().prop_map(|s| json!({ "eventId": s, "seats": [s.len()] })),
        2 => any::<String>().prop_map(|s| json!({ "eventId": s })),
        2 => arb_json().prop_map(|v| json!({ "eventId": Uuid::new_v4(), "seats": v })),
    ];
    // sampled by hand (no shrinking): the socket's state carries over between cases anyway
    let mut runner = TestRunner::new(ProptestConfig::default());
    for round in 0..64u32 {
        let data = payload.new_tree(&mut runner).unwrap().current();
        rt.block_on(async {
            for name in CLIENT_EVENTS {
                c.emit("fz", name, data.clone()).await;
            }
            // the socket still answers: a valid join gets its room-info
            let probe = if round.is_multiple_of(2) {
                event
            } else {
                Uuid::new_v4()
            };
            c.emit("fz", "join-event", json!({ "eventId": probe }))
                .await;
            let seen = c
                .within(
                    "fz",
                    "room-info",
                    |d| d["eventId"] == json!(probe),
                    Duration::from_secs(10),
                )
                .await;
            assert!(seen.is_some(), "socket stopped answering after {data:.300}");
            c.emit("fz", "leave-event", json!({ "eventId": probe }))
                .await;
            assert_eq!(c.count("fz", "disconnect"), 0, "cut off after {data:.300}");
        });
    }
    rt.block_on(async {
        let healthy = eventually(Duration::from_secs(5), || async {
            app.get("/health", None).await.0 == 200
        })
        .await;
        assert!(healthy, "service unhealthy after the payload fuzzing");
    });
}

/// Raw Socket.IO EVENT frames with arbitrary bodies after a valid CONNECT: each connection is
/// answered or closed, the service stays up and other sockets keep working.
#[test]
fn flood_arbitrary_raw_frames_never_hurt_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, user, event) = rt.block_on(async {
        let app = TestApp::spawn().await;
        let user = app.user().await;
        let (event, _) = app.ticket_event(5).await;
        (app, user, event)
    });
    let mut c = rt.block_on(async {
        let mut c = Clients::start();
        c.connect("watch", &app, &user.token, json!([])).await;
        c
    });
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let frame = prop_oneof![
        any::<String>().prop_map(|s| format!("42{s}")),
        arb_json().prop_map(|v| format!("42{v}")),
        arb_json().prop_map(|v| format!("42[\"join-event\",{v}]")),
        arb_json().prop_map(|v| format!("42[{v},{v}]")),
        any::<String>(),
    ];
    let frames = prop::collection::vec(frame, 1..6);
    let mut runner = TestRunner::new(ProptestConfig::default());
    for n in 0..32 {
        let frames = frames.new_tree(&mut runner).unwrap().current();
        let id = format!("raw{n}");
        rt.block_on(async {
            let mut all = vec![format!("40{}", json!({ "token": user.token }))];
            all.extend(frames.iter().cloned());
            c.send(json!({ "op": "raw", "id": id, "url": url, "frames": all }))
                .await;
            let opened = c
                .within(&id, "raw-open", |_| true, Duration::from_secs(10))
                .await;
            assert!(opened.is_some(), "no websocket for {frames:?}");
        });
    }
    rt.block_on(async {
        c.emit("watch", "join-event", json!({ "eventId": event }))
            .await;
        c.expect("watch", "room-info", |d| d["eventId"] == json!(event))
            .await;
        assert_eq!(app.get("/health", None).await.0, 200);
    });
}

/// The value of `tiketi_socket_refused_total{kind}` (process-wide: other tests add to it too).
fn refused(text: &str, kind: &str) -> u64 {
    let prefix = format!("tiketi_socket_refused_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A polling handshake (what a browser without WebSocket sends first), maybe through a proxy.
async fn handshake(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut r = app
        .http
        .get(format!("{}/socket.io/?EIO=4&transport=polling", app.base));
    if let Some(f) = forwarded_for {
        r = r.header("x-forwarded-for", f);
    }
    r.send().await.unwrap()
}

/// Asserts a refusal in the contract's shape with `Retry-After`.
async fn assert_refused(resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

/// Beyond the process's cap of connections a handshake is answered at once — 503 SERVER_BUSY with
/// Retry-After on polling, a refused upgrade the real client reports as `connect_error` — and
/// counted; a closed session gives its place back.
#[tokio::test]
async fn flood_connections_beyond_the_cap_are_refused_cleanly_and_counted() {
    let app = TestApp::spawn_with(|c| c.socket_max_connections = 2).await;
    let user = app.user().await;
    let mut c = Clients::start();
    c.connect("a", &app, &user.token, json!([])).await;
    c.connect("b", &app, &user.token, json!([])).await;
    let before = refused(&metrics(&app).await, "full");

    assert_refused(handshake(&app, None).await, 503, "SERVER_BUSY").await;
    c.send(json!({ "op": "connect", "id": "c", "url": app.base, "token": user.token, "join": [] }))
        .await;
    c.expect("c", "connect_error", |_| true).await;
    assert_eq!(c.count("c", "connect"), 0);
    let after = refused(&metrics(&app).await, "full");
    assert!(
        after >= before + 2,
        "refusals not counted: {before} -> {after}"
    );
    assert_eq!(app.state.realtime.admission.open(), 2);

    c.disconnect("a").await;
    let freed = eventually(Duration::from_secs(10), || async {
        app.state.realtime.admission.open() < 2
    })
    .await;
    assert!(freed, "a closed connection still holds its place");
    c.connect("d", &app, &user.token, json!([])).await;
    assert_eq!(
        c.count("b", "disconnect"),
        0,
        "admitted sockets are untouched"
    );
}

/// New sessions per client address are limited (a bucket of the per-minute budget): beyond it, 429
/// RATE_LIMITED with Retry-After, counted; another address — behind the same trusted proxy — keeps
/// its own budget.
#[tokio::test]
async fn flood_handshakes_per_address_beyond_the_budget_are_refused_and_counted() {
    let app = TestApp::spawn_with(|c| {
        c.socket_handshakes_per_address = 3;
        c.trusted_proxies = tiketi_service::config::TrustedProxies(
            tiketi_service::client_ip::parse_trusted("127.0.0.0/8").unwrap(),
        );
    })
    .await;
    let before = refused(&metrics(&app).await, "rate");
    for i in 0..3 {
        let resp = handshake(&app, Some("198.51.100.7")).await;
        assert_eq!(resp.status().as_u16(), 200, "handshake {i}");
        assert!(
            resp.text().await.unwrap().starts_with("0{"),
            "an OPEN packet"
        );
    }
    assert_refused(
        handshake(&app, Some("198.51.100.7")).await,
        429,
        "RATE_LIMITED",
    )
    .await;
    // a forged left-most entry does not make it someone else
    let forged = handshake(&app, Some("203.0.113.1, 198.51.100.7")).await;
    assert_refused(forged, 429, "RATE_LIMITED").await;
    let after = refused(&metrics(&app).await, "rate");
    assert!(
        after >= before + 2,
        "refusals not counted: {before} -> {after}"
    );
    assert_eq!(
        handshake(&app, Some("198.51.100.8"))
            .await
            .status()
            .as_u16(),
        200,
        "another address has its own budget"
    );
}
