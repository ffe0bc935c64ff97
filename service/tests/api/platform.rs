//! Cross-cutting behaviour: body parsing, unknown routes, health, metrics, CORS, security headers.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, is_wire_time, keys, read, sorted};

fn is_millis(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.strip_suffix("ms"))
        .is_some_and(|n| n.parse::<u64>().is_ok())
}

#[tokio::test]
async fn platform_malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for raw in ["{bad", "{\"email\": }", "[1, 2]"] {
        let resp = app
            .req(Method::POST, "/api/auth/login", None)
            .header(header::CONTENT_TYPE, "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let (status, body) = read(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(
            keys(&body),
            sorted(&["success", "message", "error", "code"]),
            "{raw}"
        );
        assert_eq!(body["code"], "INVALID_JSON", "{raw}");
        assert_eq!(body["success"], false);
        assert!(!body["message"].as_str().unwrap().is_empty());
        assert_eq!(body["error"], body["message"]);
    }
}

#[tokio::test]
async fn platform_body_over_100_kib_is_413() {
    let app = TestApp::spawn().await;
    let big = json!({ "email": "a@example.com", "password": "x".repeat(101 * 1024) });
    let (status, body) = app.post("/api/auth/login", None, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "요청 본문이 너무 큽니다.");

    // just under the limit is parsed normally
    let fits = json!({ "email": "a@example.com", "password": "x".repeat(99 * 1024) });
    assert_eq!(
        app.post("/api/auth/login", None, fits).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "이메일 또는 비밀번호가 일치하지 않습니다.", "code": "INVALID_CREDENTIALS" })
        )
    );
}

#[tokio::test]
async fn platform_unknown_route_is_json_404() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/api/nope", None).await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": "Cannot GET /api/nope", "code": "NOT_FOUND" })
        )
    );
    assert_eq!(
        app.send(Method::POST, "/nope/deeper", None, Some(json!({})))
            .await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": "Cannot POST /nope/deeper", "code": "NOT_FOUND" })
        )
    );
}

#[tokio::test]
async fn platform_health_endpoints() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&body),
        sorted(&["status", "timestamp", "uptime", "version", "environment"])
    );
    assert_eq!(body["status"], "ok");
    assert!(is_wire_time(&body["timestamp"]));
    assert!(body["uptime"].as_f64().unwrap() >= 0.0);
    assert!(body["version"].is_string());
    assert_eq!(body["environment"], "development");

    for (path, service) in [("/health/db", "database"), ("/health/redis", "redis")] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(keys(&body), sorted(&["status", "service", "responseTime"]));
        assert_eq!(
            (&body["status"], &body["service"]),
            (&json!("ok"), &json!(service))
        );
        assert!(is_millis(&body["responseTime"]), "{body}");
    }

    let (status, body) = app.get("/health/all", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), sorted(&["status", "checks", "timestamp"]));
    assert_eq!(body["status"], "ok");
    assert!(is_wire_time(&body["timestamp"]));
    let checks = &body["checks"];
    assert_eq!(keys(checks), sorted(&["server", "database", "redis"]));
    assert_eq!(checks["server"]["status"], "ok");
    assert!(checks["server"]["uptime"].is_number());
    let memory = &checks["server"]["memory"];
    assert_eq!(keys(memory), sorted(&["used", "total", "unit"]));
    assert!(memory["used"].is_u64() && memory["total"].is_u64());
    assert_eq!(memory["unit"], "MB");
    for dep in ["database", "redis"] {
        assert_eq!(keys(&checks[dep]), sorted(&["status", "responseTime"]));
        assert_eq!(checks[dep]["status"], "ok");
        assert!(is_millis(&checks[dep]["responseTime"]));
    }
}

#[tokio::test]
async fn platform_metrics_use_route_templates() {
    let app = TestApp::spawn().await;
    let id = Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/api/events/{id}"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let resp = app.req(Method::GET, "/metrics", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(r#"path="/api/events/{id}""#)
                && l.contains(r#"status="404""#)
        })
        .unwrap_or_else(|| panic!("no templated http_requests_total line in:\n{text}"));
    assert!(line.contains(r#"method="GET""#), "{line}");
    assert!(
        !text.contains(&id.to_string()),
        "raw ids never become labels"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("tiketi_db_pool_in_use "))
    );
    assert!(text.contains("http_request_duration_seconds_bucket{"));
}

