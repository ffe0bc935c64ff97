//! End-to-end against a real Kubernetes API server. `e2e/run.sh` starts the cluster (kind or the
//! local control plane), installs the chart, and runs the operator with the chart's ServiceAccount;
//! these tests then drive it through the API, PostgreSQL and Redis like a platform team would.
//! They are `#[ignore]`d so `cargo test` on a laptop without a cluster skips them.

use std::time::Duration;

use chrono::Utc;
use fred::prelude::SortedSetsInterface;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event as CoreEvent, Namespace, Secret},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tiketi_crds::TicketEvent;
use tiketi_e2e::cluster::{
    Logs, LogsOnFailure, admin, create_te, delete_namespace, env, history, kwok_deployment,
    namespace, on_real_node, redis, status, until,
};
use uuid::Uuid;

fn spec(
    event_id: Uuid,
    artist: &str,
    opens_in: chrono::Duration,
    open_for: chrono::Duration,
    extra: Value,
) -> Value {
    let opens = Utc::now() + opens_in;
    let mut spec = json!({
        "eventId": event_id,
        "artist": artist,
        "opensAt": opens.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "closesAt": (opens + open_for).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "target": { "kind": "Deployment", "name": "svc" },
        "usersPerReplica": 1500,
        "minReplicas": 1,
        "maxReplicas": 12,
    });
    if let (Some(s), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        s.extend(extra);
    }
    spec
}

/// A sale cooperating with the target's autoscaler, without history, in pre-scaling at once, open for
/// 40 s, no after-sale hold: fallbackExpectedUsers 4500 / 1500 users per replica = a wish of 3.
fn cooperating_sale(artist: &str) -> Value {
    spec(
        Uuid::new_v4(),
        &format!("{artist} {}", Uuid::new_v4().simple()),
        chrono::Duration::seconds(15),
        chrono::Duration::seconds(40),
        json!({
            "leadTime": "60s",
            "fallbackExpectedUsers": 4500,
            "otherAutoscalers": "Cooperate",
            "afterSale": { "hold": "0s" },
        }),
    )
}

