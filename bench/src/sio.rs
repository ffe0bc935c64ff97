//! A minimal Socket.IO v5 / Engine.IO v4 client over WebSocket: just what a load generator needs
//! (handshake with `auth`, emit, answer pings, timestamp the events it is told to record). A full
//! client per socket (socket.io-client, rust_socketio) costs far more memory than the server side
//! we are measuring, so tens of thousands of these fit in one process.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

pub type Ws = WebSocketStream<TcpStream>;

/// Microseconds since the Unix epoch: client and server share this machine's clock.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Opens a WebSocket from `source` (a loopback address, to spread the ephemeral ports), does the
/// Engine.IO open and the Socket.IO CONNECT with `{token}` and returns the ready socket.
pub async fn connect(server: SocketAddr, source: IpAddr, token: &str) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    // small buffers: the client must stay cheaper than the server it measures
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = client_async_with_config(url, stream, Some(config))
        .await
        .context("websocket upgrade")?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open:?}");
    }
    let auth = serde_json::json!({ "token": token });
    ws.send(Message::text(format!("40{auth}"))).await?;
    loop {
        let msg = next_text(&mut ws).await?;
        if msg.starts_with("40") {
            return Ok(ws);
        }
        if msg.starts_with("44") {
            bail!("connect refused: {msg}");
        }
        if msg == "2" {
            ws.send(Message::text("3")).await?;
        }
    }
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    let deadline = Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .context("no answer from the server")?
            .context("connection closed")??;
        match msg {
            Message::Text(t) => return Ok(t.to_string()),
            Message::Close(_) => bail!("closed by the server"),
            _ => {}
        }
    }
}

/// `42["name",payload]`
pub fn event_frame(name: &str, payload: &serde_json::Value) -> Message {
    Message::text(format!("42{}", serde_json::json!([name, payload])))
}

/// If `frame` is an event named in `names`, its name and payload.
pub fn parse_event<'a>(frame: &str, names: &'a [String]) -> Option<(&'a str, serde_json::Value)> {
    let body = frame.strip_prefix("42")?;
    let name = names
        .iter()
        .find(|n| body.get(2..2 + n.len()) == Some(n.as_str()))?;
    let mut parts: Vec<serde_json::Value> = serde_json::from_str(body).ok()?;
    if parts.len() < 2 || parts[0].as_str() != Some(name.as_str()) {
        return None;
    }
    Some((name.as_str(), parts.swap_remove(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