#[tokio::test]
async fn platform_cors_preflight_and_headers() {
    let app = TestApp::spawn().await;
    let resp = app
        .req(Method::OPTIONS, "/api/reservations", None)
        .header(header::ORIGIN, "http://localhost:3000")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "authorization,content-type"
    );

    let resp = app
        .req(Method::GET, "/api/events", None)
        .header(header::ORIGIN, "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn platform_security_headers_on_every_response() {
    let app = TestApp::spawn().await;
    for path in ["/api/events", "/api/nope", "/health"] {
        let resp = app.req(Method::GET, path, None).send().await.unwrap();
        assert_eq!(
            resp.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{path}"
        );
        assert_eq!(resp.headers()[header::X_FRAME_OPTIONS], "DENY", "{path}");
    }
}

#[tokio::test]
async fn platform_connection_survives_a_large_body_answered_without_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    // 401 comes before the handler would read the body; the keep-alive connection must still
    // serve the next request (hyper alone closed it silently after a body beyond its drain allowance)
    let body = format!("{{\"a\":\"{}\"}}", "x".repeat(90_000));
    let request = |body: &str| {
        format!(
            "POST /api/reservations/{}/cancel HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            uuid::Uuid::new_v4(),
            body.len()
        )
    };
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    for body in [body.as_str(), "{}"] {
        conn.write_all(request(body).as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head).to_lowercase();
        assert!(text.starts_with("http/1.1 401"), "{text}");
        assert!(!text.contains("connection: close"), "{text}");
        // the 401's JSON body follows the head (a few dozen bytes); drain what is announced
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        let start = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut have = head.len() - start;
        while have < len {
            have += conn.read(&mut buf).await.unwrap();
        }
    }
}

