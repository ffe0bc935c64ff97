//! The payment provider interface a real PSP plugs into, and the mock one TIKETI ships.
//!
//! The contract between the service and a provider, which the order of `payments::pay` relies on:
//! - `charge` is idempotent per key: the service keys every charge by the reservation id, so a
//!   retried, doubled or concurrent payment of one reservation is one charge (a real PSP's
//!   idempotency key, e.g. Stripe's `Idempotency-Key` header or Toss's `orderId`);
//! - the service charges only after the lifecycle allowed the payment, then captures it in the
//!   transaction that confirms the reservation; when that transaction refuses (the hold expired
//!   or was cancelled while the provider answered) or fails, it calls `refund` for the same key;
//! - a cancellation of a paid reservation calls `refund` after its commit.
//!
//! So every charge ends captured for a live hold or refunded. A provider that cannot refund at
//! once should queue the refund durably; the mock refunds in memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use rand::Rng;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct ProviderError(pub String);

pub trait Provider: Send + Sync {
    /// Charges `amount` for the reservation `key`; the same key never charges twice.
    fn charge<'a>(
        &'a self,
        key: Uuid,
        amount: i32,
        method: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// Refunds the charge of `key` (nothing if there is none, or it is refunded already).
    fn refund(&self, key: Uuid) -> BoxFuture<'_, Result<(), ProviderError>>;
    /// The charges made so far, where the provider can tell (the mock's ledger, for tests).
    fn ledger(&self) -> Option<HashMap<Uuid, Charge>> {
        None
    }
}

/// One charge of the mock provider's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
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
}

impl Provider for MockProvider {
    fn charge<'a>(
        &'a self,
        key: Uuid,
        amount: i32,
        method: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let delay = rand::rng().random_range(self.delay_ms.0..=self.delay_ms.1);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut ledger = self
                .ledger
                .lock()
                .map_err(|_| ProviderError("ledger poisoned".into()))?;
            ledger.entry(key).or_insert_with(|| Charge {
                amount,
                method: method.to_string(),
                refunded: false,
            });
            Ok(())
        })
    }

    fn refund(&self, key: Uuid) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let mut ledger = self
                .ledger
                .lock()
                .map_err(|_| ProviderError("ledger poisoned".into()))?;
            if let Some(c) = ledger.get_mut(&key) {
                c.refunded = true;
            }
            Ok(())
        })
    }

    fn ledger(&self) -> Option<HashMap<Uuid, Charge>> {
        self.ledger.lock().ok().map(|l| l.clone())
    }
}
