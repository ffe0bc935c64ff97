//! Registration, login and the token checks every `user` route goes through (docs/wire-contract.md §1.1, §1.3 Auth).

use std::time::Duration;

use chrono::{Timelike, Utc};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tiketi_service::auth::jwt::Claims;
use uuid::Uuid;

use crate::common::{TestApp, eventually, keys, sorted};

const BAD_CREDENTIALS: &str = "이메일 또는 비밀번호가 일치하지 않습니다.";

fn unique_email() -> String {
    format!("a{}@example.com", Uuid::new_v4().simple())
}

async fn register(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.post("/api/auth/register", None, body).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post(
        "/api/auth/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await
}

/// A `user` route, to exercise the auth middleware.
async fn my_reservations(app: &TestApp, authorization: Option<&str>) -> (StatusCode, Value) {
    let mut req = app.req(reqwest::Method::GET, "/api/reservations/my", None);
    if let Some(h) = authorization {
        req = req.header(header::AUTHORIZATION, h);
    }
    crate::common::read(req.send().await.expect("request")).await
}

#[tokio::test]
async fn auth_register_returns_token_and_user() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (status, body) = register(
        &app,
        json!({ "email": email, "password": "secret123", "name": "  홍길동  ", "phone": "010-0000-0000" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(keys(&body), sorted(&["message", "token", "user"]));
    assert_eq!(body["message"], "회원가입이 완료되었습니다.");
    let user = &body["user"];
    assert_eq!(
        keys(user),
        sorted(&["id", "userId", "email", "name", "role"])
    );
    assert_eq!(user["id"], user["userId"]);
    assert_eq!(user["email"], email);
    assert_eq!(user["name"], "홍길동", "name is trimmed");
    assert_eq!(user["role"], "user");

    let claims = app
        .state
        .jwt
        .verify(body["token"].as_str().unwrap())
        .expect("token verifies");
    assert_eq!(claims.user_id.to_string(), user["id"].as_str().unwrap());
    assert_eq!(
        (claims.email.as_str(), claims.role.as_str()),
        (email.as_str(), "user")
    );
    assert_eq!(claims.exp - claims.iat, 7 * 24 * 3600);

    let (phone, name): (Option<String>, String) =
        sqlx::query_as("SELECT phone, name FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        (phone.as_deref(), name.as_str()),
        (Some("010-0000-0000"), "홍길동")
    );
}

#[tokio::test]
async fn auth_register_normalises_the_email() {
    let app = TestApp::spawn().await;
    let (status, body) = register(
        &app,
        json!({ "email": "J.Doe+x@GoogleMail.com", "password": "secret123", "name": "제이" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["email"], "jdoe@gmail.com");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'jdoe@gmail.com'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 1);

    // both spellings log into the same account
    for spelling in ["jdoe@gmail.com", "J.Doe+other@googlemail.com"] {
        let (status, body) = login(&app, spelling, "secret123").await;
        assert_eq!(status, StatusCode::OK, "{spelling}: {body}");
        assert_eq!(body["user"]["email"], "jdoe@gmail.com");
    }
}

#[tokio::test]
async fn auth_register_validation_errors_in_express_validator_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = register(
        &app,
        json!({ "email": "not-an-email", "password": "12345", "name": "   " }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(keys(&body), sorted(&["errors", "error", "code"]));
    assert_eq!(body["code"], "VALIDATION_FAILED");
    assert_eq!(body["error"], "올바른 이메일 주소를 입력해주세요.");
    let errors = body["errors"].as_array().unwrap();
    let paths: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["email", "password", "name"]);
    for e in errors {
        assert_eq!(e["type"], "field");
        assert_eq!(e["msg"], "Invalid value");
        assert_eq!(e["location"], "body");
    }
    assert_eq!(errors[0]["value"], "not-an-email");
    assert!(
        errors[1].get("value").is_none(),
        "the password is never echoed"
    );
    assert!(!body.to_string().contains("12345"));

    // one failing field
    let (status, body) = register(
        &app,
        json!({ "email": unique_email(), "password": "short", "name": "이름" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "errors": [{ "type": "field", "msg": "Invalid value", "path": "password", "location": "body" }],
            "error": "비밀번호는 6자 이상이어야 합니다.",
            "code": "VALIDATION_FAILED",
        })
    );

    // a missing field has no `value`
    let (status, body) = register(
        &app,
        json!({ "email": unique_email(), "password": "secret123" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "errors": [{ "type": "field", "msg": "Invalid value", "path": "name", "location": "body" }],
            "error": "이름을 입력해주세요.",
            "code": "VALIDATION_FAILED",
        })
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'user'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test]
async fn auth_register_duplicate_email_is_400() {
    let app = TestApp::spawn().await;
    let first = json!({ "email": "dup.user@gmail.com", "password": "secret123", "name": "하나" });
    assert_eq!(register(&app, first.clone()).await.0, StatusCode::CREATED);
    let duplicate = json!({ "error": "이미 존재하는 이메일입니다.", "code": "EMAIL_TAKEN" });
    assert_eq!(
        register(&app, first).await,
        (StatusCode::BAD_REQUEST, duplicate.clone())
    );
    // the same mailbox after normalisation
    let (status, body) = register(
        &app,
        json!({ "email": "DupUser+2@gmail.com", "password": "other123", "name": "둘" }),
    )
    .await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, duplicate));
}

#[tokio::test]
async fn auth_login_returns_token_and_user() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let (status, body) = login(&app, &user.email, "secret123").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), sorted(&["message", "token", "user"]));
    assert_eq!(body["message"], "로그인 성공");
    assert_eq!(
        body["user"],
        json!({ "id": user.id, "userId": user.id, "email": user.email, "name": "테스트", "role": "user" })
    );
    let token = body["token"].as_str().unwrap();
    assert_eq!(app.state.jwt.verify(token).unwrap().user_id, user.id);
    assert_eq!(
        my_reservations(&app, Some(&format!("Bearer {token}")))
            .await
            .0,
        StatusCode::OK
    );

    let (status, body) = login(&app, "admin@tiketi.gg", "admin123").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["user"]["name"], "관리자");
}

