//! HS256 tokens with the original's claims `{userId, email, role, iat, exp}` and 7-day lifetime.

use chrono::Utc;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode, errors::ErrorKind,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const TOKEN_LIFETIME_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: Uuid,
    pub email: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        // The algorithm is pinned: a token claiming any other `alg` is rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(&self, user_id: Uuid, email: &str, role: &str) -> anyhow::Result<String> {
        let iat = Utc::now().timestamp();
        let claims = Claims {
            user_id,
            email: email.to_string(),
            role: role.to_string(),
            iat,
            exp: iat + TOKEN_LIFETIME_SECS,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// Signs arbitrary claims (tests use it to forge expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_roundtrip_and_failures() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let t = keys.issue(id, "a@b.co", "user").unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(
            (c.user_id, c.role.as_str(), c.exp - c.iat),
            (id, "user", TOKEN_LIFETIME_SECS)
        );

        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(&t).unwrap_err(), TokenError::Invalid);
        assert_eq!(keys.verify("garbage").unwrap_err(), TokenError::Invalid);

        let old = Claims {
            exp: Utc::now().timestamp() - 10,
            ..c
        };
        assert_eq!(
            keys.verify(&keys.sign(&old).unwrap()).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn jwt_rejects_alg_none() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        // {"alg":"none","typ":"JWT"} . {"userId":...,"exp":9999999999}
        let forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VySWQiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiLCJlbWFpbCI6ImFAYi5jbyIsInJvbGUiOiJhZG1pbiIsImlhdCI6MCwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(keys.verify(forged).unwrap_err(), TokenError::Invalid);
    }
}
