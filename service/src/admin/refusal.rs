//! Every refusal of the admin operations (events, ticket types, reservation status changes; the
//! lifecycle's own refusals come from `reservations::lifecycle`), answered once, here, in the
//! contract's shape for it. The original's shapes differ by endpoint (a missing event is
//! `{error}` on delete but `{success:false, message}` on edit); the variants keep them apart.

use axum::http::StatusCode;
use serde_json::json;

use crate::error::{Code, Error};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A body field is missing or has a wrong value; the message names it.
    #[error("{0}")]
    Invalid(&'static str),
    /// `seatLayoutId` names no layout.
    #[error("존재하지 않는 좌석 레이아웃입니다.")]
    UnknownLayout,
    #[error("이벤트를 찾을 수 없습니다.")]
    EventNotFound,
    /// No event to edit (`PUT` answers in the `{success:false, message}` shape).
    #[error("이벤트를 찾을 수 없습니다.")]
    NoEventToEdit,
    /// No event, or it is cancelled already (the contract answers its failure text).
    #[error("이벤트 취소에 실패했습니다.")]
    NotCancellable,
    #[error("좌석 레이아웃이 설정되지 않았습니다.")]
    NoSeatLayout,
    /// The event has seats already (how many).
    #[error("이미 좌석이 생성되어 있습니다.")]
    SeatsExist(i64),
    /// A live reservation holds one of the seats to delete.
    #[error("예약된 좌석이 있어 삭제할 수 없습니다.")]
    SeatsBooked,
    #[error("티켓을 찾을 수 없습니다.")]
    TicketTypeNotFound,
    /// The new total is below what is sold.
    #[error("판매된 티켓 수보다 적은 수량으로 변경할 수 없습니다.")]
    BelowSold,
    /// A status change names neither `status` nor `paymentStatus`.
    #[error("변경할 상태를 지정해주세요.")]
    NoStatusGiven,
    /// A status change names a status the lifecycle does not know.
    #[error("유효하지 않은 상태 값입니다.")]
    UnknownStatus,
    #[error("예매를 찾을 수 없습니다.")]
    ReservationNotFound,
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        let msg = r.to_string();
        match r {
            Refusal::Invalid(_) | Refusal::UnknownLayout => {
                Error::bad_request(Code::InvalidInput, msg)
            }
            Refusal::EventNotFound => Error::not_found(Code::EventNotFound, msg),
            Refusal::NoEventToEdit | Refusal::NotCancellable => {
                Error::Failure(StatusCode::NOT_FOUND, Code::EventNotFound, msg)
            }
            Refusal::NoSeatLayout | Refusal::SeatsBooked | Refusal::BelowSold => {
                Error::bad_request(Code::Conflict, msg)
            }
            Refusal::SeatsExist(n) => Error::PlainWith(
                StatusCode::BAD_REQUEST,
                Code::Conflict,
                msg,
                json!({ "existingSeats": n }),
            ),
            Refusal::TicketTypeNotFound => Error::not_found(Code::TicketTypeNotFound, msg),
            Refusal::NoStatusGiven => Error::bad_request(Code::InvalidInput, msg),
            Refusal::UnknownStatus => Error::bad_request(Code::InvalidStatusChange, msg),
            Refusal::ReservationNotFound => Error::not_found(Code::ReservationNotFound, msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    async fn answer(r: Refusal) -> (StatusCode, serde_json::Value) {
        let resp = Error::from(r).into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn admin_refusals_keep_each_endpoints_shape() {
        let (status, body) = answer(Refusal::EventNotFound).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({ "error": "이벤트를 찾을 수 없습니다.", "code": "EVENT_NOT_FOUND" })
        );
        let (status, body) = answer(Refusal::NoEventToEdit).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["success"], false);
        assert_eq!(body["message"], "이벤트를 찾을 수 없습니다.");
        let (status, body) = answer(Refusal::SeatsExist(3)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["existingSeats"], 3);
        assert_eq!(body["code"], "CONFLICT");
    }
}
