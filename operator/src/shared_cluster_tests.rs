//! A pass on a shared cluster: after a failover it waits for the watch caches, it stops writing the
//! moment leadership is gone, it judges time by the API server's clock; and it uses no permission
//! the install did not enable.

use std::{sync::Arc, time::Duration};

use kube::runtime::watcher;
use serde_json::json;

use crate::{
    Error,
    fixtures::*,
    leader::{Leadership, Timing},
};

/// Just after a takeover the HPA cache is still empty: a pass deciding then would not see the HPA
/// driving the target and would scale it (Report mode must leave it alone). It waits for the list.
#[tokio::test(start_paused = true)]
async fn failover_pass_waits_for_the_hpa_cache_before_deciding() {
    let te = ticket_event("conflict", chrono::Duration::minutes(10));
    let mut world = World::unsynced();
    world
        .tickets
        .apply_watcher_event(&watcher::Event::InitApply(te.clone()));
    world.tickets.apply_watcher_event(&watcher::Event::InitDone);
    world
        .scaled_objects
        .apply_watcher_event(&watcher::Event::InitDone);
    let (client, done) = verifier(vec![
        Expect::get_te(&te),
        Expect::get_deployment(2, 2),
        Expect::status(
            &te,
            json!({ "autoscaler": { "kind": "HorizontalPodAutoscaler", "name": "svc-hpa", "policy": "Report" } }),
        ),
        Expect::event("TargetConflict"),
        Expect::event("Phase"),
    ]);
    let ctx = context(client, world.stores.clone(), None, None, Default::default());
    let pass = tokio::spawn(crate::controller::reconcile(Arc::new(te.clone()), ctx));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!pass.is_finished(), "decided before the HPA list came");
    world.hpas.apply_watcher_event(&watcher::Event::Init);
    world
        .hpas
        .apply_watcher_event(&watcher::Event::InitApply(hpa_on_svc()));
    world.hpas.apply_watcher_event(&watcher::Event::InitDone);
    pass.await.unwrap().unwrap();
    drop(world);
    done.await;
}

/// A cache that never fills (the watch keeps failing) fails the pass after a bound, so it is retried
/// with backoff rather than hanging or deciding blind.
#[tokio::test(start_paused = true)]
async fn failover_pass_fails_when_the_caches_do_not_sync() {
    let te = ticket_event("blind", chrono::Duration::minutes(10));
    let world = World::unsynced();
    let (client, done) = verifier(vec![]);
    let ctx = context(client, world.stores.clone(), None, None, Default::default());
    let result = crate::controller::reconcile(Arc::new(te), ctx).await;
    assert!(matches!(result, Err(Error::StoresNotReady)), "{result:?}");
    drop(world);
    done.await;
}

/// A replica that lost the lease writes nothing, not even from a pass already queued.
#[tokio::test(start_paused = true)]
async fn failover_pass_after_the_lease_was_lost_writes_nothing() {
    let te = ticket_event("iu", chrono::Duration::minutes(10));
    let world = World::new().ticket(&te);
    let (leadership, fence) = Leadership::new();
    leadership.renewed(tokio::time::Instant::now(), Timing::default());
    leadership.lost();
    let (client, done) = verifier(vec![]);
    let ctx = Arc::new(context_with(
        client,
        world.stores.clone(),
        None,
        None,
        Default::default(),
        fence,
        Default::default(),
    ));
    let result = crate::controller::reconcile(Arc::new(te), ctx).await;
    assert!(matches!(result, Err(Error::NotLeading)), "{result:?}");
    drop(world);
    done.await;
}

/// The API server stalls in the middle of a pass past the renew deadline (no renewal got through
/// either): the pass stops there instead of scaling once the API server answers — by then a standby
/// may lead.
#[tokio::test(start_paused = true)]
async fn failover_pass_stops_when_the_renew_deadline_passes_mid_pass() {
    let te = ticket_event("iu", chrono::Duration::minutes(10));
    let world = World::new().ticket(&te);
    let (leadership, fence) = Leadership::new();
    let timing = Timing::default();
    leadership.renewed(tokio::time::Instant::now(), timing);
    let (client, done) = verifier(vec![
        Expect::get_te(&te),
        Expect::get_deployment(2, 2).after(timing.renew_deadline + Duration::from_secs(1)),
    ]);
    let ctx = Arc::new(context_with(
        client,
        world.stores.clone(),
        None,
        None,
        Default::default(),
        fence,
        Default::default(),
    ));
    let started = tokio::time::Instant::now();
    let result = crate::controller::reconcile(Arc::new(te), ctx).await;
    assert!(matches!(result, Err(Error::NotLeading)), "{result:?}");
    assert!(
        started.elapsed() <= timing.renew_deadline,
        "the pass outlived the renew deadline: {:?}",
        started.elapsed()
    );
    drop((world, leadership));
    done.await;
}

