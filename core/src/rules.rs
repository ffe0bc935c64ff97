//! Pure business rules shared by the REST handlers, the background jobs and the tests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Sale status derived from the sale window (admin create/update and the status updater).
pub fn sale_status(
    now: DateTime<Utc>,
    sale_start: DateTime<Utc>,
    sale_end: DateTime<Utc>,
) -> &'static str {
    if now < sale_start {
        "upcoming"
    } else if now < sale_end {
        "on_sale"
    } else {
        "ended"
    }
}

/// `ceil(total / limit)`, 0 when there is nothing.
pub fn total_pages(total: i64, limit: i64) -> i64 {
    if limit <= 0 {
        0
    } else {
        (total + limit - 1) / limit
    }
}

/// `"TK" + epoch ms + 5 upper-case base-36 characters`, e.g. `TK1795432752383S356V`.
pub fn reservation_number(epoch_ms: i64, random: u64) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut r = random;
    let mut suffix = [0u8; 5];
    for c in &mut suffix {
        *c = ALPHABET[(r % 36) as usize];
        r /= 36;
    }
    format!(
        "TK{epoch_ms}{}",
        std::str::from_utf8(&suffix).unwrap_or("00000")
    )
}

/// One section of a seat layout (`seat_layouts.layout_config.sections[]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LayoutSection {
    pub name: String,
    pub rows: i32,
    pub seats_per_row: i32,
    pub price: i32,
    pub start_row: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayoutConfig {
    pub sections: Vec<LayoutSection>,
}

/// One seat to create for an event.
#[derive(Clone, Debug, PartialEq)]
pub struct SeatSpec {
    pub section: String,
    pub row_number: i32,
    pub seat_number: i32,
    pub seat_label: String,
    pub price: i32,
}

/// Every seat of a layout: rows `startRow..startRow+rows`, seats `1..=seatsPerRow`,
/// labelled `"{section}-{row}-{seat}"`.
pub fn layout_seats(layout: &LayoutConfig) -> Vec<SeatSpec> {
    let mut seats = Vec::new();
    for s in &layout.sections {
        for row in s.start_row..s.start_row + s.rows.max(0) {
            for seat in 1..=s.seats_per_row.max(0) {
                seats.push(SeatSpec {
                    section: s.name.clone(),
                    row_number: row,
                    seat_number: seat,
                    seat_label: format!("{}-{row}-{seat}", s.name),
                    price: s.price,
                });
            }
        }
    }
    seats
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rules_sale_status_boundaries() {
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        assert_eq!(sale_status(t(8), t(9), t(18)), "upcoming");
        assert_eq!(sale_status(t(9), t(9), t(18)), "on_sale");
        assert_eq!(sale_status(t(18), t(9), t(18)), "ended");
    }

    #[test]
    fn rules_total_pages() {
        assert_eq!(total_pages(0, 10), 0);
        assert_eq!(total_pages(10, 10), 1);
        assert_eq!(total_pages(11, 10), 2);
        assert_eq!(total_pages(5, 0), 0);
    }

    #[test]
    fn rules_reservation_number_shape() {
        let n = reservation_number(1_795_432_752_383, 123_456_789);
        assert!(n.starts_with("TK1795432752383"));
        assert_eq!(n.len(), 2 + 13 + 5);
        assert!(
            n[15..]
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    #[test]
    fn rules_layout_seats_small_theater_has_265() {
        let cfg: LayoutConfig = serde_json::from_str(
            r#"{"sections":[{"name":"VIP","rows":3,"seatsPerRow":10,"price":150000,"startRow":1},
            {"name":"R","rows":5,"seatsPerRow":15,"price":100000,"startRow":4},
            {"name":"S","rows":8,"seatsPerRow":20,"price":70000,"startRow":9}]}"#,
        )
        .unwrap();
        let seats = layout_seats(&cfg);
        assert_eq!(seats.len(), 265);
        assert_eq!(seats[0].seat_label, "VIP-1-1");
        assert_eq!(seats.last().unwrap().seat_label, "S-16-20");
        assert_eq!(seats.last().unwrap().price, 70000);
    }
}

