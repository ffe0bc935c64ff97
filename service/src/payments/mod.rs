//! Payments as a durable state machine (`intent.rs`). A payment of a reservation:
//! 1. records an intent (or joins the one a concurrent or earlier attempt left open) before the
//!    provider is called, its id being the provider's idempotency key;
//! 2. charges it (no DB connection or lock held meanwhile) and records `charged`;
//! 3. in one transaction, under the reservation's row lock, confirms the reservation if the
//!    lifecycle still allows it and moves the intent to `captured`; if the hold ended meanwhile the
//!    intent moves to `refund_pending` instead and is refunded after the commit.
//!
//! A failure between the steps leaves the intent where it was: a retry joins it (same key: the
//! provider replays the charge it holds) and the recovery job (`recovery.rs`) resolves what nobody
//! retries. A transient failure never refunds a charge that could still confirm, and a refunded
//! intent is never reused: the next attempt records a new intent with a new key.

pub mod db;
pub mod http;
pub mod intent;
pub mod operations;
pub mod provider;
pub mod recovery;
pub mod refund;

use serde_json::{Value, json};
use tiketi_core::time::to_wire;
use uuid::Uuid;

use crate::{
    error::{Code, Error},
    reservations::{
        self, db as rdb,
        lifecycle::{self, Change},
    },
    state::AppState,
};
use intent::{Move, State};
pub use provider::PROVIDER_TIMEOUT;
use provider::{ChargeRequest, Held, ProviderError};
use refund::refund_now;

fn not_found() -> Error {
    Error::rejected(Code::ReservationNotFound, "예약을 찾을 수 없습니다.")
}

pub const METHODS: &[(&str, &str, &str)] = &[
    ("naver_pay", "네이버페이", "네이버페이로 간편 결제"),
    ("kakao_pay", "카카오페이", "카카오페이로 간편 결제"),
    ("bank_transfer", "계좌이체", "계좌이체로 결제"),
];

pub fn method_name(id: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .find(|(m, _, _)| *m == id)
        .map(|(_, name, _)| *name)
}

fn payment_failed() -> Error {
    Error::Failure(
        axum::http::StatusCode::BAD_GATEWAY,
        Code::PaymentFailed,
        "결제에 실패했습니다. 잠시 후 다시 시도해주세요.".into(),
    )
}

fn already_paid() -> Error {
    Error::rejected(
        Code::AlreadyPaid,
        "Payment already completed for this reservation",
    )
}

/// Pays the caller's reservation with `method` (see the module comment for the steps).
pub async fn pay(
    state: &AppState,
    user_id: Uuid,
    reservation_id: Uuid,
    method: &str,
) -> Result<Value, Error> {
    let found = rdb::get_reservation(&state.db, reservation_id, user_id).await?;
    let r = found.ok_or_else(not_found)?;
    // refused before anything is recorded or charged: nothing is charged for a dead hold
    lifecycle::transition(r.current()?, Change::Pay)?;

    let intent = open_intent(state, &r, method).await?;
    match intent.state()? {
        // paid meanwhile (after the read above) on this very intent
        State::Captured => return Err(already_paid()),
        State::Created | State::Charged => {}
        other => {
            return Err(Error::internal(anyhow::anyhow!(
                "open intent {} in state {other:?}",
                intent.id
            )));
        }
    }
    // the recovery job leaves an intent alone for its grace after this, so it never gives up a
    // charge this request is still waiting on (a retry that joined an older intent included)
    if !db::drive(&state.db, intent.id).await? {
        return Err(payment_failed());
    }
    charge(state, &intent).await?;
    // durable before the confirmation: the provider holds this money
    match db::move_now(&state.db, intent.id, Move::Charged).await? {
        Some(State::Charged) => {}
        Some(State::Captured) => return Err(already_paid()),
        // given up meanwhile (the recovery job found nothing charged, or refunded it): the charge
        // just made can never confirm, so it goes back; the next attempt records a new intent.
        // Only these states: a charge is never given back while its intent could still capture.
        Some(State::Failed | State::RefundPending | State::Refunded) => {
            refund_now(state, intent.id).await;
            return Err(payment_failed());
        }
        other => {
            return Err(Error::internal(anyhow::anyhow!(
                "charged intent {} found {other:?}; left to the recovery job",
                intent.id
            )));
        }
    }
    capture(state, user_id, &intent).await
}

