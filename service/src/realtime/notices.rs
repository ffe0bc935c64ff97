//! Server pushes of committed changes to the frontend's rooms.

use tiketi_core::{
    time::to_wire,
    wire::{Notice, SeatLocked, SeatReleased, TicketUpdated, event, room},
};

use crate::state::AppState;

/// Announces committed changes to the rooms that show them, on every replica.
pub async fn publish(state: &AppState, notices: Vec<Notice>) {
    if notices.is_empty() {
        return;
    }
    let Some(io) = state.realtime.io() else {
        tracing::debug!("realtime notices dropped: this service no longer serves Socket.IO");
        return;
    };
    let now = to_wire(&chrono::Utc::now());
    // while Redis is unreachable, this replica's own sockets still hear the change at once instead of
    // every emit waiting out the adapter's timeout
    let remote = state.redis_breaker.allow();
    if !remote {
        state.metrics.redis_steps_skipped.inc();
    }
    let rooms = |r: String| {
        if remote { io.to(r) } else { io.local().to(r) }
    };
    // Every emit is started before any is awaited: their adapter publishes go out together (one Redis
    // round trip, in order on the adapter's one connection), and the local broadcasts then run back
    // to back, so each socket's writer finds a hold's `seat-locked` and `seat-selected` (and the
    // other notices) queued together and sends them in one write.
    let mut sends: Vec<futures::future::BoxFuture<'_, _>> = Vec::with_capacity(notices.len());
    for notice in notices {
        let send: futures::future::BoxFuture<'_, _> = match notice {
            Notice::SeatLocked {
                event_id,
                seat_id,
                user_id,
            } => {
                let p = SeatLocked {
                    seat_id,
                    user_id,
                    status: "locked".into(),
                    timestamp: now.clone(),
                };
                let to = rooms(room::seats(event_id));
                // the frontend listens to `seat-selected`; `seat-locked` is the original's name
                Box::pin(async move {
                    let (locked, selected) = futures::join!(
                        to.clone().emit(event::SEAT_LOCKED, &p),
                        to.emit(event::SEAT_SELECTED, &p)
                    );
                    locked.and(selected)
                })
            }
            Notice::SeatReleased { event_id, seat_id } => {
                state.metrics.seats_released.inc();
                let p = SeatReleased {
                    seat_id,
                    status: "available".into(),
                    timestamp: now.clone(),
                };
                let to = rooms(room::seats(event_id));
                Box::pin(async move { to.emit(event::SEAT_RELEASED, &p).await })
            }
            Notice::TicketUpdated {
                event_id,
                ticket_type_id,
                available,
                total,
            } => {
                let p = TicketUpdated {
                    ticket_type_id,
                    available_quantity: available,
                    total_quantity: total,
                    timestamp: now.clone(),
                };
                let to = rooms(room::event(event_id));
                Box::pin(async move { to.emit(event::TICKET_UPDATED, &p).await })
            }
            Notice::QueueEntryAllowed { event_id, user_id } => {
                let p = serde_json::json!({
                    "userId": user_id,
                    "message": crate::queue::MSG_ENTRY_ALLOWED,
                });
                let to = rooms(room::user_queue(event_id, user_id));
                Box::pin(async move { to.emit(event::QUEUE_ENTRY_ALLOWED, &p).await })
            }
            Notice::QueueUpdated {
                event_id,
                queue_size,
            } => {
                let p = serde_json::json!({ "queueSize": queue_size, "timestamp": now });
                let to = rooms(room::queue(event_id));
                Box::pin(async move { to.emit(event::QUEUE_UPDATED, &p).await })
            }
            Notice::QueueCleared { event_id } => {
                let p = serde_json::json!({ "message": crate::queue::MSG_CLEARED });
                let to = rooms(room::queue(event_id));
                Box::pin(async move { to.emit(event::QUEUE_CLEARED, &p).await })
            }
        };
        sends.push(send);
    }
    for sent in futures::future::join_all(sends).await {
        if let Err(e) = sent {
            tracing::warn!(error = %e, "realtime notice not delivered");
        }
    }
    if remote {
        // a publish that was let through as the half-open probe does not hold the probe slot
        state.redis_breaker.release_probe();
    }
}