#[tokio::test]
async fn auth_login_wrong_password_or_unknown_email_is_401() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let refused = (
        StatusCode::UNAUTHORIZED,
        json!({ "error": BAD_CREDENTIALS, "code": "INVALID_CREDENTIALS" }),
    );
    assert_eq!(login(&app, &user.email, "wrong-password").await, refused);
    assert_eq!(login(&app, &unique_email(), "secret123").await, refused);
}

#[tokio::test]
async fn auth_login_validation_errors() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post("/api/auth/login", None, json!({ "email": "nobody" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "errors": [
                { "type": "field", "value": "nobody", "msg": "Invalid value", "path": "email", "location": "body" },
                { "type": "field", "msg": "Invalid value", "path": "password", "location": "body" },
            ],
            "error": "올바른 이메일 주소를 입력해주세요.",
            "code": "VALIDATION_FAILED",
        })
    );
}

#[tokio::test]
async fn auth_middleware_requires_a_token() {
    let app = TestApp::spawn().await;
    let required = (
        StatusCode::UNAUTHORIZED,
        json!({ "error": "인증이 필요합니다.", "code": "AUTH_REQUIRED" }),
    );
    assert_eq!(my_reservations(&app, None).await, required);
    assert_eq!(my_reservations(&app, Some("Bearer")).await, required);
    assert_eq!(my_reservations(&app, Some("Bearer ")).await, required);
}