/// The reservation's open intent, recorded now when there is none.
async fn open_intent(
    state: &AppState,
    r: &rdb::LockedReservation,
    method: &str,
) -> Result<db::IntentRow, Error> {
    for _ in 0..3 {
        let opened = db::open_intent(&state.db, Uuid::new_v4(), r.id, r.total_amount, method);
        if let Some(intent) = opened.await? {
            return Ok(intent);
        }
    }
    Err(Error::internal(anyhow::anyhow!(
        "no open payment intent for reservation {} after three tries",
        r.id
    )))
}

/// Asks the provider to charge the intent. A declined charge ends the intent (`failed`); any other
/// failure may have charged, so the intent stays `created` for a retry or the recovery job.
async fn charge(state: &AppState, intent: &db::IntentRow) -> Result<(), Error> {
    let req = ChargeRequest {
        key: intent.id,
        reference: intent.reservation_id,
        amount: intent.amount,
        method: &intent.method,
    };
    let answer = tokio::time::timeout(PROVIDER_TIMEOUT, state.payments.charge(req)).await;
    let err = match answer {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => ProviderError::Unavailable("timed out".into()),
    };
    tracing::warn!(error = %err, intent = %intent.id, reservation = %intent.reservation_id, "charge failed");
    if matches!(err, ProviderError::Declined(_)) {
        db::move_now(&state.db, intent.id, Move::NotCharged).await?;
    }
    Err(payment_failed())
}

/// Confirms the reservation on the charged intent, under the reservation's row lock, if the
/// lifecycle still allows it; otherwise gives the charge back. A failure of this transaction
/// (pool, statement timeout, commit) changes nothing: the intent stays `charged` for a retry.
async fn capture(state: &AppState, user_id: Uuid, intent: &db::IntentRow) -> Result<Value, Error> {
    let mut tx = state.db.begin().await?;
    let r = rdb::lock_reservation(&mut *tx, intent.reservation_id, Some(user_id)).await?;
    let r = r.ok_or_else(not_found)?;
    let decided = lifecycle::transition(r.current()?, Change::Pay);
    let intent_state = db::lock_intent(&mut *tx, intent.id).await?;
    let t = match (decided, intent_state) {
        // a concurrent request of the same intent confirmed it
        (_, Some(State::Captured)) => return Err(already_paid()),
        (Ok(t), Some(State::Charged)) => t,
        // refunded meanwhile (the recovery job): never confirm on money given back
        (Ok(_), _) => return Err(payment_failed()),
        // the hold ended (or was cancelled) while the provider answered: never keep money for a
        // seat the buyer does not get
        (Err(refusal), _) => {
            let moved = db::make_move(&mut tx, intent.id, Move::Refund).await?;
            tx.commit().await?;
            if moved == Some(State::RefundPending) {
                refund_now(state, intent.id).await;
            }
            return Err(refusal);
        }
    };
    let paid_at = match reservations::apply(&mut tx, state, &r, t, Some(&intent.method)).await {
        Ok((_, paid_at)) => paid_at,
        // a seat of the hold is no longer its own: the hold cannot be sold, the money goes back
        Err(e) if e.code() == Code::HoldExpired => {
            drop(tx);
            if db::move_now(&state.db, intent.id, Move::Refund).await? == Some(State::RefundPending)
            {
                refund_now(state, intent.id).await;
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if db::make_move(&mut tx, intent.id, Move::Capture).await? != Some(State::Captured) {
        return Err(Error::internal(anyhow::anyhow!(
            "intent {} did not capture under its lock",
            intent.id
        )));
    }
    let details = db::PaidDetails {
        event: db::event(&mut *tx, r.event_id).await?,
        seats: db::seats(&mut *tx, r.id).await?,
    };
    tx.commit().await?;
    let seats = details.seats.len() as u64;
    if let Some(event_id) = r.event_id.filter(|_| seats > 0) {
        state
            .metrics
            .tickets_sold
            .get_or_create(&crate::metrics::SoldLabels {
                event_id: event_id.to_string(),
                ticket_type: "seat".into(),
            })
            .inc_by(seats);
    }

    let method = intent.method.as_str();
    Ok(json!({
        "success": true,
        "message": "결제가 완료되었습니다.",
        "payment": {
            "reservationId": r.id,
            "reservationNumber": r.reservation_number,
            "paymentMethod": method_name(method).unwrap_or(method),
            "totalAmount": r.total_amount,
            "paidAt": to_wire(&paid_at),
        },
        "reservation": details,
    }))
}

/// What the provider holds for an intent whose charge answer was lost (recovery).
pub async fn ask_provider(state: &AppState, intent_id: Uuid) -> Result<Held, ProviderError> {
    tokio::time::timeout(PROVIDER_TIMEOUT, state.payments.lookup(intent_id))
        .await
        .unwrap_or_else(|_| Err(ProviderError::Unavailable("timed out".into())))
}
