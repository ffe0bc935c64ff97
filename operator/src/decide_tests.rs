//! `decide` on its own: each rule, and each way a rule can go wrong, as one observation.

use chrono::{DateTime, Duration, TimeZone, Utc};
use tiketi_core::rules::OutflowRecord;
use tiketi_crds::{
    Forecast, OtherAutoscalers, TicketEvent, TicketEventSpec, TicketEventStatus, condition,
};

use crate::{
    decide::{self, AutoscalerPatch, Capacity, Outcome},
    observe::{Autoscaler, Observed, PodStart, Read, Sibling, Target},
    sale::Sale,
};

/// One pass of `decide` on spec `s` with last status `old`.
fn decide(
    s: &TicketEventSpec,
    old: &TicketEventStatus,
    o: &Observed,
    now: DateTime<Utc>,
) -> Outcome {
    decide::decide(&Sale::new(s, old), o, now)
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()
}

/// A sale opening `opens_in` from `now()`, for two hours.
pub fn spec(opens_in: Duration) -> TicketEventSpec {
    let opens = now() + opens_in;
    serde_json::from_value(serde_json::json!({
        "eventId": "6a8c3a57-94f1-4f5c-9d5b-2f0b8c1d7e11",
        "artist": "IU",
        "opensAt": opens.to_rfc3339(),
        "closesAt": (opens + Duration::hours(2)).to_rfc3339(),
        "target": { "kind": "Deployment", "name": "svc" },
    }))
    .unwrap()
}

pub fn status(phase: &str, desired: i32) -> TicketEventStatus {
    TicketEventStatus {
        phase: Some(phase.into()),
        desired_replicas: Some(desired),
        ..Default::default()
    }
}

pub fn observed(replicas: i32, ready: i32) -> Observed {
    Observed {
        target: Some(Target {
            replicas,
            existing: replicas,
            ready,
            ..Default::default()
        }),
        ..Observed::empty("default/te")
    }
}

fn sibling(wish: i32) -> Sibling {
    Sibling {
        name: "other".into(),
        live_wish: Some(wish),
        unsure: false,
    }
}

fn cond<'a>(
    out: &'a Outcome,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    out.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

/// 11a: one TicketEvent completes while another sale on the same Deployment is live.
#[test]
fn decide_completing_sale_never_drops_below_a_live_sibling_s_wish() {
    let s = spec(Duration::hours(-3)); // closed an hour ago, hold 10m: Completed
    let mut o = observed(9, 9);
    o.siblings = vec![sibling(7)];
    let out = decide(&s, &status("Draining", 9), &o, now());
    assert_eq!(
        out.replicas,
        Some(7),
        "the live sale's 7, not the baseline 2"
    );
    assert_eq!(out.status.unwrap().phase.as_deref(), Some("Completed"));
}

/// Found by the e2e: two sales start together; the long one scales to 5 before its status is in
/// the store, and the short one's first pass (wish 2) must not take the target back down.
#[test]
fn decide_never_scales_down_while_a_live_sibling_s_wish_is_unknown() {
    let s = spec(Duration::minutes(-1));
    let mut o = observed(5, 5);
    o.queue_depth = Read::Ok(0);
    o.siblings = vec![Sibling {
        name: "long".into(),
        live_wish: None,
        unsure: true,
    }];
    let mut lower = s.clone();
    lower.fallback_expected_users = 3000; // 2 replicas
    let out = decide(&lower, &TicketEventStatus::default(), &o, now());
    assert_eq!(out.replicas, None, "5 held, not scaled to 2");
    let summary = out.status.unwrap().summary.unwrap();
    assert!(
        summary.contains("not scaling down before sale long reports its wish"),
        "{summary}"
    );
    // scaling up is never held back
    let out = decide(
        &s,
        &TicketEventStatus::default(),
        &observed(2, 2).with_depth(0),
        now(),
    );
    assert_eq!(out.replicas, Some(5));
    o.target = Some(Target {
        replicas: 2,
        existing: 2,
        ready: 2,
        ..Default::default()
    });
    assert_eq!(
        decide(&s, &TicketEventStatus::default(), &o, now()).replicas,
        Some(5)
    );
}

