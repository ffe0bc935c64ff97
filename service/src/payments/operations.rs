//! What `POST /api/payments/process` does, in one call: the caller's rate limit, the payment's steps
//! (`pay`), and the metrics of its outcome. The handler parses the request, calls this and answers.

use serde_json::Value;
use uuid::Uuid;

use crate::{
    error::{Error, OrMessage},
    metrics::PaymentLabels,
    state::AppState,
};

/// Pays reservation `reservation_id` of `user_id` with `method` (a known method id); the answer is
/// the contract's payment body.
pub async fn process(
    state: &AppState,
    user_id: Uuid,
    reservation_id: Uuid,
    method: &str,
) -> Result<Value, Error> {
    // one budget with the holds and bookings: a payment retried in a loop is a purchase attempt too
    crate::ratelimit::check(
        state,
        "reserve",
        &user_id.to_string(),
        state.config.reserve_rate_limit,
    )
    .await?;
    let started = std::time::Instant::now();
    let outcome = super::pay(state, user_id, reservation_id, method)
        .await
        .or_message("결제 처리 중 오류가 발생했습니다.");
    let m = &state.metrics;
    m.payment_duration.observe(started.elapsed().as_secs_f64());
    let status = if outcome.is_ok() { "success" } else { "failed" };
    m.payments
        .get_or_create(&PaymentLabels {
            status,
            payment_method: method.to_string(),
        })
        .inc();
    let paid = outcome?;
    if let Some(amount) = paid.pointer("/payment/totalAmount").and_then(Value::as_f64) {
        m.payment_amount.observe(amount);
    }
    Ok(paid)
}
