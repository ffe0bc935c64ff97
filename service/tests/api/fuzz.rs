//! Property tests over the inputs of the public handlers (bounded, so `cargo test` and CI run them):
//! arbitrary JSON and strings of the right and wrong shapes as bodies, path segments and query
//! strings. Whatever comes in, the answer is never 5xx, a 4xx is JSON in one of the contract's
//! error shapes, and the service stays healthy. One TestApp per property.

use std::{future::Future, time::Duration};

use proptest::{
    prelude::*,
    test_runner::{Config as ProptestConfig, TestRunner},
};
use reqwest::{Method, StatusCode, header};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::common::TestApp;

/// Cases per handler: enough to find shape bugs, small enough to keep the suite fast.
const CASES: u32 = 96;

/// Arbitrary JSON: scalars (odd numbers and strings included), nested arrays and objects whose keys
/// are mostly the handlers' own field names.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN/inf", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e300)),
        any::<String>().prop_map(Value::String),
        "[0-9a-f-]{0,40}".prop_map(Value::String),
        Just(Value::String(Uuid::new_v4().to_string())),
        Just(Value::String("00000000-0000-0000-0000-000000000000".into())),
        Just(Value::String("a\u{0}b".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly the names the handlers read, sometimes anything.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "email", "password", "name", "phone", "eventId", "seatIds", "items", "ticketTypeId",
            "quantity", "reservationId", "paymentMethod", "seats", "status", "q", "page", "limit",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// A string of 50–90 kB (under the 100 kB body and Socket.IO frame limits).
pub fn huge_string() -> impl Strategy<Value = String> {
    (50_000usize..90_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n / c.len_utf8()))
}

/// A request body: JSON of the right shape with wrong values, arbitrary JSON, or not JSON at all.
fn body(shaped: BoxedStrategy<Value>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => shaped.prop_map(|v| v.to_string().into_bytes()),
        3 => arb_json().prop_map(|v| v.to_string().into_bytes()),
        1 => any::<String>().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => huge_string().prop_map(|s| json!({ "email": s, "eventId": s }).to_string().into_bytes()),
    ]
}

/// An object with the given fields, each a plausible value or anything.
fn shaped(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(k, good)| {
            prop_oneof![
                3 => good.prop_map(move |v| Some((k.to_string(), v))),
                2 => arb_json().prop_map(move |v| Some((k.to_string(), v))),
                1 => Just(None),
            ]
            .boxed()
        })
        .collect();
    parts
        .prop_map(|kv| Value::Object(kv.into_iter().flatten().collect()))
        .boxed()
}

/// One of `ids` as a JSON string, or a random or malformed id.
fn id_of(ids: Vec<Uuid>) -> BoxedStrategy<Value> {
    let known = prop::sample::select(ids).prop_map(|u| json!(u));
    prop_oneof![
        3 => known,
        1 => Just(()).prop_map(|_| json!(Uuid::new_v4())),
        1 => "[0-9a-fA-F-]{0,40}".prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
    ]
    .boxed()
}

/// A path segment: a known id, a random one, or arbitrary (percent-encoded) text.
fn segment(ids: Vec<Uuid>) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(ids).prop_map(|u| u.to_string()),
        1 => Just(()).prop_map(|_| Uuid::new_v4().to_string()),
        2 => any::<String>().prop_map(|s| percent_encode(&s)),
        1 => "(%[0-9A-Fa-f]{2}){1,6}",
        1 => "[0-9a-zA-Z._~-]{1,40}",
    ]
}

fn percent_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Checks one answer against the contract; `Err` describes the violation.
pub fn check_answer(status: StatusCode, content_type: &str, text: &str) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("{status}: {text}"));
    }
    let body: Value = serde_json::from_str(text)
        .map_err(|_| format!("{status} with a non-JSON body ({content_type}): {text:.200}"))?;
    if status.is_client_error() {
        error_shape(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    }
    Ok(())
}

