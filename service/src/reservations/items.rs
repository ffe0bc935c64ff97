//! What carries out the lifecycle's decisions (`lifecycle.rs`) on a reservation's seats and stock:
//! releasing them and re-claiming them, with the notices to announce. The SQL is in `db.rs`;
//! callers hold the reservations' row locks.

use sqlx::PgConnection;
use tiketi_core::wire::Notice;
use uuid::Uuid;

use super::db;

/// Returns the stock and the seats still held by the live reservations `ids` to sale (callers hold
/// their row locks and decided the release through the lifecycle). A seat another reservation holds
/// now is never touched.
pub async fn release(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Notice>> {
    let mut notices = Vec::new();
    if ids.is_empty() {
        return Ok(notices);
    }
    for t in db::ticket_units_of(&mut *tx, ids).await? {
        if let Some(s) = db::return_stock(&mut *tx, t.ticket_type_id, t.quantity).await? {
            notices.push(s.notice(t.ticket_type_id));
        }
    }
    let seats = db::release_seats(&mut *tx, ids).await?;
    notices.extend(seats.into_iter().map(|s| Notice::SeatReleased {
        event_id: s.event_id,
        seat_id: s.id,
    }));
    Ok(notices)
}

/// Claims again the seats and stock of an ended reservation that an admin revives: all of them or
/// nothing (`None`: something was sold meanwhile; the caller rolls back).
pub async fn reclaim(
    tx: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    sold: bool,
) -> sqlx::Result<Option<Vec<Notice>>> {
    let mut notices = Vec::new();
    for t in db::ticket_units_of(&mut *tx, &[id]).await? {
        let Some(s) = db::take_back_stock(&mut *tx, t.ticket_type_id, t.quantity).await? else {
            return Ok(None);
        };
        notices.push(s.notice(t.ticket_type_id));
    }
    let wanted = db::seat_item_count(&mut *tx, id).await?;
    let seats = db::reclaim_seats(&mut *tx, id, sold).await?;
    if seats.len() as i64 != wanted {
        return Ok(None);
    }
    notices.extend(seats.into_iter().map(|s| Notice::SeatLocked {
        event_id: s.event_id,
        seat_id: s.id,
        user_id,
    }));
    Ok(Some(notices))
}
