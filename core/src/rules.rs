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
    fn rules_ewma_rate() {
        assert_eq!(ewma_rate(None, 10, 1.0, 0.3), 10.0);
        assert!((ewma_rate(Some(10.0), 20, 1.0, 0.5) - 15.0).abs() < 1e-9);
    }
}
