//! Reconcile scenarios against the ordered API-server verifier: every call, its body, in order, and
//! nothing else.

use chrono::Duration;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tiketi_crds::{ConnectionBudget, Mode, OtherAutoscalers, TicketEventStatus};

use crate::fixtures::*;

fn status_body(calls: &[Call]) -> Value {
    calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .expect("status patched")
        .body["status"]
        .clone()
}

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .expect(type_)
        .clone();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn reconcile_prescales_from_the_fallback_forecast() {
    let te = ticket_event("iu", Duration::minutes(10));
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 5),
            Expect::event("Scaled"),
            Expect::status(
                &te,
                json!({ "phase": "PreScaling", "desiredReplicas": 5, "targetReplicas": 5,
                        "forecast": { "expectedUsers": 7500, "replicas": 5 } }),
            ),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    let st = status_body(&calls);
    assert_eq!(
        condition(&st, "ForecastFallback"),
        ("True".into(), "NoHistory".into())
    );
    assert_eq!(condition(&st, "Ready"), ("False".into(), "Warming".into()));
    assert!(
        st["summary"]
            .as_str()
            .unwrap()
            .starts_with("PreScaling: pre-scaling for 7500")
    );
}

#[tokio::test]
async fn reconcile_adds_the_finalizer_before_anything_else() {
    let mut te = ticket_event("new", Duration::minutes(10));
    te.metadata.finalizers = None;
    let mut finalized = te.clone();
    finalized.metadata.finalizers = Some(vec![crate::context::FINALIZER.into()]);
    let (result, _) = reconcile_scripted(
        &te,
        World::new(),
        vec![
            Expect::get_te(&te),
            Expect::patch(
                "/namespaces/default/ticketevents/new",
                json!([{ "op": "test", "path": "/metadata/finalizers", "value": null },
                       { "op": "add", "path": "/metadata/finalizers", "value": ["tiketi.io/restore-replicas"] }]),
                serde_json::to_value(&finalized).unwrap(),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn reconcile_plan_mode_publishes_without_scaling() {
    let mut te = ticket_event("plan", Duration::minutes(10));
    te.spec.mode = Mode::Plan;
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(&te, json!({ "desiredReplicas": 5, "targetReplicas": 2 })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    let st = status_body(&calls);
    assert!(
        st["lastDecision"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("plan only")
    );
}

#[tokio::test]
async fn reconcile_reports_an_hpa_conflict_and_does_not_fight_it() {
    let te = ticket_event("conflict", Duration::minutes(10));
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te).hpa(&hpa_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(
                &te,
                json!({ "autoscaler": { "kind": "HorizontalPodAutoscaler", "name": "svc-hpa", "policy": "Report" } }),
            ),
            Expect::event("TargetConflict"),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(
        condition(&status_body(&calls), "TargetConflict"),
        ("True".into(), "HPA".into())
    );
}

#[tokio::test]
async fn reconcile_caps_replicas_by_the_connection_budget() {
    let mut te = ticket_event("budget", Duration::minutes(10));
    te.spec.connection_budget = Some(ConnectionBudget {
        max_connections: 50,
        pool_per_replica: 10,
        reserved: 10,
    });
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 4),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "desiredReplicas": 4 })),
            Expect::event("BudgetLimited"),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(
        condition(&status_body(&calls), "BudgetLimited"),
        ("True".into(), "Capped".into())
    );
}

#[tokio::test]
async fn reconcile_waits_for_the_phase_boundary_when_scheduled() {
    let te = ticket_event("later", Duration::days(2));
    let (action, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(&te, json!({ "phase": "Scheduled" })),
            Expect::event("Phase"),
        ],
    )
    .await;
    assert_eq!(
        action.unwrap(),
        Action::requeue(std::time::Duration::from_secs(300)),
        "capped wait, recomputed on wake-up"
    );
}

#[tokio::test]
async fn reconcile_takes_the_max_of_events_on_one_deployment() {
    let te = ticket_event("small", Duration::minutes(10));
    let other = with_status(ticket_event("big", Duration::minutes(5)), "OnSale", 8);
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te).ticket(&other),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment_with(2, 2, &[("big", 8)]),
            Expect::scale(2, 8),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "desiredReplicas": 5, "targetReplicas": 8 })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
}

#[tokio::test]
async fn reconcile_marks_warm_when_ready_replicas_reach_the_plan() {
    let te = ticket_event("warm", Duration::minutes(10));
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(5, 5),
            Expect::write(5),
            Expect::status(&te, json!({ "phase": "Ready" })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(
        condition(&status_body(&calls), "Ready"),
        ("True".into(), "Warm".into())
    );
}

#[tokio::test]
async fn reconcile_restores_the_baseline_after_the_sale() {
    let te = with_status(ticket_event("done", Duration::hours(-3)), "Draining", 9);
    let (action, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(9, 9),
            Expect::scale(9, 2),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "phase": "Completed" })),
            Expect::event("SaleCompleted"),
            Expect::event("Phase"),
        ],
    )
    .await;
    assert_eq!(
        action.unwrap(),
        Action::requeue(std::time::Duration::from_secs(300))
    );
}