/// 11b: PostgreSQL unreachable before the opening: pre-scaling goes on from the last recorded
/// forecast, and says so.
#[test]
fn decide_history_outage_keeps_the_last_recorded_forecast() {
    let s = spec(Duration::minutes(10));
    let mut old = status("PreScaling", 8);
    old.forecast = Some(Forecast {
        expected_users: 12_000,
        replicas: 8,
        method: "recency-weighted median of 3 past sale(s)".into(),
        basis: vec![],
    });
    let mut o = observed(2, 2);
    o.history = Read::Failed("pool timed out".into());
    let out = decide(&s, &old, &o, now());
    assert_eq!(out.replicas, Some(8));
    let c = cond(&out, condition::FORECAST_FALLBACK);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "HistoryUnavailable")
    );
    assert!(
        c.message.contains("last recorded forecast of 12000"),
        "{}",
        c.message
    );
}

#[test]
fn decide_history_outage_without_a_forecast_uses_fallback_expected_users() {
    let s = spec(Duration::minutes(10));
    let mut o = observed(2, 2);
    o.history = Read::Failed("connection refused".into());
    let out = decide(&s, &TicketEventStatus::default(), &o, now());
    assert_eq!(out.replicas, Some(5), "7500 fallback users / 1500");
    let c = cond(&out, condition::FORECAST_FALLBACK);
    assert_eq!(c.reason, "HistoryUnavailable");
    assert!(
        c.message.contains("fallbackExpectedUsers 7500"),
        "{}",
        c.message
    );
}

/// 11b: reads after the scale (the actual peak) failing still leave a status with the cooldown.
#[test]
fn decide_unreadable_peak_still_writes_status_and_cooldown() {
    let s = spec(Duration::minutes(-5));
    let mut o = observed(5, 5);
    o.queue_depth = Read::Ok(6_000);
    o.peak_users = Read::Failed("connection refused".into());
    let out = decide(&s, &status("OnSale", 5), &o, now());
    assert_eq!(out.replicas, Some(7), "+2 above 5000");
    let st = out.status.unwrap();
    assert_eq!(st.last_scale_up_at.as_deref(), Some("2026-12-01T11:00:00Z"));
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == condition::SIGNALS_DEGRADED && c.status == "True")
    );
}

/// 11c: two live sales on one Deployment share its ready capacity (by their wishes), each in its
/// own users per replica, instead of each admitting the whole of it.
#[test]
fn decide_capacity_is_this_event_s_share_of_the_target() {
    let mut s = spec(Duration::minutes(-5));
    s.users_per_replica = 1000;
    let mut o = observed(6, 6);
    o.queue_depth = Read::Ok(0);
    o.siblings = vec![sibling(6)];
    let out = decide(&s, &status("OnSale", 8), &o, now());
    // wishes 8 (own: 7500 fallback users / 1000) and 6: 6 ready x 8/14 x 1000
    assert_eq!(out.status.as_ref().unwrap().desired_replicas, Some(8));
    assert_eq!(out.capacity, Some(Capacity::Publish(3428)));
    // alone it has all of it
    o.siblings.clear();
    let out = decide(&s, &status("OnSale", 8), &o, now());
    assert_eq!(out.capacity, Some(Capacity::Publish(6000)));
}

#[test]
fn decide_completed_sale_removes_its_capacity() {
    let s = spec(Duration::hours(-3));
    let out = decide(&s, &status("Draining", 5), &observed(5, 5), now());
    assert_eq!(out.capacity, Some(Capacity::Remove));
}