async fn replicas(api: &Api<Deployment>, name: &str) -> (i32, i32) {
    let d = api.get(name).await.unwrap();
    (
        d.spec.and_then(|s| s.replicas).unwrap_or(0),
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

async fn event_reasons(client: &Client, ns: &str) -> Vec<String> {
    Api::<CoreEvent>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_crd_is_served_and_bad_ticket_events_are_rejected() {
    let client = admin().await;
    let ns = namespace(&client, "crd").await;
    let id = Uuid::new_v4();
    let hour = chrono::Duration::hours(1);
    let cases = [
        (
            "closes-first",
            spec(id, "A", hour, -chrono::Duration::minutes(5), json!({})),
            "closesAt must be after opensAt",
        ),
        (
            "min-over-max",
            spec(
                id,
                "A",
                hour,
                hour,
                json!({ "minReplicas": 9, "maxReplicas": 3 }),
            ),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "zero-users",
            spec(id, "A", hour, hour, json!({ "usersPerReplica": 0 })),
            "usersPerReplica must be positive",
        ),
        (
            "overlap",
            spec(
                id,
                "A",
                hour,
                hour,
                json!({ "queueScaling": { "rules": [
                { "above": 1000, "change": 2, "cooldownSeconds": 60 }, { "below": 5000, "change": -1, "cooldownSeconds": 60 } ] } }),
            ),
            "step rules overlap",
        ),
        (
            "unordered",
            spec(
                id,
                "A",
                hour,
                hour,
                json!({ "queueScaling": { "rules": [
                { "above": 1000, "change": 5, "cooldownSeconds": 60 }, { "above": 9000, "change": 2, "cooldownSeconds": 60 } ] } }),
            ),
            "step rules are unordered",
        ),
        (
            "statefulset",
            spec(
                id,
                "A",
                hour,
                hour,
                json!({ "target": { "kind": "StatefulSet", "name": "x" } }),
            ),
            "Unsupported value: \"StatefulSet\"",
        ),
        (
            "bad-time",
            spec(id, "A", hour, hour, json!({ "opensAt": "next friday" })),
            "opensAt must be RFC 3339",
        ),
        (
            "no-budget-room",
            spec(
                id,
                "A",
                hour,
                hour,
                json!({ "connectionBudget": { "maxConnections": 100, "poolPerReplica": 10, "reserved": 95 } }),
            ),
            "connectionBudget must leave room for minReplicas",
        ),
    ];
    for (name, spec, message) in cases {
        let err = create_te(&client, &ns, name, spec).await.expect_err(name);
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 422, "{name}: {}", s.message);
                assert!(s.message.contains(message), "{name}: {}", s.message);
            }
            other => panic!("{name}: {other}"),
        }
    }
    create_te(&client, &ns, "good", spec(id, "A", hour, hour, json!({})))
        .await
        .expect("a valid TicketEvent is accepted");
    // once the operator has the sale live, its target cannot change (the old one would stay at sale
    // size); other fields can
    create_te(
        &client,
        &ns,
        "live",
        spec(
            Uuid::new_v4(),
            "A",
            -chrono::Duration::minutes(1),
            hour,
            json!({}),
        ),
    )
    .await
    .expect("a live TicketEvent is accepted");
    until(Duration::from_secs(30), "the live sale OnSale", || async {
        status(&client, &ns, "live").await["phase"] == "OnSale"
    })
    .await;
    let tickets = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<TicketEvent>(&()),
    );
    let moved = tickets
        .patch(
            "live",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "target": { "kind": "Deployment", "name": "other" } } }),
            ),
        )
        .await
        .expect_err("target change refused while live");
    assert!(
        matches!(&moved, kube::Error::Api(s) if s.code == 422 && s.message.contains("target is immutable")),
        "{moved}"
    );
    tickets
        .patch(
            "live",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "artist": "B" } })),
        )
        .await
        .expect("other fields stay editable");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_history_prescales_the_service_before_the_opening() {
    let client = admin().await;
    let ns = namespace(&client, "prescale").await;
    let deployments = kwok_deployment(&client, &ns, "svc", 1).await;
    let artist = format!("E2E {}", Uuid::new_v4().simple());
    // three past sales: the recency-weighted median is 12000 users, 12000 / 1500 = 8 replicas
    history(&artist, &[12_000, 9_000, 15_000]).await;
    let started = tokio::time::Instant::now();
    create_te(
        &client,
        &ns,
        "sale",
        spec(
            Uuid::new_v4(),
            &artist,
            chrono::Duration::minutes(3),
            chrono::Duration::hours(1),
            json!({ "leadTime": "10m" }),
        ),
    )
    .await
    .unwrap();

    until(Duration::from_secs(60), "8 ready replicas", || async {
        replicas(&deployments, "svc").await == (8, 8)
    })
    .await;
    eprintln!("pre-scaled to 8 ready replicas in {:?}", started.elapsed());
    until(Duration::from_secs(30), "phase Ready", || async {
        status(&client, &ns, "sale").await["phase"] == "Ready"
    })
    .await;
    let st = status(&client, &ns, "sale").await;
    assert_eq!(st["forecast"]["expectedUsers"], 12_000);
    assert_eq!(
        st["forecast"]["basis"].as_array().unwrap().len(),
        3,
        "the basis lists the three sales"
    );
    assert!(
        st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );
    assert!(
        st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "ForecastFallback" && c["status"] == "False")
    );
    let reasons = event_reasons(&client, &ns).await;
    assert!(reasons.iter().any(|r| r == "Scaled"), "{reasons:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_queue_depth_scales_out_and_back_then_restores_the_baseline() {
    let client = admin().await;
    let ns = namespace(&client, "queue").await;
    let deployments = kwok_deployment(&client, &ns, "svc", 1).await;
    let event = Uuid::new_v4();
    // the default thresholds (+2 above 5000, -1 below 1000) with cooldowns short enough for a test
    let rules = json!({ "pollSeconds": 1, "rules": [
        { "above": 5000, "change": 2, "cooldownSeconds": 4 },
        { "above": 20000, "change": 5, "cooldownSeconds": 4 },
        { "below": 1000, "change": -1, "cooldownSeconds": 4 } ] });
    // on sale now for 40 s, then 5 s of hold, then back to 1 replica; no history: fallback 1500 users = 1 replica
    let extra = json!({ "queueScaling": rules, "fallbackExpectedUsers": 1500, "afterSale": { "hold": "5s", "replicas": 1 } });
    create_te(
        &client,
        &ns,
        "sale",
        spec(
            event,
            "E2E QUEUE",
            chrono::Duration::seconds(-5),
            chrono::Duration::seconds(40),
            extra,
        ),
    )
    .await
    .unwrap();
    until(Duration::from_secs(10), "phase OnSale", || async {
        status(&client, &ns, "sale").await["phase"] == "OnSale"
    })
    .await;

    let (redis, keys) = redis().await;
    let queue = keys.queue(event);
    let users = |n: usize| {
        (0..n)
            .map(|i| (i as f64, format!("user-{i}")))
            .collect::<Vec<_>>()
    };
    let _: () = redis
        .zadd(&queue, None, None, false, false, users(6000))
        .await
        .unwrap();

    let crossed = tokio::time::Instant::now();
    until(
        Duration::from_secs(5),
        "+2 replicas for 6000 queued users",
        || async { replicas(&deployments, "svc").await.0 == 3 },
    )
    .await;
    eprintln!("6000 queued users: /scale +2 after {:?}", crossed.elapsed());
    until(
        Duration::from_secs(10),
        "status shows the queue",
        || async { status(&client, &ns, "sale").await["queueDepth"] == 6000 },
    )
    .await;

    // what the service's traffic sampler would have written for this sale
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    sqlx::query("INSERT INTO traffic_logs (event_id, artist_name, minute, concurrent_users, queue_users, replicas, demand_users) VALUES ($1, 'E2E QUEUE', date_trunc('minute', now()), 4321, 6000, 3, 9000)")
        .bind(event)
        .execute(&db)
        .await
        .unwrap();

    // below 1000: one replica less per cooldown, not all at once
    let _: () = redis.zremrangebyrank(&queue, 0, 5499).await.unwrap();
    until(Duration::from_secs(15), "first scale-in", || async {
        replicas(&deployments, "svc").await.0 == 2
    })
    .await;
    let first = tokio::time::Instant::now();
    until(Duration::from_secs(15), "second scale-in", || async {
        replicas(&deployments, "svc").await.0 == 1
    })
    .await;
    let gap = first.elapsed();
    eprintln!("scale-in steps {gap:?} apart (cooldown 4 s)");
    assert!(
        gap >= Duration::from_secs(3),
        "scale-in must wait for its cooldown, took {gap:?}"
    );

    until(
        Duration::from_secs(60),
        "Completed and back to the baseline",
        || async {
            status(&client, &ns, "sale").await["phase"] == "Completed"
                && replicas(&deployments, "svc").await.0 == 1
        },
    )
    .await;
    let st = status(&client, &ns, "sale").await;
    assert_eq!(st["peakQueueDepth"], 6000);
    assert_eq!(
        st["peakActualUsers"], 9000,
        "actual peak demand (distinct users on the page or queued) recorded against the forecast"
    );
    assert_eq!(st["forecastErrorPercent"], 500, "(9000 - 1500) / 1500");
    let (forecast, actual): (i32, Option<i32>) = sqlx::query_as(
        "SELECT forecast_users, actual_peak_users FROM sale_forecasts WHERE event_id = $1",
    )
    .bind(event)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((forecast, actual), (1500, Some(9000)));
    let events: Vec<String> = Api::<CoreEvent>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect();
    eprintln!(
        "completed status:\n{}\nevents:\n{}",
        serde_json::to_string_pretty(&st).unwrap(),
        events.join("\n")
    );
    assert!(
        events.iter().any(|e| e.contains("SaleCompleted")),
        "{events:?}"
    );
    // every scaling decision is its own Event with its reason: 1 -> 3, 3 -> 2, 2 -> 1
    for step in ["1 -> 3", "3 -> 2", "2 -> 1"] {
        assert!(
            events
                .iter()
                .any(|e| e.contains("Scaled") && e.contains(step)),
            "no Event for {step}: {events:?}"
        );
    }
    for phase in ["-> OnSale", "OnSale -> Draining", "Draining -> Completed"] {
        assert!(
            events
                .iter()
                .any(|e| e.contains("Phase") && e.contains(phase)),
            "no Event for {phase}: {events:?}"
        );
    }
    assert_eq!(
        st["lastDecision"]["replicas"], 1,
        "the last decision is the last one taken"
    );
    delete_namespace(&client, &ns).await;
}

