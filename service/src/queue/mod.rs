//! Virtual waiting room (Redis): a queue per event (a random order for the crowd at the sale's
//! opening, see `opening`, then FIFO) and a set of admitted users whose admissions expire one by one.
//! `admission` moves users from the queue into the admitted set.
//! The pieces: `gate` (threshold, capacity, opening), `place` (a user's place, in Redis), `eta` (the
//! wait, a pure function), `enforce` (the reservation API's check).

pub mod admission;
mod db;
mod enforce;
mod eta;
mod gate;
pub mod gauges;
pub mod http;
pub mod opening;
mod place;

pub use enforce::{MSG_WAIT_YOUR_TURN, ensure_admitted};
pub use eta::{Eta, EtaInputs, estimate};
pub use gate::{Gate, capacity, gate, limit};
pub use place::{Position, check, clear, eta, leave, outflow, status};

/// How long an admission lasts without renewal.
pub const ADMISSION_TTL_MS: i64 = 5 * 60 * 1000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `queue-cleared`'s message.
pub const MSG_CLEARED: &str = "관리자가 대기열을 초기화했습니다.";