/// 11f: deleted mid-sale: the target returns to what the remaining sales want, or the baseline.
#[test]
fn decide_deleted_mid_sale_restores_the_remaining_wish_or_the_baseline() {
    let s = spec(Duration::minutes(-5));
    let mut o = observed(9, 9);
    o.deleting = true;
    let out = decide(&s, &status("OnSale", 9), &o, now());
    assert_eq!(out.replicas, Some(2));
    assert_eq!(out.events[0].reason, "Restored");
    assert!(
        out.events[0].note.contains("9 -> 2 replicas (baseline 2)"),
        "{}",
        out.events[0].note
    );
    assert_eq!(out.capacity, Some(Capacity::Remove));
    o.siblings = vec![sibling(6)];
    let out = decide(&s, &status("OnSale", 9), &o, now());
    assert_eq!(out.replicas, Some(6));
    // never applied (still scheduled): the target is not touched
    let out = decide(&s, &status("Scheduled", 0), &o, now());
    assert_eq!(out.replicas, None);
}

/// 11g: after the sale, the HPA's minReplicas goes back to the saved value.
#[test]
fn decide_cooperation_restores_the_hpa_after_the_sale() {
    let mut s = spec(Duration::hours(-3));
    s.other_autoscalers = OtherAutoscalers::Cooperate;
    let mut o = observed(5, 5);
    o.autoscalers = vec![Autoscaler::Hpa {
        name: "svc-hpa".into(),
        min: Some(5),
        max: 10,
        original_min: Some(2),
    }];
    let out = decide(&s, &status("Draining", 5), &o, now());
    assert_eq!(out.replicas, None, "the HPA scales, not the operator");
    assert_eq!(
        out.autoscaler,
        Some(AutoscalerPatch::HpaMin {
            name: "svc-hpa".into(),
            min: 2,
            save_original: None,
            restored: true
        })
    );
    // a live sibling keeps it raised
    o.siblings = vec![sibling(5)];
    assert_eq!(
        decide(&s, &status("Draining", 5), &o, now()).autoscaler,
        None
    );
}

#[test]
fn decide_cooperation_lifts_the_keda_pause_after_the_sale() {
    let mut s = spec(Duration::hours(-3));
    s.other_autoscalers = OtherAutoscalers::Cooperate;
    let mut o = observed(5, 5);
    o.autoscalers = vec![Autoscaler::ScaledObject {
        name: "svc-keda".into(),
        paused_replicas: Some(5),
        paused_by: Some("default/te".into()),
    }];
    let out = decide(&s, &status("Draining", 5), &o, now());
    assert!(matches!(
        out.autoscaler,
        Some(AutoscalerPatch::KedaPause { replicas: None, .. })
    ));
}

/// Drain-time target: 6000 queued, 2 users/s admitted per ready replica, drain within 300 s.
#[test]
fn decide_drain_time_sizes_replicas_from_the_measured_outflow() {
    let mut s = spec(Duration::minutes(-5));
    s.queue_scaling.rules = vec![];
    s.queue_scaling.drain_within_seconds = Some(300);
    let mut o = observed(5, 5);
    o.queue_depth = Read::Ok(6_000);
    o.outflow = Read::Ok(Some(OutflowRecord {
        per_second: 12.0,
        admitted_per_second: 10.0,
        window_secs: 60.0,
        at_ms: 0,
        replicas: None,
    }));
    let out = decide(&s, &status("OnSale", 5), &o, now());
    assert_eq!(out.replicas, Some(10), "6000 / (2/s x 300 s)");
    let st = out.status.unwrap();
    let d = st.drain.unwrap();
    assert_eq!((d.outflow_per_replica, d.replicas), (Some(2.0), Some(10)));
    assert!(
        st.summary
            .unwrap()
            .contains("drain 6000 queued within 300s at 2.00/s per ready replica -> 10")
    );
    // no outflow measured yet: the rule says so and asks nothing
    o.outflow = Read::Ok(None);
    let out = decide(&s, &status("OnSale", 5), &o, now());
    assert_eq!(out.replicas, None);
    let st = out.status.unwrap();
    assert_eq!(st.drain.unwrap().replicas, None);
    assert!(
        st.summary
            .unwrap()
            .contains("drain-time rule waits for a measured outflow")
    );
}

