//! Reservations: seat holds, ticket-type bookings, cancellation and hold expiry. PostgreSQL has the
//! final say on every seat and every unit of stock: each claim is one conditional UPDATE inside the
//! transaction that creates the reservation, so racing buyers cannot both win.

pub mod db;
pub mod http;
pub mod items;
pub mod lifecycle;
pub mod views;

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgConnection;
use tiketi_core::wire::Notice;
use uuid::Uuid;

use crate::{
    effects::Effects,
    error::{Code, Error},
    state::AppState,
};

pub const MSG_NOT_ON_SALE: &str = "예매 가능한 기간이 아닙니다.";

/// A fresh reservation number (`TK` + ms + 5 base-36 characters).
pub fn new_reservation_number() -> String {
    tiketi_core::rules::reservation_number(Utc::now().timestamp_millis(), rand::rng().random())
}

/// The gate before every hold or booking: the caller's rate limits (per user, then per IP), then
/// the waiting room.
pub async fn may_buy(
    state: &AppState,
    user_id: Uuid,
    ip: std::net::IpAddr,
    event_id: Uuid,
) -> Result<(), Error> {
    crate::ratelimit::check(
        state,
        "reserve",
        &user_id.to_string(),
        state.config.reserve_rate_limit,
    )
    .await?;
    crate::ratelimit::check(
        state,
        "reserve-ip",
        &ip.to_string(),
        state.config.reserve_rate_limit_per_ip,
    )
    .await?;
    crate::queue::ensure_admitted(state, event_id, user_id).await
}

/// What a new hold or booking adds to the caller's share of one event.
#[derive(Debug, Clone, Copy)]
enum Claim {
    Seats(i64),
    Tickets(i64),
}

/// The per-user caps of one event (`MAX_SEATS_PER_USER_PER_EVENT`, `MAX_TICKETS_PER_USER_PER_EVENT`),
/// checked inside the transaction that creates the reservation, under the (user, event) lock: two
/// concurrent requests of one user cannot both pass, and the lock ends with the transaction.
async fn within_caps(
    tx: &mut PgConnection,
    state: &AppState,
    user_id: Uuid,
    event_id: Uuid,
    claim: Claim,
) -> Result<(), Error> {
    let (cap, unit) = match claim {
        Claim::Seats(_) => (state.config.max_seats_per_user_per_event, "석"),
        Claim::Tickets(_) => (state.config.max_tickets_per_user_per_event, "매"),
    };
    if cap == 0 {
        return Ok(());
    }
    db::lock_user_event(&mut *tx, user_id, event_id).await?;
    let (seats, tickets) = db::user_event_counts(&mut *tx, user_id, event_id).await?;
    let after = match claim {
        Claim::Seats(n) => seats + n,
        Claim::Tickets(n) => tickets + n,
    };
    if after > i64::from(cap) {
        return Err(Error::rejected(
            Code::PerUserLimit,
            format!("이 공연은 1인당 최대 {cap}{unit}까지 예매할 수 있습니다."),
        ));
    }
    Ok(())
}

pub struct SeatHold {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    pub expires_at: DateTime<Utc>,
    pub seats: Vec<db::HeldSeat>,
}

