//! Reservations: seat holds, ticket-type bookings, cancellation and hold expiry. PostgreSQL has the
//! final say on every seat and every unit of stock: each claim is one conditional UPDATE inside the
//! transaction that creates the reservation, so racing buyers cannot both win.

pub mod batch;
pub mod db;
pub mod http;
pub mod items;
pub mod lifecycle;
pub mod operations;
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
/// what the waiting room says about the caller — passed on to `hold_seats`/`book_tickets`, whose
/// transaction decides with it and the database's clock.
pub async fn may_buy(
    state: &AppState,
    user_id: Uuid,
    ip: std::net::IpAddr,
    event_id: Uuid,
) -> Result<crate::queue::Verdict, Error> {
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
        &crate::client_ip::limit_key(ip),
        state.config.reserve_rate_limit_per_ip,
    )
    .await?;
    crate::queue::admission(state, event_id, user_id).await
}

/// The per-user ticket cap of one event (`MAX_TICKETS_PER_USER_PER_EVENT`), checked inside the
/// transaction that creates the booking, under the (user, event) lock: two concurrent requests of
/// one user cannot both pass, and the lock ends with the transaction. (Seat holds check
/// `MAX_SEATS_PER_USER_PER_EVENT` the same way, under the same lock, inside `db::hold_seats`.)
async fn within_ticket_cap(
    tx: &mut PgConnection,
    state: &AppState,
    user_id: Uuid,
    event_id: Uuid,
    units: i64,
) -> Result<(), Error> {
    let cap = state.config.max_tickets_per_user_per_event;
    if cap == 0 {
        return Ok(());
    }
    db::lock_user_event(&mut *tx, user_id, event_id).await?;
    let tickets = db::user_event_tickets(&mut *tx, user_id, event_id).await?;
    if tickets + units > i64::from(cap) {
        return Err(over_cap(cap, "매"));
    }
    Ok(())
}

fn over_cap(cap: u32, unit: &str) -> Error {
    Error::rejected(
        Code::PerUserLimit,
        format!("이 공연은 1인당 최대 {cap}{unit}까지 예매할 수 있습니다."),
    )
}

pub struct SeatHold {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
    pub expires_at: DateTime<Utc>,
    pub seats: Vec<db::HeldSeat>,
}

/// Holds `seat_ids` of `event_id` for `user_id` until the hold time passes, if the sale is open and
/// `admission` (the waiting room's verdict, `may_buy`) proves the caller admitted at that instant.
/// The hold goes to its event's writer, which decides it with the holds that arrived with it in one
/// transaction (`batch`); at `HOLD_BATCH_WINDOW_MS=0` it is one statement of its own
/// (`db::hold_seats`). Either way the outcome is the same.
pub async fn hold_seats(
    state: &AppState,
    user_id: Uuid,
    event_id: Uuid,
    seat_ids: &[Uuid],
    admission: crate::queue::Verdict,
) -> Result<(SeatHold, Effects), Error> {
    let id = Uuid::new_v4();
    let number = new_reservation_number();
    let cap = state.config.max_seats_per_user_per_event;
    let request = db::HoldRequest {
        user_id,
        event_id,
        seat_ids: seat_ids.to_vec(),
        reservation_id: id,
        number: number.clone(),
        hold_secs: state.config.hold_seconds as f64,
        cap: i32::try_from(cap).unwrap_or(i32::MAX),
        admission,
        fair_window_secs: state.config.fair_opening_window_seconds as f64,
    };
    let outcome = if state.hold_batches.enabled() {
        let orphaned = state.clone();
        let orphan: batch::Orphan = Box::new(move |outcome| {
            if let db::HoldOutcome::Held { seats, .. } = outcome {
                // the caller left: the seats are held all the same, and the rooms must see it
                tokio::spawn(async move {
                    let fx = held_effects(event_id, user_id, &seats);
                    crate::effects::apply(&orphaned, fx).await;
                });
            }
        });
        state.hold_batches.hold(request, orphan).await?
    } else {
        db::hold_seats(&state.db, &request).await?
    };
    let (seats, expires_at) = match outcome {
        db::HoldOutcome::Held { seats, expires_at } => (seats, expires_at),
        db::HoldOutcome::NoEvent | db::HoldOutcome::SeatNotFound => {
            return Err(Error::rejected(
                Code::SeatNotFound,
                "좌석을 찾을 수 없습니다.",
            ));
        }
        db::HoldOutcome::NotOnSale => {
            return Err(Error::rejected(Code::NotOnSale, MSG_NOT_ON_SALE));
        }
        db::HoldOutcome::NotAdmitted => return Err(crate::queue::not_admitted(state)),
        db::HoldOutcome::Unproven => return Err(crate::queue::unproven(state)),
        db::HoldOutcome::OverCap => return Err(over_cap(cap, "석")),
        db::HoldOutcome::SeatTaken(labels) => {
            return Err(Error::rejected(
                Code::SeatTaken,
                format!("이미 예약된 좌석입니다. ({labels})"),
            ));
        }
        db::HoldOutcome::AmountTooLarge => {
            return Err(Error::rejected(
                Code::AmountTooLarge,
                "결제 금액이 너무 큽니다.",
            ));
        }
        db::HoldOutcome::UserGone => {
            return Err(Error::unauthorized(
                Code::UserNotFound,
                crate::extract::MSG_USER_GONE,
            ));
        }
    };
    let total = seats.iter().map(|s| s.price).sum();
    let fx = held_effects(event_id, user_id, &seats);
    Ok((
        SeatHold {
            id,
            reservation_number: number,
            total_amount: total,
            expires_at,
            seats,
        },
        fx,
    ))
}

