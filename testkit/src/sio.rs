//! A raw Socket.IO v5 / Engine.IO v4 client over WebSocket, the one the load generator and the
//! real-pod tests share: open a WebSocket (from a chosen client address), the Engine.IO open and
//! the Socket.IO CONNECT with `{token}`, event frames out and in, pings answered. No reconnection,
//! no acks, no polling transport: the callers do what socket.io-client would, where they need it.
//!
//! Why not a full client: socket.io-client (node) or rust_socketio per socket costs far more memory
//! than the server side the bench measures, so tens of thousands of these fit in one process; and
//! the tests look at the frames themselves (how a connection ended, a DISCONNECT packet, a session
//! that never sends its CONNECT), which a full client hides. The service's API tests drive the real
//! socket.io-client instead (service/tests/node).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
pub use tokio_tungstenite::tungstenite::{Message, Utf8Bytes, protocol::WebSocketConfig};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// A WebSocket to the server (plain TCP: every server under test is reached without TLS).
pub type Ws = WebSocketStream<TcpStream>;

/// The Engine.IO v4 WebSocket endpoint (socket.io-client's default path).
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// The address to dial for `base`: `http://host:port`, `ws://host:port` or `host:port`, a trailing
/// `/` allowed.
pub async fn resolve(base: &str) -> Result<SocketAddr> {
    let authority = ["http://", "ws://"]
        .iter()
        .find_map(|scheme| base.strip_prefix(scheme))
        .unwrap_or(base)
        .trim_end_matches('/');
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("address {base}"))?
        .next()
        .with_context(|| format!("no address for {base}"))
}

/// The WebSocket of a new Engine.IO session at `server`, before any packet: from the local address
/// `source` when given (nginx balances by the client address; the bench spreads its ephemeral ports
/// over loopback addresses), with `config` (None: tungstenite's defaults).
///
/// Errors say which step failed in a word before the first `:` ("bind …", "connect", "upgrade"):
/// the hostile crowd tallies refusals by it.
pub async fn open(
    server: SocketAddr,
    source: Option<IpAddr>,
    config: Option<WebSocketConfig>,
) -> Result<Ws> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("bind {source}"))?;
    }
    let stream = socket.connect(server).await.context("connect")?;
    // events are small frames, and the tests and the bench time their arrival
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}{PATH}");
    let (ws, _) = client_async_with_config(url, stream, config)
        .await
        .context("upgrade")?;
    Ok(ws)
}

/// The Engine.IO open, then the Socket.IO CONNECT with `{ "token": token }` (the service's auth)
/// until it is acknowledged; each frame within `wait`, pings answered meanwhile.
pub async fn handshake(ws: &mut Ws, token: &str, wait: Duration) -> Result<()> {
    let open = next_text(ws, wait).await.context("Engine.IO open")?;
    ensure!(
        open.starts_with('0'),
        "expected an Engine.IO open packet, got {open:?}"
    );
    ws.send(Message::text(connect_packet(token)))
        .await
        .context("Socket.IO CONNECT")?;
    loop {
        let msg = next_text(ws, wait)
            .await
            .context("Socket.IO CONNECT answer")?;
        if msg.starts_with("40") {
            return Ok(());
        }
        ensure!(!msg.starts_with("44"), "connect refused: {msg}");
    }
}

/// [`open`] and [`handshake`]: a connected Socket.IO client.
pub async fn connect(
    server: SocketAddr,
    source: Option<IpAddr>,
    config: Option<WebSocketConfig>,
    token: &str,
    wait: Duration,
) -> Result<Ws> {
    let mut ws = open(server, source, config).await?;
    handshake(&mut ws, token, wait).await?;
    Ok(ws)
}