/// Two sales on one Deployment reconcile concurrently: this pass read the target before the other
/// sale's pass scaled it. Its scale carries the resourceVersion it read, the API server refuses it,
/// and the pass writes nothing (no status, no events) and decides again shortly — it must not put
/// the target back to what it would have been without the sibling (seen in e2e: 1 → 5 → 2).
#[tokio::test]
async fn reconcile_scale_from_a_stale_read_is_refused_and_decided_again() {
    let te = ticket_event("short", Duration::minutes(10));
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 5).conflict(),
        ],
    )
    .await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(crate::controller::RETRY_STALE)
    );
}

/// At the API: the completing sale gives the Deployment back to the live sale's wish.
#[tokio::test]
async fn reconcile_completing_sale_keeps_a_live_sibling_s_replicas() {
    let te = with_status(ticket_event("done", Duration::hours(-3)), "Draining", 9);
    let live = with_status(ticket_event("live", Duration::minutes(-5)), "OnSale", 7);
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te).ticket(&live),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment_with(9, 9, &[("live", 7)]),
            Expect::scale(9, 7),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "phase": "Completed", "targetReplicas": 7 })),
            Expect::event("SaleCompleted"),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
}

/// Defect 11f at the API: deleting a TicketEvent mid-sale restores the target, then releases it.
#[tokio::test]
async fn reconcile_deleting_mid_sale_restores_the_baseline_and_removes_the_finalizer() {
    let mut te = with_status(ticket_event("gone", Duration::minutes(-5)), "OnSale", 9);
    te.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let mut released = te.clone();
    released.metadata.finalizers = None;
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(9, 9),
            Expect::scale(9, 2),
            Expect::event("Restored"),
            Expect::patch(
                "/namespaces/default/ticketevents/gone",
                json!([{ "op": "test", "path": "/metadata/finalizers/0", "value": "tiketi.io/restore-replicas" },
                       { "op": "remove", "path": "/metadata/finalizers/0" }]),
                serde_json::to_value(&released).unwrap(),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
}

/// At the API: with `Cooperate`, the HPA's minReplicas carries the wish during the sale
/// (its original saved for the restore) and the operator does not write /scale itself.
#[tokio::test]
async fn reconcile_cooperates_with_an_hpa_by_raising_its_min_replicas() {
    let mut te = ticket_event("coop", Duration::minutes(10));
    te.spec.other_autoscalers = OtherAutoscalers::Cooperate;
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te).hpa(&hpa_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::patch(
                "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/svc-hpa",
                json!({ "spec": { "minReplicas": 5 },
                        "metadata": { "annotations": { "tiketi.io/original-min-replicas": "2" } } }),
                serde_json::to_value(hpa_on_svc()).unwrap(),
            ),
            Expect::event("Cooperating"),
            Expect::write(2),
            Expect::status(
                &te,
                json!({ "autoscaler": { "policy": "Cooperate", "effect": "minReplicas 2 -> 5 until the sale ends" } }),
            ),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(
        condition(&status_body(&calls), "TargetConflict"),
        ("False".into(), "Cooperating".into())
    );
}

/// The HPA controller scales the target between this pass's read and its write (it does so as soon
/// as its minimum is raised): the write is refused and retried, but the HPA's patch happened, and
/// its event goes out now. The next pass finds the minimum raised and has nothing to report, so an
/// event held back until after the target's write would never be published.
#[tokio::test]
async fn reconcile_reports_cooperating_even_when_the_target_changed_meanwhile() {
    let mut te = ticket_event("coop-race", Duration::minutes(10));
    te.spec.other_autoscalers = OtherAutoscalers::Cooperate;
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te).hpa(&hpa_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::patch(
                "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/svc-hpa",
                json!({ "spec": { "minReplicas": 5 } }),
                serde_json::to_value(hpa_on_svc()).unwrap(),
            ),
            Expect::event("Cooperating"),
            Expect::write(2).conflict(),
        ],
    )
    .await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(crate::controller::RETRY_STALE)
    );
}

