//! What a replica's gate check found out about a buyer, carried into the hold's (or booking's)
//! transaction, where PostgreSQL decides with its own clock (`may_buy`, migration 0009). The
//! replica never decides "may buy" on its own clock: a check made while its clock is behind, or made
//! before the opening and run after it, reports what it saw and the database refuses it.
//!
//! When Redis cannot be read, the replica falls back on the admissions it has itself seen proven
//! recently (`Remembered`): an admitted user keeps buying through an outage, anyone else is
//! `Unproven` (503 `QUEUE_UNAVAILABLE`), never waved through.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The gate's finding for one buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A live admission from the queue (or one remembered by this replica), until `until_ms`.
    Admitted { until_ms: i64 },
    /// A place just taken at an open first-come gate (nobody waiting, room left), until
    /// `until_ms`. Not valid while PostgreSQL's clock is inside the opening lottery window.
    AtGate { until_ms: i64 },
    /// Not admitted: waiting, or skipping the queue.
    NotAdmitted,
    /// This replica's clock says the sale has not opened: it admitted nobody. PostgreSQL answers
    /// `not_on_sale` if it agrees, else the caller is not admitted.
    BeforeOpen,
    /// Redis could not be read and this replica has no live admission of the caller on record.
    Unproven,
}

impl Verdict {
    /// The `p_admission` and `p_admitted_until` arguments of `may_buy`/`hold_seats`.
    pub fn sql(self) -> (&'static str, Option<DateTime<Utc>>) {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
        match self {
            Verdict::Admitted { until_ms } => ("admitted", at(until_ms)),
            Verdict::AtGate { until_ms } => ("gate", at(until_ms)),
            Verdict::NotAdmitted | Verdict::BeforeOpen => ("none", None),
            Verdict::Unproven => ("unproven", None),
        }
    }

    /// The admission worth remembering for an outage, if any.
    pub fn admission(self) -> Option<Seen> {
        match self {
            Verdict::Admitted { until_ms } => Some(Seen {
                until_ms,
                at_gate: false,
            }),
            Verdict::AtGate { until_ms } => Some(Seen {
                until_ms,
                at_gate: true,
            }),
            _ => None,
        }
    }

    /// The verdict when Redis cannot be read: what this replica saw proven, if still live.
    pub fn from_memory(seen: Option<Seen>, now_ms: i64) -> Verdict {
        match seen {
            Some(s) if s.until_ms > now_ms && s.at_gate => Verdict::AtGate {
                until_ms: s.until_ms,
            },
            Some(s) if s.until_ms > now_ms => Verdict::Admitted {
                until_ms: s.until_ms,
            },
            _ => Verdict::Unproven,
        }
    }

    /// `admitted.lua`'s reply: `{kind, until ms}`.
    pub fn parse(reply: &[fred::types::Value]) -> Option<Verdict> {
        let [kind, until] = reply else {
            return None;
        };
        let until_ms = || until.as_i64().or_else(|| until.as_f64().map(|f| f as i64));
        Some(match kind.as_string()?.as_str() {
            "admitted" => Verdict::Admitted {
                until_ms: until_ms()?,
            },
            "gate" => Verdict::AtGate {
                until_ms: until_ms()?,
            },
            "none" => Verdict::NotAdmitted,
            "before_open" => Verdict::BeforeOpen,
            _ => return None,
        })
    }
}

/// An admission this replica saw proven in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub until_ms: i64,
    /// Taken at an open first-come gate (see `Verdict::AtGate`).
    pub at_gate: bool,
}

/// The admissions this replica saw proven recently, per (event, user), for as long as they last.
/// Bounded: under a flood the oldest go first, and those users are `Unproven` during an outage.
pub struct Remembered(moka::sync::Cache<(Uuid, Uuid), Seen>);

/// Admissions remembered per replica.
const REMEMBERED_CAPACITY: u64 = 200_000;

impl Default for Remembered {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_CAPACITY)
                .time_to_live(Duration::from_millis(super::ADMISSION_TTL_MS as u64))
                .support_invalidation_closures()
                .build(),
        )
    }
}

