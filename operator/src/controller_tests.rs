//! Reconcile scenarios against the fake API server.

use chrono::Duration;
use kube::runtime::controller::Action;
use tiketi_crds::{ConnectionBudget, Mode, TicketEventStatus};

use crate::fixtures::*;

fn status_of(fake: &Fake) -> serde_json::Value {
    fake.find("PATCH", "/status").expect("status patched").body["status"].clone()
}

fn condition(status: &serde_json::Value, type_: &str) -> (String, String) {
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
    let (result, fake) = run(te, World::target(2, 2)).await;
    result.unwrap();

    let scale = fake
        .find("PATCH", "/deployments/svc/scale")
        .expect("scaled through /scale");
    assert_eq!(
        scale.body["spec"]["replicas"], 5,
        "7500 fallback users / 1500 per replica"
    );
    let st = status_of(&fake);
    assert_eq!(st["phase"], "PreScaling");
    assert_eq!(st["desiredReplicas"], 5);
    assert_eq!(st["forecast"]["expectedUsers"], 7500);
    assert_eq!(condition(&st, "ForecastFallback").0, "True");
    assert_eq!(condition(&st, "Ready"), ("False".into(), "Warming".into()));
    assert!(fake.event_reasons().contains(&"Scaled".to_string()));
}

#[tokio::test]
async fn reconcile_plan_mode_publishes_without_scaling() {
    let mut te = ticket_event("plan", Duration::minutes(10));
    te.spec.mode = Mode::Plan;
    let (result, fake) = run(te, World::target(2, 2)).await;
    result.unwrap();
    assert!(
        fake.find("PATCH", "/scale").is_none(),
        "plan mode must not scale"
    );
    let st = status_of(&fake);
    assert_eq!(st["desiredReplicas"], 5);
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
    let (result, fake) = run(
        te,
        World {
            deployment: Some(deployment(2, 2)),
            hpas: vec![hpa_on_svc()],
            ..Default::default()
        },
    )
    .await;
    result.unwrap();
    assert!(fake.find("PATCH", "/scale").is_none());
    assert_eq!(
        condition(&status_of(&fake), "TargetConflict"),
        ("True".into(), "HPA".into())
    );
    assert!(fake.event_reasons().contains(&"TargetConflict".to_string()));
}

#[tokio::test]
async fn reconcile_caps_replicas_by_the_connection_budget() {
    let mut te = ticket_event("budget", Duration::minutes(10));
    te.spec.connection_budget = Some(ConnectionBudget {
        max_connections: 50,
        pool_per_replica: 10,
        reserved: 10,
    });
    let (result, fake) = run(te, World::target(2, 2)).await;
    result.unwrap();
    assert_eq!(
        fake.find("PATCH", "/scale").unwrap().body["spec"]["replicas"],
        4
    );
    assert_eq!(
        condition(&status_of(&fake), "BudgetLimited"),
        ("True".into(), "Capped".into())
    );
    assert!(fake.event_reasons().contains(&"BudgetLimited".to_string()));
}

#[tokio::test]
async fn reconcile_waits_for_the_phase_boundary_when_scheduled() {
    let te = ticket_event("later", Duration::days(2));
    let (action, fake) = run(te, World::target(2, 2)).await;
    let action = action.unwrap();
    assert!(fake.find("PATCH", "/scale").is_none());
    assert_eq!(status_of(&fake)["phase"], "Scheduled");
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(300)),
        "capped wait, recomputed on wake-up"
    );
}

#[tokio::test]
async fn reconcile_takes_the_max_of_events_on_one_deployment() {
    let te = ticket_event("small", Duration::minutes(10));
    let mut other = ticket_event("big", Duration::minutes(5));
    other.status = Some(TicketEventStatus {
        phase: Some("OnSale".into()),
        desired_replicas: Some(8),
        ..Default::default()
    });
    let world = World {
        deployment: Some(deployment(2, 2)),
        ticket_events: vec![te.clone(), other],
        ..Default::default()
    };
    let (result, fake) = run(te, world).await;
    result.unwrap();
    assert_eq!(
        fake.find("PATCH", "/scale").unwrap().body["spec"]["replicas"],
        8
    );
    assert_eq!(
        status_of(&fake)["desiredReplicas"],
        5,
        "its own wish stays visible"
    );
}

#[tokio::test]
async fn reconcile_marks_warm_when_ready_replicas_reach_the_plan() {
    let te = ticket_event("warm", Duration::minutes(10));
    let (result, fake) = run(te, World::target(5, 5)).await;
    result.unwrap();
    assert!(
        fake.find("PATCH", "/scale").is_none(),
        "already at the plan"
    );
    let st = status_of(&fake);
    assert_eq!(st["phase"], "Ready");
    assert_eq!(condition(&st, "Ready"), ("True".into(), "Warm".into()));
}

#[tokio::test]
async fn reconcile_restores_the_baseline_after_the_sale() {
    let mut te = ticket_event("done", Duration::hours(-3));
    te.status = Some(TicketEventStatus {
        phase: Some("Draining".into()),
        desired_replicas: Some(9),
        ..Default::default()
    });
    let (action, fake) = run(te, World::target(9, 9)).await;
    let action = action.unwrap();
    assert_eq!(
        fake.find("PATCH", "/scale").unwrap().body["spec"]["replicas"],
        2
    );
    assert_eq!(status_of(&fake)["phase"], "Completed");
    assert!(fake.event_reasons().contains(&"SaleCompleted".to_string()));
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
}

#[tokio::test]
async fn reconcile_fails_an_unparseable_spec_clearly() {
    let mut te = ticket_event("bad", Duration::minutes(10));
    te.spec.opens_at = "tomorrow".into();
    let (action, fake) = run(te, World::target(2, 2)).await;
    let action = action.unwrap();
    let st = status_of(&fake);
    assert_eq!(st["phase"], "Failed");
    assert_eq!(condition(&st, "Ready").1, "InvalidSpec");
    assert_eq!(action, Action::await_change());
}
