//! Access audit that walks the router: every `.route("<path>", <methods>)` of service/src is read
//! from the sources at test time (so the list cannot go stale) and requested. Admin routes answer
//! 401 without a token and 403 to a normal user for every method they serve; every other route is
//! either in the small public allowlist below or answers 401 without a token. A route in no class,
//! or an allowlist entry the router no longer serves, fails the test.

use std::{collections::BTreeSet, path::Path};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tiketi_service::extract::{MSG_ADMIN_ONLY, MSG_AUTH_REQUIRED, MSG_INVALID_TOKEN};
use uuid::Uuid;

use crate::{common::TestApp, fuzz::error_shape};

/// Routes anyone may call (docs/wire-contract.md §1.2 "none"), plus the probes and static uploads.
const PUBLIC: &[&str] = &[
    "POST /api/auth/register",
    "POST /api/auth/login",
    "GET /api/events",
    "GET /api/events/{id}",
    "GET /api/tickets/event/{event_id}",
    "GET /api/tickets/availability/{ticket_type_id}",
    "GET /api/seats/layouts",
    "GET /api/seats/events/{event_id}",
    "GET /api/payments/methods",
    "GET /api/news",
    "GET /api/news/{id}",
    "GET /health",
    "GET /health/db",
    "GET /health/redis",
    "GET /health/all",
    "GET /health/ready",
    "GET /metrics",
    "GET /uploads/{*file}",
    "GET /api-docs",
];

/// Any signed-in user (docs/wire-contract.md §1.2 "user").
const USER: &[&str] = &[
    "POST /api/seats/reserve",
    "GET /api/seats/reservation/{reservation_id}",
    "POST /api/reservations",
    "GET /api/reservations/my",
    "GET /api/reservations/{id}",
    "POST /api/reservations/{id}/cancel",
    "POST /api/payments/process",
    "POST /api/queue/check/{event_id}",
    "GET /api/queue/status/{event_id}",
    "POST /api/queue/leave/{event_id}",
    "GET /api/api/queue/status/{event_id}",
    "POST /api/api/queue/leave/{event_id}",
    "POST /api/news",
    "PUT /api/news/{id}",
    "DELETE /api/news/{id}",
];

/// Admin-only routes outside the admin prefixes.
const ADMIN_ELSEWHERE: &[&str] = &["POST /api/image/upload"];

/// Every path under these is admin-only, whatever its method.
const ADMIN_PREFIXES: &[&str] = &["/api/admin", "/api/queue/admin"];

/// `nest_service` mounts, as (prefix, the route they stand for).
const NESTED: &[(&str, &str)] = &[("/uploads", "GET /uploads/{*file}")];

const ANY: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// "METHOD /path/{param}" for every route the service's sources declare, with where it is declared.
fn declared_routes() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        for bad in ["route_service(", ".nest(", "fallback_service("] {
            assert!(
                !text.contains(bad),
                "{name} uses `{bad}`: teach the audit (tests/api/audit.rs) to read it"
            );
        }
        for (at, _) in text.match_indices("nest_service(") {
            let prefix = string_at(&text[at + "nest_service(".len()..])
                .unwrap_or_else(|| panic!("{name}: nest_service without a literal prefix"));
            let (_, route) = NESTED
                .iter()
                .find(|(p, _)| *p == prefix)
                .unwrap_or_else(|| panic!("{name}: nest_service(\"{prefix}\") is not in NESTED"));
            out.push((route.to_string(), name.clone()));
        }
        for (at, _) in text.match_indices(".route(") {
            let line = text[..at].lines().count();
            let rest = &text[at + ".route(".len()..];
            let path = string_at(rest)
                .unwrap_or_else(|| panic!("{name}:{line}: .route( without a literal path"));
            let args =
                call_args(rest).unwrap_or_else(|| panic!("{name}:{line}: unbalanced .route( call"));
            let methods = methods_in(args);
            assert!(
                !methods.is_empty(),
                "{name}:{line}: no method router found for {path}"
            );
            for m in methods {
                out.push((format!("{m} {path}"), format!("{name}:{line}")));
            }
        }
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The string literal that starts `s` (after whitespace).
fn string_at(s: &str) -> Option<&str> {
    let s = s.trim_start().strip_prefix('"')?;
    Some(&s[..s.find('"')?])
}

/// The text of a call's arguments up to its closing parenthesis (`s` starts after the `(`).
fn call_args(s: &str) -> Option<&str> {
    let (mut depth, mut in_str) = (1, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '(' if !in_str => depth += 1,
            ')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The HTTP methods of a method router expression (`get(a).post(b)`, `any(c)`, ...).
fn methods_in(expr: &str) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    for (name, methods) in [
        ("get", &["GET"][..]),
        ("post", &["POST"]),
        ("put", &["PUT"]),
        ("patch", &["PATCH"]),
        ("delete", &["DELETE"]),
        ("any", ANY),
    ] {
        let call = format!("{name}(");
        for (at, _) in expr.match_indices(&call) {
            let before = expr[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                found.extend(methods.iter().copied());
            }
        }
    }
    found
}

/// A concrete path: `{name}` becomes a random UUID, `{*rest}` a file-like name.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            s if s.starts_with("{*") => format!("audit-{}/x.png", Uuid::new_v4().simple()),
            s if s.starts_with('{') => Uuid::new_v4().to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let body = (m != Method::GET).then(|| json!({}));
    app.send(m, path, token, body).await
}

enum Class {
    Public,
    User,
    Admin,
}