/// Issue 11a end to end: two sales on one Deployment; the short one completes while the long one is
/// on sale, and the Deployment never drops below the live sale's wish. Then the live sale's queue
/// grows and the drain-time rule sizes it from the outflow the service publishes; finally deleting
/// the live TicketEvent mid-sale gives the Deployment back to the baseline (finalizer).
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_two_sales_on_one_deployment_never_drop_below_the_live_one() {
    let client = admin().await;
    let ns = namespace(&client, "two").await;
    let deployments = kwok_deployment(&client, &ns, "svc", 1).await;
    let (short_event, long_event) = (Uuid::new_v4(), Uuid::new_v4());
    // short: 3000 fallback users = 2 replicas, on sale 15 s, 3 s hold; long: 7500 = 5 replicas
    let short = json!({ "fallbackExpectedUsers": 3000, "afterSale": { "hold": "3s", "replicas": 1 },
                        "queueScaling": { "pollSeconds": 1 } });
    let long = json!({ "fallbackExpectedUsers": 7500, "afterSale": { "hold": "3s", "replicas": 1 },
                       "queueScaling": { "pollSeconds": 1, "drainWithinSeconds": 600, "rules": [] } });
    create_te(
        &client,
        &ns,
        "short",
        spec(
            short_event,
            "E2E TWO",
            chrono::Duration::seconds(-2),
            chrono::Duration::seconds(15),
            short,
        ),
    )
    .await
    .unwrap();
    create_te(
        &client,
        &ns,
        "long",
        spec(
            long_event,
            "E2E TWO",
            chrono::Duration::seconds(-2),
            chrono::Duration::minutes(10),
            long,
        ),
    )
    .await
    .unwrap();
    // every replica count the Deployment takes, from a watch (no polling gaps)
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i32>::new()));
    let recorder = {
        let (seen, api) = (seen.clone(), deployments.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            let cfg = kube::runtime::watcher::Config::default().fields("metadata.name=svc");
            let mut stream = kube::runtime::watcher(api, cfg).boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let kube::runtime::watcher::Event::Apply(d)
                | kube::runtime::watcher::Event::InitApply(d) = ev
                {
                    let n = d.spec.and_then(|s| s.replicas).unwrap_or(0);
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&n) {
                        seen.push(n);
                    }
                }
            }
        })
    };
    until(
        Duration::from_secs(20),
        "the long sale's 5 replicas",
        || async { replicas(&deployments, "svc").await.0 == 5 },
    )
    .await;
    until(
        Duration::from_secs(60),
        "the short sale Completed",
        || async { status(&client, &ns, "short").await["phase"] == "Completed" },
    )
    .await;
    let short_st = status(&client, &ns, "short").await;
    eprintln!(
        "short completed: targetReplicas {}, summary {}",
        short_st["targetReplicas"], short_st["summary"]
    );
    assert_eq!(short_st["targetReplicas"], 5, "{short_st}");
    assert_eq!(replicas(&deployments, "svc").await.0, 5);

    // the live sale's queue grows; the service measured 5 admissions/s (1 per ready replica)
    let (redis, keys) = redis().await;
    let outflow = tiketi_core::rules::OutflowRecord {
        per_second: 5.5,
        admitted_per_second: 5.0,
        window_secs: 60.0,
        at_ms: Utc::now().timestamp_millis(),
        replicas: Some(5),
    };
    let _: () = fred::prelude::KeysInterface::set(
        &redis,
        keys.outflow(long_event),
        serde_json::to_string(&outflow).unwrap(),
        None,
        None,
        false,
    )
    .await
    .unwrap();
    let waiting: Vec<(f64, String)> = (0..6000).map(|i| (i as f64, format!("user-{i}"))).collect();
    let _: () = redis
        .zadd(keys.queue(long_event), None, None, false, false, waiting)
        .await
        .unwrap();
    until(
        Duration::from_secs(15),
        "drain-time target: 10 replicas",
        || async { replicas(&deployments, "svc").await.0 == 10 },
    )
    .await;
    until(Duration::from_secs(15), "all 10 ready", || async {
        replicas(&deployments, "svc").await.1 == 10
    })
    .await;
    let st = status(&client, &ns, "long").await;
    eprintln!(
        "drain-time rule: drain {} | summary {} | lastDecision {}",
        st["drain"], st["summary"], st["lastDecision"]
    );
    assert_eq!(st["drain"]["replicas"], 10, "{st}");
    assert_eq!(st["drain"]["queueDepth"], 6000, "{st}");
    let capacity: String = fred::prelude::KeysInterface::get(&redis, keys.capacity(long_event))
        .await
        .unwrap();
    eprintln!("published capacity of the live sale: {capacity}");
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    eprintln!("replicas the Deployment took: {seen:?}");
    let from_five = seen.iter().position(|n| *n == 5).expect("reached 5");
    assert!(
        seen[from_five..].iter().all(|n| *n >= 5),
        "dropped below the live sale's wish of 5: {seen:?}"
    );

    // deleting the live sale mid-sale gives the Deployment back to the baseline
    Api::<TicketEvent>::namespaced(client.clone(), &ns)
        .delete("long", &DeleteParams::default())
        .await
        .unwrap();
    until(
        Duration::from_secs(20),
        "baseline after deletion",
        || async { replicas(&deployments, "svc").await.0 == 1 },
    )
    .await;
    until(
        Duration::from_secs(20),
        "the TicketEvent is gone",
        || async {
            Api::<TicketEvent>::namespaced(client.clone(), &ns)
                .get_opt("long")
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    let reasons = event_reasons(&client, &ns).await;
    assert!(reasons.iter().any(|r| r == "Restored"), "{reasons:?}");
    let events: Vec<String> = Api::<CoreEvent>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect();
    eprintln!("events:\n{}", events.join("\n"));
    let _: i64 = fred::prelude::KeysInterface::del(
        &redis,
        vec![keys.queue(long_event), keys.outflow(long_event)],
    )
    .await
    .unwrap();
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_operator_service_account_is_sufficient_and_not_broader() {
    // the operator under test runs with this ServiceAccount's token; the other tests prove it suffices
    let kubeconfig = kube::config::Kubeconfig::read_from(env("E2E_OPERATOR_KUBECONFIG")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let sa = Client::try_from(config).unwrap();
    let ns = env("E2E_OPERATOR_NAMESPACE");
    // reads it needs
    Api::<TicketEvent>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list TicketEvents");
    Api::<Deployment>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list Deployments");
    // what it must not do
    let forbidden =
        |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(ref s)) if s.code == 403);
    assert!(
        forbidden(
            Api::<Secret>::namespaced(sa.clone(), &ns)
                .list(&ListParams::default())
                .await
                .map(|_| ())
        ),
        "secrets must be off limits"
    );
    assert!(
        forbidden(
            Api::<Deployment>::namespaced(sa.clone(), &ns)
                .delete("anything", &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        "deleting deployments must be forbidden"
    );
    assert!(
        forbidden(
            Api::<Namespace>::all(sa.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ())
        ),
        "namespaces must be off limits"
    );
    let leader = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(sa, &ns)
        .get("tiketi-operator")
        .await
        .expect("its lease");
    let holder = leader.spec.as_ref().and_then(|s| s.holder_identity.clone());
    assert!(
        holder.is_some(),
        "a leader holds the lease {}",
        leader.name_any()
    );
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_cooperate_raises_an_hpa_for_the_window_then_hands_it_back() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let client = admin().await;
    let ns = namespace(&client, "cooperate").await;
    let svc = kwok_deployment(&client, &ns, "svc", 1).await;
    // An HPA (min 1) on svc, driven by kube-controller-manager's HPA controller.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": "svc" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "svc" },
            "minReplicas": 1, "maxReplicas": 6,
            "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                "target": { "type": "Utilization", "averageUtilization": 70 } } }],
        }
    }))
    .unwrap();
    hpas.create(&PostParams::default(), &hpa).await.unwrap();

    create_te(&client, &ns, "hpa-sale", cooperating_sale("E2E cooperate"))
        .await
        .unwrap();

    // During the window: the HPA's minReplicas is raised to the sale's wish and the HPA controller (not the
    // operator's /scale) brings svc there.
    until(
        Duration::from_secs(30),
        "the HPA raised to the wish",
        || async {
            let st = status(&client, &ns, "hpa-sale").await;
            let wish = st["desiredReplicas"].as_i64().unwrap_or(0) as i32;
            let h = hpas.get("svc").await.unwrap();
            wish > 1 && h.spec.as_ref().and_then(|s| s.min_replicas) == Some(wish)
        },
    )
    .await;
    let wish = status(&client, &ns, "hpa-sale").await["desiredReplicas"]
        .as_i64()
        .unwrap_or(0) as i32;
    let h = hpas.get("svc").await.unwrap();
    assert_eq!(
        h.annotations()
            .get("tiketi.io/original-min-replicas")
            .map(String::as_str),
        Some("1"),
        "the original minReplicas is kept for the hand-back"
    );
    until(
        Duration::from_secs(60),
        "the HPA controller to scale svc to the raised minimum",
        || async { replicas(&svc, "svc").await.0 == wish },
    )
    .await;
    let st = status(&client, &ns, "hpa-sale").await;
    assert_eq!(
        condition(&st, "TargetConflict"),
        (Some("False"), Some("Cooperating")),
        "{st}"
    );
    assert!(
        st["summary"]
            .as_str()
            .is_some_and(|s| s.contains("until the sale ends")),
        "the summary says what it did to the other autoscaler: {}",
        st["summary"]
    );

    // After the sale: the HPA's minReplicas is handed back as it was.
    until(
        Duration::from_secs(90),
        "the HPA's minReplicas restored",
        || async {
            let h = hpas.get("svc").await.unwrap();
            h.spec.as_ref().and_then(|s| s.min_replicas) == Some(1)
                && !h
                    .annotations()
                    .contains_key("tiketi.io/original-min-replicas")
        },
    )
    .await;
    let reasons = event_reasons(&client, &ns).await;
    assert!(reasons.iter().any(|r| r == "Cooperating"), "{reasons:?}");
    assert!(!reasons.iter().any(|r| r == "Scaled"), "{reasons:?}");
    delete_namespace(&client, &ns).await;
}