#[tokio::test]
async fn auth_middleware_rejects_invalid_tokens_with_401() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    // deliberate deviation: the original answered 403, which the frontend ignores (docs/wire-contract.md §9 #30)
    let invalid = (
        StatusCode::UNAUTHORIZED,
        json!({ "error": "유효하지 않은 토큰입니다.", "code": "TOKEN_INVALID" }),
    );
    assert_eq!(my_reservations(&app, Some("Bearer garbage")).await, invalid);

    let claims = app.state.jwt.verify(&user.token).unwrap();
    let other_key = tiketi_service::auth::jwt::JwtKeys::new(b"another-secret-another-secret-xx");
    let foreign = other_key.sign(&claims).unwrap();
    assert_eq!(
        my_reservations(&app, Some(&format!("Bearer {foreign}"))).await,
        invalid
    );

    let now = Utc::now().timestamp();
    let expired = app
        .state
        .jwt
        .sign(&Claims {
            iat: now - 8 * 24 * 3600,
            exp: now - 60,
            ..claims
        })
        .unwrap();
    assert_eq!(
        my_reservations(&app, Some(&format!("Bearer {expired}"))).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "유효하지 않은 토큰입니다.", "code": "TOKEN_EXPIRED" }),
        ),
        "an expired token: the same 401 and message (the frontend logs out), its own code"
    );

    // the scheme is not checked, as in the original
    assert_eq!(
        my_reservations(&app, Some(&format!("Token {}", user.token)))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn auth_middleware_token_of_a_deleted_user_is_401_user_not_found() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        my_reservations(&app, Some(&format!("Bearer {}", user.token))).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "사용자 정보를 찾을 수 없습니다. 다시 로그인해주세요.", "code": "USER_NOT_FOUND" })
        )
    );
}