#[tokio::test]
async fn reconcile_cooperates_with_keda_by_pausing_the_scaled_object() {
    let mut te = ticket_event("keda", Duration::minutes(10));
    te.spec.other_autoscalers = OtherAutoscalers::Cooperate;
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te).scaled_object(&scaled_object_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::patch(
                "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/svc-keda",
                json!({ "metadata": { "annotations": {
                    "autoscaling.keda.sh/paused-replicas": "5", "tiketi.io/paused-by": "default/keda" } } }),
                serde_json::to_value(scaled_object_on_svc()).unwrap(),
            ),
            Expect::event("Cooperating"),
            Expect::write(2),
            Expect::status(&te, json!({ "autoscaler": { "kind": "ScaledObject", "effect": "paused at 5 replicas until the sale ends" } })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
}

#[tokio::test]
async fn reconcile_reports_a_keda_scaled_object_as_a_conflict() {
    let te = ticket_event("kedaconflict", Duration::minutes(10));
    let (result, calls) = reconcile_scripted(
        &te,
        World::new()
            .ticket(&te)
            .scaled_object(&scaled_object_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(
                &te,
                json!({ "autoscaler": { "kind": "ScaledObject", "policy": "Report" } }),
            ),
            Expect::event("TargetConflict"),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(
        condition(&status_body(&calls), "TargetConflict"),
        ("True".into(), "ScaledObject".into())
    );
}

#[tokio::test]
async fn reconcile_fails_an_unparseable_spec_clearly() {
    let mut te = ticket_event("bad", Duration::minutes(10));
    te.spec.opens_at = "tomorrow".into();
    let (action, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(&te, json!({ "phase": "Failed" })),
            Expect::event("InvalidSpec"),
        ],
    )
    .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(condition(&status_body(&calls), "Ready").1, "InvalidSpec");
}

#[tokio::test]
async fn reconcile_of_a_vanished_ticket_event_makes_no_other_call() {
    let te = ticket_event("vanished", Duration::minutes(10));
    let (action, _) = reconcile_scripted(
        &te,
        World::new(),
        vec![Expect::not_found(
            "GET",
            "/namespaces/default/ticketevents/vanished",
        )],
    )
    .await;
    assert_eq!(action.unwrap(), Action::await_change());
    let _ = TicketEventStatus::default();
}

/// Deleting mid-sale while a sibling's pass scaled the target since it was read: the refused restore
/// fails the cleanup (retried with backoff) and the finalizer stays, so the object cannot go with the
/// target still at sale size.
#[tokio::test]
async fn reconcile_deleting_keeps_the_finalizer_when_the_restore_is_refused() {
    let mut te = with_status(ticket_event("gone", Duration::minutes(-5)), "OnSale", 9);
    te.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(9, 9),
            Expect::scale(9, 2).conflict(),
        ],
    )
    .await;
    assert!(
        matches!(result, Err(crate::Error::TargetChanged)),
        "{result:?}"
    );
}

/// With KEDA installed its own HPA (`keda-hpa-…`, owned by the ScaledObject) is on the target too:
/// cooperating pauses the ScaledObject and never touches that HPA (KEDA would revert it).
#[tokio::test]
async fn reconcile_cooperates_with_keda_through_the_scaled_object_not_its_hpa() {
    let mut te = ticket_event("keda", Duration::minutes(10));
    te.spec.other_autoscalers = OtherAutoscalers::Cooperate;
    let (result, _) = reconcile_scripted(
        &te,
        World::new()
            .ticket(&te)
            .hpa(&keda_hpa_on_svc())
            .scaled_object(&scaled_object_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::patch(
                "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/svc-keda",
                json!({ "metadata": { "annotations": {
                    "autoscaling.keda.sh/paused-replicas": "5", "tiketi.io/paused-by": "default/keda" } } }),
                serde_json::to_value(scaled_object_on_svc()).unwrap(),
            ),
            Expect::event("Cooperating"),
            Expect::write(2),
            Expect::status(&te, json!({ "autoscaler": { "kind": "ScaledObject", "name": "svc-keda" } })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
}

/// KEDA's HPA seen before its ScaledObject reached the reflector: still KEDA's, so the pause goes to
/// the ScaledObject named by the HPA's owner.
#[tokio::test]
async fn reconcile_treats_a_keda_hpa_as_its_scaled_object_before_the_reflector_has_it() {
    let mut te = ticket_event("keda", Duration::minutes(10));
    te.spec.other_autoscalers = OtherAutoscalers::Cooperate;
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te).hpa(&keda_hpa_on_svc()),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::patch(
                "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/svc-keda",
                json!({ "metadata": { "annotations": { "autoscaling.keda.sh/paused-replicas": "5" } } }),
                serde_json::to_value(scaled_object_on_svc()).unwrap(),
            ),
            Expect::event("Cooperating"),
            Expect::write(2),
            Expect::status(&te, json!({ "autoscaler": { "kind": "ScaledObject" } })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
}

/// The pass records its wish on the target in the same fenced update as the replicas, so a sibling
/// reads both at one version.
#[tokio::test]
async fn reconcile_writes_the_wish_with_the_replicas() {
    let te = ticket_event("iu", Duration::minutes(10));
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 5),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "wishTarget": "svc" })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(written_wish(&calls[2], "iu").unwrap()["replicas"], 5);
}