/// What the server sent next.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A text frame other than a ping: a Socket.IO packet (`40…`, `41`, `42[…]`, …) or another
    /// Engine.IO one.
    Text(Utf8Bytes),
    /// The server closed the session: a WebSocket close frame or an Engine.IO close packet (`1`).
    Closed,
    /// The connection ended without a close: a read error (reset) or the end of the stream.
    Dropped(String),
}

/// The next frame, answering Engine.IO pings (`2` → `3`) on the way; binary frames are skipped.
/// Wrap it in a timeout for a bound. A pong that cannot be sent shows in the next read.
pub async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        match ws.next().await {
            None => return Frame::Dropped("end of stream".into()),
            Some(Err(e)) => return Frame::Dropped(e.to_string()),
            Some(Ok(Message::Close(_))) => return Frame::Closed,
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.ok();
            }
            Some(Ok(Message::Text(t))) if t.as_str() == "1" => return Frame::Closed,
            Some(Ok(Message::Text(t))) => return Frame::Text(t),
            Some(Ok(_)) => {}
        }
    }
}

/// The next text frame within `wait` (pings answered); an error when the session ended first or the
/// server stayed silent.
pub async fn next_text(ws: &mut Ws, wait: Duration) -> Result<String> {
    match tokio::time::timeout(wait, next_frame(ws)).await {
        Err(_) => bail!("no answer from the server within {wait:?}"),
        Ok(Frame::Text(t)) => Ok(t.to_string()),
        Ok(Frame::Closed) => bail!("closed by the server"),
        Ok(Frame::Dropped(why)) => bail!("connection lost: {why}"),
    }
}

/// The Socket.IO CONNECT packet with the service's auth, `40{"token":…}` (also a long-polling body).
pub fn connect_packet(token: &str) -> String {
    format!("40{}", json!({ "token": token }))
}

/// The Socket.IO EVENT packet `42["name",payload]` (also a long-polling body).
pub fn event_packet(name: &str, payload: &Value) -> String {
    format!("42{}", json!([name, payload]))
}

/// [`event_packet`] as a WebSocket frame.
pub fn event_frame(name: &str, payload: &Value) -> Message {
    Message::text(event_packet(name, payload))
}

/// The payload of `frame` when it is the event `name`. The name is compared before any JSON is
/// parsed: most frames of a busy socket are other events.
pub fn event_payload(frame: &str, name: &str) -> Option<Value> {
    let body = frame.strip_prefix("42")?;
    let named = body
        .strip_prefix("[\"")
        .and_then(|b| b.strip_prefix(name))
        .is_some_and(|rest| rest.starts_with('"'));
    if !named {
        return None;
    }
    let mut parts: Vec<Value> = serde_json::from_str(body).ok()?;
    if parts.len() < 2 || parts[0].as_str() != Some(name) {
        return None;
    }
    Some(parts.swap_remove(1))
}