/// Holds `seat_ids` of `event_id` for `user_id` until the hold time passes.
pub async fn hold_seats(
    state: &AppState,
    user_id: Uuid,
    event_id: Uuid,
    seat_ids: &[Uuid],
) -> Result<(SeatHold, Effects), Error> {
    let mut tx = state.db.begin().await?;
    match db::event_sale_state(&mut *tx, event_id).await? {
        None => {
            return Err(Error::rejected(
                Code::SeatNotFound,
                "좌석을 찾을 수 없습니다.",
            ));
        }
        Some(false) => return Err(Error::rejected(Code::NotOnSale, MSG_NOT_ON_SALE)),
        Some(true) => {}
    }
    let claim = Claim::Seats(seat_ids.len() as i64);
    within_caps(&mut tx, state, user_id, event_id, claim).await?;
    let id = Uuid::new_v4();
    let seats = db::lock_available_seats(&mut *tx, event_id, seat_ids, id).await?;
    if seats.len() != seat_ids.len() {
        drop(tx);
        let found = db::seat_states(&state.db, event_id, seat_ids).await?;
        if found.len() != seat_ids.len() {
            return Err(Error::rejected(
                Code::SeatNotFound,
                "좌석을 찾을 수 없습니다.",
            ));
        }
        let taken: Vec<String> = found
            .into_iter()
            .filter(|(_, s)| s != "available")
            .map(|(l, _)| l)
            .collect();
        return Err(Error::rejected(
            Code::SeatTaken,
            format!("이미 예약된 좌석입니다. ({})", taken.join(", ")),
        ));
    }
    let total: i64 = seats.iter().map(|s| i64::from(s.price)).sum();
    let total = i32::try_from(total)
        .map_err(|_| Error::rejected(Code::AmountTooLarge, "결제 금액이 너무 큽니다."))?;
    let number = new_reservation_number();
    let hold_secs = i64::try_from(state.config.hold_seconds).unwrap_or(300);
    let (id, expires_at) = db::insert_reservation(
        &mut *tx,
        id,
        user_id,
        event_id,
        &number,
        total,
        Some(hold_secs),
    )
    .await?;
    for s in &seats {
        db::insert_item(&mut *tx, id, None, Some(s.id), 1, s.price).await?;
    }
    tx.commit().await?;
    let expires_at =
        expires_at.ok_or_else(|| Error::internal(anyhow::anyhow!("hold without expiry")))?;
    let notices = seats
        .iter()
        .map(|s| Notice::SeatLocked {
            event_id,
            seat_id: s.id,
            user_id,
        })
        .collect();
    Ok((
        SeatHold {
            id,
            reservation_number: number,
            total_amount: total,
            expires_at,
            seats,
        },
        Effects::notices(notices),
    ))
}

pub struct TicketBooking {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
}

/// Books ticket-type quantities; `items` are (ticket type, quantity ≥ 1) in request order.
pub async fn book_tickets(
    state: &AppState,
    user_id: Uuid,
    event_id: Uuid,
    items: &[(Uuid, i32)],
) -> Result<(TicketBooking, Effects), Error> {
    // Claim in id order so two bookings of the same types can never deadlock.
    let mut claims: Vec<(Uuid, i32)> = Vec::new();
    for (id, q) in items {
        match claims.iter_mut().find(|(c, _)| c == id) {
            Some((_, total)) => *total = total.saturating_add(*q),
            None => claims.push((*id, *q)),
        }
    }
    claims.sort_by_key(|(id, _)| *id);

    let mut tx = state.db.begin().await?;
    match db::event_sale_state(&mut *tx, event_id).await? {
        None => {
            return Err(Error::not_found(
                Code::EventNotFound,
                "이벤트를 찾을 수 없습니다.",
            ));
        }
        Some(false) => return Err(Error::rejected(Code::NotOnSale, MSG_NOT_ON_SALE)),
        Some(true) => {}
    }
    let units = claims.iter().map(|(_, q)| i64::from(*q)).sum();
    within_caps(&mut tx, state, user_id, event_id, Claim::Tickets(units)).await?;
    let mut claimed = Vec::with_capacity(claims.len());
    for (ticket_type_id, quantity) in &claims {
        match db::take_stock(&mut *tx, event_id, *ticket_type_id, *quantity).await? {
            Some(t) => claimed.push((*ticket_type_id, *quantity, t)),
            None => {
                return Err(
                    match db::stock_of(&mut *tx, event_id, *ticket_type_id).await? {
                        None => {
                            Error::rejected(Code::TicketTypeNotFound, "존재하지 않는 티켓입니다.")
                        }
                        Some((name, left)) => Error::rejected(
                            Code::SoldOut,
                            format!("{name} 티켓이 부족합니다. (남은 수량: {left})"),
                        ),
                    },
                );
            }
        }
    }
    let total: i64 = claimed
        .iter()
        .map(|(_, q, t)| i64::from(*q) * i64::from(t.price))
        .sum();
    let total = i32::try_from(total)
        .map_err(|_| Error::rejected(Code::AmountTooLarge, "결제 금액이 너무 큽니다."))?;
    let number = new_reservation_number();
    let (id, _) = db::insert_reservation(
        &mut *tx,
        Uuid::new_v4(),
        user_id,
        event_id,
        &number,
        total,
        None,
    )
    .await?;
    for (ticket_type_id, quantity, t) in &claimed {
        db::insert_item(
            &mut *tx,
            id,
            Some(*ticket_type_id),
            None,
            *quantity,
            t.price,
        )
        .await?;
    }
    tx.commit().await?;
    for (ticket_type_id, quantity, _) in &claimed {
        state
            .metrics
            .tickets_sold
            .get_or_create(&crate::metrics::SoldLabels {
                event_id: event_id.to_string(),
                ticket_type: ticket_type_id.to_string(),
            })
            .inc_by(u64::try_from(*quantity).unwrap_or(0));
    }
    let notices = claimed
        .iter()
        .map(|(ticket_type_id, _, t)| Notice::TicketUpdated {
            event_id,
            ticket_type_id: *ticket_type_id,
            available: t.available_quantity,
            total: t.total_quantity,
        })
        .collect();
    Ok((
        TicketBooking {
            id,
            reservation_number: number,
            total_amount: total,
        },
        Effects::notices(notices),
    ))
}