/// Where the e2e run keeps its logs (`.dev/e2e`).
fn run_dir() -> std::path::PathBuf {
    std::env::var("E2E_RUN_DIR").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/e2e"),
        Into::into,
    )
}

/// The suite's own operators: the chart's pods on the real node, else the two local processes.
fn suite_operator_logs() -> Vec<Logs> {
    if on_real_node() {
        return vec![Logs::Pods(env("E2E_OPERATOR_NAMESPACE"))];
    }
    (0..2)
        .map(|i| Logs::File(run_dir().join(format!("operator-{i}.log"))))
        .collect()
}

/// An operator install of its own, acting on namespace `ns` only (the chart's default) and on the
/// TicketEvents labelled `tiketi.io/tenant`, with its own Lease.
enum Install {
    /// E2E_OPERATOR_BIN (the kwok run): a local process with identity `identity`, its log in
    /// .dev/e2e; killed when dropped (the child is held for that).
    Local {
        _process: Box<tokio::process::Child>,
        identity: String,
    },
    /// The real node: a second release of the chart in `ns`, its operator pods from the image the
    /// node already holds (its namespace goes with the test's).
    Release,
}

impl Install {
    /// The identities its Events and Lease carry.
    async fn identities(&self, client: &Client, ns: &str) -> Vec<String> {
        match self {
            Install::Local { identity, .. } => vec![identity.clone()],
            Install::Release => {
                Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
                    .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(ResourceExt::name_any)
                    .collect()
            }
        }
    }
}

