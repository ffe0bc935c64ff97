//! Fair opening of a sale: whoever reaches the waiting room before the sale opens, or within
//! `FAIR_OPENING_WINDOW_SECONDS` after, gets a random place among that crowd instead of a place decided
//! by milliseconds of network latency; later arrivals queue first come, first served behind them.
//!
//! How: each such arrival's queue score is a uniformly random instant of the opening window
//! `[opens, opens + window)`, drawn once and stored with `ZADD NX` at the user's first check (so a
//! refresh, a re-check or another replica never moves it). After the window, arrivals are scored by
//! their arrival time, which is at or after `opens + window`, so they sort behind every random score.
//! Nothing has to happen at the opening itself (no shuffle to run exactly once under a lease, no
//! moment where positions change under the users' eyes): the position a user sees before the opening
//! is the one the admission loop will serve, and that loop admits nobody before `opens`.

use rand::Rng;

/// How the waiting room treats an arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Earlier than `FAIR_OPENING_LEAD_SECONDS` before the opening: the waiting room is not open yet;
    /// the user is neither queued nor admitted (buying is refused by the sale window anyway).
    TooEarly,
    /// In the lottery: queued (never admitted at once) at this random score.
    Lottery(f64),
    /// After the opening window: first come, first served (queued only while anyone waits or the
    /// event is full), scored by arrival time.
    Fifo,
}

impl Arrival {
    /// The script's mode argument.
    pub fn mode(self) -> &'static str {
        match self {
            Arrival::TooEarly => "early",
            Arrival::Lottery(_) => "lottery",
            Arrival::Fifo => "fifo",
        }
    }
}

/// The opening window in ms; at least 1 ms so arrivals before the opening are always in the lottery.
pub fn window_ms(window_secs: u64) -> i64 {
    i64::try_from(window_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

/// Classifies an arrival at `now_ms` for a sale opening at `opens_ms`.
pub fn classify(
    now_ms: i64,
    opens_ms: i64,
    lead_secs: u64,
    window_secs: u64,
    rng: &mut impl Rng,
) -> Arrival {
    let lead_ms = i64::try_from(lead_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
    let window = window_ms(window_secs);
    if now_ms < opens_ms.saturating_sub(lead_ms) {
        Arrival::TooEarly
    } else if now_ms < opens_ms.saturating_add(window) {
        Arrival::Lottery(lottery_score(opens_ms, window, rng))
    } else {
        Arrival::Fifo
    }
}

/// A uniformly random instant of `[opens, opens + window)` in ms, with sub-millisecond precision so
/// ties (ordered by user id in Redis) are rare even among 100k arrivals.
pub fn lottery_score(opens_ms: i64, window_ms: i64, rng: &mut impl Rng) -> f64 {
    let offset = rng.random_range(0.0..window_ms.max(1) as f64);
    opens_ms as f64 + offset
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn opening_classifies_arrivals_by_lead_and_window() {
        let mut rng = rand::rng();
        let at = |now: i64, rng: &mut rand::rngs::ThreadRng| classify(now, OPENS, 1800, 60, rng);
        assert_eq!(at(OPENS - 1_800_001, &mut rng), Arrival::TooEarly);
        for now in [OPENS - 1_800_000, OPENS - 1, OPENS, OPENS + 59_999] {
            assert!(matches!(at(now, &mut rng), Arrival::Lottery(_)), "{now}");
        }
        assert_eq!(at(OPENS + 60_000, &mut rng), Arrival::Fifo);
        // a zero window still randomises everyone who came before the opening
        for now in [OPENS - 5, OPENS] {
            assert!(matches!(
                classify(now, OPENS, 10, 0, &mut rng),
                Arrival::Lottery(_)
            ));
        }
        assert_eq!(classify(OPENS + 1, OPENS, 10, 0, &mut rng), Arrival::Fifo);
        // a zero lead opens the waiting room only at the opening
        assert_eq!(
            classify(OPENS - 1, OPENS, 0, 60, &mut rng),
            Arrival::TooEarly
        );
    }

    #[test]
    fn opening_lottery_scores_fall_inside_the_window_and_before_later_arrivals() {
        let mut rng = rand::rng();
        let window = window_ms(60);
        let scores: Vec<f64> = (0..10_000)
            .map(|_| lottery_score(OPENS, window, &mut rng))
            .collect();
        assert!(
            scores
                .iter()
                .all(|s| *s >= OPENS as f64 && *s < (OPENS + window) as f64)
        );
        // spread over the window, not clustered (each tenth gets roughly a tenth)
        for decile in 0..10 {
            let lo = OPENS as f64 + window as f64 * decile as f64 / 10.0;
            let hi = lo + window as f64 / 10.0;
            let n = scores.iter().filter(|s| **s >= lo && **s < hi).count();
            assert!((800..1200).contains(&n), "decile {decile}: {n}");
        }
        let mut distinct = scores.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(distinct.len() > 9_990, "ties are rare");
    }
}