impl Remembered {
    pub fn record(&self, event_id: Uuid, user_id: Uuid, seen: Seen) {
        self.0.insert((event_id, user_id), seen);
    }
    pub fn get(&self, event_id: Uuid, user_id: Uuid) -> Option<Seen> {
        self.0.get(&(event_id, user_id))
    }
    /// The user left the queue (through this replica).
    pub fn forget(&self, event_id: Uuid, user_id: Uuid) {
        self.0.invalidate(&(event_id, user_id));
    }
    /// An admin cleared the event's waiting room (through this replica).
    pub fn forget_event(&self, event_id: Uuid) {
        // only fails when closures are not enabled, which `default` does
        let _ = self
            .0
            .invalidate_entries_if(move |(e, _), _| *e == event_id);
    }
}

#[cfg(test)]
mod tests {
    use fred::types::Value;

    use super::*;

    #[test]
    fn verdict_parses_the_gate_script_reply() {
        let r = |k: &str, v: Value| Verdict::parse(&[Value::from(k), v]);
        assert_eq!(
            r("admitted", Value::from("1000.0")),
            Some(Verdict::Admitted { until_ms: 1000 })
        );
        assert_eq!(
            r("gate", Value::Integer(5)),
            Some(Verdict::AtGate { until_ms: 5 })
        );
        assert_eq!(r("none", Value::Integer(0)), Some(Verdict::NotAdmitted));
        assert_eq!(
            r("before_open", Value::Integer(0)),
            Some(Verdict::BeforeOpen)
        );
        assert_eq!(r("admitted", Value::from("x")), None, "no expiry");
        assert_eq!(r("maybe", Value::Integer(0)), None, "unknown kind");
        assert_eq!(
            Verdict::parse(&[Value::Integer(1)]),
            None,
            "the old 0/1 reply"
        );
    }

    #[test]
    fn verdict_without_redis_is_a_remembered_live_admission_or_unproven() {
        let seen = |until_ms, at_gate| Some(Seen { until_ms, at_gate });
        assert_eq!(
            Verdict::from_memory(seen(2_000, false), 1_000),
            Verdict::Admitted { until_ms: 2_000 }
        );
        assert_eq!(
            Verdict::from_memory(seen(2_000, true), 1_000),
            Verdict::AtGate { until_ms: 2_000 },
            "still subject to the lottery window"
        );
        assert_eq!(
            Verdict::from_memory(seen(1_000, false), 1_000),
            Verdict::Unproven,
            "expired"
        );
        assert_eq!(Verdict::from_memory(None, 1_000), Verdict::Unproven);
    }

    #[test]
    fn verdict_is_sent_to_sql_as_a_closed_set_of_words() {
        assert_eq!(Verdict::Unproven.sql(), ("unproven", None));
        assert_eq!(Verdict::NotAdmitted.sql(), ("none", None));
        assert_eq!(Verdict::BeforeOpen.sql(), ("none", None));
        let (kind, until) = Verdict::AtGate { until_ms: 1_000 }.sql();
        assert_eq!(
            (kind, until.map(|t| t.timestamp_millis())),
            ("gate", Some(1_000))
        );
        // only admissions are remembered
        assert_eq!(Verdict::BeforeOpen.admission(), None);
        assert_eq!(
            Verdict::Admitted { until_ms: 9 }.admission(),
            Some(Seen {
                until_ms: 9,
                at_gate: false
            })
        );
    }

    #[test]
    fn verdict_memory_forgets_on_leave_and_on_clear() {
        let m = Remembered::default();
        let (e1, e2, u1, u2) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let seen = Seen {
            until_ms: 9,
            at_gate: false,
        };
        for (e, u) in [(e1, u1), (e1, u2), (e2, u1)] {
            m.record(e, u, seen);
        }
        m.forget(e1, u1);
        assert_eq!(m.get(e1, u1), None, "left");
        assert_eq!(m.get(e1, u2), Some(seen));
        m.forget_event(e1);
        assert_eq!(m.get(e1, u2), None, "cleared");
        assert_eq!(m.get(e2, u1), Some(seen), "another event untouched");
    }
}