fn class_of(route: &str) -> Option<Class> {
    let path = route.split_once(' ').map_or("", |(_, p)| p);
    let under_admin = ADMIN_PREFIXES
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if under_admin || ADMIN_ELSEWHERE.contains(&route) {
        Some(Class::Admin)
    } else if PUBLIC.contains(&route) {
        Some(Class::Public)
    } else if USER.contains(&route) {
        Some(Class::User)
    } else {
        None
    }
}

#[test]
fn audit_reads_every_route_declaration() {
    // the parser itself, on the shapes the sources use
    assert_eq!(
        methods_in(r#"get(one).put(update).delete(remove)"#),
        BTreeSet::from(["DELETE", "GET", "PUT"])
    );
    assert_eq!(
        methods_in("post(upload).layer(DefaultBodyLimit::max(MAX + 64 * 1024))"),
        BTreeSet::from(["POST"])
    );
    assert_eq!(methods_in("any(unknown)").len(), ANY.len());
    assert_eq!(methods_in("budget(x)"), BTreeSet::new());
    assert_eq!(
        call_args("\"/a/{id}\",\n  get(list).post(x(\")\")),\n)"),
        Some("\"/a/{id}\",\n  get(list).post(x(\")\")),\n")
    );
    let routes = declared_routes();
    assert!(routes.len() > 40, "only {} routes found", routes.len());
    assert!(
        routes
            .iter()
            .any(|(r, _)| r == "PATCH /api/admin/reservations/{id}/status")
    );
    assert!(routes.iter().any(|(r, _)| r == "DELETE /api/admin/{*rest}"));
}

#[tokio::test]
async fn audit_every_route_is_classified_and_guarded() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let routes = declared_routes();
    let declared: BTreeSet<&str> = routes.iter().map(|(r, _)| r.as_str()).collect();

    // allowlists name only routes that exist
    for entry in PUBLIC.iter().chain(USER).chain(ADMIN_ELSEWHERE) {
        assert!(
            declared.contains(entry),
            "audit lists `{entry}`, which the service no longer serves"
        );
    }
    let mut failures = Vec::new();
    let mut checked = (0, 0, 0);
    for (route, at) in &routes {
        let (method, template) = route.split_once(' ').unwrap();
        let path = concrete(template);
        let fallback = json!({ "error": format!("Cannot {method} {path}") });
        let (anon, anon_body) = call(&app, method, &path, None).await;
        if anon_body == fallback {
            failures.push(format!("{route} ({at}) is declared but not served"));
            continue;
        }
        let mut expect = |cond: bool, what: String| {
            if !cond {
                failures.push(format!("{route} ({at}): {what}"));
            }
        };
        match class_of(route) {
            None => expect(
                false,
                format!(
                    "in no class (answers {anon} without a token): add it to PUBLIC, USER or ADMIN_ELSEWHERE in tests/api/audit.rs"
                ),
            ),
            Some(Class::Public) => {
                checked.0 += 1;
                expect(
                    anon != StatusCode::UNAUTHORIZED && anon != StatusCode::FORBIDDEN,
                    format!("public, but answers {anon} without a token"),
                );
            }
            Some(class) => {
                let (bad, bad_body) = call(&app, method, &path, Some("not-a-jwt")).await;
                expect(
                    anon == StatusCode::UNAUTHORIZED && anon_body["error"] == MSG_AUTH_REQUIRED,
                    format!("without a token: {anon} {anon_body}"),
                );
                expect(
                    bad == StatusCode::UNAUTHORIZED && bad_body["error"] == MSG_INVALID_TOKEN,
                    format!("with an invalid token: {bad} {bad_body}"),
                );
                for body in [&anon_body, &bad_body] {
                    if let Err(e) = error_shape(body) {
                        expect(false, format!("401 body {body}: {e}"));
                    }
                }
                if let Class::Admin = class {
                    checked.2 += 1;
                    let (st, body) = call(&app, method, &path, Some(&user.token)).await;
                    expect(
                        st == StatusCode::FORBIDDEN && body["error"] == MSG_ADMIN_ONLY,
                        format!("a normal user got {st} {body}"),
                    );
                } else {
                    checked.1 += 1;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} access audit failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // every class was exercised (a parser regression would empty one)
    assert!(
        checked.0 >= PUBLIC.len() && checked.1 >= USER.len() && checked.2 >= 20,
        "public/user/admin routes checked: {checked:?}"
    );
}

/// `/api-docs` documents exactly what the router serves: every routed method and path (but the
/// admin catch-alls, static uploads and the document itself) is an operation of the OpenAPI
/// document, and every operation is routed.
#[tokio::test]
async fn audit_every_route_is_in_the_openapi_document() {
    let undocumented = [
        "/api/admin",
        "/api/admin/",
        "/api/admin/{*rest}",
        "/uploads/{*file}",
        "/api-docs",
    ];
    let routed: BTreeSet<String> = declared_routes()
        .into_iter()
        .map(|(route, _)| route)
        .filter(|r| !undocumented.iter().any(|p| r.ends_with(&format!(" {p}"))))
        .collect();
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api-docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let missing: Vec<_> = routed.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routed but not in /api-docs: {missing:?}"
    );
    assert!(stale.is_empty(), "in /api-docs but not routed: {stale:?}");
    // every documented error code is one the service has
    let known: Vec<Value> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    assert!(known.contains(&json!("SEAT_TAKEN")));
    let ui = app
        .req(Method::GET, "/api-docs/ui", None)
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    let html = ui.text().await.unwrap();
    assert!(html.contains("TIKETI REST API") && html.contains("@scalar/api-reference"));
}
