//! Seat layouts, the seat map of an event, seat holds and the hold's payment view.

pub mod db;
pub mod http;
pub mod map;
pub mod snapshot;