/// This replica's clock is almost three hours behind the API server's: by its own clock the sale
/// opens in three hours (Scheduled), by the API server's in ten minutes — pre-scaling, whichever
/// replica leads.
#[tokio::test]
async fn failover_phase_is_judged_by_the_api_server_clock() {
    let te = ticket_event("iu", chrono::Duration::minutes(180));
    let world = World::new().ticket(&te);
    let (client, clock, done) = verifier_at(
        vec![
            Expect::get_te(&te),
            Expect::get_deployment(2, 2),
            Expect::scale(2, 5),
            Expect::event("Scaled"),
            Expect::status(&te, json!({ "phase": "PreScaling", "desiredReplicas": 5 })),
            Expect::event("Phase"),
        ],
        chrono::Duration::minutes(170),
    );
    let ctx = Arc::new(context_with(
        client,
        world.stores.clone(),
        None,
        None,
        Default::default(),
        crate::leader::Fence::always(),
        clock,
    ));
    crate::controller::reconcile(Arc::new(te), ctx)
        .await
        .unwrap();
    drop(world);
    done.await;
}

/// An install that did not allow Cooperate (its RBAC has no HPA patch) reports the HPA instead of
/// patching it, whatever the TicketEvent asks.
#[tokio::test]
async fn shared_cooperate_not_allowed_reports_instead_of_patching_the_hpa() {
    let mut te = ticket_event("coop", chrono::Duration::minutes(10));
    te.spec.other_autoscalers = tiketi_crds::OtherAutoscalers::Cooperate;
    let world = World::new().ticket(&te).hpa(&hpa_on_svc());
    let (client, done) = verifier(vec![
        Expect::get_te(&te),
        Expect::get_deployment(2, 2),
        Expect::status(
            &te,
            json!({ "autoscaler": { "kind": "HorizontalPodAutoscaler", "name": "svc-hpa", "policy": "Report" } }),
        ),
        Expect::event("TargetConflict"),
        Expect::event("Phase"),
    ]);
    let mut ctx = context_with(
        client,
        world.stores.clone(),
        None,
        None,
        Default::default(),
        crate::leader::Fence::always(),
        Default::default(),
    );
    ctx.shared.allow.cooperate = false;
    crate::controller::reconcile(Arc::new(te), Arc::new(ctx))
        .await
        .unwrap();
    drop(world);
    done.await;
}

/// A TicketEvent deleted together with its target (its namespace being deleted): nothing to give
/// back, the finalizer goes at once — no scale of a Deployment on its way out, no retry loop that
/// would hold the namespace in Terminating.
#[tokio::test]
async fn shared_deleting_with_the_target_lets_go_without_scaling() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let mut te = with_status(
        ticket_event("gone", chrono::Duration::minutes(-5)),
        "OnSale",
        9,
    );
    te.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let mut released = te.clone();
    released.metadata.finalizers = None;
    let mut target = deployment(9, 9);
    target.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let (result, _) = reconcile_scripted(
        &te,
        World::new().ticket(&te),
        vec![
            Expect::get_te(&te),
            Expect::get(
                "/apis/apps/v1/namespaces/default/deployments/svc",
                serde_json::to_value(target).unwrap(),
            ),
            Expect::patch(
                "/namespaces/default/ticketevents/gone",
                json!([{ "op": "test", "path": "/metadata/finalizers/0", "value": "tiketi.io/restore-replicas" },
                       { "op": "remove", "path": "/metadata/finalizers/0" }]),
                serde_json::to_value(&released).unwrap(),
            ),
        ],
    )
    .await;
    result.unwrap();
}