/// Cancels the caller's reservation and returns its seats and stock to sale.
pub async fn cancel(state: &AppState, user_id: Uuid, id: Uuid) -> Result<Effects, Error> {
    let mut tx = state.db.begin().await?;
    let Some(r) = db::lock_reservation(&mut *tx, id, Some(user_id)).await? else {
        return Err(Error::rejected(
            Code::ReservationNotFound,
            "예매 내역을 찾을 수 없습니다.",
        ));
    };
    let t = lifecycle::transition(r.current()?, lifecycle::Change::Cancel)?;
    let (notices, _) = apply(&mut tx, state, &r, t, None).await?;
    tx.commit().await?;
    Ok(after(&r, t, notices))
}

/// The effects of a committed transition of `r`: what it announced, its event's stale pages, and
/// the refund of a captured payment it turned into `refunded`.
pub fn after(r: &db::LockedReservation, t: lifecycle::Transition, notices: Vec<Notice>) -> Effects {
    let fx = Effects::notices(notices).event(r.event_id);
    if r.payment_status == lifecycle::Payment::Completed.as_str()
        && t.payment == lifecycle::Payment::Refunded
    {
        fx.refund(r.id)
    } else {
        fx
    }
}

/// Carries out a decided transition of the locked reservation `r`: its seats and stock first (all
/// or nothing), then its status. Returns what to announce after the commit and `updated_at`.
pub async fn apply(
    tx: &mut PgConnection,
    state: &AppState,
    r: &db::LockedReservation,
    t: lifecycle::Transition,
    method: Option<&str>,
) -> Result<(Vec<Notice>, DateTime<Utc>), Error> {
    use lifecycle::Items;
    let sold_meanwhile = || {
        Error::PlainWith(
            axum::http::StatusCode::CONFLICT,
            Code::InvalidStatusChange,
            "좌석 또는 티켓이 이미 판매되어 예매를 되살릴 수 없습니다.".into(),
            serde_json::json!({}),
        )
    };
    let mut renew_hold = None;
    let notices = match t.items {
        Items::Keep => Vec::new(),
        Items::Release => items::release(tx, &[r.id]).await?,
        Items::Sell | Items::Unsell => {
            if !items::set_seats_sold(tx, r.id, t.items == Items::Sell).await? {
                // a seat of this reservation is no longer held by it: never sell it twice
                return Err(Error::rejected(Code::HoldExpired, "예약이 만료되었습니다."));
            }
            Vec::new()
        }
        Items::Reclaim { sold } => {
            renew_hold = (!sold).then(|| i64::try_from(state.config.hold_seconds).unwrap_or(300));
            items::reclaim(tx, r.id, r.user_id, sold)
                .await?
                .ok_or_else(sold_meanwhile)?
        }
    };
    let updated_at = items::set_status(
        &mut *tx,
        r.id,
        t.status.as_str(),
        t.payment.as_str(),
        method,
        renew_hold,
    )
    .await?;
    Ok((notices, updated_at))
}