/// What a person running a sale watches is on /metrics, with real values after a sale's traffic.
#[tokio::test]
async fn platform_metrics_show_what_a_sale_operator_watches() {
    let app = TestApp::spawn().await;
    let (event, seats) = app.seat_event().await;
    let buyer = app.user().await;
    let id = app.hold_ok(&buyer.token, event, seats[0]).await;
    let (status, body) = app
        .post(
            "/api/payments/process",
            Some(&buyer.token),
            serde_json::json!({ "reservationId": id, "paymentMethod": "naver_pay" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // a waiting room with one place, taken, and one user waiting
    let (sale, _) = app.ticket_event(10).await;
    app.set_queue_threshold(sale, 1).await;
    for user in app.users(2).await {
        let path = format!("/api/queue/check/{sale}");
        assert_eq!(
            app.post(&path, Some(&user.token), serde_json::json!({}))
                .await
                .0,
            StatusCode::OK
        );
    }
    // the outflow the admission loop measured for it (as it publishes it)
    let outflow = tiketi_core::rules::OutflowRecord {
        per_second: 2.5,
        admitted_per_second: 2.0,
        window_secs: 60.0,
        at_ms: chrono::Utc::now().timestamp_millis(),
        replicas: Some(1),
    };
    let _: () = fred::prelude::KeysInterface::set(
        &app.state.redis,
        app.state.keys.outflow(sale),
        serde_json::to_string(&outflow).unwrap(),
        None,
        None,
        false,
    )
    .await
    .unwrap();
    let text = app.metrics().await;
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    assert!(value("tiketi_hold_duration_seconds_count") >= 1.0);
    assert!(value("tiketi_payment_duration_seconds_count") >= 1.0);
    let sold = format!(r#"tiketi_tickets_sold_total{{event_id="{event}",ticket_type="seat"}}"#);
    assert_eq!(value(&sold), 1.0);
    assert!(value("tiketi_sockets_open ") >= 0.0);
    assert!(value("tiketi_redis_breaker_opened_total") >= 0.0);
    let of = |name: &str| format!(r#"{name}{{event_id="{sale}"}}"#);
    assert_eq!(value(&of("tiketi_queue_waiting")), 1.0);
    assert_eq!(value(&of("tiketi_queue_admitted_users")), 1.0);
    assert_eq!(value(&of("tiketi_queue_capacity_in_force")), 1.0);
    assert_eq!(value(&of("tiketi_queue_admission_rate")), 2.0);

    // the chart's Grafana dashboard plots only what the service exposes (the operator's own
    // `tiketi_operator_*` series are its tests' business): a renamed metric leaves an empty panel
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/tiketi/dashboards/tiketi-overview.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let is_metric = (word.starts_with("tiketi_") || word.starts_with("http_"))
                    && !word.starts_with("tiketi_operator_");
                if !is_metric {
                    continue;
                }
                let family = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(word);
                assert!(
                    text.contains(&format!("# TYPE {family} ")),
                    "panel {:?} plots {word}, which /metrics does not have:\n{}",
                    panel["title"],
                    text.lines()
                        .filter(|l| l.starts_with("# TYPE"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} metrics found in the dashboard"
    );
}

/// Two services in one process (one registry) scraped at once each show their own waiting room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_concurrent_scrapes_each_show_their_own_queue_gauges() {
    let mut apps = Vec::new();
    for _ in 0..2 {
        let app = TestApp::spawn().await;
        let (sale, _) = app.ticket_event(10).await;
        app.set_queue_threshold(sale, 1).await;
        for user in app.users(2).await {
            let path = format!("/api/queue/check/{sale}");
            let (status, _) = app
                .post(&path, Some(&user.token), serde_json::json!({}))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        apps.push((app, sale));
    }
    for _ in 0..50 {
        let scrapes = apps.iter().map(|(app, sale)| async move {
            let text = app.metrics().await;
            let line = format!(r#"tiketi_queue_waiting{{event_id="{sale}"}} 1"#);
            text.lines().any(|l| l == line)
        });
        let seen = futures::future::join_all(scrapes).await;
        assert!(
            seen.iter().all(|s| *s),
            "a scrape missed its own queue gauge: {seen:?}"
        );
    }
}

/// A login attempt through the test client acting as the proxy chain (127.0.0.1 is trusted), with
/// the given forwarding headers.
async fn login_via(app: &TestApp, headers: &[(&str, String)], n: usize) -> StatusCode {
    let mut r = app
        .req(Method::POST, "/api/auth/login", None)
        .json(&json!({ "email": format!("nobody-{n}@example.com"), "password": "wrong-password" }));
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.send().await.unwrap().status()
}

fn behind_proxies(c: &mut tiketi_service::Config, header: tiketi_service::client_ip::ProxyHeader) {
    c.login_rate_limit = 2;
    c.trusted_proxies = tiketi_service::config::TrustedProxies(
        tiketi_service::client_ip::parse_trusted("127.0.0.0/8, 10.0.0.0/8").unwrap(),
    );
    c.trusted_proxy_header = header;
}

/// nginx and ingress-nginx append the peer to X-Forwarded-For and pass a client's own `Forwarded`
/// through untouched. The client is the right-most X-Forwarded-For hop that is not a trusted proxy:
/// neither a forged `Forwarded` nor forged left-most entries give a client a fresh per-IP budget,
/// and another client behind the same proxies keeps its own.
#[tokio::test]
async fn platform_client_address_is_the_right_most_untrusted_hop_whatever_the_client_forges() {
    let app = TestApp::spawn_with(|c| {
        behind_proxies(c, tiketi_service::client_ip::ProxyHeader::XForwardedFor)
    })
    .await;
    crate::common::early_in_rate_window().await;
    for i in 0..3 {
        let status = login_via(
            &app,
            &[
                ("forwarded", format!("for=203.0.113.{i}")),
                (
                    "x-forwarded-for",
                    format!("6.6.6.{i}, 198.51.100.4, 10.0.0.5"),
                ),
            ],
            i,
        )
        .await;
        let want = if i < 2 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "attempt {i} of 198.51.100.4");
    }
    let other = [("x-forwarded-for", "198.51.100.5, 10.0.0.5".to_string())];
    assert_eq!(login_via(&app, &other, 9).await, StatusCode::UNAUTHORIZED);
}

/// Opted into `TRUSTED_PROXY_HEADER=forwarded` (a proxy that sets RFC 7239 `Forwarded`): that chain
/// is walked the same way and a client's own X-Forwarded-For is the header ignored.
#[tokio::test]
async fn platform_client_address_from_forwarded_only_when_the_operator_opts_in() {
    let app = TestApp::spawn_with(|c| {
        behind_proxies(c, tiketi_service::client_ip::ProxyHeader::Forwarded)
    })
    .await;
    crate::common::early_in_rate_window().await;
    for i in 0..3 {
        let status = login_via(
            &app,
            &[
                ("x-forwarded-for", format!("203.0.113.{i}")),
                (
                    "forwarded",
                    format!("for=6.6.6.{i}, for=\"198.51.100.4:4711\", for=10.0.0.5"),
                ),
            ],
            i,
        )
        .await;
        let want = if i < 2 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "attempt {i} of 198.51.100.4");
    }
    let other = [("forwarded", "for=198.51.100.5".to_string())];
    assert_eq!(login_via(&app, &other, 9).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn platform_metrics_count_seat_map_builds_and_flushed_views() {
    let app = TestApp::spawn().await;
    let (event, _) = app.seat_event().await;
    let (status, _) = app.get(&format!("/api/seats/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let text = app.metrics().await;
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    assert!(value("tiketi_seatmap_snapshot_builds_total ") >= 1.0);
    assert!(value("tiketi_news_views_flushed_total ") >= 0.0);
}