/// Starts an install for `ns`, if this run can: (the install, where its logs are); None without
/// E2E_OPERATOR_BIN and without the real node's operator image.
async fn operator_install(ns: &str, identity: &str) -> Option<(Install, Logs)> {
    if let Ok(bin) = std::env::var("E2E_OPERATOR_BIN") {
        let log = run_dir().join(format!("{identity}-{ns}.log"));
        let file = std::fs::File::create(&log).expect("the install's log file");
        let child = tokio::process::Command::new(bin)
            .env("POD_NAMESPACE", ns)
            .env("POD_NAME", identity)
            .env("LEASE_NAME", "tenant-operator")
            .env("WATCH_NAMESPACES", "")
            .env("TICKET_EVENT_SELECTOR", "tiketi.io/tenant")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "pretty")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start an operator");
        return Some((
            Install::Local {
                _process: Box::new(child),
                identity: identity.into(),
            },
            Logs::File(log),
        ));
    }
    if !on_real_node() {
        return None;
    }
    let image = env("TIKETI_OPERATOR_IMAGE");
    let (repository, tag) = image
        .rsplit_once(':')
        .expect("TIKETI_OPERATOR_IMAGE is repo:tag");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("helm")
        .current_dir(&root)
        .args([
            "install",
            "tenant",
            "charts/tiketi",
            "-n",
            ns,
            "--skip-crds",
            "--wait",
        ])
        .args(["--timeout", "2m", "-f", "e2e/values/real-node.yaml"])
        .args([
            "--set",
            "service.enabled=false",
            "--set",
            "migrations.job.enabled=false",
        ])
        .args(["--set", "operator.ticketEventSelector=tiketi.io/tenant"])
        .args([
            "--set",
            "operator.useDatabase=false",
            "--set",
            "operator.useRedis=false",
        ])
        .args(["--set", &format!("operator.image.repository={repository}")])
        .args(["--set", &format!("operator.image.tag={tag}")])
        .output()
        .await
        .expect("run helm");
    let logs = Logs::Pods(ns.into());
    if !out.status.success() {
        let _print = LogsOnFailure(vec![logs]);
        panic!(
            "helm install in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "install {identity}: release tenant in {ns}, operator pods Ready after {:.1?}",
        started.elapsed()
    );
    Some((Install::Release, logs))
}

