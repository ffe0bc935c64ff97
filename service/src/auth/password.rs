//! Password hashing: argon2id for new hashes; bcrypt (`$2a$`/`$2b$`/`$2y$`) accepted so the original
//! user table migrates as is. Both run on the blocking pool: they cost tens of milliseconds of CPU,
//! and an argon2 hash with the default parameters (m = 19 MiB) needs 19 MiB of work memory. Request
//! paths therefore go through [`Hasher`], which bounds how many run at once and reuses that memory.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Argon2 work memory. Each hashing slot keeps one buffer for the life of the process: allocating and
/// freeing 19 MiB per hash makes glibc raise its mmap threshold to 19 MiB after the first free, so
/// later buffers come from per-thread arenas that are never given back — a burst of 1,000
/// registrations grew one replica to 1.2 GiB RSS with only 4 hashes at once, and the pod was
/// OOM-killed at the chart's 512 Mi (found by `make rehearsal`). Reused, the same burst peaks at
/// about 110 MiB.
type Memory = Vec<Block>;

fn memory_for(params: &Params) -> Memory {
    vec![Block::default(); params.block_count()]
}

/// Hashes a password now (start-up work such as the admin account; requests use [`Hasher::hash`]).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&mut Vec::new(), &password)).await?
}

/// Verifies a password now (requests use [`Hasher::verify`]).
pub async fn verify(password: String, stored: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || verify_blocking(&mut Vec::new(), &password, &stored))
        .await?
}

/// argon2id with the crate's default parameters, in `memory`; the PHC string the crate's own
/// `hash_password` would write.
fn hash_blocking(memory: &mut Memory, password: &str) -> anyhow::Result<String> {
    let argon = Argon2::default();
    let params = argon.params();
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(memory, params, |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
    })
    .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("argon2: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `stored` (bcrypt, or argon2 with the parameters `stored` names). A
/// stored hash that cannot be parsed is an error; one that parses but cannot be computed (unknown
/// algorithm, bad parameters) does not match, as with the crate's `verify_password`.
fn verify_blocking(memory: &mut Memory, password: &str, stored: &str) -> anyhow::Result<bool> {
    if stored.starts_with("$2") {
        return Ok(bcrypt::verify(password.as_bytes(), stored)?);
    }
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Ok(false);
    };
    let argon = (|| {
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        Some(Argon2::new(
            algorithm,
            version,
            Params::try_from(&parsed).ok()?,
        ))
    })();
    let Some(argon) = argon else {
        return Ok(false);
    };
    let mut out = vec![0u8; expected.len()];
    let computed = with_memory(memory, argon.params(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
    });
    // `Output`'s equality is constant-time
    Ok(computed.is_ok() && Output::new(&out).is_ok_and(|o| o == *expected))
}

/// Runs `f` on work memory for `params`: the slot's buffer when it is large enough (it grows to the
/// default parameters once), a temporary one for a stored hash with a larger memory cost.
fn with_memory<T>(memory: &mut Memory, params: &Params, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let need = params.block_count();
    if need > Argon2::default().params().block_count() {
        return f(&mut memory_for(params));
    }
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    f(&mut memory[..need])
}

/// At most `PASSWORD_HASH_CONCURRENCY` hashes at once per process, so a burst of logins at a sale's
/// opening cannot take 19 MiB each until the pod is OOM-killed; each slot reuses its work memory.
/// Callers wait for a slot up to `PASSWORD_HASH_WAIT_MS` (the semaphore is FIFO), then get 503
/// `SERVER_BUSY` + `Retry-After`.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    /// Work memory of the slots not in use (at most one buffer per slot ever exists).
    memory: Arc<Mutex<Vec<Memory>>>,
    wait: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A hashing slot with its work memory; dropping it gives both back.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    memory: Memory,
    pool: Arc<Mutex<Vec<Memory>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(memory);
    }
}

impl Hasher {
    pub fn new(concurrency: u32, wait: Duration, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            memory: Arc::default(),
            wait,
            metrics,
        }
    }

    /// A hashing slot, or `SERVER_BUSY` after the bounded wait (counted in
    /// `tiketi_password_hash_refused_total`).
    pub async fn slot(&self) -> Result<Slot> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                // an empty Vec until first use: `with_memory` sizes it
                let memory = self
                    .memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop()
                    .unwrap_or_default();
                Ok(Slot {
                    _permit: permit,
                    memory,
                    pool: self.memory.clone(),
                })
            }
            // the semaphore is never closed; treat it like a full one all the same
            Ok(Err(_)) | Err(_) => {
                self.metrics.password_hash_refused.inc();
                Err(Error::server_busy(1))
            }
        }
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let mut slot = self.slot().await?;
        // the slot moves into the blocking task: a client that hangs up does not free it early,
        // the memory is in use until the hash finishes
        tokio::task::spawn_blocking(move || hash_blocking(&mut slot.memory, &password))
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)
    }

    pub async fn verify(&self, password: String, stored: String) -> Result<bool> {
        let mut slot = self.slot().await?;
        tokio::task::spawn_blocking(move || verify_blocking(&mut slot.memory, &password, &stored))
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
    async fn password_hashes_are_the_crates_own_phc_strings_both_ways() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // ours verifies with the crate's verifier
        let ours = hash("secret1".into()).await.unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        Argon2::default()
            .verify_password(b"secret1", ours.as_str())
            .unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"secret2", ours.as_str())
                .is_err()
        );
        // the crate's, with its defaults or other parameters (argon2i, v=16, m=8 MiB, p=2), verify with ours
        let theirs = Argon2::default()
            .hash_password(b"secret3")
            .unwrap()
            .to_string();
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(8192, 1, 2, None).unwrap(),
        )
        .hash_password(b"secret4")
        .unwrap()
        .to_string();
        let hasher = Hasher::new(1, Duration::from_secs(5), Arc::default());
        for (stored, right) in [(theirs, "secret3"), (other, "secret4")] {
            assert!(hasher.verify(right.into(), stored.clone()).await.unwrap());
            assert!(!hasher.verify("wrong".into(), stored).await.unwrap());
        }
        // a hash with a larger memory cost than the slot's buffer (m = 32 MiB) still verifies
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"secret5")
        .unwrap()
        .to_string();
        assert!(hasher.verify("secret5".into(), big).await.unwrap());
        assert!(hasher.verify("secret1".into(), ours).await.unwrap());
    }

    #[tokio::test]
    async fn password_hasher_refuses_beyond_its_slots_then_recovers() {
        let hasher = Hasher::new(1, Duration::from_millis(20), Arc::default());
        let held = hasher.slot().await.unwrap();
        let refused = hasher.hash("secret1".into()).await.unwrap_err();
        assert_eq!(refused.code(), crate::codes::Code::ServerBusy);
        drop(held);
        let h = hasher.hash("secret1".into()).await.unwrap();
        assert!(hasher.verify("secret1".into(), h).await.unwrap());
    }
}
