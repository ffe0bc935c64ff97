//! Mock payments: a simulated provider call (500–1500 ms, made without holding a DB connection or a
//! lock), then one transaction that re-checks the reservation under its row lock and confirms it.
//! So a hold that expires while its payment is in flight ends either paid or expired, never both.

pub mod db;
pub mod http;
pub mod provider;

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

pub async fn pay(
    state: &AppState,
    user_id: Uuid,
    reservation_id: Uuid,
    method: &str,
) -> Result<Value, Error> {
    let found = rdb::get_reservation(&state.db, reservation_id, user_id).await?;
    let r = found.ok_or_else(not_found)?;
    // refused before the provider is asked: nothing is charged for a dead hold
    lifecycle::transition(r.current()?, Change::Pay)?;

    // one charge per reservation, whatever retries or concurrent requests do (idempotency key)
    state
        .payments
        .charge(r.id, r.total_amount, method)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, reservation = %r.id, "charge failed");
            Error::Failure(
                axum::http::StatusCode::BAD_GATEWAY,
                Code::PaymentFailed,
                "결제에 실패했습니다. 잠시 후 다시 시도해주세요.".into(),
            )
        })?;
    match capture(state, user_id, reservation_id, method).await {
        Ok(paid) => Ok(paid),
        // a concurrent request with the same key captured this very charge: nothing to give back
        Err(e) if e.code() == Code::AlreadyPaid => Err(e),
        Err(e) => {
            // refused (the hold ended while the provider answered) or failed: never keep money
            // for a seat the buyer does not get
            if let Err(refund) = state.payments.refund(reservation_id).await {
                tracing::error!(error = %refund, reservation = %reservation_id, "REFUND FAILED: charge kept without a seat");
            }
            Err(e)
        }
    }
}

/// Confirms a charged reservation under its row lock, if the lifecycle still allows it.
async fn capture(
    state: &AppState,
    user_id: Uuid,
    reservation_id: Uuid,
    method: &str,
) -> Result<Value, Error> {
    let mut tx = state.db.begin().await?;
    let r = rdb::lock_reservation(&mut *tx, reservation_id, Some(user_id)).await?;
    let r = r.ok_or_else(not_found)?;
    let t = lifecycle::transition(r.current()?, Change::Pay)?;
    let (_, paid_at) = reservations::apply(&mut tx, state, &r, t, Some(method)).await?;
    let details = db::PaidDetails {
        event: db::event(&mut *tx, r.event_id).await?,
        seats: db::seats(&mut *tx, reservation_id).await?,
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
