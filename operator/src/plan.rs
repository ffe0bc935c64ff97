//! The operator's decisions as pure functions: forecast from past sales, the sale's phase and its next
//! boundary, queue-depth step scaling with hysteresis and cooldowns, and the final clamp by min/max
//! and the database connection budget. No IO, so every rule is unit- and property-tested.

use chrono::{DateTime, Duration, Utc};
use tiketi_crds::StepRule;

/// Half-life of a past sale's weight in the forecast: a sale a year old counts half.
pub const RECENCY_HALF_LIFE_DAYS: f64 = 365.0;

#[derive(Debug, Clone, PartialEq)]
pub struct SalePeak {
    pub event_id: Option<String>,
    pub peak_users: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub expected_users: i64,
    pub fallback: bool,
    pub method: String,
    /// The sales used, with their weights.
    pub basis: Vec<(SalePeak, f64)>,
}

/// Expected peak users: the recency-weighted median of the artist's past sale peaks (robust to one
/// outlier sale), or `fallback_users` without history.
pub fn forecast(history: &[SalePeak], now: DateTime<Utc>, fallback_users: i64) -> Forecast {
    if history.is_empty() {
        return Forecast {
            expected_users: fallback_users.max(0),
            fallback: true,
            method: "fallback (no past sales of this artist)".into(),
            basis: vec![],
        };
    }
    let mut weighted: Vec<(SalePeak, f64)> = history
        .iter()
        .map(|s| {
            let age_days = (now - s.at).num_seconds().max(0) as f64 / 86_400.0;
            (s.clone(), 0.5f64.powf(age_days / RECENCY_HALF_LIFE_DAYS))
        })
        .collect();
    weighted.sort_by_key(|(s, _)| s.peak_users);
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let mut acc = 0.0;
    let mut median = weighted[weighted.len() - 1].0.peak_users;
    for (s, w) in &weighted {
        acc += w;
        if acc >= total / 2.0 {
            median = s.peak_users;
            break;
        }
    }
    Forecast {
        expected_users: median.max(0),
        fallback: false,
        method: format!(
            "recency-weighted median of {} past sale(s), half-life {RECENCY_HALF_LIFE_DAYS} days",
            weighted.len()
        ),
        basis: weighted,
    }
}

/// `ceil(users / users_per_replica)`, within `min..=max`.
pub fn replicas_for(users: i64, users_per_replica: i32, min: i32, max: i32) -> i32 {
    let per = users_per_replica.max(1) as u64;
    let n = (users.max(0) as u64).div_ceil(per);
    (n.min(i32::MAX as u64) as i32).clamp(min.min(max), max)
}

/// Replicas the database can serve: floor((max_connections - reserved) / pool_per_replica).
pub fn budget_cap(max_connections: i32, pool_per_replica: i32, reserved: i32) -> i32 {
    (max_connections.saturating_sub(reserved).max(0) / pool_per_replica.max(1)).max(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Scheduled,
    PreScaling,
    OnSale,
    Draining,
    Completed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        use tiketi_crds::phase::*;
        match self {
            Phase::Scheduled => SCHEDULED,
            Phase::PreScaling => PRE_SCALING,
            Phase::OnSale => ON_SALE,
            Phase::Draining => DRAINING,
            Phase::Completed => COMPLETED,
        }
    }
}

pub struct Window {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
    pub lead: Duration,
    pub hold: Duration,
}

/// The phase at `now` and the instant of the next phase change.
pub fn phase_at(w: &Window, now: DateTime<Utc>) -> (Phase, Option<DateTime<Utc>>) {
    let start = w.opens - w.lead;
    let done = w.closes + w.hold;
    if now < start {
        (Phase::Scheduled, Some(start))
    } else if now < w.opens {
        (Phase::PreScaling, Some(w.opens))
    } else if now < w.closes {
        (Phase::OnSale, Some(w.closes))
    } else if now < done {
        (Phase::Draining, Some(done))
    } else {
        (Phase::Completed, None)
    }
}

/// When the queue rules last acted (persisted in status so cooldowns survive restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepMemory {
    pub last_up: Option<DateTime<Utc>>,
    pub last_down: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub change: i32,
    pub reason: String,
}

fn cooled(last: Option<DateTime<Utc>>, now: DateTime<Utc>, cooldown_secs: i64) -> bool {
    // compared in seconds: a huge cooldown must not overflow a Duration
    last.is_none_or(|t| (now - t).num_seconds() >= cooldown_secs)
}