/// The contract's 4xx shapes (§1): `{error}` (maybe with extra fields such as `code`),
/// `{errors:[{type,value?,msg,path,location}], error}` and `{success:false, message, error}`.
pub fn error_shape(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("not an object")?;
    let error = obj
        .get("error")
        .and_then(Value::as_str)
        .ok_or("no `error` string")?;
    if error.is_empty() {
        return Err("empty `error`".into());
    }
    if let Some(success) = obj.get("success")
        && (success != &json!(false) || obj.get("message").and_then(Value::as_str) != Some(error))
    {
        return Err("`success`/`message` shape broken".into());
    }
    if let Some(errors) = obj.get("errors") {
        let list = errors.as_array().ok_or("`errors` not an array")?;
        let ok = !list.is_empty()
            && list.iter().all(|e| {
                e["type"] == "field"
                    && e["msg"].is_string()
                    && e["path"].is_string()
                    && e["location"].is_string()
            });
        if !ok {
            return Err("`errors` entries are not express-validator fields".into());
        }
    }
    Ok(())
}

/// Runs a property on a fresh multi-threaded runtime: `setup` builds the app once, then each case
/// sends what `make` returns.
pub struct Fuzz {
    pub rt: tokio::runtime::Runtime,
    pub app: TestApp,
}

impl Fuzz {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(TestApp::spawn());
        Fuzz { rt, app }
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Sends one request and checks the answer.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(), TestCaseError> {
        self.rt.block_on(async {
            let mut r = self.app.req(method.clone(), path, token);
            if let Some(b) = body.clone() {
                r = r.header(header::CONTENT_TYPE, "application/json").body(b);
            }
            let resp = r
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("{method} {path:.300}: {e:?}")))?;
            let status = resp.status();
            let ct = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = resp.text().await.unwrap_or_default();
            check_answer(status, &ct, &text).map_err(|e| {
                let shown = body.as_deref().map(String::from_utf8_lossy);
                TestCaseError::fail(format!("{method} {path:.300} body {shown:.300?}: {e:.500}"))
            })
        })
    }

    /// Runs `cases` cases of `strategy` through `case`, then checks the service is still healthy.
    pub fn run<S: Strategy>(
        &self,
        strategy: S,
        case: impl Fn(&Self, S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: CASES,
            failure_persistence: None,
            // shrinking resends requests; a few steps are enough to make a failure readable
            max_shrink_iters: 64,
            ..ProptestConfig::default()
        });
        if let Err(e) = runner.run(&strategy, |v| case(self, v)) {
            panic!("{e}");
        }
        let healthy = self.rt.block_on(async {
            crate::common::eventually(Duration::from_secs(5), || async {
                self.app.get("/health", None).await.0 == StatusCode::OK
            })
            .await
        });
        assert!(healthy, "service unhealthy after the fuzzing");
    }
}

#[test]
fn fuzz_auth_register_and_login_bodies() {
    let f = Fuzz::new();
    let text = || {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            "[a-z0-9.]{1,12}@[a-z]{1,8}\\.[a-z]{2,3}".prop_map(Value::String),
            "[a-zA-Z0-9]{0,12}".prop_map(Value::String),
        ]
        .boxed()
    };
    // well-formed addresses around the 255 characters `users.email` holds
    let email = || {
        prop_oneof![
            text(),
            "[a-z]{50,64}@[a-z]{40,63}\\.[a-z]{40,63}\\.[a-z]{40,63}\\.[a-z]{40,63}\\.com"
                .prop_map(Value::String),
        ]
        .boxed()
    };
    let strategy = (
        any::<bool>(),
        body(shaped(vec![
            ("email", email()),
            ("password", text()),
            ("name", text()),
            ("phone", text()),
        ])),
    );
    f.run(strategy, |f, (register, b)| {
        let path = if register {
            "/api/auth/register"
        } else {
            "/api/auth/login"
        };
        f.send(Method::POST, path, None, Some(b))
    });
}

#[test]
fn fuzz_seat_reserve_bodies() {
    let f = Fuzz::new();
    let (user, event, seats) = f.block_on(async {
        let (event, seats) = f.app.seat_event().await;
        (f.app.user().await, event, seats)
    });
    let seat_ids = prop_oneof![
        3 => prop::collection::vec(id_of(seats[..20].to_vec()), 0..4).prop_map(Value::Array),
        1 => arb_json(),
    ]
    .boxed();
    let strategy = body(shaped(vec![
        ("eventId", id_of(vec![event])),
        ("seatIds", seat_ids),
    ]));
    f.run(strategy, |f, b| {
        f.send(
            Method::POST,
            "/api/seats/reserve",
            Some(&user.token),
            Some(b),
        )
    });
}