/// A sale in its pre-scaling window with its target scaled: `PreScaling`, then `Ready` as soon as
/// the pre-scaled replicas are all Ready — which kwok makes them at once, so `PreScaling` alone may
/// not outlast one poll (a test waiting for it alone timed out although the install had pre-scaled).
fn pre_scaled(status: &Value) -> bool {
    status["phase"] == "PreScaling" || status["phase"] == "Ready"
}

/// Two installs, one per namespace (the chart's default: the release namespace only): each
/// reconciles its own TicketEvent and target, and never touches the other's — no finalizer, no
/// status, no scale, no Event.
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_two_installs_in_two_namespaces_each_reconcile_only_their_own() {
    let client = admin().await;
    let mut logs = LogsOnFailure(suite_operator_logs());
    let (ns_a, ns_b) = (
        namespace(&client, "tenant-a").await,
        namespace(&client, "tenant-b").await,
    );
    logs.0.push(Logs::Objects(ns_a.clone()));
    logs.0.push(Logs::Objects(ns_b.clone()));
    let svc_a = kwok_deployment(&client, &ns_a, "svc", 1).await;
    let svc_b = kwok_deployment(&client, &ns_b, "svc", 1).await;
    // labelled from the start: the suite's own install (selector !tiketi.io/tenant) leaves them alone
    let ar = ApiResource::erase::<TicketEvent>(&());
    for ns in [&ns_a, &ns_b] {
        let te: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "tiketi.io/v1alpha1", "kind": "TicketEvent",
            "metadata": { "name": "sale", "labels": { "tiketi.io/tenant": "e2e" } },
            "spec": spec(
                Uuid::new_v4(),
                "Tenant",
                chrono::Duration::minutes(10),
                chrono::Duration::hours(1),
                json!({ "fallbackExpectedUsers": 6000 }),
            ),
        }))
        .unwrap();
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
            .create(&PostParams::default(), &te)
            .await
            .unwrap();
    }
    let Some((install_a, logs_a)) = operator_install(&ns_a, "tenant-a").await else {
        eprintln!("neither E2E_OPERATOR_BIN nor the real node's operator image: skipped");
        return;
    };
    logs.0.push(logs_a);
    until(
        Duration::from_secs(60),
        "install A pre-scales A",
        || async {
            replicas(&svc_a, "svc").await.0 == 4
                && pre_scaled(&status(&client, &ns_a, "sale").await)
        },
    )
    .await;
    let te_b = Api::<TicketEvent>::namespaced(client.clone(), &ns_b)
        .get("sale")
        .await
        .unwrap();
    assert!(te_b.status.is_none(), "install A wrote B's status");
    assert!(
        te_b.finalizers().is_empty(),
        "install A took B's TicketEvent"
    );
    assert_eq!(
        replicas(&svc_b, "svc").await.0,
        1,
        "install A scaled B's target"
    );

    let (install_b, logs_b) = operator_install(&ns_b, "tenant-b").await.unwrap();
    logs.0.push(logs_b);
    until(
        Duration::from_secs(60),
        "install B pre-scales B",
        || async {
            replicas(&svc_b, "svc").await.0 == 4
                && pre_scaled(&status(&client, &ns_b, "sale").await)
        },
    )
    .await;
    // every Event of each namespace comes from its own install
    for (ns, install) in [(&ns_a, &install_a), (&ns_b, &install_b)] {
        let me = install.identities(&client, ns).await;
        let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap();
        let instances: Vec<_> = events
            .items
            .iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("tiketi-operator"))
            .map(|e| e.reporting_instance.clone().unwrap_or_default())
            .collect();
        assert!(!instances.is_empty(), "no Event in {ns}");
        assert!(
            instances.iter().all(|i| me.contains(i)),
            "Events in {ns} from {instances:?}, not only from its own install {me:?}"
        );
    }
    // namespace deletion is not held up by the finalizers: each install lets go of its TicketEvent
    // once the target is being deleted too. A release in the namespace would be deleted with it
    // (its pods, its RBAC): it is given its TicketEvent back first, as `helm uninstall` would need.
    for (ns, install) in [(&ns_a, &install_a), (&ns_b, &install_b)] {
        if matches!(install, Install::Release) {
            let tes = Api::<TicketEvent>::namespaced(client.clone(), ns);
            tes.delete("sale", &DeleteParams::default()).await.unwrap();
            until(
                Duration::from_secs(60),
                "the release's TicketEvent restored and gone",
                || async { tes.get_opt("sale").await.is_ok_and(|t| t.is_none()) },
            )
            .await;
        }
    }
    for ns in [&ns_a, &ns_b] {
        delete_namespace(&client, ns).await;
    }
    for ns in [&ns_a, &ns_b] {
        let tes = Api::<TicketEvent>::namespaced(client.clone(), ns);
        until(
            Duration::from_secs(60),
            "the TicketEvent gone with its namespace",
            || async { tes.get_opt("sale").await.is_ok_and(|t| t.is_none()) },
        )
        .await;
    }
}