/// If `frame` is an event named in `names`, its name and payload.
pub fn parse_event<'a>(frame: &str, names: &'a [String]) -> Option<(&'a str, Value)> {
    names
        .iter()
        .find_map(|name| Some((name.as_str(), event_payload(frame, name)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio_tungstenite::accept_async;

    #[test]
    fn parses_only_recorded_events() {
        let names = vec!["seat-locked".to_string()];
        let (name, payload) =
            parse_event(r#"42["seat-locked",{"seatId":"x"}]"#, &names).expect("recorded");
        assert_eq!(name, "seat-locked");
        assert_eq!(payload["seatId"], "x");
        assert!(parse_event(r#"42["seat-selected",{"seatId":"x"}]"#, &names).is_none());
        assert!(parse_event("2", &names).is_none());
        assert!(parse_event(r#"42["seat-locked"]"#, &names).is_none());
        // a longer name that starts with a recorded one is another event
        assert!(parse_event(r#"42["seat-locked-all",{}]"#, &names).is_none());
    }

    #[test]
    fn an_event_frame_parses_back() {
        let payload = json!({ "eventId": "e", "seats": [1, 2] });
        let Message::Text(frame) = event_frame("join-event", &payload) else {
            panic!("a text frame");
        };
        assert_eq!(
            frame.as_str(),
            r#"42["join-event",{"eventId":"e","seats":[1,2]}]"#
        );
        assert_eq!(event_payload(&frame, "join-event"), Some(payload));
        assert_eq!(event_payload(&frame, "join"), None);
    }

    #[tokio::test]
    async fn resolves_the_forms_of_a_base_url() {
        let want: SocketAddr = "127.0.0.1:3001".parse().unwrap();
        for base in [
            "http://127.0.0.1:3001",
            "ws://127.0.0.1:3001/",
            "127.0.0.1:3001",
        ] {
            assert_eq!(resolve(base).await.unwrap(), want, "{base}");
        }
        assert!(resolve("http://127.0.0.1").await.is_err());
    }

    /// A listener for one session's server side, played by the test.
    async fn bind_local() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    async fn accept(listener: TcpListener) -> WebSocketStream<TcpStream> {
        let (tcp, _) = listener.accept().await.unwrap();
        accept_async(tcp).await.unwrap()
    }

    async fn text(ws: &mut WebSocketStream<TcpStream>) -> String {
        loop {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                return t.to_string();
            }
        }
    }

    #[tokio::test]
    async fn connects_with_the_token_answering_pings_then_reads_events_and_the_close() {
        let (listener, addr) = bind_local().await;
        let server = async {
            let mut ws = accept(listener).await;
            ws.send(Message::text(r#"0{"sid":"s","pingInterval":25000}"#))
                .await
                .unwrap();
            assert_eq!(text(&mut ws).await, r#"40{"token":"t0k"}"#);
            // a ping before the CONNECT answer
            ws.send(Message::text("2")).await.unwrap();
            assert_eq!(text(&mut ws).await, "3");
            ws.send(Message::text(r#"40{"sid":"x"}"#)).await.unwrap();
            assert_eq!(text(&mut ws).await, r#"42["join-event",{"eventId":"e"}]"#);
            ws.send(Message::text("2")).await.unwrap();
            ws.send(Message::text(r#"42["room-info",{"userCount":1}]"#))
                .await
                .unwrap();
            assert_eq!(text(&mut ws).await, "3");
            ws.send(Message::text("41")).await.unwrap();
            ws.send(Message::text("1")).await.unwrap();
        };
        let client = async {
            let wait = Duration::from_secs(5);
            let mut ws = connect(addr, Some("127.0.0.1".parse().unwrap()), None, "t0k", wait)
                .await
                .unwrap();
            ws.send(event_frame("join-event", &json!({ "eventId": "e" })))
                .await
                .unwrap();
            let info = next_text(&mut ws, wait).await.unwrap();
            assert_eq!(
                event_payload(&info, "room-info"),
                Some(json!({ "userCount": 1 }))
            );
            assert_eq!(next_frame(&mut ws).await, Frame::Text("41".into()));
            assert_eq!(next_frame(&mut ws).await, Frame::Closed);
        };
        tokio::join!(server, client);
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let (listener, addr) = bind_local().await;
        let server = async {
            let mut ws = accept(listener).await;
            ws.send(Message::text(r#"0{"sid":"s"}"#)).await.unwrap();
            text(&mut ws).await;
            ws.send(Message::text(
                r#"44{"message":"Invalid authentication token"}"#,
            ))
            .await
            .unwrap();
            ws.next().await;
        };
        let client = async {
            let err = connect(addr, None, None, "bad", Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("connect refused: 44"),
                "{err:#}"
            );
        };
        tokio::join!(server, client);
    }

    #[tokio::test]
    async fn open_errors_name_the_step() {
        // nothing listens there any more
        let (_, addr) = bind_local().await;
        let err = open(addr, None, None).await.unwrap_err();
        assert!(format!("{err:#}").starts_with("connect: "), "{err:#}");
    }
}
