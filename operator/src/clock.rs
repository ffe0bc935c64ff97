//! The API server's clock. A sale's phases, the scaling cooldowns and the published capacity's
//! timestamp must not depend on which replica leads: each replica measures its skew against the API
//! server from the `Date` header of every response it gets (the leader loop alone brings one every
//! 2 s) and judges time as `local now + skew`. `Date` has whole seconds: a sample takes the middle of
//! its second, and the mean of the last samples (taken at every phase of the second) converges on the
//! true skew, within the one-way latency of the responses.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use chrono::{DateTime, Utc};

/// Samples averaged (at one per 2 s lease renewal: the last half minute or so).
const SAMPLES: usize = 16;

#[derive(Debug, Default)]
pub struct Clock {
    skew_ms: AtomicI64,
    samples: Mutex<VecDeque<i64>>,
}

/// The skew (server − local, ms) one `Date` header received at `received` shows.
pub fn sample(date: &str, received: DateTime<Utc>) -> Option<i64> {
    let server = DateTime::parse_from_rfc2822(date).ok()?.with_timezone(&Utc);
    Some((server - received).num_milliseconds() + 500)
}

impl Clock {
    /// The API server's time now, as far as this replica can tell.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.skew_ms())
    }

    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    /// Takes the `Date` of a response received now into the estimate.
    pub fn observe(&self, date: &str) {
        let Some(s) = sample(date, Utc::now()) else {
            return;
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(s);
        let mean = samples.iter().sum::<i64>() / samples.len() as i64;
        self.skew_ms.store(mean, Ordering::Relaxed);
    }
}

/// A client layer feeding every response's `Date` into `clock`.
pub fn layer<B>(
    clock: std::sync::Arc<Clock>,
) -> tower::util::MapResponseLayer<impl Fn(http::Response<B>) -> http::Response<B> + Clone> {
    tower::util::MapResponseLayer::new(move |resp: http::Response<B>| {
        if let Some(date) = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
        {
            clock.observe(date);
        }
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_sample_takes_the_middle_of_the_date_second() {
        let received = DateTime::parse_from_rfc3339("2026-12-07T02:52:04.200Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(sample("Mon, 07 Dec 2026 02:52:04 GMT", received), Some(300));
        assert_eq!(
            sample("Mon, 07 Dec 2026 03:52:04 GMT", received),
            Some(3_600_300)
        );
        assert_eq!(sample("yesterday", received), None);
    }

    #[test]
    fn clock_applies_the_mean_skew_of_the_recent_samples() {
        let clock = Clock::default();
        let ahead = |s: i64| (Utc::now() + chrono::Duration::seconds(s)).to_rfc2822();
        for _ in 0..4 {
            clock.observe(&ahead(3600));
        }
        let skew = clock.skew_ms();
        assert!((3_599_000..=3_601_500).contains(&skew), "skew {skew}");
        let off = (clock.now() - Utc::now()).num_seconds();
        assert!((3598..=3601).contains(&off), "now is {off} s off");
        // the oldest samples leave the window: a corrected server clock is followed
        for _ in 0..SAMPLES {
            clock.observe(&ahead(0));
        }
        assert!(clock.skew_ms().abs() <= 1500, "skew {}", clock.skew_ms());
    }
}
