//! Password hashing: argon2id for new hashes; bcrypt (`$2a$`/`$2b$`/`$2y$`) accepted so the original
//! user table migrates as is. Both run on the blocking pool: they cost tens of milliseconds of CPU.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

pub async fn verify(password: String, stored: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        if stored.starts_with("$2") {
            return Ok(bcrypt::verify(password.as_bytes(), &stored)?);
        }
        let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

/// A hash to verify against when the account does not exist, so both cases take the same time.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Zc0sNWm2IRz2o9Ut1ZbxYUxmyoNSkdZQZJs1/fyGJP8";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_argon2_and_bcrypt() {
        let h = hash("secret1".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("secret1".into(), h.clone()).await.unwrap());
        assert!(!verify("secret2".into(), h).await.unwrap());

        let b = bcrypt::hash("admin123", 4).unwrap();
        assert!(verify("admin123".into(), b.clone()).await.unwrap());
        assert!(!verify("admin124".into(), b).await.unwrap());
        assert!(!verify("x".into(), DUMMY_HASH.into()).await.unwrap());
    }
}