#[test]
fn fuzz_reservation_bodies_and_ids() {
    let f = Fuzz::new();
    let (user, event, ticket_type, known) = f.block_on(async {
        let user = f.app.user().await;
        let (event, tt) = f.app.ticket_event(1_000_000).await;
        let (_, body) = f
            .app
            .post(
                "/api/reservations",
                Some(&user.token),
                json!({ "eventId": event, "items": [{ "ticketTypeId": tt, "quantity": 1 }] }),
            )
            .await;
        let known: Uuid = body["reservation"]["id"].as_str().unwrap().parse().unwrap();
        (user, event, tt, known)
    });
    let item = shaped(vec![
        ("ticketTypeId", id_of(vec![ticket_type])),
        (
            "quantity",
            prop_oneof![(-3i64..12).prop_map(Value::from), arb_json()].boxed(),
        ),
    ]);
    let items = prop_oneof![
        3 => prop::collection::vec(item, 0..4).prop_map(Value::Array),
        1 => arb_json(),
    ]
    .boxed();
    let booking = body(shaped(vec![
        ("eventId", id_of(vec![event])),
        ("items", items),
    ]));
    let strategy = prop_oneof![
        3 => booking.prop_map(|b| (Method::POST, "/api/reservations".to_string(), Some(b))),
        1 => segment(vec![known]).prop_map(|s| (Method::GET, format!("/api/reservations/{s}"), None)),
        1 => (segment(vec![known]), body(arb_json().boxed()))
            .prop_map(|(s, b)| (Method::POST, format!("/api/reservations/{s}/cancel"), Some(b))),
        1 => segment(vec![known]).prop_map(|s| (Method::GET, format!("/api/seats/reservation/{s}"), None)),
    ];
    f.run(strategy, |f, (method, path, b)| {
        f.send(method, &path, Some(&user.token), b)
    });
}

#[test]
fn fuzz_payment_bodies() {
    let f = Fuzz::new();
    let (user, holds) = f.block_on(async {
        let user = f.app.user().await;
        let (event, seats) = f.app.seat_event().await;
        let mut holds = Vec::new();
        for s in &seats[..8] {
            holds.push(f.app.hold_ok(&user.token, event, *s).await);
        }
        (user, holds)
    });
    let method = prop_oneof![
        prop::sample::select(vec![
            "card",
            "kakao_pay",
            "naver_pay",
            "toss",
            "bank_transfer"
        ])
        .prop_map(Value::from),
        arb_json(),
    ]
    .boxed();
    let strategy = body(shaped(vec![
        ("reservationId", id_of(holds)),
        ("paymentMethod", method),
    ]));
    f.run(strategy, |f, b| {
        f.send(
            Method::POST,
            "/api/payments/process",
            Some(&user.token),
            Some(b),
        )
    });
}

#[test]
fn fuzz_queue_check_paths_and_bodies() {
    let f = Fuzz::new();
    let (user, event) = f.block_on(async {
        let (event, _) = f.app.ticket_event(10).await;
        (f.app.user().await, event)
    });
    let paths = prop_oneof![
        Just("/api/queue/check"),
        Just("/api/queue/status"),
        Just("/api/api/queue/status"),
        Just("/api/queue/leave"),
    ];
    let strategy = (paths, segment(vec![event]), body(arb_json().boxed()));
    f.run(strategy, |f, (path, seg, b)| {
        let method = if path.ends_with("status") {
            Method::GET
        } else {
            Method::POST
        };
        let b = (method == Method::POST).then_some(b);
        f.send(method, &format!("{path}/{seg}"), Some(&user.token), b)
    });
}

#[test]
fn fuzz_events_list_query_strings() {
    let f = Fuzz::new();
    f.block_on(f.app.ticket_event(10));
    let key = prop_oneof![
        4 => prop::sample::select(vec!["status", "q", "page", "limit"]).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        any::<String>(),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec!["on_sale", "upcoming", "ended", "cancelled", ""])
            .prop_map(str::to_string),
        // long, but the URL must stay under what a client can send (http::Uri holds < 64 KiB): 600
        // characters of up to 4 bytes percent-encode to at most 7.2 KB, and there are at most 6 pairs
        huge_string().prop_map(|s| s.chars().take(600).collect()),
    ];
    let encoded = prop::collection::vec((key, value), 0..6).prop_map(|kv| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kv)
            .finish()
    });
    // also query strings nobody encoded properly (reqwest escapes what a URL cannot hold)
    let raw = "[ -~]{0,80}";
    let strategy = prop_oneof![3 => encoded.boxed(), 1 => raw.boxed()];
    f.run(strategy, |f, q| {
        f.send(Method::GET, &format!("/api/events?{q}"), None, None)
    });
}