/// The step the queue rules take at `depth`: the largest matching scale-up (strictly above its
/// threshold) whose cooldown has elapsed since the last scale-up, else the largest matching
/// scale-down (strictly below its threshold, its cooldown elapsed since any scaling). Between the
/// thresholds nothing happens: that dead band is the hysteresis. A deeper queue matches every rule a
/// shallower one does, so it never takes a smaller step (a larger rule still cooling down falls back
/// to a smaller one that has cooled, instead of to nothing).
pub fn queue_step(
    depth: i64,
    rules: &[StepRule],
    memory: StepMemory,
    now: DateTime<Utc>,
) -> Option<Step> {
    let matching_up = rules
        .iter()
        .filter(|r| r.change > 0 && r.above.is_some_and(|a| depth > a));
    if matching_up.clone().next().is_some() {
        let r = matching_up
            .filter(|r| cooled(memory.last_up, now, r.cooldown_seconds))
            .max_by_key(|r| r.above)?;
        return Some(Step {
            change: r.change,
            reason: format!(
                "queue depth {depth} > {}: +{} (cooldown {}s)",
                r.above.unwrap_or_default(),
                r.change,
                r.cooldown_seconds
            ),
        });
    }
    let down = rules
        .iter()
        .filter(|r| r.change < 0 && r.below.is_some_and(|b| depth < b))
        .min_by_key(|r| r.below);
    let r = down?;
    let last_any = memory.last_up.max(memory.last_down);
    cooled(last_any, now, r.cooldown_seconds).then(|| Step {
        change: r.change,
        reason: format!(
            "queue depth {depth} < {}: {} (cooldown {}s)",
            r.below.unwrap_or_default(),
            r.change,
            r.cooldown_seconds
        ),
    })
}

/// Target tracking: enough replicas for `per_replica` queued users each.
pub fn tracking_replicas(depth: i64, per_replica: i64) -> i32 {
    let per = per_replica.max(1) as u64;
    (depth.max(0) as u64).div_ceil(per).min(i32::MAX as u64) as i32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
    /// Replicas the connection budget allows, if a budget is set.
    pub budget: Option<i32>,
}

/// The least replicas the operator ever asks of a target: a sale's service at 0 serves nobody.
pub const MIN_TARGET_REPLICAS: i32 = 1;

/// `wanted` raised to `floor` and `min`, lowered to `max` and the budget. The budget wins over the
/// wish (more replicas than the database can serve would fail every request, not just the surplus)
/// but never takes the target below `MIN_TARGET_REPLICAS`.
pub fn clamp(wanted: i32, floor: i32, b: Bounds) -> (i32, bool) {
    let within = wanted.max(floor).max(b.min).min(b.max);
    let (n, limited) = match b.budget {
        Some(cap) if within > cap => (cap, true),
        _ => (within, false),
    };
    (n.max(MIN_TARGET_REPLICAS), limited)
}

/// Drain-time target: replicas that empty `depth` queued users within `within_secs` when each ready
/// replica lets `per_replica_outflow` users a second through. `None` while the outflow is unknown.
pub fn drain_replicas(
    depth: i64,
    per_replica_outflow: Option<f64>,
    within_secs: i64,
) -> Option<i32> {
    let per = per_replica_outflow.filter(|p| p.is_finite() && *p > 0.0)?;
    let through = per * within_secs.max(1) as f64;
    Some((depth.max(0) as f64 / through).ceil().min(i32::MAX as f64) as i32)
}

/// This event's share of the target's ready capacity: the ready replicas split between the live
/// events on the target in proportion to their wishes, times this event's users per replica.
pub fn capacity_share(ready: i32, own_wish: i32, all_wishes: i32, users_per_replica: i32) -> i64 {
    let ready = i64::from(ready.max(0));
    let per = i64::from(users_per_replica.max(0));
    if all_wishes <= 0 || own_wish >= all_wishes {
        return ready.saturating_mul(per);
    }
    ready
        .saturating_mul(i64::from(own_wish.max(0)))
        .saturating_mul(per)
        / i64::from(all_wishes)
}

/// Safety factor on the measured start-to-Ready time for `leadTime: auto`.
pub const LEAD_SAFETY_FACTOR: f64 = 2.0;
/// Least lead time `auto` plans with (image pulls and scheduling vary more than the samples show).
pub const LEAD_AUTO_MIN_SECS: i64 = 120;
/// Lead time `auto` starts with until a start-up was measured.
pub const LEAD_AUTO_DEFAULT_SECS: i64 = 1800;