/// A condition's (status, reason) in a TicketEvent status.
fn condition<'a>(st: &'a Value, kind: &str) -> (Option<&'a str>, Option<&'a str>) {
    st["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .map(|c| (c["status"].as_str(), c["reason"].as_str()))
        .unwrap_or_default()
}

/// KEDA runs (e2e/run.sh sets E2E_KEDA=1 when it started keda-operator, or found KEDA on an existing cluster);
/// without it the KEDA tests say they are skipped and pass.
fn keda_runs(test: &str) -> bool {
    let runs = std::env::var("E2E_KEDA").as_deref() == Ok("1");
    if !runs {
        eprintln!(
            "{test}: skipped: no KEDA in this cluster (e2e/run.sh starts it on the local control plane)"
        );
    }
    runs
}

/// A Deployment with a KEDA ScaledObject on it (cpu trigger, 1-6 replicas), once KEDA itself (e2e/scripts/keda.sh
/// runs keda-operator) has made its HPA, `keda-hpa-<name>`, owned by the ScaledObject. A cpu trigger's HPA uses a
/// Resource metric, so no KEDA metrics API server is needed.
async fn keda_scaled(
    client: &Client,
    ns: &str,
    name: &str,
) -> (
    Api<DynamicObject>,
    Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
) {
    kwok_deployment(client, ns, name, 1).await;
    let so_resource = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    );
    let scaled_objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &so_resource);
    let so: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": { "name": name },
        "spec": {
            "scaleTargetRef": { "name": name },
            "minReplicaCount": 1, "maxReplicaCount": 6,
            "triggers": [{ "type": "cpu", "metricType": "Utilization", "metadata": { "value": "70" } }],
        }
    }))
    .unwrap();
    scaled_objects
        .create(&PostParams::default(), &so)
        .await
        .expect("the ScaledObject API is served (KEDA's CRDs, e2e/scripts/keda.sh)");
    let hpas = Api::namespaced(client.clone(), ns);
    let keda_hpa = format!("keda-hpa-{name}");
    until(
        Duration::from_secs(60),
        "KEDA to create its HPA for the ScaledObject (is keda-operator running?)",
        || async {
            hpas.get_opt(&keda_hpa).await.unwrap().is_some_and(
                |h: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler| {
                    h.owner_references()
                        .iter()
                        .any(|o| o.kind == "ScaledObject" && o.name == name)
                },
            )
        },
    )
    .await;
    (scaled_objects, hpas)
}