/// The drain-time rule divides the outflow by the replicas that produced it: once scaled out (the
/// measurement still from 5 replicas), it holds instead of reading "less per replica" and running
/// away to maxReplicas.
#[test]
fn decide_drain_time_does_not_run_away_after_scaling_out() {
    let mut s = spec(Duration::minutes(-5));
    s.queue_scaling.rules = vec![];
    s.queue_scaling.drain_within_seconds = Some(300);
    let mut o = observed(10, 10);
    o.queue_depth = Read::Ok(6_000);
    o.outflow = Read::Ok(Some(OutflowRecord {
        per_second: 12.0,
        admitted_per_second: 10.0,
        window_secs: 60.0,
        at_ms: 0,
        replicas: Some(5),
    }));
    let out = decide(&s, &status("OnSale", 10), &o, now());
    assert_eq!(out.replicas, None, "stays at 10, not 20");
    assert_eq!(out.status.unwrap().drain.unwrap().ready_replicas, 5);
}

/// Warm-up credit: replicas asked for but not Ready yet hold back the next step up.
#[test]
fn decide_warm_up_credit_postpones_a_step_while_replicas_start() {
    let s = spec(Duration::minutes(-5));
    let mut old = status("OnSale", 7);
    old.last_scale_up_at = Some("2026-12-01T10:56:00Z".into()); // 4 minutes ago: cooled
    old.last_decision = Some(tiketi_crds::Decision {
        at: "2026-12-01T10:56:00Z".into(),
        replicas: 7,
        reason: "queue depth 6000 > 5000: +2 (cooldown 180s)".into(),
    });
    let mut o = observed(7, 5);
    o.queue_depth = Read::Ok(6_000);
    let out = decide(&s, &old, &o, now());
    assert_eq!(out.replicas, None, "2 replicas still starting");
    let st = out.status.unwrap();
    assert_eq!(
        st.last_scale_up_at, old.last_scale_up_at,
        "the step is not spent"
    );
    assert_eq!(st.starting_replicas, Some(2));
    assert!(
        st.summary
            .unwrap()
            .contains("warm-up credit: 2 replica(s) still starting")
    );
    // once they are Ready the step is taken
    let out = decide(&s, &old, &observed(7, 7).with_depth(6_000), now());
    assert_eq!(out.replicas, Some(9));
    // pods that never turn Ready hold it back for at most ten minutes after the last decision
    let out = decide(&s, &old, &o, now() + Duration::minutes(7));
    assert_eq!(out.replicas, Some(9));
}

/// leadTime auto: the slowest measured start-up x 2 moves the pre-scaling start.
#[test]
fn decide_lead_time_auto_learns_from_pod_start_ups() {
    let mut s = spec(Duration::minutes(20));
    s.lead_time = "auto".into();
    let mut o = observed(2, 2);
    o.pod_starts = vec![
        PodStart {
            ready_at: now() - Duration::minutes(30),
            seconds: 240,
        },
        PodStart {
            ready_at: now() - Duration::minutes(29),
            seconds: 300,
        },
    ];
    // default 30m lead: pre-scaling already
    let out = decide(&s, &TicketEventStatus::default(), &o, now());
    let st = out.status.unwrap();
    let up = st.startup.clone().unwrap();
    assert_eq!(up.samples_seconds, vec![240, 300]);
    assert_eq!(up.lead_time_seconds, Some(600));
    // next pass plans with 10 minutes: 20 minutes before opening is Scheduled again
    o.pod_starts.clear();
    let out = decide(&s, &st, &o, now());
    let st2 = out.status.unwrap();
    assert_eq!(st2.phase.as_deref(), Some("Scheduled"));
    assert!(
        st2.summary
            .as_deref()
            .unwrap()
            .contains("starts 600s before opening; leadTime auto from 2 measured start-up(s)"),
        "{:?}",
        st2.summary
    );
    assert_eq!(
        st2.startup.unwrap().samples_seconds,
        vec![240, 300],
        "not counted twice"
    );
}

