//! Properties of `decide`, called directly: arbitrary TicketEvent specs are refused or planned within
//! min/max and the connection budget at every instant and queue depth (never panicking); more queued
//! users never ask for fewer replicas; the target never drops below a live sibling's wish; and a
//! queue hovering around a threshold takes at most one scale step per cooldown.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use tiketi_crds::{
    AfterSale, ConnectionBudget, Mode, OtherAutoscalers, QueueScaling, StepRule, TargetKind,
    TargetRef, TicketEvent, TicketEventSpec, TicketEventStatus, condition,
};

use crate::{
    decide::{self, Outcome},
    observe::{Observed, Read, Sibling, Target},
    plan::{self, SalePeak},
    sale::Sale,
    sale::{parse, ts},
};

/// The observation of a pass: the target at `replicas`, all Ready, the queue at `depth`.
fn observed(replicas: i32, history: &[SalePeak], depth: Option<i64>) -> Observed {
    Observed {
        target: Some(Target {
            replicas,
            existing: replicas,
            ready: replicas,
            ..Default::default()
        }),
        history: Read::Ok(history.to_vec()),
        queue_depth: depth.map_or(Read::Skipped, Read::Ok),
        ..Observed::empty("default/te")
    }
}

/// What `decide` wants for `te` at `now`: `Err` = refused spec, `None` = no opinion (scheduled, or
/// restored), `Some((replicas, budget_limited))`.
fn decide(
    te: &TicketEvent,
    now: DateTime<Utc>,
    history: &[SalePeak],
    depth: Option<i64>,
) -> Result<Option<(i32, bool)>, String> {
    let old = te.status.clone().unwrap_or_default();
    parse(&te.spec, &old)?;
    let out = decide::decide(
        &Sale::new(&te.spec, &old),
        &observed(2, history, depth),
        now,
    );
    Ok(wish_of(&out, &old))
}

fn wish_of(out: &Outcome, old: &TicketEventStatus) -> Option<(i32, bool)> {
    let st = out.status.as_ref()?;
    let restored =
        st.phase.as_deref() == Some("Completed") && old.phase.as_deref() == Some("Completed");
    // postponed (scheduled again after a live pass): the baseline is its opinion
    let postponed = st.phase.as_deref() == Some("Scheduled")
        && matches!(
            old.phase.as_deref(),
            Some("PreScaling" | "Ready" | "OnSale" | "Draining")
        )
        && old.observed_generation != st.observed_generation;
    let planned =
        !restored && (postponed || !matches!(st.phase.as_deref(), Some("Scheduled" | "Failed")));
    let limited = st
        .conditions
        .iter()
        .any(|c| c.type_ == condition::BUDGET_LIMITED && c.status == "True");
    planned
        .then_some(st.desired_replicas)
        .flatten()
        .map(|n| (n, limited))
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()
}

/// Mostly plausible values, with the extremes a hand-written or old-schema object may hold.
fn int(range: std::ops::Range<i64>) -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => range,
        1 => Just(0i64),
        1 => Just(-1i64),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ]
}

fn int32(range: std::ops::Range<i32>) -> impl Strategy<Value = i32> {
    prop_oneof![
        6 => range,
        1 => Just(0),
        1 => Just(-1),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
        1 => any::<i32>(),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..48, 0u32..60).prop_map(|(h, m)| format!("{h}h{m}m")),
        1 => "[0-9]{1,18}[hms]",
        1 => "[0-9hms]{0,20}",
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

fn instant() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (-400i64..400).prop_map(|h| (base() + chrono::Duration::hours(h)).to_rfc3339()),
        1 => Just("9999-12-31T23:59:59Z".to_string()),
        1 => Just("0000-01-01T00:00:00+14:00".to_string()),
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
        1 => any::<String>(),
    ]
}

fn rule() -> impl Strategy<Value = StepRule> {
    (
        proptest::option::of(int(0..30_000)),
        proptest::option::of(int(0..30_000)),
        int32(-6..8),
        int(0..900),
    )
        .prop_map(|(above, below, change, cooldown_seconds)| StepRule {
            above,
            below,
            change,
            cooldown_seconds,
        })
}

