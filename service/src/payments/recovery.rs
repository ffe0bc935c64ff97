//! The payment recovery job: resolves the intents no request finished — a replica died between the
//! charge and the confirmation, a confirmation failed and the buyer never retried, a refund failed.
//! Every `PAYMENT_RECOVERY_SECONDS`, one replica at a time (Redis lease), it takes the unresolved
//! intents untouched for `PAYMENT_RECOVERY_GRACE_SECONDS` (longer than any provider call, so it never
//! races a request still waiting on the provider) and decides each with `intent::recovery`:
//! - `created`: asks the provider what it holds for the key: nothing → `failed`; a charge → as
//!   `charged`; a refunded charge → `refunded`;
//! - `charged`: under the reservation's row lock, confirms a hold that can still be paid (the buyer
//!   asked to pay and the money is taken), otherwise marks it for refund;
//! - `refund_pending`: refunds it (again: refunds are idempotent) and records `refunded`.
//!
//! Two runners at once (a lease that lapsed mid-round) are harmless: every move is a
//! compare-and-set on the intent's state under row locks, and provider calls are idempotent.

use std::time::Duration;

use super::{
    db,
    intent::{self, Move, Recovery, State},
    provider::Held,
};
use crate::{
    effects,
    lease::Lease,
    metrics::KindLabels,
    reservations::{self, db as rdb, lifecycle},
    state::AppState,
};

const BATCH: i64 = 100;

pub async fn run(state: AppState) {
    let period = Duration::from_secs(state.config.payment_recovery_seconds.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease = Lease::new(&state, "payment-recovery", period * 3);
    loop {
        tick.tick().await;
        if !lease.hold(&state).await {
            continue;
        }
        if let Err(e) = run_once(&state).await {
            tracing::warn!(error = %e, "payment recovery failed; retrying next tick");
        }
    }
}

/// Counts of one recovery round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub confirmed: u64,
    pub refunded: u64,
    pub failed: u64,
    /// Left for a later round (the provider could not answer).
    pub unresolved: u64,
}

/// One round over every stale unresolved intent. Safe to call from any replica at any time.
pub async fn run_once(state: &AppState) -> Result<Round, crate::error::Error> {
    let grace = state.config.payment_recovery_grace_seconds as f64;
    let mut round = Round::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let stale = db::stale_intents(&state.db, grace, BATCH).await?;
        let fresh: Vec<_> = stale.into_iter().filter(|i| seen.insert(i.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for i in &fresh {
            match resolve(state, i).await {
                Ok(Some(State::Captured)) => round.confirmed += 1,
                Ok(Some(State::Refunded)) => round.refunded += 1,
                Ok(Some(State::Failed)) => round.failed += 1,
                Ok(_) => round.unresolved += 1,
                Err(e) => {
                    tracing::warn!(error = %e, intent = %i.id, "payment intent not recovered this round");
                    round.unresolved += 1;
                }
            }
        }
    }
    if round != Round::default() {
        state
            .metrics
            .job_runs
            .get_or_create(&KindLabels {
                kind: "payment_recovery",
            })
            .inc();
        tracing::info!(?round, "payment intents recovered");
    }
    Ok(round)
}

/// Resolves one intent as far as it can; returns the state it ends in.
async fn resolve(
    state: &AppState,
    i: &db::IntentRow,
) -> Result<Option<State>, crate::error::Error> {
    let mut now = i.state()?;
    if intent::recovery(now, None) == Recovery::AskProvider {
        let mv = match super::ask_provider(state, i.id).await {
            Ok(Held::Nothing) => Move::NotCharged,
            Ok(Held::Charged) => Move::Charged,
            Ok(Held::Refunded) => Move::Refunded,
            Err(e) => {
                tracing::warn!(error = %e, intent = %i.id, "provider lookup failed");
                return Ok(None);
            }
        };
        // only if still stale: a request that took the intent up meanwhile keeps it
        let grace = state.config.payment_recovery_grace_seconds as f64;
        match db::move_if_stale(&state.db, i.id, mv, grace).await? {
            Some(s) => now = s,
            None => return Ok(None),
        }
    }
    if now == State::Charged {
        now = confirm_or_refund(state, i).await?;
    }
    if now == State::RefundPending {
        super::refund::refund_now(state, i.id).await;
        return Ok(db::lock_intent(&state.db, i.id).await?);
    }
    Ok(Some(now))
}

/// A `charged` intent: confirms its reservation if the lifecycle allows, else marks it for refund;
/// returns the intent's state afterwards.
async fn confirm_or_refund(
    state: &AppState,
    i: &db::IntentRow,
) -> Result<State, crate::error::Error> {
    let mut tx = state.db.begin().await?;
    let r = rdb::lock_reservation(&mut *tx, i.reservation_id, None).await?;
    let current = r.as_ref().map(|r| r.current()).transpose()?;
    let locked = db::lock_intent(&mut *tx, i.id).await?;
    if locked != Some(State::Charged) {
        // another actor moved it meanwhile
        return Ok(locked.unwrap_or(State::Failed));
    }
    let (Recovery::Confirm, Some(r), Some(now)) =
        (intent::recovery(State::Charged, current), r, current)
    else {
        db::make_move(&mut tx, i.id, Move::Refund).await?;
        tx.commit().await?;
        return Ok(State::RefundPending);
    };
    let t = lifecycle::transition(now, lifecycle::Change::Pay)?;
    let notices = match reservations::apply(&mut tx, state, &r, t, Some(&i.method)).await {
        Ok((notices, _)) => notices,
        // its seats are no longer its own: the hold cannot be sold, the money goes back
        Err(e) if e.code() == crate::error::Code::HoldExpired => {
            drop(tx);
            return Ok(db::move_now(&state.db, i.id, Move::Refund)
                .await?
                .unwrap_or(State::Failed));
        }
        Err(e) => return Err(e),
    };
    db::make_move(&mut tx, i.id, Move::Capture).await?;
    tx.commit().await?;
    tracing::info!(intent = %i.id, reservation = %r.id, "recovered charge confirmed its hold");
    effects::apply(state, reservations::after(&r, t, notices)).await;
    Ok(State::Captured)
}