impl Observed {
    fn with_depth(mut self, d: i64) -> Self {
        self.queue_depth = Read::Ok(d);
        self
    }
}

/// Status and summary together explain a plan a person can act on.
#[test]
fn decide_summary_names_the_other_sale_and_the_budget() {
    let mut s = spec(Duration::minutes(10));
    s.connection_budget = Some(tiketi_crds::ConnectionBudget {
        max_connections: 50,
        pool_per_replica: 10,
        reserved: 10,
    });
    let mut o = observed(2, 2);
    o.siblings = vec![sibling(8)];
    let out = decide(&s, &TicketEventStatus::default(), &o, now());
    let summary = out.status.unwrap().summary.unwrap();
    assert!(summary.contains("another sale on svc wants 8"), "{summary}");
    assert!(
        summary.contains("capped by the connection budget"),
        "{summary}"
    );
    let _ = TicketEvent::new("x", s);
}

/// A budget that leaves no room (a spec that reached the operator without the CRD's rule) or a
/// minReplicas of 0 never takes the target to 0, and 0 ready replicas are never Ready.
#[test]
fn decide_never_scales_to_zero_nor_reports_ready_at_zero() {
    let mut s = spec(Duration::minutes(10));
    s.min_replicas = 0;
    s.fallback_expected_users = 0;
    let out = decide(&s, &TicketEventStatus::default(), &observed(3, 3), now());
    assert_eq!(out.replicas, Some(1), "pre-scaling for 0 users keeps 1");
    let out = decide(&s, &status("PreScaling", 1), &observed(0, 0), now());
    assert_eq!(out.replicas, Some(1));
    assert_eq!(cond(&out, condition::READY).status, "False");
    // after the sale, with no replica ready: not Ready either
    let done = spec(Duration::hours(-3));
    let out = decide(&done, &status("Completed", 2), &observed(0, 0), now());
    assert_eq!(cond(&out, condition::READY).status, "False");
}

/// `mode: Plan` shows the admission capacity in status but never publishes it to the live waiting
/// room, nor removes one at the end.
#[test]
fn decide_plan_mode_writes_no_capacity() {
    let mut s = spec(Duration::minutes(-5));
    s.mode = tiketi_crds::Mode::Plan;
    let out = decide(
        &s,
        &status("OnSale", 5),
        &observed(5, 5).with_depth(0),
        now(),
    );
    assert_eq!(out.capacity, None);
    assert_eq!(out.status.unwrap().capacity_users, Some(5 * 1500));
    let mut done = spec(Duration::hours(-3));
    done.mode = tiketi_crds::Mode::Plan;
    let out = decide(&done, &status("Draining", 5), &observed(5, 5), now());
    assert_eq!(out.capacity, None);
    assert_eq!(out.wish, None);
}

/// `opensAt` moved later while the sale was live: the phase goes back to Scheduled and what the
/// plan held is released — the target back to the baseline, the wish and the capacity removed,
/// a raised HPA restored.
#[test]
fn decide_postponed_sale_releases_the_target() {
    let s = spec(Duration::hours(5));
    let mut o = observed(9, 9);
    o.own_wish = Some(crate::observe::TargetWish {
        replicas: 9,
        until: "2026-12-01T14:00:00Z".into(),
    });
    let out = decide(&s, &status("OnSale", 9), &o, now());
    assert_eq!(out.replicas, Some(2), "back to minReplicas");
    assert_eq!(out.wish, Some(None), "wish removed");
    assert_eq!(out.capacity, Some(Capacity::Remove));
    let st = out.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Scheduled"));
    assert_eq!(st.wish_target, None);
    // the next pass has nothing left to give back
    let out = decide(&s, &st, &observed(2, 2), now());
    assert_eq!(
        (out.replicas, out.capacity.clone(), out.wish.clone()),
        (None, None, None)
    );

    let mut coop = s.clone();
    coop.other_autoscalers = OtherAutoscalers::Cooperate;
    let mut o = observed(9, 9);
    o.autoscalers = vec![Autoscaler::Hpa {
        name: "svc-hpa".into(),
        min: Some(9),
        max: 20,
        original_min: Some(2),
    }];
    let out = decide(&coop, &status("OnSale", 9), &o, now());
    assert!(
        matches!(
            out.autoscaler,
            Some(AutoscalerPatch::HpaMin {
                min: 2,
                restored: true,
                ..
            })
        ),
        "{:?}",
        out.autoscaler
    );
}