#[tokio::test]
async fn auth_bcrypt_hash_logs_in_and_is_upgraded_to_argon2id() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let legacy = bcrypt::hash("legacy-pass", 4).unwrap();
    sqlx::query("INSERT INTO users (email, password_hash, name) VALUES ($1, $2, '이전 회원')")
        .bind(&email)
        .bind(&legacy)
        .execute(&app.db)
        .await
        .unwrap();
    let stored_hash = || async {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };

    assert_eq!(
        login(&app, &email, "wrong-pass").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stored_hash().await,
        legacy,
        "a failed login changes nothing"
    );

    let (status, body) = login(&app, &email, "legacy-pass").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["name"], "이전 회원");
    assert!(stored_hash().await.starts_with("$argon2id$"));

    // the upgraded hash keeps working, the old one is gone
    assert_eq!(login(&app, &email, "legacy-pass").await.0, StatusCode::OK);
    assert_eq!(
        login(&app, &email, "wrong-pass").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn auth_login_is_rate_limited_per_minute() {
    let app = TestApp::spawn_with(|c| c.login_rate_limit = 3).await;
    // the limit is a fixed one-minute window: start well inside one
    assert!(
        eventually(Duration::from_secs(10), || async {
            Utc::now().second() < 50
        })
        .await
    );
    let email = unique_email();
    for _ in 0..3 {
        assert_eq!(
            login(&app, &email, "secret123").await,
            (
                StatusCode::UNAUTHORIZED,
                json!({ "error": BAD_CREDENTIALS, "code": "INVALID_CREDENTIALS" })
            )
        );
    }
    let resp = app
        .req(reqwest::Method::POST, "/api/auth/login", None)
        .json(&json!({ "email": email, "password": "secret123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "error": "요청이 너무 많습니다. 잠시 후 다시 시도해주세요.", "code": "RATE_LIMITED" })
    );
}

/// Admin routes check the role against the database (cached for seconds), not the 7-day token:
/// a demoted admin loses the console within seconds, a promoted user gains it without a new login.
#[tokio::test]
async fn auth_admin_role_comes_from_the_database_not_the_token() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let stats = |token: String| {
        let app = &app;
        async move { app.get("/api/admin/dashboard/stats", Some(&token)).await.0 }
    };
    assert_eq!(stats(admin.token.clone()).await, StatusCode::OK);
    sqlx::query("UPDATE users SET role = 'user' WHERE id = $1")
        .bind(admin.id)
        .execute(&app.db)
        .await
        .unwrap();
    let demoted = crate::common::eventually(std::time::Duration::from_secs(15), || {
        let t = admin.token.clone();
        async { stats(t).await == StatusCode::FORBIDDEN }
    })
    .await;
    assert!(
        demoted,
        "the demoted admin's token still opens admin routes"
    );

    let user = app.user().await;
    assert_eq!(stats(user.token.clone()).await, StatusCode::FORBIDDEN);
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
        .bind(user.id)
        .execute(&app.db)
        .await
        .unwrap();
    let promoted = crate::common::eventually(std::time::Duration::from_secs(15), || {
        let t = user.token.clone();
        async { stats(t).await == StatusCode::OK }
    })
    .await;
    assert!(promoted);
}

/// `users.email` is VARCHAR(255): a longer address, however well formed, is a validation error in
/// the express-validator shape with its code — never the database's 500 — on registration and on
/// login alike. The longest that fits still registers.
#[tokio::test]
async fn auth_an_email_longer_than_its_column_is_a_400_with_a_code() {
    let app = TestApp::spawn().await;
    // a well-formed address (64-character local part, labels under 63) of 300 characters
    let labels = ["b", "c", "d", "e"].map(|c| c.repeat(57)).join(".");
    let long = format!("{}@{labels}.com", "a".repeat(64));
    assert_eq!(long.chars().count(), 300);
    for (what, (status, body)) in [
        (
            "register",
            register(
                &app,
                json!({ "email": long, "password": "secret123", "name": "테스트" }),
            )
            .await,
        ),
        ("login", login(&app, &long, "secret123").await),
    ] {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["code"], "VALIDATION_FAILED", "{what}: {body}");
        assert_eq!(body["errors"][0]["path"], "email", "{what}: {body}");
        assert_eq!(
            body["error"], "올바른 이메일 주소를 입력해주세요.",
            "{what}"
        );
    }
    let fits = format!(
        "{}@{}.{}.{}.com",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(58)
    );
    assert_eq!(fits.chars().count(), 255);
    let (status, body) = register(
        &app,
        json!({ "email": fits, "password": "secret123", "name": "테스트" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(login(&app, &fits, "secret123").await.0, StatusCode::OK);
}

/// Wrong passwords are counted per (account, client address): the attacker's address is slowed,
/// then refused for that account — even with the right password — while the owner, from their own
/// address, logs in at once. (A per-account limit let anyone lock any account out.)
#[tokio::test]
async fn auth_an_attackers_wrong_passwords_do_not_lock_the_owner_out() {
    let app = TestApp::spawn_with(|c| {
        c.login_rate_limit = 8;
        c.login_failures_per_address = 3;
        // the test client is the proxy: X-Forwarded-For names each side's address
        c.trusted_proxies = tiketi_service::config::TrustedProxies(
            tiketi_service::client_ip::parse_trusted("127.0.0.0/8").unwrap(),
        );
    })
    .await;
    let owner = app.user().await;
    crate::common::early_in_rate_window().await;
    let from = |address: &'static str, password: &'static str| {
        app.req(reqwest::Method::POST, "/api/auth/login", None)
            .header("x-forwarded-for", address)
            .json(&json!({ "email": owner.email, "password": password }))
            .send()
    };
    let attacker = "203.0.113.66";
    // as many guesses as the attacker's address may make in a minute
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let resp = from(attacker, "guess-123").await.unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = resp.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry_after >= 1, "{retry_after}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "RATE_LIMITED");
            statuses.push(StatusCode::TOO_MANY_REQUESTS);
        } else {
            statuses.push(resp.status());
        }
    }
    let mut want = vec![StatusCode::UNAUTHORIZED; 3];
    want.resize(8, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        statuses, want,
        "the attacker's address is cut off after 3 failures"
    );
    // no more guessing from there, right or wrong
    let resp = from(attacker, "secret123").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // the owner, from their own address: in at once, again and again
    for _ in 0..2 {
        let resp = from("198.51.100.20", "secret123").await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "the owner is not locked out");
    }
}