/// Waiting-room ETA in whole seconds for a 1-based `position` at `rate` admissions per second.
pub fn queue_eta_secs(position: i64, rate: f64) -> i64 {
    if position <= 0 {
        return 0;
    }
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        1.0
    };
    (position as f64 / rate).ceil() as i64
}

/// The admitted-user limit of an event: its own threshold, never above the service's ready capacity
/// when the operator publishes one.
pub fn effective_threshold(event_threshold: i64, capacity: Option<i64>) -> i64 {
    match capacity {
        Some(c) if c >= 0 => event_threshold.min(c),
        _ => event_threshold,
    }
}

/// The capacity the operator publishes per event (`keys::capacity`): users and when (ms since epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityRecord {
    pub users: i64,
    pub at_ms: i64,
}

/// A published capacity older than this is stale (the operator refreshes it every pass, at least
/// every few seconds during a sale and every five minutes otherwise).
pub const CAPACITY_MAX_AGE_MS: i64 = 6 * 60 * 1000;
/// How long a last good capacity may stand in for a zero, stale or unreadable one.
pub const LAST_GOOD_CAPACITY_MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// Why the published capacity was not used as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityFallback {
    Zero,
    Stale,
    Unreadable,
}

impl CapacityFallback {
    pub fn label(self) -> &'static str {
        match self {
            CapacityFallback::Zero => "zero",
            CapacityFallback::Stale => "stale",
            CapacityFallback::Unreadable => "unreadable",
        }
    }
}

/// What a read of the published capacity gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacityRead {
    /// Nothing published: no operator manages this event, the threshold alone applies.
    Absent,
    Published(CapacityRecord),
    /// Redis or the value could not be read.
    Unreadable,
}

/// The capacity in force for admissions, never silently closing the room: a fresh positive record
/// is used; a zero, stale or unreadable one is replaced by `last_good` while that is younger than
/// `LAST_GOOD_CAPACITY_MAX_AGE_MS`, else by no cap (the event's threshold). Returns the capacity to
/// cap with, the new last good value, and the fallback taken (for the metric).
pub fn capacity_in_force(
    read: &CapacityRead,
    last_good: Option<CapacityRecord>,
    now_ms: i64,
) -> (
    Option<i64>,
    Option<CapacityRecord>,
    Option<CapacityFallback>,
) {
    let fallback = match read {
        CapacityRead::Absent => return (None, last_good, None),
        CapacityRead::Published(r) if now_ms - r.at_ms > CAPACITY_MAX_AGE_MS => {
            CapacityFallback::Stale
        }
        CapacityRead::Published(r) if r.users <= 0 => CapacityFallback::Zero,
        CapacityRead::Published(r) => return (Some(r.users), Some(*r), None),
        CapacityRead::Unreadable => CapacityFallback::Unreadable,
    };
    let good = last_good.filter(|g| now_ms - g.at_ms <= LAST_GOOD_CAPACITY_MAX_AGE_MS);
    (good.map(|g| g.users), good, Some(fallback))
}

/// The waiting room's measured outflow per event (`keys::outflow`): users leaving the queue
/// (admitted or gone) per second over the last `window_secs`, published at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutflowRecord {
    pub per_second: f64,
    /// Of which admissions per second (the service's admission throughput).
    pub admitted_per_second: f64,
    pub window_secs: f64,
    pub at_ms: i64,
    /// Service replicas alive while it was measured (heartbeats), so a reader can tell the outflow
    /// per replica without mistaking replicas added since for ones that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
}

/// Shortest measurement window an outflow must cover before it estimates anything.
pub const OUTFLOW_MIN_WINDOW_SECS: f64 = 10.0;

