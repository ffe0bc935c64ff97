//! The crate's one error type, mapped once to the contract's four response shapes.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One field failure in the express-validator shape.
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub msg: &'static str,
    pub path: &'static str,
    pub location: &'static str,
}

impl FieldError {
    pub fn body(path: &'static str, value: Option<Value>) -> Self {
        Self {
            kind: "field",
            value,
            msg: "Invalid value",
            path,
            location: "body",
        }
    }
}

pub use crate::codes::Code;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `{"error": msg, "code"}`: a handler's own answer (validation, not found, ownership).
    #[error("{2}")]
    Plain(StatusCode, Code, String),
    /// `{"error": msg, "code", ...extra}`: like `Plain` with extra fields (e.g. `existingSeats`).
    #[error("{2}")]
    PlainWith(StatusCode, Code, String, Value),
    /// `{"errors": [...]}`: field validation of the auth endpoints (`error` added for the frontend).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// `{"success": false, "message": msg, "code"}` (+ `error` mirroring it so the frontend shows it).
    #[error("{2}")]
    Failure(StatusCode, Code, String),
    /// 503 with `Retry-After`: a dependency is saturated or down; the client should retry.
    #[error("{message}")]
    Unavailable {
        code: Code,
        message: &'static str,
        retry_after_secs: u32,
    },
    /// 503 with `Retry-After`: the database or Redis failed under the request. Counted and logged
    /// when answered (`IntoResponse`), so the `From` conversions that build it stay pure.
    #[error("{0}")]
    Outage(Outage),
    /// 429 with `Retry-After`: a rate limit refused the request.
    #[error("rate limited")]
    TooManyRequests { retry_after_secs: u32 },
    /// Anything unexpected: logged with its cause, answered with a fixed message and no details.
    #[error("internal error: {source}")]
    Internal {
        source: anyhow::Error,
        message: Option<&'static str>,
    },
}

pub const MSG_DB_BUSY: &str = "요청이 많아 잠시 처리할 수 없습니다. 잠시 후 다시 시도해주세요.";
pub const MSG_REDIS_DOWN: &str =
    "일시적으로 서비스를 이용할 수 없습니다. 잠시 후 다시 시도해주세요.";
const MSG_INTERNAL: &str = "서버 오류가 발생했습니다.";

impl Error {
    pub fn bad_request(code: Code, msg: impl Into<String>) -> Self {
        Self::Plain(StatusCode::BAD_REQUEST, code, msg.into())
    }
    pub fn not_found(code: Code, msg: impl Into<String>) -> Self {
        Self::Plain(StatusCode::NOT_FOUND, code, msg.into())
    }
    pub fn forbidden(code: Code, msg: impl Into<String>) -> Self {
        Self::Plain(StatusCode::FORBIDDEN, code, msg.into())
    }
    pub fn unauthorized(code: Code, msg: impl Into<String>) -> Self {
        Self::Plain(StatusCode::UNAUTHORIZED, code, msg.into())
    }
    /// `{success:false, message}` with 400: a business rule refused the request.
    pub fn rejected(code: Code, msg: impl Into<String>) -> Self {
        Self::Failure(StatusCode::BAD_REQUEST, code, msg.into())
    }
    /// 503 + `Retry-After`: the database pool is exhausted or the database unreachable.
    pub fn db_busy(retry_after_secs: u32) -> Self {
        Self::Unavailable {
            code: Code::DbBusy,
            message: MSG_DB_BUSY,
            retry_after_secs,
        }
    }
    /// 503 + `Retry-After`: a statement ran past `DB_STATEMENT_TIMEOUT_MS` and was cancelled.
    pub fn db_timeout(retry_after_secs: u32) -> Self {
        Self::Unavailable {
            code: Code::DbTimeout,
            message: MSG_DB_BUSY,
            retry_after_secs,
        }
    }
    /// 503 + `Retry-After`: this replica is at its limit for this kind of work (password hashing).
    pub fn server_busy(retry_after_secs: u32) -> Self {
        Self::Unavailable {
            code: Code::ServerBusy,
            message: MSG_DB_BUSY,
            retry_after_secs,
        }
    }
    /// 503 + `Retry-After`: Redis is unreachable.
    pub fn redis_down() -> Self {
        Self::Unavailable {
            code: Code::RedisUnavailable,
            message: MSG_REDIS_DOWN,
            retry_after_secs: 2,
        }
    }
    /// The stable code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Error::Plain(_, c, _) | Error::PlainWith(_, c, _, _) | Error::Failure(_, c, _) => *c,
            Error::Unavailable { code, .. } => *code,
            Error::Outage(o) => o.code(),
            Error::Validation(_) => Code::ValidationFailed,
            Error::TooManyRequests { .. } => Code::RateLimited,
            Error::Internal { .. } => Code::Internal,
        }
    }
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::Internal {
            source: source.into(),
            message: None,
        }
    }
}