fn spec() -> impl Strategy<Value = TicketEventSpec> {
    let who = (
        prop_oneof![
            4 => Just("0b6c7a52-3f4e-4a43-9d1e-2f3c4b5a6d7e".to_string()),
            1 => "[0-9a-fA-F-]{0,40}",
        ],
        prop_oneof![4 => Just("IU".to_string()), 1 => ".{0,300}"],
        prop_oneof![4 => Just("svc".to_string()), 1 => ".{0,3}"],
    );
    let window = (instant(), instant(), duration());
    let sizes = (int32(1..5_000), int32(0..10), int32(1..40), int(0..200_000));
    let scaling = (
        prop_oneof![4 => 1i64..=60, 1 => any::<i64>()],
        prop_oneof![
            2 => Just(tiketi_crds::default_rules()),
            1 => proptest::collection::vec(rule(), 0..5),
        ],
        proptest::option::of(int(1..10_000)),
    );
    let after = proptest::option::of((duration(), proptest::option::of(int32(0..40))));
    let budget = proptest::option::of((int32(1..500), int32(1..30), int32(0..50)));
    (who, window, sizes, scaling, after, budget).prop_map(
        |(
            (event_id, artist, target),
            (opens_at, closes_at, lead_time),
            (users_per_replica, min_replicas, max_replicas, fallback_expected_users),
            (poll_seconds, rules, target_queue_per_replica),
            after,
            budget,
        )| TicketEventSpec {
            event_id,
            artist,
            opens_at,
            closes_at,
            target: TargetRef {
                kind: TargetKind::Deployment,
                name: target,
            },
            users_per_replica,
            lead_time,
            min_replicas,
            max_replicas,
            fallback_expected_users,
            queue_scaling: QueueScaling {
                poll_seconds,
                rules,
                target_queue_per_replica,
                drain_within_seconds: None,
            },
            after_sale: after.map(|(hold, replicas)| AfterSale { hold, replicas }),
            connection_budget: budget.map(|(max_connections, pool_per_replica, reserved)| {
                ConnectionBudget {
                    max_connections,
                    pool_per_replica,
                    reserved,
                }
            }),
            mode: Mode::Active,
            other_autoscalers: OtherAutoscalers::Report,
        },
    )
}

/// Specs the CEL rules accept, extremes included (most of the property's cases should get planned).
fn tame_spec() -> impl Strategy<Value = TicketEventSpec> {
    let big = |range: std::ops::Range<i64>, max: i64| prop_oneof![8 => range, 1 => Just(max)];
    let sizes = (
        prop_oneof![8 => 1i32..5_000, 1 => Just(i32::MAX)],
        0i32..10,
        prop_oneof![8 => 0i32..30, 1 => Just(i32::MAX - 10)],
        big(0..200_000, i64::MAX),
    );
    let window = (
        -400i64..400,
        1i64..600,
        prop_oneof![
            6 => (0u32..48, 0u32..60).prop_map(|(h, m)| format!("{h}h{m}m")),
            1 => "[1-9][0-9]{0,13}[hms]",
        ],
    );
    let ladder = (
        1i64..50_000,
        1i64..50_000,
        1i32..10,
        0i64..1_000,
        any::<bool>(),
    )
        .prop_map(|(low, gap, up, below_gap, extreme)| {
            vec![
                StepRule {
                    above: Some(low),
                    below: None,
                    change: up,
                    cooldown_seconds: 180,
                },
                StepRule {
                    above: Some(low + gap),
                    below: None,
                    change: if extreme { i32::MAX } else { up + 1 },
                    cooldown_seconds: if extreme { i64::MAX } else { 300 },
                },
                StepRule {
                    above: None,
                    below: Some((low - below_gap).max(0)),
                    change: if extreme { i32::MIN } else { -1 },
                    cooldown_seconds: 600,
                },
            ]
        });
    let scaling = (
        1i64..=60,
        prop_oneof![Just(tiketi_crds::default_rules()), ladder, Just(vec![])],
        proptest::option::of(big(1..10_000, i64::MAX)),
    );
    let after = proptest::option::of(("[0-9]{1,3}m", any::<bool>()));
    let budget = proptest::option::of((1i32..500, 1i32..30, 0i32..50));
    (sizes, window, scaling, after, budget).prop_map(
        |(
            (per, min, extra, fallback),
            (opens_h, len_h, lead_time),
            (poll, rules, tqpr),
            after,
            budget,
        )| {
            let opens = base() + chrono::Duration::hours(opens_h);
            let max = min.saturating_add(extra).max(1);
            TicketEventSpec {
                event_id: "0b6c7a52-3f4e-4a43-9d1e-2f3c4b5a6d7e".into(),
                artist: "IU".into(),
                opens_at: opens.to_rfc3339(),
                closes_at: (opens + chrono::Duration::minutes(len_h)).to_rfc3339(),
                target: TargetRef {
                    kind: TargetKind::Deployment,
                    name: "svc".into(),
                },
                users_per_replica: per,
                lead_time,
                min_replicas: min,
                max_replicas: max,
                fallback_expected_users: fallback,
                queue_scaling: QueueScaling {
                    poll_seconds: poll,
                    rules,
                    target_queue_per_replica: tqpr,
                    drain_within_seconds: None,
                },
                after_sale: after.map(|(hold, at_max)| AfterSale {
                    hold,
                    replicas: Some(if at_max { max } else { min }),
                }),
                connection_budget: budget.map(|(m, pool, reserved)| ConnectionBudget {
                    max_connections: m + reserved,
                    pool_per_replica: pool,
                    reserved,
                }),
                mode: Mode::Active,
                other_autoscalers: OtherAutoscalers::Report,
            }
        },
    )
}