/// A sibling's fresh scale-up is on the target with its wish: this pass decides from both (the
/// sibling's status in the store still says 5), so it keeps 7 instead of scaling back to its own 5.
#[tokio::test]
async fn reconcile_decides_from_the_wishes_on_the_target_not_a_stale_store() {
    let te = with_status(ticket_event("a", Duration::minutes(10)), "PreScaling", 5);
    let b = with_status(ticket_event("b", Duration::minutes(10)), "PreScaling", 5);
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te).ticket(&b),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment_with(7, 7, &[("a", 5), ("b", 7)]),
            Expect::write(7),
            Expect::status(&te, json!({ "desiredReplicas": 5, "targetReplicas": 7 })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
    assert!(
        calls[2].body["spec"].is_null(),
        "no scale: {}",
        calls[2].body
    );
}

/// A connection budget that leaves room for no replica is refused clearly, never scaled to 0 and
/// reported Ready.
#[tokio::test]
async fn reconcile_refuses_a_budget_without_room_for_a_replica() {
    let mut te = ticket_event("nobudget", Duration::minutes(10));
    te.spec.connection_budget = Some(ConnectionBudget {
        max_connections: 100,
        pool_per_replica: 10,
        reserved: 95,
    });
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::status(&te, json!({ "phase": "Failed" })),
            Expect::event("InvalidSpec"),
        ],
    )
    .await;
    result.unwrap();
    let st = status_body(&calls);
    assert_eq!(condition(&st, "Ready").0, "False");
    assert!(
        st["summary"]
            .as_str()
            .unwrap()
            .contains("connectionBudget must leave room for minReplicas"),
        "{st}"
    );
}

fn created(mut te: tiketi_crds::TicketEvent, minutes_ago: i64) -> tiketi_crds::TicketEvent {
    let at = chrono::Utc::now() - Duration::minutes(minutes_ago);
    te.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(at.timestamp()).unwrap(),
    ));
    te
}

/// Two TicketEvents with one eventId would share (and delete) one capacity key: the newer is Failed
/// with a condition naming the older, which keeps going.
#[tokio::test]
async fn reconcile_fails_the_newer_of_two_ticket_events_with_one_event_id() {
    let first = created(ticket_event("first", Duration::minutes(10)), 60);
    let mut second = created(ticket_event("second", Duration::minutes(10)), 1);
    second.spec.event_id = first.spec.event_id.to_uppercase();
    let world = || World::new().ticket(&first).ticket(&second);
    let (result, calls) = reconcile_scripted(
        &second,
        world(),
        vec![
            Expect::get_te(&second),
            Expect::get_deployment(2, 2),
            Expect::status(&second, json!({ "phase": "Failed" })),
            Expect::event("DuplicateEventId"),
        ],
    )
    .await;
    result.unwrap();
    let st = status_body(&calls);
    assert_eq!(
        condition(&st, "Ready"),
        ("False".into(), "DuplicateEventId".into())
    );
    assert!(st["summary"].as_str().unwrap().contains("default/first"));
    let (result, _) = reconcile_scripted(
        &first,
        world(),
        vec![
            Expect::get_te(&first),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 5),
            Expect::event("Scaled"),
            Expect::status(&first, json!({ "phase": "PreScaling" })),
            Expect::event("Phase"),
        ],
    )
    .await;
    result.unwrap();
}

/// `target` renamed mid-sale (an object the CRD's rule did not see): the old Deployment is given back
/// — its replicas to the baseline and this sale's wish removed, in one fenced update — before the
/// new one is scaled.
#[tokio::test]
async fn reconcile_target_rename_gives_the_old_deployment_back() {
    let mut te = with_status(
        ticket_event("moved", Duration::minutes(10)),
        "PreScaling",
        5,
    );
    te.status.as_mut().unwrap().wish_target = Some("old".into());
    let old = deployment_named("old", 5, 5, &[("moved", 5)]);
    let (result, calls) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::get(
                "/apis/apps/v1/namespaces/default/deployments/old",
                serde_json::to_value(&old).unwrap(),
            ),
            Expect::patch(
                "/apis/apps/v1/namespaces/default/deployments/old",
                // the writer's identity in the same fenced update
                json!({
                    "metadata": { "resourceVersion": "rv-5", "annotations": { "tiketi.io/written-by": "test" } },
                    "spec": { "replicas": 2 },
                }),
                serde_json::to_value(deployment_named("old", 2, 5, &[])).unwrap(),
            ),
            Expect::event("Restored"),
            Expect::scale(2, 5),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "wishTarget": "svc", "targetReplicas": 5 })),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(written_wish(&calls[3], "moved"), Some(Value::Null));
    assert_eq!(written_wish(&calls[5], "moved").unwrap()["replicas"], 5);
}
