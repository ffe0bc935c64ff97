//! Request extractors that answer in the contract's shapes: the bearer token, the admin role, the
//! client address, path ids and query strings (bodies: `body`).

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts, Request},
    http::{header, request::Parts},
    middleware::Next,
    response::Response,
};
use uuid::Uuid;

use crate::{
    auth::{self, jwt::TokenError},
    error::{Code, Error},
    state::AppState,
};

pub const MSG_AUTH_REQUIRED: &str = "인증이 필요합니다.";
pub const MSG_INVALID_TOKEN: &str = "유효하지 않은 토큰입니다.";
pub const MSG_USER_GONE: &str = "사용자 정보를 찾을 수 없습니다. 다시 로그인해주세요.";
pub const MSG_ADMIN_ONLY: &str = "관리자 권한이 필요합니다.";

/// A path id, or the endpoint's exact 400 message.
pub fn path_id(raw: &str, message: &'static str) -> Result<Uuid, Error> {
    tiketi_core::ids::parse_uuid(raw).ok_or_else(|| Error::bad_request(Code::InvalidId, message))
}

/// The caller of a `user` route: claims of a valid token whose user still exists.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub role: String,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    /// 403 `관리자 권한이 필요합니다.` unless the token carries the admin role.
    pub fn require_admin(&self) -> Result<(), Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::forbidden(Code::AdminOnly, MSG_ADMIN_ONLY))
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let state = AppState::from_ref(state);
        let claims = verified_claims(&state, parts)?;
        // the role is the database's, not the token's (cached for seconds, see cache::memory::ROLE_TTL)
        let role = match state.local.roles.get(&claims.user_id) {
            Some(role) => role,
            None => {
                let role = auth::db::role_of(&state.db, claims.user_id).await?;
                state.local.roles.insert(claims.user_id, role.clone());
                role
            }
        };
        let Some(role) = role else {
            return Err(Error::unauthorized(Code::UserNotFound, MSG_USER_GONE));
        };
        let user = AuthUser {
            id: claims.user_id,
            email: claims.email,
            role,
        };
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// The caller of a buyer's hot path (seat hold, queue check): the user of a valid token, without
/// the user lookup `AuthUser` makes. At a sale's opening every buyer's first request would miss
/// the role cache, so that lookup would cost PostgreSQL one query per hold and per join. The hold
/// proves the user exists in its own statement (its reservation references the user: a deleted
/// user's hold is 401 `USER_NOT_FOUND`); a queue place of a deleted user buys nothing. A user the
/// role cache already knows to be gone is refused here, as by `AuthUser`.
#[derive(Debug, Clone, Copy)]
pub struct Buyer {
    pub id: Uuid,
}

impl<S> FromRequestParts<S> for Buyer
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(Buyer { id: user.id });
        }
        let state = AppState::from_ref(state);
        let claims = verified_claims(&state, parts)?;
        if let Some(None) = state.local.roles.get(&claims.user_id) {
            return Err(Error::unauthorized(Code::UserNotFound, MSG_USER_GONE));
        }
        Ok(Buyer { id: claims.user_id })
    }
}

/// The claims of the request's bearer token, checked (signature and expiry).
fn verified_claims(state: &AppState, parts: &Parts) -> Result<crate::auth::jwt::Claims, Error> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    // The original takes the second space-separated part and does not check the scheme.
    let token = header
        .split(' ')
        .nth(1)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::unauthorized(Code::AuthRequired, MSG_AUTH_REQUIRED))?;
    // 401 for expired and invalid tokens alike: the frontend logs out only on 401 (docs/wire-contract.md §9 #30).
    state.jwt.verify(token).map_err(|e| match e {
        TokenError::Expired => Error::unauthorized(Code::TokenExpired, MSG_INVALID_TOKEN),
        TokenError::Invalid => Error::unauthorized(Code::TokenInvalid, MSG_INVALID_TOKEN),
    })
}

/// Guards every `/api/admin/*` request (including unknown paths), as the original did.
pub async fn require_admin(
    user: AuthUser,
    mut req: Request,
    next: Next,
) -> Result<Response, Error> {
    user.require_admin()?;
    req.extensions_mut().insert(user);
    Ok(next.run(req).await)
}

/// The client's address: the TCP peer, or what trusted proxies forwarded (`client_ip`). Limits
/// count it under `client_ip::limit_key`.
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let config = &AppState::from_ref(state).config;
        Ok(ClientIp(crate::client_ip::resolve(
            peer,
            &parts.headers,
            &config.trusted_proxies.0,
            config.trusted_proxy_header,
        )))
    }
}

/// Query parameters as a map; never rejects (unknown or repeated keys: the last one wins).
pub struct QueryParams(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(QueryParams(
            form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        ))
    }
}
