//! The seat map of an event as served: built from PostgreSQL into this replica's snapshot
//! (`snapshot`, which decides when), and each change published as a new version token in Redis, so
//! the other replicas rebuild theirs.

use std::sync::Arc;

use axum::body::Bytes;
use fred::prelude::{Expiration, KeysInterface};
use uuid::Uuid;

use super::{
    db,
    snapshot::{MAX_AGE, Snapshot},
};
use crate::{
    error::{Code, Error},
    state::AppState,
};

/// Life of a version token in Redis; an expired token reads as absent, which differs from any
/// token a snapshot recorded, so expiry only costs one rebuild.
const VERSION_TTL_SECS: i64 = 24 * 3600;

/// After a commit that changed these events' seats (or the events): stale here at once, and for
/// the other replicas by a new version token in Redis.
pub async fn changed(state: &AppState, events: &[Uuid]) {
    for &id in events {
        state.seat_maps.changed_here(id);
        let token = Uuid::new_v4().simple().to_string();
        let key = state.keys.seat_map_version(id);
        if let Err(e) = state
            .redis_breaker
            .run(state.redis.set::<(), _, _>(
                key,
                token,
                Some(Expiration::EX(VERSION_TTL_SECS)),
                None,
                false,
            ))
            .await
        {
            tracing::warn!(error = ?e, event = %id, "seat map version not published; other replicas catch up within {MAX_AGE:?}");
        }
    }
}

/// The event's version token (`None`: Redis could not be asked).
async fn version(state: &AppState, event_id: Uuid) -> Option<Option<String>> {
    state
        .redis_breaker
        .run(
            state
                .redis
                .get::<Option<String>, _>(state.keys.seat_map_version(event_id)),
        )
        .await
        .ok()
}

/// The current seat map of the event.
pub async fn current(state: &AppState, event_id: Uuid) -> Result<Arc<Snapshot>, Error> {
    state
        .seat_maps
        .current(event_id, version(state, event_id), build(state, event_id))
        .await
}

/// Reads and serializes the map (`{event:{id,title}, layout, seats}`, seats in venue order).
async fn build(state: &AppState, event_id: Uuid) -> Result<Bytes, Error> {
    state.metrics.seatmap_snapshot_builds.inc();
    let Some((id, title, layout)) = db::event_layout(&state.db, event_id).await? else {
        return Err(Error::not_found(Code::EventNotFound, "Event not found"));
    };
    let layout = layout.ok_or_else(|| {
        Error::not_found(
            Code::SeatNotFound,
            "This event does not have seat selection",
        )
    })?;
    let seats = db::event_seats(&state.db, event_id).await?;
    Ok(Bytes::from(serialize(id, &title, &layout, &seats)?))
}

/// The body as `{event:{id,title}, layout, seats}`. Keys in sorted order, as a `serde_json::Value`
/// writes them (the map was once built as one), without building a `Value` per seat.
fn serialize(
    id: Uuid,
    title: &str,
    layout: &serde_json::Value,
    seats: &[db::MapSeat],
) -> Result<Vec<u8>, Error> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        event: Event<'a>,
        layout: &'a serde_json::Value,
        seats: Vec<Seat<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Event<'a> {
        id: Uuid,
        title: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Seat<'a> {
        id: Uuid,
        price: i32,
        row_number: i32,
        seat_label: &'a str,
        seat_number: i32,
        section: &'a str,
        status: &'a str,
    }
    let body = Body {
        event: Event { id, title },
        layout,
        seats: seats
            .iter()
            .map(|s| Seat {
                id: s.id,
                price: s.price,
                row_number: s.row_number,
                seat_label: &s.seat_label,
                seat_number: s.seat_number,
                section: &s.section,
                status: &s.status,
            })
            .collect(),
    };
    serde_json::to_vec(&body).map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_body_is_what_the_json_value_wrote() {
        let seat = |label: &str, status: &str| db::MapSeat {
            id: Uuid::new_v4(),
            section: "VIP".into(),
            row_number: 1,
            seat_number: 2,
            seat_label: label.into(),
            price: 150_000,
            status: status.into(),
        };
        let seats = vec![seat("VIP-1-2", "available"), seat("VIP-1-3", "locked")];
        let layout = serde_json::json!({ "sections": [{ "name": "VIP", "rows": 3, "seatsPerRow": 10, "price": 150000, "startRow": 1 }] });
        let id = Uuid::new_v4();
        let title = "공연 \"A\"";
        let value = serde_json::json!({ "event": { "id": id, "title": title }, "layout": layout, "seats": seats });
        let bytes = serialize(id, title, &layout, &seats).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
    }
}
