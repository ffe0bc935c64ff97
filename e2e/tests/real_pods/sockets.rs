//! Socket.IO connections when pods go away: scale-down, rolling restart.

use crate::support::*;

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_scale_down_drains_sockets_and_sessions_are_restored_on_another_pod() {
    if !real_node("real_pods_scale_down_drains_sockets_and_sessions_are_restored_on_another_pod") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    let ready = settle(&client, 2).await;
    let (leaving, staying) = (&ready[0], &ready[1]);
    let leaving_url = format!("http://{}:3001", pod_ip(leaving));
    let base = service_url(&client).await;
    let http = reqwest::Client::new();
    // Users on the pod that the scale-down removes (lowest deletion cost), each in an event's room.
    let event = Uuid::new_v4();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let token = register(&http, &base).await;
        let mut ws = sio_connect(&leaving_url, &token).await;
        ws.send(event_frame("join-event", &json!({ "eventId": event })))
            .await
            .unwrap();
        wait_event(&mut ws, "room-info").await;
        sockets.push((token, ws));
    }
    Api::<Pod>::namespaced(client.clone(), &ns)
        .patch(
            &leaving.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "controller.kubernetes.io/pod-deletion-cost": "-1000" } } })),
        )
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    scale(&deployments, &name, 1).await;
    let mut endings = Vec::new();
    for (_, ws) in &mut sockets {
        endings.push(ending(ws, Duration::from_secs(45)).await);
    }
    eprintln!(
        "scale-down: the {} sockets on {} ended after {:?}: {endings:?}",
        sockets.len(),
        leaving.name_any(),
        t0.elapsed()
    );
    for e in &endings {
        // A close handshake from the draining pod (not a server DISCONNECT, which stops socket.io-client from
        // reconnecting, and not a connection that just dies with the process).
        assert_eq!(*e, Ending::Closed, "{endings:?}");
    }
    // Reconnect as socket.io-client does, through the Service: the only pod left restores the session.
    for (token, _) in &sockets {
        let mut ws = sio_connect(&base, token).await;
        let restored = wait_event(&mut ws, "session-restored").await;
        assert_eq!(restored["eventId"], json!(event), "{restored}");
    }
    let left = settle(&client, 1).await;
    assert_eq!(left[0].name_any(), staying.name_any());
    eprintln!(
        "sessions restored on {} after the scale-down",
        staying.name_any()
    );
    scale(&deployments, &name, 2).await;
    settle(&client, 2).await;
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_rolling_restart_mid_sale_answers_every_request_and_restores_every_session() {
    if !real_node(
        "real_pods_rolling_restart_mid_sale_answers_every_request_and_restores_every_session",
    ) {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let (deployments, name) = service_deployment(&client).await;
    let before: Vec<String> = settle(&client, 2)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let base = service_url(&client).await;
    let http = reqwest::Client::new();
    let event = Uuid::new_v4();
    let mut users = Vec::new();
    for _ in 0..3 {
        let token = register(&http, &base).await;
        let mut ws = sio_connect(&base, &token).await;
        ws.send(event_frame("join-event", &json!({ "eventId": event })))
            .await
            .unwrap();
        wait_event(&mut ws, "room-info").await;
        users.push((token, ws));
    }
    // Requests all through the rollout, as the frontend keeps making them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, http, base) = (stop.clone(), http.clone(), base.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http
                    .get(format!("{base}/api/events"))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        })
    };
    // What `helm upgrade` does to the pods: a new template, rolled out one pod at a time (maxUnavailable 0).
    let t0 = tokio::time::Instant::now();
    deployments
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "template": { "metadata": { "annotations": {
                "tiketi.dev/e2e-rollout": Uuid::new_v4().to_string() } } } } }),
            ),
        )
        .await
        .unwrap();
    until(
        Duration::from_secs(180),
        "the rollout to replace both pods",
        || async {
            let all = pods(&client, &release_ns(), "service").await;
            let fresh = all
                .iter()
                .filter(|p| is_ready(p) && !before.contains(&p.name_any()))
                .count();
            (fresh == 2 && all.len() == 2).then_some(())
        },
    )
    .await;
    let rollout = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    eprintln!(
        "rolling restart in {rollout:?}: {ok} requests answered 200, {} not: {failed:?}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "every request answered during the rollout"
    );
    // Every socket's pod went away; each user reconnects (as socket.io-client does) and gets the session back.
    for (token, mut ws) in users {
        let end = ending(&mut ws, Duration::from_secs(5)).await;
        assert_eq!(
            end,
            Ending::Closed,
            "a close handshake from the replaced pod"
        );
        let mut ws = sio_connect(&base, &token).await;
        let restored = wait_event(&mut ws, "session-restored").await;
        assert_eq!(restored["eventId"], json!(event), "{restored}");
    }
    eprintln!("rolling restart: 3 sessions restored on the new pods");
}
