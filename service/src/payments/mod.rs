//! Mock payments: a simulated provider call (500–1500 ms, made without holding a DB connection or a
//! lock), then one transaction that re-checks the reservation under its row lock and confirms it.
//! So a hold that expires while its payment is in flight ends either paid or expired, never both.

pub mod http;

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tiketi_core::time::to_wire;
use uuid::Uuid;

use crate::{error::Error, reservations::db as rdb, state::AppState};

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

/// Why a reservation cannot be paid now, if it cannot.
fn refusal(r: &rdb::LockedReservation) -> Option<&'static str> {
    match (r.status.as_str(), r.payment_status.as_str()) {
        (_, "completed") => Some("Payment already completed for this reservation"),
        ("cancelled", _) => Some("취소된 예약입니다."),
        ("expired", _) => Some("예약이 만료되었습니다."),
        _ if r.expired => Some("예약이 만료되었습니다."),
        _ => None,
    }
}

pub async fn pay(
    state: &AppState,
    user_id: Uuid,
    reservation_id: Uuid,
    method: &str,
) -> Result<Value, Error> {
    let found = rdb::get_reservation(&state.db, reservation_id, user_id).await?;
    let r = found.ok_or_else(|| Error::rejected("예약을 찾을 수 없습니다."))?;
    if let Some(why) = refusal(&r) {
        return Err(Error::rejected(why));
    }

    let (lo, hi) = (
        state.config.payment_delay_min_ms,
        state
            .config
            .payment_delay_max_ms
            .max(state.config.payment_delay_min_ms),
    );
    let delay = rand::rng().random_range(lo..=hi);
    tokio::time::sleep(Duration::from_millis(delay)).await;

    let mut tx = state.db.begin().await?;
    let r = rdb::lock_reservation(&mut *tx, reservation_id, Some(user_id)).await?;
    let r = r.ok_or_else(|| Error::rejected("예약을 찾을 수 없습니다."))?;
    if let Some(why) = refusal(&r) {
        return Err(Error::rejected(why));
    }
    let paid_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "UPDATE reservations SET status = 'confirmed', payment_status = 'completed', payment_method = $2
         WHERE id = $1 RETURNING updated_at",
    )
    .bind(reservation_id)
    .bind(method)
    .fetch_one(&mut *tx)
    .await?;
    let (held, reserved): (i64, i64) = sqlx::query_as(
        "WITH held AS (SELECT seat_id FROM reservation_items WHERE reservation_id = $1 AND seat_id IS NOT NULL),
              sold AS (UPDATE seats SET status = 'reserved' WHERE id IN (SELECT seat_id FROM held) AND status = 'locked' RETURNING id)
         SELECT (SELECT count(*) FROM held), (SELECT count(*) FROM sold)",
    )
    .bind(reservation_id)
    .fetch_one(&mut *tx)
    .await?;
    if held != reserved {
        // a held seat is no longer locked by this hold: never sell it twice
        return Err(Error::rejected("예약이 만료되었습니다."));
    }
    let details: Value = sqlx::query_scalar(
        "SELECT json_build_object(
             'event', (SELECT json_build_object('title', e.title, 'venue', e.venue, 'event_date', wire_ts(e.event_date))
                       FROM events e WHERE e.id = $2),
             'seats', coalesce((SELECT json_agg(json_build_object('id', s.id, 'seat_label', s.seat_label, 'section', s.section,
                                    'row_number', s.row_number, 'seat_number', s.seat_number, 'unit_price', ri.unit_price)
                                    ORDER BY s.seat_label)
                                FROM reservation_items ri JOIN seats s ON s.id = ri.seat_id
                                WHERE ri.reservation_id = $1), '[]'::json))",
    )
    .bind(reservation_id)
    .bind(r.event_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;

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
