//! Virtual waiting room (Redis): a queue per event (a random order for the crowd at the sale's
//! opening, see `opening`, then FIFO) and a set of admitted users whose admissions expire one by one.
//! `admission` moves users from the queue into the admitted set.
//! The pieces: `gate` and `limit` (threshold, capacity, opening), `place` (a user's place, in
//! Redis), `eta` (the wait, a pure function), `enforce` and `verdict` (the buying paths' check: the
//! replica reports what the waiting room says, and the hold's own SQL decides with PostgreSQL's
//! clock; without Redis only admissions this replica saw proven may buy — the gate fails closed).

pub mod admission;
mod db;
mod enforce;
mod eta;
mod gate;
pub mod gauges;
pub mod http;
mod limit;
pub mod opening;
mod place;
mod replicated;
mod verdict;

pub use enforce::{MSG_QUEUE_UNAVAILABLE, MSG_WAIT_YOUR_TURN, admission, not_admitted, unproven};
pub use eta::{Eta, EtaInputs, estimate};
pub use gate::{Gate, Gates};
pub use limit::{capacity, gate, limit};
pub use place::{Position, check, clear, eta, leave, outflow, status};
pub use verdict::{Remembered, Seen, Verdict};

/// How long an admission lasts without renewal.
pub const ADMISSION_TTL_MS: i64 = 5 * 60 * 1000;

/// This replica's clock in ms (shifted by the test-only `Config::clock_offset_ms`).
fn now_ms(config: &crate::config::Config) -> i64 {
    chrono::Utc::now().timestamp_millis() + config.clock_offset_ms
}

/// `queue-entry-allowed`'s message.
pub const MSG_ENTRY_ALLOWED: &str = "입장이 허용되었습니다. 잠시 후 자동으로 이동합니다.";

/// `queue-cleared`'s message.
pub const MSG_CLEARED: &str = "관리자가 대기열을 초기화했습니다.";