/// What a committed seat hold announces.
fn held_effects(event_id: Uuid, user_id: Uuid, seats: &[db::HeldSeat]) -> Effects {
    Effects::notices(
        seats
            .iter()
            .map(|s| Notice::SeatLocked {
                event_id,
                seat_id: s.id,
                user_id,
            })
            .collect(),
    )
}

pub struct TicketBooking {
    pub id: Uuid,
    pub reservation_number: String,
    pub total_amount: i32,
}

/// Books ticket-type quantities; `items` are (ticket type, quantity ≥ 1) in request order. The sale
/// window and `admission` (the waiting room's verdict, `may_buy`) are decided first, inside the
/// booking's transaction, with the database's clock.
pub async fn book_tickets(
    state: &AppState,
    user_id: Uuid,
    event_id: Uuid,
    items: &[(Uuid, i32)],
    admission: crate::queue::Verdict,
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
    let window = state.config.fair_opening_window_seconds as f64;
    match db::may_buy(&mut *tx, event_id, admission, window).await? {
        db::BuyCheck::NoEvent => {
            return Err(Error::not_found(
                Code::EventNotFound,
                "이벤트를 찾을 수 없습니다.",
            ));
        }
        db::BuyCheck::NotOnSale => return Err(Error::rejected(Code::NotOnSale, MSG_NOT_ON_SALE)),
        db::BuyCheck::NotAdmitted => return Err(crate::queue::not_admitted(state)),
        db::BuyCheck::Unproven => return Err(crate::queue::unproven(state)),
        db::BuyCheck::Ok => {}
    }
    let units = claims.iter().map(|(_, q)| i64::from(*q)).sum();
    within_ticket_cap(&mut tx, state, user_id, event_id, units).await?;
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
    let paid = lifecycle::Payment::parse(&r.payment_status);
    if paid.is_some_and(|p| lifecycle::refunds(p, &t)) {
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
            if !db::set_seats_sold(&mut *tx, r.id, t.items == Items::Sell).await? {
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
    // the captured charge goes back with the seat: marked in this transaction, refunded after it
    let paid = lifecycle::Payment::parse(&r.payment_status);
    if paid.is_some_and(|p| lifecycle::refunds(p, &t)) {
        crate::payments::db::begin_refunds(&mut *tx, &[r.id]).await?;
    }
    let updated_at = db::set_status(
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