/// An older TicketEvent plans the same eventId: this one is Failed, scales nothing, publishes no
/// capacity, and when deleted does not remove the capacity the older one publishes.
#[test]
fn decide_duplicate_event_id_fails_the_newer_and_leaves_the_key_alone() {
    let s = spec(Duration::minutes(-5));
    let mut o = observed(2, 2).with_depth(0);
    o.duplicate_of = Some("default/first".into());
    let out = decide(&s, &TicketEventStatus::default(), &o, now());
    assert_eq!(
        (out.replicas, out.capacity.clone(), out.wish.clone()),
        (None, None, None)
    );
    assert_eq!(
        out.status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    assert_eq!(cond(&out, condition::READY).reason, "DuplicateEventId");
    o.deleting = true;
    let out = decide(&s, &out.status.unwrap(), &o, now());
    assert_eq!(out.capacity, None, "the older one's key stays");
    // the one that keeps the sale removes it when deleted
    o.duplicate_of = None;
    let out = decide(&s, &status("OnSale", 5), &o, now());
    assert_eq!(out.capacity, Some(Capacity::Remove));
}

/// A rollout's surge pods are not Ready yet either, but a scale-up did not ask for them: the queue
/// step is taken, not held back by the warm-up credit.
#[test]
fn decide_rollout_surge_is_not_warm_up_credit() {
    let s = spec(Duration::minutes(-5));
    let mut old = status("OnSale", 7);
    old.last_scale_up_at = Some("2026-12-01T10:56:00Z".into());
    old.last_decision = Some(tiketi_crds::Decision {
        at: "2026-12-01T10:56:00Z".into(),
        replicas: 7,
        reason: "queue depth 6000 > 5000: +2 (cooldown 180s)".into(),
    });
    let mut o = observed(7, 6).with_depth(6_000);
    o.target = Some(Target {
        replicas: 7,
        existing: 9,
        ready: 6,
        rolling_out: true,
    });
    let out = decide(&s, &old, &o, now());
    assert_eq!(out.replicas, Some(9), "{:?}", out.status.unwrap().summary);
}

/// After the sale, status and the SaleCompleted event give forecast against the actual peak demand
/// and the error between them.
#[test]
fn decide_completed_sale_reports_forecast_against_demand_and_the_error() {
    let s = spec(Duration::hours(-3));
    let mut old = status("Draining", 5);
    old.forecast = Some(Forecast {
        expected_users: 7500,
        replicas: 5,
        method: "fallback".into(),
        basis: vec![],
    });
    let mut o = observed(5, 5);
    o.peak_users = Read::Ok(Some(9000));
    let out = decide(&s, &old, &o, now());
    let st = out.status.as_ref().unwrap();
    assert_eq!(st.peak_actual_users, Some(9000));
    assert_eq!(st.forecast_error_percent, Some(20));
    let done = out
        .events
        .iter()
        .find(|n| n.reason == "SaleCompleted")
        .unwrap();
    assert!(
        done.note
            .contains("forecast 7500 users, actual peak demand 9000 (error +20%)"),
        "{}",
        done.note
    );
    assert_eq!(out.record.unwrap().peak_users, Some(9000));
}
