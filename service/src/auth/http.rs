//! `POST /api/auth/register` and `POST /api/auth/login`.

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde::Deserialize;
use serde_json::{Value, json};
use tiketi_core::email;

use super::{db, password, throttle};
use crate::{
    body::{Body, Field},
    error::{Code, Error, FieldError, OrMessage, Result},
    extract::ClientIp,
    metrics::AuthLabels,
    ratelimit,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
}

/// A hash refused for want of a slot (503 `SERVER_BUSY`, no work done) gives its rate-limit attempts
/// back, so retrying after "busy" as asked (`Retry-After`) is not then refused as too many attempts.
async fn busy_refunds<T, const N: usize>(
    state: &AppState,
    attempts: [ratelimit::Attempt; N],
    hashed: Result<T>,
) -> Result<T> {
    if hashed.as_ref().is_err_and(|e| e.code() == Code::ServerBusy) {
        for attempt in attempts {
            attempt.refund(state).await;
        }
    }
    hashed
}

/// The normalised address of a valid e-mail that fits `users.email` (`email::account`).
fn account_email(f: &Field<String>) -> Option<String> {
    f.get().and_then(|e| email::account(e))
}

fn user_json(u: &db::UserRow) -> Value {
    json!({ "id": u.id, "userId": u.id, "email": u.email, "name": u.name, "role": u.role })
}

fn count(state: &AppState, kind: &'static str, status: &'static str) {
    state
        .metrics
        .auth_attempts
        .get_or_create(&AuthLabels {
            r#type: kind,
            status,
        })
        .inc();
}

/// `POST /api/auth/register` (`email`, `password`) and `/login` (only those two).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct AccountBody {
    #[serde(default)]
    #[schema(value_type = String)]
    email: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    password: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    name: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    phone: Field<String>,
}

async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(body): Body<AccountBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let attempt = ratelimit::check(
        &state,
        "register",
        &crate::client_ip::limit_key(ip),
        state.config.login_rate_limit,
    )
    .await?;
    let mut errors = Vec::new();
    let email = account_email(&body.email);
    if email.is_none() {
        errors.push(FieldError::body("email", body.email.raw().cloned()));
    }
    let pw = body.password.get().filter(|p| p.chars().count() >= 6);
    if pw.is_none() {
        errors.push(FieldError::body("password", None));
    }
    let name = body.name.text().filter(|n| n.chars().count() <= 100);
    if name.is_none() {
        errors.push(FieldError::body("name", body.name.raw().cloned()));
    }
    let phone = body.phone.text();
    if phone.as_ref().is_some_and(|p| p.chars().count() > 20)
        || (body.phone.present() && body.phone.get().is_none())
    {
        errors.push(FieldError::body("phone", body.phone.raw().cloned()));
    }
    let (Some(email), Some(pw), Some(name), true) = (email, pw, name, errors.is_empty()) else {
        count(&state, "register", "invalid");
        return Err(Error::Validation(errors));
    };
    async {
        if db::find_by_email(&state.db, &email).await?.is_some() {
            count(&state, "register", "duplicate");
            return Err(Error::bad_request(Code::EmailTaken, "이미 존재하는 이메일입니다."));
        }
        let hash = busy_refunds(&state, [attempt], state.hasher.hash(pw.to_string()).await).await?;
        let new = db::NewUser { email: &email, password_hash: &hash, name: &name, phone: phone.as_deref(), role: "user" };
        let Some(user) = db::insert(&state.db, &new).await? else {
            return Err(Error::bad_request(Code::EmailTaken, "이미 존재하는 이메일입니다."));
        };
        let token = state.jwt.issue(user.id, &user.email, &user.role).map_err(Error::internal)?;
        count(&state, "register", "success");
        Ok((
            StatusCode::CREATED,
            Json(json!({ "message": "회원가입이 완료되었습니다.", "token": token, "user": user_json(&user) })),
        ))
    }
    .await
    .or_message("회원가입에 실패했습니다.")
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(body): Body<AccountBody>,
) -> Result<Json<Value>> {
    let mut errors = Vec::new();
    let email = account_email(&body.email);
    if email.is_none() {
        errors.push(FieldError::body("email", body.email.raw().cloned()));
    }
    let pw = body.password.get().filter(|p| !p.is_empty());
    if pw.is_none() {
        errors.push(FieldError::body("password", None));
    }
    let (Some(email), Some(pw)) = (email, pw) else {
        count(&state, "login", "invalid");
        return Err(Error::Validation(errors));
    };
    let address = crate::client_ip::limit_key(ip);
    let by_ip =
        ratelimit::check(&state, "login-ip", &address, state.config.login_rate_limit).await?;
    // per (account, address), not per account: an attacker's failures never lock the owner out
    let throttled = throttle::begin(&state, &email, &address).await?;
    async {
        // until the password is checked, an error (database down, no hashing slot) is no failure
        let user = match db::find_by_email(&state.db, &email).await {
            Ok(user) => user,
            Err(e) => {
                throttled.refund(&state).await;
                return Err(e.into());
            }
        };
        let stored = user.as_ref().map_or(password::DUMMY_HASH.to_string(), |u| {
            u.password_hash.clone()
        });
        let ok = match state.hasher.verify(pw.to_string(), stored.clone()).await {
            Ok(ok) => ok,
            Err(e) => {
                throttled.refund(&state).await;
                if e.code() == Code::ServerBusy {
                    // refused for want of a slot: no work done, the per-IP attempt is given back too
                    by_ip.refund(&state).await;
                }
                return Err(e);
            }
        };
        let (Some(user), true) = (user, ok) else {
            count(&state, "login", "failure");
            return Err(Error::unauthorized(
                Code::InvalidCredentials,
                "이메일 또는 비밀번호가 일치하지 않습니다.",
            ));
        };
        throttled.succeeded(&state).await;
        if stored.starts_with("$2") {
            // upgrade a migrated bcrypt hash to argon2id now that the password is known
            let upgraded = state.hasher.hash(pw.to_string()).await?;
            db::set_password_hash(&state.db, user.id, &upgraded).await?;
        }
        let token = state
            .jwt
            .issue(user.id, &user.email, &user.role)
            .map_err(Error::internal)?;
        count(&state, "login", "success");
        Ok(Json(
            json!({ "message": "로그인 성공", "token": token, "user": user_json(&user) }),
        ))
    }
    .await
    .or_message("로그인에 실패했습니다.")
}
