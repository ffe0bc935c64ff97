//! The load generator's Socket.IO client: the raw client of `tiketi_testkit::sio` with small
//! buffers, and the clock the arrivals are timed with. A full client per socket (socket.io-client,
//! rust_socketio) costs far more memory than the server side we are measuring, so tens of
//! thousands of these fit in one process.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::Result;
use tiketi_testkit::sio::WebSocketConfig;
pub use tiketi_testkit::sio::{Frame, Ws, event_frame, next_frame, parse_event};

/// Microseconds since the Unix epoch: client and server share this machine's clock.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Opens a WebSocket from `source` (a loopback address, to spread the ephemeral ports), does the
/// Engine.IO open and the Socket.IO CONNECT with `{token}` and returns the ready socket.
pub async fn connect(server: SocketAddr, source: IpAddr, token: &str) -> Result<Ws> {
    // small buffers: the client must stay cheaper than the server it measures
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    tiketi_testkit::sio::connect(
        server,
        Some(source),
        Some(config),
        token,
        Duration::from_secs(30),
    )
    .await
}
