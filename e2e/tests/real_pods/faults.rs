//! Faults: an OOM kill under a memory limit, PostgreSQL and Redis outages.

use crate::support::*;

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_memory_limit_oom_kills_a_pod_and_the_service_goes_on() {
    if !real_node("real_pods_memory_limit_oom_kills_a_pod_and_the_service_goes_on") {
        return;
    }
    // Its pod needs PostgreSQL and Redis too (the outage test cuts them).
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let (deployments, name) = service_deployment(&client).await;
    // A copy of the chart's service pod with a memory limit below what 4 concurrent argon2 hashes need
    // (4 × 19 MiB): registrations at once push it over, and the kernel kills it for real.
    let mut template = deployments.get(&name).await.unwrap().spec.unwrap().template;
    let labels = json!({ "app": "tiketi-oom-probe" });
    template.metadata = Some(serde_json::from_value(json!({ "labels": labels })).unwrap());
    let container = &mut template.spec.as_mut().unwrap().containers[0];
    container.resources = Some(
        serde_json::from_value(
            json!({ "requests": { "memory": "32Mi" }, "limits": { "memory": "48Mi" } }),
        )
        .unwrap(),
    );
    container.startup_probe = None;
    let oom: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "tiketi-oom-probe" },
        "spec": { "replicas": 1, "selector": { "matchLabels": labels }, "template": template },
    }))
    .unwrap();
    oom.delete("tiketi-oom-probe", &DeleteParams::default())
        .await
        .ok();
    oom.create(&PostParams::default(), &d).await.unwrap();
    let pod_api = Api::<Pod>::namespaced(client.clone(), &ns);
    let probe_pods = ListParams::default().labels("app=tiketi-oom-probe");
    let pod = until(
        Duration::from_secs(60),
        "the OOM probe pod Ready",
        || async {
            pod_api
                .list(&probe_pods)
                .await
                .ok()?
                .items
                .into_iter()
                .find(is_ready)
        },
    )
    .await;
    let url = format!("http://{}:3001", pod_ip(&pod));
    let http = reqwest::Client::new();
    let base = service_url(&client).await;
    let survivors_before = settle_count(&client).await;
    // Registrations at once: each holds 19 MiB of argon2 memory while it hashes.
    let storm: Vec<_> = (0..8)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4().simple().to_string();
                http.post(format!("{url}/api/auth/register"))
                    .timeout(Duration::from_secs(20))
                    .json(&json!({ "email": format!("oom-{}@e2e.tiketi.test", &id[..12]),
                        "password": "real-pods-e2e-password", "name": "OOM", "phone": "010-0000-0000" }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for s in storm {
        answers.push(s.await.unwrap().map_err(|e| e.to_string()));
    }
    let killed = until(
        Duration::from_secs(60),
        "the probe container OOM-killed",
        || async {
            let p = pod_api.get(&pod.name_any()).await.ok()?;
            let cs = p.status?.container_statuses?.into_iter().next()?;
            let last = cs.last_state?.terminated?;
            (last.reason.as_deref() == Some("OOMKilled"))
                .then_some((cs.restart_count, last.exit_code))
        },
    )
    .await;
    eprintln!(
        "OOM probe: answers {answers:?}; container OOMKilled (exit {}), restarts {}",
        killed.1, killed.0
    );
    // It comes back and serves; the chart's pods were untouched and the Service answers throughout.
    until(
        Duration::from_secs(90),
        "the OOM-killed pod Ready again",
        || async {
            let p = pod_api.get(&pod.name_any()).await.ok()?;
            is_ready(&p).then_some(())
        },
    )
    .await;
    let health = http
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(health, 200, "the restarted pod serves");
    let through_service = http
        .get(format!("{base}/api/events"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(through_service, 200);
    assert_eq!(
        settle_count(&client).await,
        survivors_before,
        "the chart's pods never restarted"
    );
    oom.delete("tiketi-oom-probe", &DeleteParams::default())
        .await
        .ok();
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_postgres_and_redis_outages_never_take_every_pod_out_of_the_service() {
    if !real_node("real_pods_postgres_and_redis_outages_never_take_every_pod_out_of_the_service") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let ready = settle(&client, 2).await;
    let names: Vec<String> = ready.iter().map(ResourceExt::name_any).collect();
    let base = service_url(&client).await;
    let http = reqwest::Client::new();
    for (dependency, forwarder) in [("redis", "redis"), ("database", "postgres")] {
        // The outage as the pods see it: every connection to it cut, new ones refused.
        control_plane(&["forward-stop", forwarder]);
        let t0 = tokio::time::Instant::now();
        let mut seen_down = Vec::new();
        // Until every pod reports it down (each checks on its own), and for 10 s more: the pods stay Ready and in
        // the Service, and the Service answers readiness.
        while seen_down.len() < ready.len() || t0.elapsed() < Duration::from_secs(10) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{dependency}: pods reporting it down: {seen_down:?}"
            );
            for pod in &ready {
                if !seen_down.contains(&pod.name_any())
                    && dependency_status(&http, pod, dependency)
                        .await
                        .is_some_and(|s| s != "ok")
                {
                    seen_down.push(pod.name_any());
                }
            }
            let now: Vec<String> = pods(&client, &release_ns(), "service")
                .await
                .iter()
                .filter(|p| is_ready(p))
                .map(ResourceExt::name_any)
                .collect();
            assert_eq!(now, names, "{dependency} down: the pods stay Ready");
            let status = http
                .get(format!("{base}/health/ready"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(
                status, 200,
                "{dependency} down: readiness through the Service"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!(
            "{dependency} outage: both pods reported it down, stayed Ready and in the Service for {:?}",
            t0.elapsed()
        );
        control_plane(&["forward-start", forwarder]);
        for pod in &ready {
            until(
                Duration::from_secs(60),
                &format!("{} to see {dependency} again", pod.name_any()),
                || async {
                    (dependency_status(&http, pod, dependency).await.as_deref() == Some("ok"))
                        .then_some(())
                },
            )
            .await;
        }
        eprintln!(
            "{dependency} back: both pods report it ok after {:?}",
            t0.elapsed()
        );
    }
}