/// Gives unexpected errors of one endpoint its contract message (`"이벤트 정보를 불러오는데 실패했습니다."`).
pub trait OrMessage<T> {
    fn or_message(self, message: &'static str) -> Result<T>;
}

impl<T> OrMessage<T> for Result<T> {
    fn or_message(self, message: &'static str) -> Result<T> {
        self.map_err(|e| match e {
            Error::Internal {
                source,
                message: None,
            } => Error::Internal {
                source,
                message: Some(message),
            },
            other => other,
        })
    }
}

/// SQLSTATEs of a statement or session the server ended for running or idling too long:
/// `query_canceled` (statement_timeout) and `idle_in_transaction_session_timeout`.
pub(crate) const TIMEOUT_SQLSTATES: &[&str] = &["57014", "25P03"];

/// SQLSTATEs of a transaction the server rolled back whole to end a conflict with another:
/// `deadlock_detected` and `serialization_failure`. Nothing of it happened; trying again may succeed.
pub(crate) const CONFLICT_SQLSTATES: &[&str] = &["40P01", "40001"];

/// A dependency failure a client should retry; what is counted and logged of it happens once, in
/// [`Outage::record`] when the error is answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Outage {
    /// No pooled connection came free within `DB_ACQUIRE_TIMEOUT_MS`.
    #[error("database pool timed out")]
    DbPoolTimedOut,
    /// The pool is closed or the connection failed.
    #[error("database unreachable")]
    DbUnreachable,
    /// The server cancelled a statement (`statement_timeout`) or ended an idle transaction.
    #[error("database statement timed out: {0}")]
    DbStatementTimeout(String),
    /// The server rolled the transaction back to end a deadlock or a serialization conflict.
    #[error("database transaction rolled back in a conflict: {0}")]
    DbConflict(String),
    #[error("redis unavailable: {0}")]
    Redis(String),
}

impl Outage {
    /// The outage a database error is, if it is one (else it is a bug or bad data: answered 500).
    pub fn of_db(e: &sqlx::Error) -> Option<Outage> {
        let sqlstate = |e: &sqlx::Error, states: &[&str]| match e {
            sqlx::Error::Database(db) => db.code().is_some_and(|c| states.contains(&c.as_ref())),
            _ => false,
        };
        match e {
            sqlx::Error::PoolTimedOut => Some(Outage::DbPoolTimedOut),
            sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Some(Outage::DbUnreachable),
            e if sqlstate(e, TIMEOUT_SQLSTATES) => Some(Outage::DbStatementTimeout(e.to_string())),
            e if sqlstate(e, CONFLICT_SQLSTATES) => Some(Outage::DbConflict(e.to_string())),
            _ => None,
        }
    }

    /// The 503 it is answered with.
    fn unavailable(&self) -> Error {
        match self {
            Outage::DbPoolTimedOut => Error::db_busy(1),
            Outage::DbUnreachable => Error::db_busy(2),
            Outage::DbStatementTimeout(_) => Error::db_timeout(1),
            Outage::DbConflict(_) => Error::db_busy(1),
            Outage::Redis(_) => Error::redis_down(),
        }
    }

    fn code(&self) -> Code {
        self.unavailable().code()
    }

