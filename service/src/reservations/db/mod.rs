//! SQL of reservations, seat holds and stock: booking (holds, bookings, stock), the lifecycle
//! (locks, status changes, releasing and reclaiming seats and stock) and the caller's views.

mod book;
mod lifecycle;
mod views;

pub use book::*;
pub use lifecycle::*;
pub use views::*;
