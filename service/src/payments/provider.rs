//! The payment provider interface a real PSP plugs into, and the mock one TIKETI ships.
//! `docs/payments.md` describes how an adapter for a real PSP maps onto it.
//!
//! What the service relies on (see `payments::pay` and `intent.rs`):
//! - every call names the payment intent's id as its key; `charge` is idempotent per key (a retried
//!   or concurrent charge of one key is one charge; once refunded, a charge of the same key replays
//!   the refunded charge, as real PSPs do — which is why the service never reuses a key after a
//!   refund);
//! - `refund` is idempotent per key and succeeds when there is nothing to refund;
//! - `lookup` says what the provider holds for a key, so an intent whose charge answer was lost (a
//!   timeout, a replica that died) can be resolved later;
//! - `Declined` means the provider took nothing; any other failure may have charged.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use rand::Rng;
use uuid::Uuid;

/// How long a provider call may take. The recovery job leaves intents alone for longer than this
/// (`PAYMENT_RECOVERY_GRACE_SECONDS`), so it never races a request still waiting on the provider.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the charge and took nothing (card declined, limit, fraud check).
    #[error("payment provider declined: {0}")]
    Declined(String),
    /// The call failed or its answer was lost: the provider may or may not have acted on it.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

/// A charge request.
#[derive(Debug, Clone, Copy)]
pub struct ChargeRequest<'a> {
    /// The payment intent's id: the idempotency key.
    pub key: Uuid,
    /// The reservation paid for (the PSP's order reference).
    pub reference: Uuid,
    pub amount: i32,
    pub method: &'a str,
}

/// What the provider holds for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// No charge under this key.
    Nothing,
    /// A charge that is not refunded.
    Charged,
    /// A charge that was refunded.
    Refunded,
}

pub trait Provider: Send + Sync {
    /// Charges `req.amount` under `req.key`; the same key never charges twice.
    fn charge<'a>(&'a self, req: ChargeRequest<'a>) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// Refunds the charge of `key` (success when there is none, or it is refunded already).
    fn refund(&self, key: Uuid) -> BoxFuture<'_, Result<(), ProviderError>>;
    /// What the provider holds for `key`.
    fn lookup(&self, key: Uuid) -> BoxFuture<'_, Result<Held, ProviderError>>;
    /// The charges made so far, where the provider can tell (the mock's ledger, for tests).
    fn ledger(&self) -> Option<HashMap<Uuid, Charge>> {
        None
    }
}

/// One charge of the mock provider's ledger, under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The reservation it paid for.
    pub reference: Uuid,
    pub amount: i32,
    pub method: String,
    pub refunded: bool,
}

/// Simulates a PSP: a uniformly random delay per charge, an in-memory ledger keyed by idempotency
/// key (readable by tests).
#[derive(Clone)]
pub struct MockProvider {
    delay_ms: (u64, u64),
    ledger: Arc<Mutex<HashMap<Uuid, Charge>>>,
}

impl MockProvider {
    pub fn new(delay_min_ms: u64, delay_max_ms: u64) -> Self {
        Self {
            delay_ms: (delay_min_ms, delay_max_ms.max(delay_min_ms)),
            ledger: Arc::default(),
        }
    }

    fn ledger_lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<Uuid, Charge>>, ProviderError> {
        self.ledger
            .lock()
            .map_err(|_| ProviderError::Unavailable("ledger poisoned".into()))
    }
}

impl Provider for MockProvider {
    fn charge<'a>(&'a self, req: ChargeRequest<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let delay = rand::rng().random_range(self.delay_ms.0..=self.delay_ms.1);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            // like a PSP: the first request of a key decides; later ones replay it, refunded or not
            self.ledger_lock()?
                .entry(req.key)
                .or_insert_with(|| Charge {
                    reference: req.reference,
                    amount: req.amount,
                    method: req.method.to_string(),
                    refunded: false,
                });
            Ok(())
        })
    }

    fn refund(&self, key: Uuid) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            if let Some(c) = self.ledger_lock()?.get_mut(&key) {
                c.refunded = true;
            }
            Ok(())
        })
    }

    fn lookup(&self, key: Uuid) -> BoxFuture<'_, Result<Held, ProviderError>> {
        Box::pin(async move {
            Ok(match self.ledger_lock()?.get(&key) {
                None => Held::Nothing,
                Some(c) if c.refunded => Held::Refunded,
                Some(_) => Held::Charged,
            })
        })
    }

    fn ledger(&self) -> Option<HashMap<Uuid, Charge>> {
        self.ledger.lock().ok().map(|l| l.clone())
    }
}
