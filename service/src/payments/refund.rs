//! Refunds at the provider of intents a committed change marked `refund_pending`. Apart from the
//! payment steps (`payments::pay`), which confirm through `reservations`: the after-commit path
//! (`effects::apply`) refunds from here without depending on them.

use uuid::Uuid;

use super::db;
use super::intent::{Move, State};
use super::provider::PROVIDER_TIMEOUT;
use crate::state::AppState;

/// Refunds an intent in `refund_pending` at the provider and records it `refunded`. A failure
/// leaves it `refund_pending`: the recovery job asks again.
pub async fn refund_now(state: &AppState, intent_id: Uuid) {
    // never the money of an intent that holds, or may still take, a confirmation
    match db::lock_intent(&state.db, intent_id).await {
        Ok(Some(State::RefundPending | State::Refunded | State::Failed)) => {}
        Ok(other) => {
            tracing::error!(intent = %intent_id, state = ?other, "refund of a live intent refused");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, intent = %intent_id, "refund not made; the recovery job retries it");
            return;
        }
    }
    let asked = tokio::time::timeout(PROVIDER_TIMEOUT, state.payments.refund(intent_id)).await;
    let refunded = match asked {
        Ok(Ok(())) => db::move_now(&state.db, intent_id, Move::Refunded).await,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, intent = %intent_id, "refund failed; the recovery job retries it");
            return;
        }
        Err(_) => {
            tracing::warn!(intent = %intent_id, "refund timed out; the recovery job retries it");
            return;
        }
    };
    if let Err(e) = refunded {
        tracing::warn!(error = %e, intent = %intent_id, "refund made but not recorded; the recovery job records it");
    }
}

/// Makes the refunds a committed cancellation of the reservation recorded (`Effects::refund`).
pub async fn refund_reservation(state: &AppState, reservation_id: Uuid) {
    match db::refunds_pending_of(&state.db, reservation_id).await {
        Ok(ids) => {
            for id in ids {
                refund_now(state, id).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, reservation = %reservation_id, "pending refunds not read; the recovery job makes them");
        }
    }
}
