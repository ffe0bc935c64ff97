//! Latency summaries (HdrHistogram, microsecond resolution, 3 significant digits).

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency in microseconds (negative clock skew counts as 1 µs).
    pub fn record_us(&mut self, us: i64) {
        let v = u64::try_from(us.max(1)).unwrap_or(1);
        self.0.saturating_record(v);
    }

    /// Records one measured duration.
    pub fn record(&mut self, took: std::time::Duration) {
        self.record_us(i64::try_from(took.as_micros()).unwrap_or(i64::MAX));
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).ok();
    }

    pub fn summary(&self) -> Summary {
        let ms = |us: u64| (us as f64) / 1000.0;
        if self.0.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.0.len(),
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut l = Latencies::default();
        for us in 1..=1000 {
            l.record_us(us * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 2.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
    }
}
