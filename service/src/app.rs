//! The router: every feature's routes, Socket.IO on the same port, and the cross-cutting layers.

use std::time::Instant;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use socketioxide::layer::SocketIoLayer;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowHeaders, AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::{
    admin, api_docs, auth, error, events, health, metrics::HttpLabels, news, payments, queue,
    reservations, seats, state::AppState, uploads,
};

/// JSON bodies larger than this get 413 (the original's express.json limit).
pub const JSON_BODY_LIMIT: usize = 100 * 1024;

pub fn router(state: AppState, sio: SocketIoLayer<crate::realtime::Adapter>) -> Router {
    let api = Router::new()
        .merge(auth::http::router())
        .merge(events::http::router())
        .merge(seats::http::router())
        .merge(reservations::http::router())
        .merge(payments::http::router())
        .merge(queue::http::router())
        .merge(news::http::router())
        .merge(uploads::router(&state))
        .merge(admin::router(&state))
        .merge(health::router())
        .merge(api_docs::router())
        .fallback(not_found)
        .layer(middleware::from_fn(json_rejections))
        .layer(middleware::from_fn(read_body_first))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT));
    api.with_state(state.clone())
        .layer(sio)
        .layer(middleware::map_request(detach_socket_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::realtime::handshake::admit,
        ))
        .layer(cors(&state.config.cors_origins))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error::failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                error::Code::Internal,
                "서버 오류가 발생했습니다.",
            )
        }))
        .layer(TraceLayer::new_for_http())
}

/// A Socket.IO request's extensions are kept by socketioxide for the socket's whole life. axum's
/// (`OriginalUri`, a clone sharing hyper's connection read buffer, which the head is parsed into
/// zero-copy; the route's `UrlParams`; `MatchedPath`) pinned that 16 KiB buffer and added ~0.6 KiB
/// per socket; nothing on the socket reads them. Only hyper's upgrade handle and the session's
/// admission slot (`realtime::admission`) are passed on. (The
/// patched engineioxide copies the URI and headers it keeps; it cannot know axum's types.)
///
/// The headers are kept for the socket's life too (≈ 1.2 KiB per socket from a bare client, more
/// from a browser: cookies, user agent) and nothing on the socket reads them either: the token comes
/// in the CONNECT packet's `auth`. Only the two engineioxide reads while it handles this request are
/// passed on: `Sec-WebSocket-Key` (the upgrade's answer) and `Content-Type` (a polling POST's
/// payload kind). CORS, tracing and the other outer layers have seen the full request already.
async fn detach_socket_request(mut req: Request) -> Request {
    if req.uri().path().starts_with("/socket.io") {
        let mut kept = axum::http::Extensions::new();
        if let Some(upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
            kept.insert(upgrade);
        }
        // a new session's place under the connection cap, held for the session's life
        if let Some(slot) = req
            .extensions_mut()
            .remove::<crate::realtime::admission::Slot>()
        {
            kept.insert(slot);
        }
        *req.extensions_mut() = kept;
        let mut headers = axum::http::HeaderMap::new();
        for name in [header::SEC_WEBSOCKET_KEY, header::CONTENT_TYPE] {
            if let Some(value) = req.headers_mut().remove(&name) {
                headers.insert(name, value);
            }
        }
        *req.headers_mut() = headers;
    }
    req
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": format!("Cannot {method} {}", uri.path()),
            "code": error::Code::NotFound.as_str(),
        })),
    )
        .into_response()
}

/// axum's own 4xx answers (undecodable path ids, malformed query strings, unserved methods) are
/// plain text; the frontend reads `error`, so they get the contract's `{error}` shape too.
async fn json_rejections(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !resp.status().is_client_error() || !plain {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let msg = match text.trim() {
        "" => parts.status.canonical_reason().unwrap_or("Bad Request"),
        t => t,
    };
    let code = match parts.status {
        StatusCode::NOT_FOUND => error::Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => error::Code::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => error::Code::MethodNotAllowed,
        _ => error::Code::InvalidInput,
    };
    let body = serde_json::json!({ "error": msg, "code": code.as_str() }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Reads a request's body before the handler runs, so hyper has consumed it whatever the handler
/// does. A handler that answers without reading it (401 before the body, a bad path id) otherwise
/// leaves hyper to close the connection after a body beyond its small drain allowance, without a
/// `Connection: close`: the client's next request on that pooled connection then fails (found by
/// the input property tests). Bodies over the limit are answered 413 and the connection is closed
/// openly. Image uploads (their own 5 MB limit, read by their handler) pass through.
async fn read_body_first(req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body || req.uri().path() == crate::uploads::UPLOAD_PATH {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, JSON_BODY_LIMIT).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(_) => {
            let mut resp = error::failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                error::Code::PayloadTooLarge,
                "요청 본문이 너무 큽니다.",
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

fn cors(origins: &str) -> CorsLayer {
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::PATCH,
        Method::POST,
        Method::DELETE,
    ];
    let origin = if origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(methods)
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([HeaderName::from_static("retry-after")])
}

/// Request count, latency and in-flight gauge per route template (never per raw path).
/// An answer that reported a database timeout (`error::AnsweredOutage`) is counted.
fn count_outage(m: &crate::metrics::Metrics, resp: &Response) {
    match resp.extensions().get::<error::AnsweredOutage>() {
        Some(error::AnsweredOutage::PoolTimeout) => m.db_pool_timeouts.inc(),
        Some(error::AnsweredOutage::StatementTimeout) => m.db_statement_timeouts.inc(),
        None => 0,
    };
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let m = &state.metrics;
    let Some(path) = path.filter(|p| p != "/health" && p != "/metrics") else {
        let resp = next.run(req).await;
        count_outage(m, &resp);
        return resp;
    };
    let method = req.method().to_string();
    m.http_active.inc();
    let started = Instant::now();
    let resp = next.run(req).await;
    m.http_active.dec();
    count_outage(m, &resp);
    let labels = HttpLabels {
        method,
        path,
        status: resp.status().as_u16(),
    };
    m.http_requests.get_or_create(&labels).inc();
    m.http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    resp
}
