//! The operator scaling real pods: pre-scaling before the opening, queue depth.

use crate::support::*;

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_prescales_before_opens_at_and_start_to_ready_is_measured() {
    if !real_node("real_pods_operator_prescales_before_opens_at_and_start_to_ready_is_measured") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    let before: Vec<String> = settle(&client, 2)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let artist = format!("E2E real {}", Uuid::new_v4().simple());
    // 4000 users at 1000 per replica: 4 replicas, pre-scaled leadTime (25 s) before an opening 45 s away.
    history(&artist, &[4000; 3]).await;
    let opens_at = Utc::now() + chrono::Duration::seconds(45);
    let te = format!("real-{}", &Uuid::new_v4().simple().to_string()[..8]);
    create_te(
        &client,
        &ns,
        &te,
        json!({
            "eventId": Uuid::new_v4(),
            "artist": artist,
            "opensAt": opens_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "closesAt": (opens_at + chrono::Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "target": { "kind": "Deployment", "name": name },
            "usersPerReplica": 1000,
            "minReplicas": 2,
            "maxReplicas": 6,
            "leadTime": "25s",
        }),
    )
    .await
    .unwrap();
    let scaled_at = until(
        Duration::from_secs(60),
        "the operator to scale the service to 4",
        || async {
            let d = deployments.get(&name).await.ok()?;
            (d.spec?.replicas? == 4).then(Utc::now)
        },
    )
    .await;
    let ready = settle(&client, 4).await;
    let ready_at = Utc::now();
    let lead = opens_at - scaled_at;
    eprintln!(
        "operator scaled 2 -> 4 at opensAt - {} s; all 4 Ready at opensAt - {} s",
        lead.num_milliseconds() as f64 / 1000.0,
        (opens_at - ready_at).num_milliseconds() as f64 / 1000.0
    );
    assert!(
        ready_at < opens_at,
        "the pre-scaled pods are Ready before opensAt"
    );
    assert!(
        lead <= chrono::Duration::seconds(40),
        "scaled from the lead time ({}s before), not at once",
        lead.num_seconds()
    );
    for pod in ready.iter().filter(|p| !before.contains(&p.name_any())) {
        let created = utc(&pod.metadata.creation_timestamp.as_ref().unwrap().0);
        let scheduled = condition_time(pod, "PodScheduled").unwrap_or(created);
        let started = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| utc(&t.0))
            .unwrap();
        let ready = condition_time(pod, "Ready").unwrap();
        eprintln!(
            "start-to-Ready {}: created -> Ready {:.1} s (scheduled {:.1} s, container started {:.1} s, Ready {:.1} s)",
            pod.name_any(),
            (ready - created).num_milliseconds() as f64 / 1000.0,
            (scheduled - created).num_milliseconds() as f64 / 1000.0,
            (started - created).num_milliseconds() as f64 / 1000.0,
            (ready - created).num_milliseconds() as f64 / 1000.0,
        );
        assert!(ready < opens_at, "{} Ready before opensAt", pod.name_any());
    }
    let status = serde_json::to_value(
        Api::<TicketEvent>::namespaced(client.clone(), &ns)
            .get(&te)
            .await
            .unwrap()
            .status
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(status["forecast"]["expectedUsers"], 4000, "{status}");
    delete_te(&client, &ns, &te).await;
    scale(&deployments, &name, 2).await;
    settle(&client, 2).await;
}

// ---- a minimal Socket.IO client (Engine.IO v4 over WebSocket), as the frontend's socket.io-client speaks it ----

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_queue_depth_scales_real_pods_out_and_back() {
    use fred::prelude::{KeysInterface, SortedSetsInterface};
    if !real_node("real_pods_queue_depth_scales_real_pods_out_and_back") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    settle(&client, 2).await;
    let event = Uuid::new_v4();
    let te = format!("queue-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let now = Utc::now();
    create_te(
        &client,
        &ns,
        &te,
        json!({
            "eventId": event,
            "artist": format!("E2E real queue {}", Uuid::new_v4().simple()),
            "opensAt": (now - chrono::Duration::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "closesAt": (now + chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "target": { "kind": "Deployment", "name": name },
            "usersPerReplica": 1500,
            "minReplicas": 2,
            "maxReplicas": 5,
            "fallbackExpectedUsers": 1500,
            // a cooldown shorter than a real pod's start: only the warm-up credit keeps the operator
            // from stepping again while the last step's pod is still starting
            "queueScaling": { "pollSeconds": 1, "rules": [
                { "above": 5000, "change": 1, "cooldownSeconds": 1 },
                { "below": 1000, "change": -1, "cooldownSeconds": 1 } ] },
        }),
    )
    .await
    .unwrap();
    let (redis, keys) = redis().await;
    let queue = keys.queue(event);
    let users: Vec<(f64, String)> = (0..6000).map(|i| (i as f64, format!("user-{i}"))).collect();
    let _: () = redis
        .zadd(&queue, None, None, false, false, users)
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let tes = Api::<TicketEvent>::namespaced(client.clone(), &ns);
    // Step by step to maxReplicas, never more than one step ahead of the Ready pods.
    let seen = std::sync::Mutex::new((0, Vec::<String>::new()));
    let (seen_ref, deployments_ref, tes_ref, name_ref, te_ref) =
        (&seen, &deployments, &tes, &name, &te);
    until(
        Duration::from_secs(60),
        "5 replicas, one step at a time, for 6000 queued users",
        move || async move {
            let d = deployments_ref.get(name_ref).await.ok()?;
            let want = d.spec.as_ref()?.replicas?;
            let ready = d.status.as_ref()?.ready_replicas.unwrap_or(0);
            let summary = tes_ref
                .get(te_ref)
                .await
                .ok()?
                .status?
                .summary
                .unwrap_or_default();
            let mut seen = seen_ref.lock().unwrap();
            seen.0 = seen.0.max(want - ready);
            if summary.contains("warm-up credit") && seen.1.last() != Some(&summary) {
                seen.1.push(summary);
            }
            (want == 5).then_some(())
        },
    )
    .await;
    let (ahead, credits) = seen.into_inner().unwrap();
    let decided = t0.elapsed();
    settle(&client, 5).await;
    eprintln!(
        "6000 queued users: operator scaled 2 -> 5 after {decided:?}; 5 real pods Ready after {:?}; at most {ahead} replica(s) not Ready yet; warm-up credit: {credits:?}",
        t0.elapsed()
    );
    assert!(
        ahead <= 1,
        "stepped again while the last step's pod was still starting ({ahead} replicas not Ready)"
    );
    let status = serde_json::to_value(
        Api::<TicketEvent>::namespaced(client.clone(), &ns)
            .get(&te)
            .await
            .unwrap()
            .status
            .unwrap_or_default(),
    )
    .unwrap();
    eprintln!(
        "decision while the queue was full: {}",
        status["lastDecision"]
    );
    // The queue drains: one replica less per cooldown, down to minReplicas.
    let _: i64 = redis.del(&queue).await.unwrap();
    until(
        Duration::from_secs(60),
        "scale-in to minReplicas",
        || async {
            let d = deployments.get(&name).await.ok()?;
            (d.spec?.replicas? == 2).then_some(())
        },
    )
    .await;
    settle(&client, 2).await;
    eprintln!(
        "queue drained: back to 2 real pods after {:?}",
        t0.elapsed()
    );
    delete_te(&client, &ns, &te).await;
    scale(&deployments, &name, 2).await;
}