#[test]
fn fuzz_error_shape_checker_accepts_the_contract_and_refuses_the_rest() {
    assert!(error_shape(&json!({ "error": "x" })).is_ok());
    assert!(error_shape(&json!({ "error": "x", "code": "USER_NOT_FOUND" })).is_ok());
    assert!(error_shape(&json!({ "success": false, "message": "x", "error": "x" })).is_ok());
    let field =
        json!({ "type": "field", "msg": "Invalid value", "path": "email", "location": "body" });
    assert!(error_shape(&json!({ "errors": [field], "error": "x" })).is_ok());
    assert!(error_shape(&json!({ "message": "x" })).is_err());
    assert!(error_shape(&json!("Failed to deserialize")).is_err());
    assert!(error_shape(&json!({ "errors": [], "error": "x" })).is_err());
    assert!(check_answer(StatusCode::BAD_REQUEST, "text/plain", "Failed to parse").is_err());
    assert!(check_answer(StatusCode::INTERNAL_SERVER_ERROR, "", "{\"error\":\"x\"}").is_err());
}

/// Found by `fuzz_queue_check_paths_and_bodies` and `fuzz_reservation_bodies_and_ids`: a path id
/// that percent-decodes to invalid UTF-8 was answered by axum in plain text.
#[tokio::test]
async fn fuzz_regression_undecodable_path_ids_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    for (method, path) in [
        (Method::POST, "/api/queue/check/%a0"),
        (Method::POST, "/api/reservations/%a0/cancel"),
        (Method::GET, "/api/events/%ff%fe"),
        (Method::GET, "/api/api/queue/status/%c3%28"),
    ] {
        let resp = app
            .req(method.clone(), path, Some(&user.token))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {text}");
        check_answer(status, "", &text).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    }
}

/// Found by `fuzz_events_list_query_strings`: a repeated query key (`?q=a&q=b`) was a plain-text 400.
#[tokio::test]
async fn fuzz_regression_repeated_query_keys_and_unserved_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/events?q=a&q=b&page=1&page=x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_shape(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    // a known path with a method it does not serve: 405, keeping `Allow`
    let resp = app
        .req(Method::DELETE, "/api/events", None)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().contains_key(header::ALLOW));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": "Method Not Allowed", "code": "METHOD_NOT_ALLOWED" })
    );
}

/// Found by `fuzz_events_list_query_strings`: a NUL in `status` or `q` reached PostgreSQL (which
/// refuses NUL in text) and came back as a 500. Other text inputs with NUL must not 500 either.
#[tokio::test]
async fn fuzz_regression_nul_characters_are_refused_not_a_500() {
    let app = TestApp::spawn().await;
    for q in ["status=%00", "q=a%00b", "status=on_sale&q=%00"] {
        let (status, body) = app.get(&format!("/api/events?{q}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        error_shape(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
    }
    let user = app.user().await;
    let nul = "a\u{0}b";
    for (path, token, body) in [
        (
            "/api/auth/register",
            None,
            json!({ "email": "x@example.com", "password": "secret123", "name": nul, "phone": nul }),
        ),
        (
            "/api/auth/register",
            None,
            json!({ "email": format!("{nul}@example.com"), "password": "secret123", "name": "n" }),
        ),
        (
            "/api/auth/login",
            None,
            json!({ "email": format!("{nul}@example.com"), "password": nul }),
        ),
        (
            "/api/news",
            Some(user.token.as_str()),
            json!({ "title": nul, "content": nul }),
        ),
        (
            "/api/payments/process",
            Some(user.token.as_str()),
            json!({ "reservationId": Uuid::new_v4(), "paymentMethod": nul }),
        ),
    ] {
        let (status, body) = app.post(path, token, body).await;
        assert!(!status.is_server_error(), "{path}: {status} {body}");
    }
}