/// The operator never writes to KEDA's HPA: KEDA would revert it (and deletes it while paused).
async fn assert_keda_hpa_untouched(
    hpas: &Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
    name: &str,
) {
    if let Some(h) = hpas.get_opt(name).await.unwrap() {
        assert!(
            !h.annotations()
                .contains_key("tiketi.io/original-min-replicas"),
            "the operator wrote to KEDA's HPA {name}: {:?}",
            h.metadata.annotations
        );
    }
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_cooperate_pauses_a_real_keda_scaled_object_never_its_hpa_then_hands_it_back() {
    if !keda_runs("keda cooperate") {
        return;
    }
    let mut keda_log = LogsOnFailure(suite_operator_logs());
    keda_log.0.push(Logs::File(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/keda/keda-operator.log"),
    ));
    let client = admin().await;
    let ns = namespace(&client, "keda-coop").await;
    let (scaled_objects, hpas) = keda_scaled(&client, &ns, "svc").await;
    let svc: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    create_te(
        &client,
        &ns,
        "keda-sale",
        cooperating_sale("E2E keda cooperate"),
    )
    .await
    .unwrap();

    // During the window: the ScaledObject is paused at the wish with KEDA's annotation, and KEDA (not the
    // operator's /scale) brings svc there.
    until(
        Duration::from_secs(30),
        "the ScaledObject paused at the wish",
        || async {
            assert_keda_hpa_untouched(&hpas, "keda-hpa-svc").await;
            let st = status(&client, &ns, "keda-sale").await;
            let want = st["desiredReplicas"].as_i64().unwrap_or(0);
            let so = scaled_objects.get("svc").await.unwrap();
            let ann = so.annotations();
            want > 1
                && ann.get("autoscaling.keda.sh/paused-replicas") == Some(&want.to_string())
                && ann
                    .get("tiketi.io/paused-by")
                    .is_some_and(|by| by.ends_with("keda-sale"))
        },
    )
    .await;
    let wish = status(&client, &ns, "keda-sale").await["desiredReplicas"]
        .as_i64()
        .unwrap_or(0);
    until(
        Duration::from_secs(60),
        "KEDA to hold svc at the paused replica count",
        || async {
            let so = scaled_objects.get("svc").await.unwrap();
            replicas(&svc, "svc").await.0 as i64 == wish
                && so.data["status"]["pausedReplicaCount"].as_i64() == Some(wish)
        },
    )
    .await;
    let st = status(&client, &ns, "keda-sale").await;
    assert_eq!(
        condition(&st, "TargetConflict"),
        (Some("False"), Some("Cooperating")),
        "{st}"
    );
    assert_eq!(
        (
            st["autoscaler"]["kind"].as_str(),
            st["autoscaler"]["name"].as_str()
        ),
        (Some("ScaledObject"), Some("svc")),
        "{st}"
    );
    assert!(
        st["summary"]
            .as_str()
            .is_some_and(|s| s.contains("until the sale ends")),
        "the summary says what it did to the ScaledObject: {}",
        st["summary"]
    );

    // After the sale: the pause is lifted and KEDA takes over again with its HPA, as it was.
    until(
        Duration::from_secs(90),
        "the pause lifted and KEDA's HPA back",
        || async {
            assert_keda_hpa_untouched(&hpas, "keda-hpa-svc").await;
            let so = scaled_objects.get("svc").await.unwrap();
            !so.annotations()
                .contains_key("autoscaling.keda.sh/paused-replicas")
                && !so.annotations().contains_key("tiketi.io/paused-by")
                && hpas
                    .get_opt("keda-hpa-svc")
                    .await
                    .unwrap()
                    .is_some_and(|h| h.spec.as_ref().and_then(|s| s.min_replicas) == Some(1))
        },
    )
    .await;
    let reasons = event_reasons(&client, &ns).await;
    assert!(reasons.iter().any(|r| r == "Cooperating"), "{reasons:?}");
    assert!(!reasons.iter().any(|r| r == "Scaled"), "{reasons:?}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn e2e_report_names_a_real_keda_scaled_object_as_the_conflict_and_never_scales() {
    if !keda_runs("keda report") {
        return;
    }
    let client = admin().await;
    let ns = namespace(&client, "keda-report").await;
    let (scaled_objects, hpas) = keda_scaled(&client, &ns, "svc").await;
    let svc: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // The same sale as above with the default policy, Report: it would want 3 replicas.
    create_te(
        &client,
        &ns,
        "keda-sale",
        spec(
            Uuid::new_v4(),
            &format!("E2E keda report {}", Uuid::new_v4().simple()),
            chrono::Duration::seconds(15),
            chrono::Duration::seconds(40),
            json!({
                "leadTime": "60s",
                "fallbackExpectedUsers": 4500,
                "afterSale": { "hold": "0s" },
            }),
        ),
    )
    .await
    .unwrap();
    until(
        Duration::from_secs(30),
        "the conflict with the ScaledObject reported",
        || async {
            let st = status(&client, &ns, "keda-sale").await;
            st["phase"] == "PreScaling"
                && condition(&st, "TargetConflict") == (Some("True"), Some("ScaledObject"))
        },
    )
    .await;
    let st = status(&client, &ns, "keda-sale").await;
    assert_eq!(
        (
            st["autoscaler"]["kind"].as_str(),
            st["autoscaler"]["name"].as_str()
        ),
        (Some("ScaledObject"), Some("svc")),
        "{st}"
    );
    // Through the opening, when it would have scaled: svc, the ScaledObject and KEDA's HPA are left alone.
    until(Duration::from_secs(45), "the sale to open", || async {
        assert_keda_hpa_untouched(&hpas, "keda-hpa-svc").await;
        status(&client, &ns, "keda-sale").await["phase"] == "OnSale"
    })
    .await;
    assert_eq!(replicas(&svc, "svc").await.0, 1);
    let so = scaled_objects.get("svc").await.unwrap();
    assert!(
        !so.annotations()
            .contains_key("autoscaling.keda.sh/paused-replicas"),
        "{:?}",
        so.metadata.annotations
    );
    let h = hpas.get("keda-hpa-svc").await.unwrap();
    assert_eq!(h.spec.as_ref().and_then(|s| s.min_replicas), Some(1));
    let reasons = event_reasons(&client, &ns).await;
    assert!(reasons.iter().any(|r| r == "TargetConflict"), "{reasons:?}");
    assert!(
        !reasons.iter().any(|r| r == "Scaled" || r == "Cooperating"),
        "{reasons:?}"
    );
    delete_namespace(&client, &ns).await;
}