/// What an earlier pass may have written (or anyone may have edited) in status.
fn status() -> impl Strategy<Value = TicketEventStatus> {
    (
        proptest::option::of(int32(0..40)),
        proptest::option::of(-1_000i64..1_000),
        proptest::option::of(prop::sample::select(vec![
            "Scheduled",
            "PreScaling",
            "OnSale",
            "Draining",
            "Completed",
        ])),
    )
        .prop_map(|(desired, up_secs_ago, phase)| TicketEventStatus {
            desired_replicas: desired,
            last_scale_up_at: up_secs_ago.map(|s| ts(base() - chrono::Duration::seconds(s))),
            phase: phase.map(String::from),
            ..Default::default()
        })
}

fn history() -> impl Strategy<Value = Vec<SalePeak>> {
    proptest::collection::vec(
        (int(0..100_000), -3_000i64..3_000).prop_map(|(peak_users, days)| SalePeak {
            event_id: None,
            peak_users,
            at: base() - chrono::Duration::days(days),
        }),
        0..6,
    )
}

fn check(te: &TicketEvent, history: &[SalePeak], offsets: &[i64], depths: &[i64]) {
    let s = &te.spec;
    for &h in offsets {
        let now = base() + chrono::Duration::minutes(h);
        for &depth in depths {
            let Ok(decision) = decide(te, now, history, Some(depth)) else {
                return; // refused by the operator's validation: marked Failed, nothing scaled
            };
            let Some((n, limited)) = decision else {
                continue;
            };
            assert!(n <= s.max_replicas, "{n} > max {}", s.max_replicas);
            let cap = s
                .connection_budget
                .as_ref()
                .map(|b| plan::budget_cap(b.max_connections, b.pool_per_replica, b.reserved));
            if let Some(cap) = cap {
                assert!(n <= cap, "{n} over the budget {cap}");
            }
            if !limited {
                assert!(n >= s.min_replicas, "{n} < min {}", s.min_replicas);
            }
            assert!(n >= 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_any_spec_is_refused_or_planned_within_bounds(
        spec in prop_oneof![3 => tame_spec(), 1 => spec()],
        status in status(),
        history in history(),
        offsets in proptest::collection::vec(-30_000i64..30_000, 1..6),
        depths in proptest::collection::vec(int(0..100_000), 1..4),
    ) {
        let mut te = TicketEvent::new("te", spec);
        te.status = Some(status);
        check(&te, &history, &offsets, &depths);
    }
}

fn valid() -> TicketEvent {
    let spec: TicketEventSpec = serde_json::from_value(serde_json::json!({
        "eventId": "6a8c3a57-94f1-4f5c-9d5b-2f0b8c1d7e11",
        "artist": "IU",
        "opensAt": "2026-12-01T20:00:00+09:00",
        "closesAt": "2026-12-01T22:00:00+09:00",
        "target": { "kind": "Deployment", "name": "svc" },
    }))
    .unwrap();
    TicketEvent::new("te", spec)
}

#[test]
fn spec_props_valid_specs_are_planned() {
    // the generator's baseline is accepted, so the property does not only see refusals
    let te = valid();
    assert!(parse(&te.spec, &Default::default()).is_ok());
    let during = base() + chrono::Duration::minutes(30);
    assert!(matches!(decide(&te, during, &[], Some(0)), Ok(Some(_))));
}

/// Found by the property: a lead time the CRD pattern accepts (`99999999999999h`) overflowed
/// chrono's Duration and panicked the reconciler.
#[test]
fn spec_props_regression_huge_lead_time_is_refused_not_a_panic() {
    let mut te = valid();
    te.spec.lead_time = "99999999999999h".into();
    assert_eq!(
        parse(&te.spec, &Default::default()).err().as_deref(),
        Some("leadTime: longer than 366 days")
    );
    te.spec.lead_time = "30m".into();
    te.spec.after_sale = Some(AfterSale {
        hold: "9999999999999s".into(),
        replicas: None,
    });
    assert!(parse(&te.spec, &Default::default()).is_err());
}

/// Found by the property: `fallbackExpectedUsers: 9223372036854775807` (CEL: >= 0) overflowed the
/// replica arithmetic; a huge cooldown overflowed a Duration; a status near i32::MAX overflowed a step.
#[test]
fn spec_props_regression_extreme_numbers_do_not_overflow() {
    let mut te = valid();
    te.spec.fallback_expected_users = i64::MAX;
    te.spec.queue_scaling.target_queue_per_replica = Some(i64::MAX);
    te.spec.max_replicas = i32::MAX;
    te.spec.queue_scaling.rules = vec![StepRule {
        above: Some(0),
        below: None,
        change: i32::MAX,
        cooldown_seconds: i64::MAX,
    }];
    te.status = Some(TicketEventStatus {
        desired_replicas: Some(i32::MAX - 1),
        last_scale_up_at: Some(ts(base())),
        ..Default::default()
    });
    for minutes in [-20, 30, 125] {
        let now = base() + chrono::Duration::minutes(minutes);
        let got = decide(&te, now, &[], Some(i64::MAX)).unwrap();
        assert!(got.is_some_and(|(n, _)| n >= 2), "{got:?}");
    }
    assert_eq!(plan::replicas_for(i64::MAX, 1, 0, i32::MAX), i32::MAX);
    assert_eq!(plan::tracking_replicas(i64::MAX, 2), i32::MAX);
}

/// A sale on now (opened 30 minutes before `base()`), with `rules` and optional target tracking.
fn on_sale(rules: Vec<StepRule>, tracking: Option<i64>) -> TicketEvent {
    let mut te = valid();
    te.spec.opens_at = (base() - chrono::Duration::minutes(30)).to_rfc3339();
    te.spec.closes_at = (base() + chrono::Duration::hours(2)).to_rfc3339();
    te.spec.max_replicas = 40;
    te.spec.queue_scaling.rules = rules;
    te.spec.queue_scaling.target_queue_per_replica = tracking;
    te
}

fn ladder() -> impl Strategy<Value = Vec<StepRule>> {
    (1i64..30_000, 1i64..30_000, 1i32..6, 0i64..1_000).prop_map(|(low, gap, up, below_gap)| {
        vec![
            StepRule {
                above: Some(low),
                below: None,
                change: up,
                cooldown_seconds: 180,
            },
            StepRule {
                above: Some(low + gap),
                below: None,
                change: up + 2,
                cooldown_seconds: 300,
            },
            StepRule {
                above: None,
                below: Some((low - below_gap).max(0)),
                change: -1,
                cooldown_seconds: 600,
            },
        ]
    })
}

fn sale_status(
    desired: i32,
    up_secs_ago: Option<i64>,
    down_secs_ago: Option<i64>,
) -> TicketEventStatus {
    TicketEventStatus {
        phase: Some("OnSale".into()),
        desired_replicas: Some(desired),
        last_scale_up_at: up_secs_ago.map(|s| ts(base() - chrono::Duration::seconds(s))),
        last_scale_down_at: down_secs_ago.map(|s| ts(base() - chrono::Duration::seconds(s))),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// More queued users never ask for fewer replicas (steps, tracking and drain-time together).
    #[test]
    fn prop_decide_is_monotone_in_queue_depth(
        rules in ladder(),
        tracking in proptest::option::of(100i64..20_000),
        drain in proptest::option::of((1i64..3_600, 0.1f64..50.0)),
        desired in 0i32..40,
        up in proptest::option::of(0i64..1_000),
        down in proptest::option::of(0i64..1_000),
        d1 in 0i64..100_000,
        d2 in 0i64..100_000,
    ) {
        let mut te = on_sale(rules, tracking);
        te.spec.queue_scaling.drain_within_seconds = drain.map(|(w, _)| w);
        let old = sale_status(desired, up, down);
        let wanted = |depth| {
            let mut o = observed(desired.max(1), &[], Some(depth));
            o.outflow = Read::Ok(drain.map(|(_, per)| tiketi_core::rules::OutflowRecord {
                per_second: per * 2.0,
                admitted_per_second: per * f64::from(desired.max(1)),
                window_secs: 60.0,
                at_ms: 0,
                replicas: None,
            }));
            let out = decide::decide(&Sale::new(&te.spec, &old), &o, base());
            out.status.unwrap().desired_replicas.unwrap()
        };
        let (lo, hi) = (d1.min(d2), d1.max(d2));
        prop_assert!(wanted(lo) <= wanted(hi), "{} queued -> {}, {} queued -> {}", lo, wanted(lo), hi, wanted(hi));
    }

    /// Whatever this event's phase and wish, the target never goes below a live sibling's wish.
    #[test]
    fn prop_decide_never_below_a_live_sibling_s_wish(
        spec in tame_spec(),
        status in status(),
        sibling in 0i32..60,
        current in 0i32..60,
        offset in -30_000i64..30_000,
        depth in 0i64..100_000,
    ) {
        let te = TicketEvent::new("te", spec);
        let mut o = observed(current, &[], Some(depth));
        o.siblings = vec![Sibling { name: "other".into(), live_wish: Some(sibling), unsure: false }];
        let now = base() + chrono::Duration::minutes(offset);
        let out = decide::decide(&Sale::new(&te.spec, &status), &o, now);
        if out.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") {
            return Ok(());
        }
        if wish_of(&out, &status).is_some() {
            let after = out.replicas.unwrap_or(current);
            prop_assert!(after >= sibling, "target {} below the sibling's {}", after, sibling);
        } else {
            prop_assert!(out.replicas.is_none(), "scaled without an opinion");
        }
    }

    /// A queue hovering around a threshold, one pass a second for less than any cooldown, takes at
    /// most one step up and one down, with each pass's status and scale fed into the next.
    #[test]
    fn prop_decide_takes_at_most_one_step_per_cooldown(
        rules in ladder(),
        wiggle in proptest::collection::vec(-50i64..50, 1..170),
        start in 5i32..20,
    ) {
        // start at or above the forecast floor (7500 fallback users / 1500 = 5): every scale is a step
        let threshold = rules[0].above.unwrap();
        let te = on_sale(rules, None);
        let mut old = sale_status(start, None, None);
        let mut replicas = start;
        let (mut ups, mut downs) = (0, 0);
        for (i, w) in wiggle.iter().enumerate() {
            let now = base() + chrono::Duration::seconds(i as i64);
            let out = decide::decide(&Sale::new(&te.spec, &old), &observed(replicas, &[], Some(threshold + w)), now);
            if let Some(n) = out.replicas {
                if n > replicas { ups += 1 } else { downs += 1 }
                replicas = n;
            }
            let st = out.status.unwrap();
            prop_assert!(st.last_scale_up_at == old.last_scale_up_at || st.last_scale_up_at == Some(ts(now)));
            old = st;
        }
        prop_assert!(ups <= 1, "{} scale-ups within one cooldown", ups);
        prop_assert!(downs <= 1, "{} scale-downs within one cooldown", downs);
    }
}