/// Waiting-room ETA from the measured outflow: `None` ("not known yet") until a window of at least
/// `OUTFLOW_MIN_WINDOW_SECS` was measured, or while nobody left the queue in it (a full room does
/// not move: an estimate would be made up).
pub fn queue_eta_from_outflow(position: i64, outflow: Option<OutflowRecord>) -> Option<i64> {
    if position <= 0 {
        return Some(0);
    }
    let o = outflow?;
    if !(o.window_secs >= OUTFLOW_MIN_WINDOW_SECS && o.per_second.is_finite() && o.per_second > 0.0)
    {
        return None;
    }
    Some((position as f64 / o.per_second).ceil().min(i64::MAX as f64) as i64)
}

/// Exponentially weighted admission rate: `previous` blended with the latest window's rate.
pub fn ewma_rate(previous: Option<f64>, admitted: u64, window_secs: f64, alpha: f64) -> f64 {
    let latest = if window_secs > 0.0 {
        admitted as f64 / window_secs
    } else {
        0.0
    };
    match previous {
        Some(p) if p.is_finite() => alpha * latest + (1.0 - alpha) * p,
        _ => latest,
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn rules_queue_eta() {
        assert_eq!(queue_eta_secs(0, 50.0), 0);
        assert_eq!(queue_eta_secs(1, 50.0), 1);
        assert_eq!(queue_eta_secs(100, 50.0), 2);
        assert_eq!(queue_eta_secs(101, 50.0), 3);
        assert_eq!(queue_eta_secs(10, 0.0), 10);
    }

    #[test]
    fn rules_effective_threshold_is_capped_by_capacity() {
        assert_eq!(effective_threshold(1000, None), 1000);
        assert_eq!(effective_threshold(1000, Some(300)), 300);
        assert_eq!(effective_threshold(100, Some(3000)), 100);
    }

    #[test]
    fn rules_capacity_zero_or_stale_never_closes_admission() {
        let now = 1_000_000_000;
        let rec = |users, age| CapacityRecord {
            users,
            at_ms: now - age,
        };
        let fresh = rec(3000, 1000);
        assert_eq!(
            capacity_in_force(&CapacityRead::Published(fresh), None, now),
            (Some(3000), Some(fresh), None)
        );
        // zero: the last good value stands in
        assert_eq!(
            capacity_in_force(&CapacityRead::Published(rec(0, 0)), Some(fresh), now),
            (Some(3000), Some(fresh), Some(CapacityFallback::Zero))
        );
        // stale without a last good value: no cap, the event's threshold applies
        assert_eq!(
            capacity_in_force(
                &CapacityRead::Published(rec(500, CAPACITY_MAX_AGE_MS + 1)),
                None,
                now
            ),
            (None, None, Some(CapacityFallback::Stale))
        );
        // a last good value too old is not used
        let old = rec(3000, LAST_GOOD_CAPACITY_MAX_AGE_MS + 1);
        assert_eq!(
            capacity_in_force(&CapacityRead::Unreadable, Some(old), now),
            (None, None, Some(CapacityFallback::Unreadable))
        );
        assert_eq!(
            capacity_in_force(&CapacityRead::Absent, None, now),
            (None, None, None)
        );
    }

    #[test]
    fn rules_eta_from_outflow_is_unknown_while_nothing_moves() {
        let o = |per_second, window_secs| OutflowRecord {
            per_second,
            admitted_per_second: per_second,
            window_secs,
            at_ms: 0,
            replicas: None,
        };
        assert_eq!(queue_eta_from_outflow(1, None), None);
        assert_eq!(
            queue_eta_from_outflow(1, Some(o(0.0, 120.0))),
            None,
            "full room"
        );
        assert_eq!(
            queue_eta_from_outflow(1, Some(o(5.0, 2.0))),
            None,
            "too short"
        );
        assert_eq!(queue_eta_from_outflow(10, Some(o(0.5, 60.0))), Some(20));
        assert_eq!(queue_eta_from_outflow(0, None), Some(0));
    }

    #[test]
    fn rules_ewma_rate() {
        assert_eq!(ewma_rate(None, 10, 1.0, 0.3), 10.0);
        assert!((ewma_rate(Some(10.0), 20, 1.0, 0.5) - 15.0).abs() < 1e-9);
    }
}
