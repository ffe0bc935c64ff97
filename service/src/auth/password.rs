//! Password hashing: argon2id for new hashes; bcrypt (`$2a$`/`$2b$`/`$2y$`) accepted so the original
//! user table migrates as is. Both run on the blocking pool: they cost tens of milliseconds of CPU,
//! and an argon2 hash with the default parameters (m = 19 MiB) allocates 19 MiB while it runs. Request
//! paths therefore go through [`Hasher`], which bounds how many run at once.

use std::{sync::Arc, time::Duration};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Hashes a password now (start-up work such as the admin account; requests use [`Hasher::hash`]).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

/// Verifies a password now (requests use [`Hasher::verify`]).
pub async fn verify(password: String, stored: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || verify_blocking(&password, &stored)).await?
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

fn verify_blocking(password: &str, stored: &str) -> anyhow::Result<bool> {
    if stored.starts_with("$2") {
        return Ok(bcrypt::verify(password.as_bytes(), stored)?);
    }
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// At most `PASSWORD_HASH_CONCURRENCY` hashes at once per process, so a burst of logins at a sale's
/// opening cannot allocate 19 MiB each until the pod is OOM-killed. Callers wait for a slot up to
/// `PASSWORD_HASH_WAIT_MS` (the semaphore is FIFO), then get 503 `SERVER_BUSY` + `Retry-After`.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl Hasher {
    pub fn new(concurrency: u32, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            wait,
        }
    }

    /// A hashing slot, or `SERVER_BUSY` after the bounded wait (counted in
    /// `tiketi_password_hash_refused_total`).
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // the semaphore is never closed; treat it like a full one all the same
            Ok(Err(_)) | Err(_) => {
                crate::metrics::global().password_hash_refused.inc();
                Err(Error::server_busy(1))
            }
        }
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let slot = self.slot().await?;
        // the slot moves into the blocking task: a client that hangs up does not free it early,
        // the memory is in use until the hash finishes
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            hash_blocking(&password)
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
    }

    pub async fn verify(&self, password: String, stored: String) -> Result<bool> {
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_blocking(&password, &stored)
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
    }
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

    #[tokio::test]
    async fn password_hasher_refuses_beyond_its_slots_then_recovers() {
        let hasher = Hasher::new(1, Duration::from_millis(20));
        let held = hasher.slot().await.unwrap();
        let refused = hasher.hash("secret1".into()).await.unwrap_err();
        assert_eq!(refused.code(), crate::codes::Code::ServerBusy);
        drop(held);
        let h = hasher.hash("secret1".into()).await.unwrap();
        assert!(hasher.verify("secret1".into(), h).await.unwrap());
    }
}