    /// The log line of an answered outage, and the mark its answer carries to be counted.
    fn answered(&self) -> Option<AnsweredOutage> {
        match self {
            Outage::DbPoolTimedOut => Some(AnsweredOutage::PoolTimeout),
            Outage::DbUnreachable => None,
            Outage::DbStatementTimeout(e) => {
                tracing::warn!(error = %e, "database statement timed out");
                Some(AnsweredOutage::StatementTimeout)
            }
            Outage::DbConflict(e) => {
                tracing::warn!(error = %e, "database transaction rolled back in a conflict");
                None
            }
            Outage::Redis(e) => {
                tracing::warn!(error = %e, "redis unavailable");
                None
            }
        }
    }
}

/// A response extension: this answer reported a database timeout. The replica's request metrics
/// (`app::record_metrics`) count it: `tiketi_db_pool_timeouts` and `tiketi_db_statement_timeouts`
/// count answers, as their help texts say, not conversions a handler may recover from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredOutage {
    PoolTimeout,
    StatementTimeout,
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match Outage::of_db(&e) {
            Some(outage) => Error::Outage(outage),
            None => Error::internal(e),
        }
    }
}

impl From<fred::error::Error> for Error {
    fn from(e: fred::error::Error) -> Self {
        Error::Outage(Outage::Redis(e.to_string()))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code().as_str();
        match self {
            Error::Plain(status, _, msg) => {
                (status, Json(json!({ "error": msg, "code": code }))).into_response()
            }
            Error::PlainWith(status, _, msg, extra) => {
                let mut body = json!({ "error": msg, "code": code });
                if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
                    b.extend(extra);
                }
                (status, Json(body)).into_response()
            }
            Error::Validation(errors) => {
                // `value` of a password is never echoed back (the original did).
                let errors: Vec<FieldError> = errors
                    .into_iter()
                    .map(|mut e| {
                        if e.path == "password" {
                            e.value = None;
                        }
                        e
                    })
                    .collect();
                let first = errors.first().map(|e| e.path).unwrap_or("");
                let msg = match first {
                    "email" => "올바른 이메일 주소를 입력해주세요.",
                    "password" => "비밀번호는 6자 이상이어야 합니다.",
                    "name" => "이름을 입력해주세요.",
                    _ => "입력값이 올바르지 않습니다.",
                };
                (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "errors": errors, "error": msg, "code": code })),
                )
                    .into_response()
            }
            Error::Failure(status, code, msg) => failure(status, code, &msg),
            Error::Unavailable {
                code,
                message,
                retry_after_secs,
            } => {
                let mut r = failure(StatusCode::SERVICE_UNAVAILABLE, code, message);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            Error::Outage(outage) => {
                let answered = outage.answered();
                let mut r = outage.unavailable().into_response();
                if let Some(a) = answered {
                    r.extensions_mut().insert(a);
                }
                r
            }
            Error::TooManyRequests { retry_after_secs } => {
                let msg = "요청이 너무 많습니다. 잠시 후 다시 시도해주세요.";
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({ "error": msg, "code": code })),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            Error::Internal { source, message } => {
                tracing::error!(error = ?source, "request failed");
                failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Code::Internal,
                    message.unwrap_or(MSG_INTERNAL),
                )
            }
        }
    }
}

pub fn failure(status: StatusCode, code: Code, msg: &str) -> Response {
    (
        status,
        Json(json!({ "success": false, "message": msg, "error": msg, "code": code.as_str() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Converting is pure; the answer carries the mark the request metrics count.
    #[test]
    fn error_outage_is_marked_when_answered() {
        let e = Error::from(sqlx::Error::PoolTimedOut);
        assert_eq!(e.code(), Code::DbBusy);
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            r.extensions().get::<AnsweredOutage>(),
            Some(&AnsweredOutage::PoolTimeout)
        );
        let unreachable = Error::from(sqlx::Error::PoolClosed).into_response();
        assert_eq!(unreachable.extensions().get::<AnsweredOutage>(), None);
    }
}