/// `leadTime: auto`: the slowest recent start-to-Ready time times the safety factor, at least
/// `LEAD_AUTO_MIN_SECS`; the default until something was measured.
pub fn auto_lead_secs(samples: &[i64]) -> i64 {
    match samples.iter().copied().filter(|s| *s >= 0).max() {
        Some(slowest) => {
            ((slowest as f64 * LEAD_SAFETY_FACTOR).ceil() as i64).max(LEAD_AUTO_MIN_SECS)
        }
        None => LEAD_AUTO_DEFAULT_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use tiketi_crds::default_rules;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn peak(users: i64, days_ago: i64) -> SalePeak {
        SalePeak {
            event_id: None,
            peak_users: users,
            at: t(0) - Duration::days(days_ago),
        }
    }

    #[test]
    fn forecast_falls_back_without_history() {
        let f = forecast(&[], t(0), 7500);
        assert!(f.fallback);
        assert_eq!(f.expected_users, 7500);
    }

    #[test]
    fn forecast_is_a_median_robust_to_one_outlier() {
        let f = forecast(
            &[
                peak(12_000, 30),
                peak(18_000, 30),
                peak(15_000, 30),
                peak(900_000, 30),
            ],
            t(0),
            0,
        );
        assert!(!f.fallback);
        assert_eq!(f.expected_users, 15_000);
        assert_eq!(f.basis.len(), 4);
    }

    #[test]
    fn forecast_prefers_recent_sales() {
        // two old small sales against one recent big one: the recent one carries more weight
        let f = forecast(
            &[peak(10_000, 1500), peak(11_000, 1400), peak(30_000, 10)],
            t(0),
            0,
        );
        assert_eq!(f.expected_users, 30_000);
    }

    #[test]
    fn replicas_and_budget() {
        assert_eq!(replicas_for(15_000, 1500, 2, 20), 10);
        assert_eq!(replicas_for(15_001, 1500, 2, 20), 11);
        assert_eq!(replicas_for(0, 1500, 2, 20), 2);
        assert_eq!(replicas_for(1_000_000, 1500, 2, 20), 20);
        assert_eq!(budget_cap(200, 10, 10), 19);
        assert_eq!(budget_cap(5, 10, 10), 0);
    }

    #[test]
    fn phases_and_boundaries() {
        let w = Window {
            opens: t(10),
            closes: t(12),
            lead: Duration::minutes(30),
            hold: Duration::minutes(10),
        };
        assert_eq!(
            phase_at(&w, t(9)),
            (Phase::Scheduled, Some(t(10) - Duration::minutes(30)))
        );
        assert_eq!(
            phase_at(&w, t(10) - Duration::minutes(30)).0,
            Phase::PreScaling
        );
        assert_eq!(phase_at(&w, t(10)), (Phase::OnSale, Some(t(12))));
        assert_eq!(
            phase_at(&w, t(12)),
            (Phase::Draining, Some(t(12) + Duration::minutes(10)))
        );
        assert_eq!(phase_at(&w, t(13)), (Phase::Completed, None));
    }

    #[test]
    fn steps_follow_the_default_rules() {
        let rules = default_rules();
        let none = StepMemory::default();
        assert_eq!(queue_step(5_001, &rules, none, t(0)).unwrap().change, 2);
        assert_eq!(queue_step(20_001, &rules, none, t(0)).unwrap().change, 5);
        assert_eq!(queue_step(999, &rules, none, t(0)).unwrap().change, -1);
        assert!(queue_step(3_000, &rules, none, t(0)).is_none(), "dead band");
        // cooldowns
        let after_up = StepMemory {
            last_up: Some(t(0)),
            last_down: None,
        };
        assert!(queue_step(5_001, &rules, after_up, t(0) + Duration::seconds(179)).is_none());
        assert!(queue_step(5_001, &rules, after_up, t(0) + Duration::seconds(180)).is_some());
        assert!(queue_step(10, &rules, after_up, t(0) + Duration::seconds(599)).is_none());
        assert!(queue_step(10, &rules, after_up, t(0) + Duration::seconds(600)).is_some());
    }

    /// Found by the decide property: above 20000 with the +5 rule still cooling down (300 s) but the
    /// +2 rule cooled (180 s), the old rule took no step at all while 6000 queued users got +2.
    #[test]
    fn steps_fall_back_to_a_smaller_rule_that_has_cooled() {
        let rules = default_rules();
        let up = StepMemory {
            last_up: Some(t(0)),
            last_down: None,
        };
        let later = t(0) + Duration::seconds(200);
        assert_eq!(queue_step(6_000, &rules, up, later).unwrap().change, 2);
        assert_eq!(queue_step(25_000, &rules, up, later).unwrap().change, 2);
        let much_later = t(0) + Duration::seconds(300);
        assert_eq!(
            queue_step(25_000, &rules, up, much_later).unwrap().change,
            5
        );
    }

    #[test]
    fn clamp_applies_floor_bounds_and_budget() {
        let b = Bounds {
            min: 2,
            max: 20,
            budget: Some(8),
        };
        assert_eq!(clamp(5, 3, b), (5, false));
        assert_eq!(clamp(1, 3, b), (3, false));
        assert_eq!(clamp(12, 3, b), (8, true));
        assert_eq!(clamp(30, 3, Bounds { budget: None, ..b }), (20, false));
    }

    /// A budget that leaves room for no replica (or a minReplicas of 0) never takes the target to 0.
    #[test]
    fn clamp_never_goes_below_one_replica() {
        let b = Bounds {
            min: 2,
            max: 20,
            budget: Some(budget_cap(100, 10, 95)),
        };
        assert_eq!(clamp(5, 5, b), (1, true));
        let zero = Bounds {
            min: 0,
            max: 20,
            budget: None,
        };
        assert_eq!(clamp(0, 0, zero), (1, false));
    }

    #[test]
    fn drain_capacity_and_lead_time_maths() {
        assert_eq!(drain_replicas(6000, Some(10.0), 60), Some(10));
        assert_eq!(drain_replicas(6001, Some(10.0), 60), Some(11));
        assert_eq!(drain_replicas(6000, None, 60), None);
        assert_eq!(drain_replicas(6000, Some(0.0), 60), None);
        assert_eq!(capacity_share(6, 5, 10, 1000), 3000);
        assert_eq!(capacity_share(6, 8, 8, 1000), 6000);
        assert_eq!(capacity_share(6, 0, 0, 1000), 6000);
        assert_eq!(auto_lead_secs(&[]), LEAD_AUTO_DEFAULT_SECS);
        assert_eq!(auto_lead_secs(&[30, 95, 40]), 190);
        assert_eq!(auto_lead_secs(&[5]), LEAD_AUTO_MIN_SECS);
    }

    fn rules_strategy() -> impl Strategy<Value = Vec<StepRule>> {
        (1i64..50_000, 1i64..50_000, 1i32..10, 1i32..10, 0i64..1_000).prop_map(
            |(a, gap, up1, up2, below_gap)| {
                let low = a.min(a + gap);
                vec![
                    StepRule {
                        above: Some(low),
                        below: None,
                        change: up1.min(up2),
                        cooldown_seconds: 180,
                    },
                    StepRule {
                        above: Some(low + gap),
                        below: None,
                        change: up1.max(up2) + 1,
                        cooldown_seconds: 300,
                    },
                    StepRule {
                        above: None,
                        below: Some((low - below_gap).max(0)),
                        change: -1,
                        cooldown_seconds: 600,
                    },
                ]
            },
        )
    }

    proptest! {
        /// More queued users never ask for fewer replicas.
        #[test]
        fn prop_step_is_monotone_in_depth(rules in rules_strategy(), d1 in 0i64..100_000, d2 in 0i64..100_000) {
            let (lo, hi) = (d1.min(d2), d1.max(d2));
            let change = |d| queue_step(d, &rules, StepMemory::default(), t(0)).map_or(0, |s| s.change);
            prop_assert!(change(lo) <= change(hi));
        }

        /// Whatever the inputs, the result respects max and the budget.
        #[test]
        fn prop_clamp_never_exceeds_max_or_budget(wanted in -10i32..10_000, floor in -10i32..10_000, min in 0i32..50, extra in 0i32..50, cap in proptest::option::of(0i32..100)) {
            let b = Bounds { min, max: min + extra, budget: cap };
            let (n, limited) = clamp(wanted, floor, b);
            prop_assert!(n >= MIN_TARGET_REPLICAS);
            prop_assert!(n <= b.max.max(MIN_TARGET_REPLICAS));
            if let Some(c) = cap { prop_assert!(n <= c.max(MIN_TARGET_REPLICAS)); }
            prop_assert!(limited == cap.is_some_and(|c| wanted.max(floor).max(min).min(min + extra) > c));
        }

        /// A queue hovering around a threshold triggers at most one scale-up per cooldown.
        #[test]
        fn prop_hysteresis_prevents_flapping(rules in rules_strategy(), wiggle in proptest::collection::vec(-50i64..50, 1..170)) {
            let threshold = rules[0].above.unwrap();
            let mut memory = StepMemory::default();
            let mut ups = 0;
            let mut downs = 0;
            for (i, w) in wiggle.iter().enumerate() {
                let now = t(0) + Duration::seconds(i as i64); // one poll per second, < any cooldown in total
                if let Some(step) = queue_step(threshold + w, &rules, memory, now) {
                    if step.change > 0 { ups += 1; memory.last_up = Some(now); } else { downs += 1; memory.last_down = Some(now); }
                }
            }
            prop_assert!(ups <= 1, "{ups} scale-ups within one cooldown");
            prop_assert!(downs <= 1);
        }
    }
}
