//! New Socket.IO sessions at the door: the middleware that gives a handshake its place under the
//! cap and rate of `admission`, or refuses it. Apart from `admission` so that `Realtime` (part of
//! `AppState`) holds the admission state without depending on this middleware, which takes it.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{metrics::KindLabels, state::AppState};

/// A request that opens a new Engine.IO session: to the Engine.IO path, without a `sid` (the same
/// test engineioxide makes).
fn opens_session(req: &Request) -> bool {
    let path = req.uri().path();
    let engine = path
        .strip_prefix("/socket.io")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    engine
        && !req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .any(|p| p.starts_with("sid="))
}

/// The middleware in front of socketioxide (outside `detach_socket_request`, which keeps the slot).
pub async fn admit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !opens_session(&req) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let config = &state.config;
    let ip = crate::client_ip::resolve(
        peer,
        req.headers(),
        &config.trusted_proxies.0,
        config.trusted_proxy_header,
    );
    let address = crate::client_ip::limit_key(ip);
    match state.realtime.admission.admit(&address, Instant::now()) {
        Ok(slot) => {
            req.extensions_mut().insert(slot);
            next.run(req).await
        }
        Err(refusal) => {
            state
                .metrics
                .socket_refused
                .get_or_create(&KindLabels {
                    kind: refusal.kind(),
                })
                .inc();
            tracing::debug!(%address, kind = refusal.kind(), "socket handshake refused");
            refusal.error().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_knows_a_handshake_from_a_sessions_request() {
        let req = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(opens_session(&req("/socket.io/?EIO=4&transport=websocket")));
        assert!(opens_session(&req(
            "/socket.io/?EIO=4&transport=polling&t=x"
        )));
        assert!(opens_session(&req("/socket.io")));
        assert!(!opens_session(&req(
            "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAHs"
        )));
        assert!(!opens_session(&req("/socket.iox/?EIO=4")));
        assert!(!opens_session(&req("/api/events")));
    }
}
