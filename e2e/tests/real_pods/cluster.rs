//! The chart's pods on the real node, and the operator pod's own token.

use crate::support::*;

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_run_ready_on_the_real_node_as_the_chart_defines_them() {
    if !real_node("real_pods_run_ready_on_the_real_node_as_the_chart_defines_them") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let _operators = OPERATOR_PODS.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let node_name = env("TIKETI_K8S_NODE_NAME");
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(&node_name)
        .await
        .unwrap();
    assert!(
        !node.annotations().contains_key("kwok.x-k8s.io/node"),
        "{node_name} is not a kwok node"
    );
    let runtime = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.container_runtime_version.clone())
        .unwrap_or_default();
    assert!(runtime.starts_with("containerd://"), "runtime {runtime}");
    for component in ["service", "operator"] {
        let list = pods(&client, &ns, component).await;
        assert!(list.len() >= 2, "{component}: {} pods", list.len());
        for pod in &list {
            let name = pod.name_any();
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(
                spec.node_name.as_deref(),
                Some(node_name.as_str()),
                "{name}"
            );
            assert!(is_ready(pod), "{name} is Ready");
            let c = &spec.containers[0];
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
            let psc = spec.security_context.as_ref().unwrap();
            assert_eq!(psc.run_as_non_root, Some(true), "{name}");
            assert_eq!(psc.run_as_user, Some(65532), "{name}");
            let started = pod
                .status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap();
            assert!(started[0].ready, "{name}: container ready");
            assert!(
                started[0].image_id.starts_with("sha256:")
                    || started[0].image_id.contains("@sha256:"),
                "{name}: a real image: {}",
                started[0].image_id
            );
            if component == "service" {
                assert_eq!(
                    spec.automount_service_account_token,
                    Some(false),
                    "{name}: the service gets no API token"
                );
                assert!(
                    c.volume_mounts
                        .iter()
                        .flatten()
                        .any(|m| m.mount_path == "/data/uploads"),
                    "{name}: uploads on a volume"
                );
            }
        }
        eprintln!(
            "{component}: {} pods Running and Ready on {node_name}",
            list.len()
        );
    }
    // The migration Job ran as a pre-install hook (and was deleted on success): the schema is there.
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(applied > 0, "migrations applied by the chart's Job");
    // Readiness and the dependencies as the pods see them, through the Service.
    let base = service_url(&client).await;
    let ready: Value = reqwest::get(format!("{base}/health/all"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["database"]["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["redis"]["status"], "ok", "{ready}");
    let status = reqwest::get(format!("{base}/health/ready"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_pod_token_has_its_rbac_and_no_more() {
    if !real_node("real_pods_operator_pod_token_has_its_rbac_and_no_more") {
        return;
    }
    let _operators = OPERATOR_PODS.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let operators = pods(&client, &ns, "operator").await;
    // The token the kubelet projected into the operator pod (its real, pod-bound ServiceAccount token), read from
    // the node's volume directory; used over the path pods use: the kubernetes Service, through kube-proxy.
    let pod = operators
        .iter()
        .find(|p| is_ready(p))
        .expect("a Ready operator pod");
    let uid = pod.metadata.uid.clone().unwrap();
    let dir = format!(
        "{}/kubelet/pods/{uid}/volumes/kubernetes.io~projected",
        env("E2E_KUBELET_ROOT")
    );
    let volume = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.join("token").exists())
        .expect("a projected ServiceAccount token");
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "in-pod", "cluster": {
            "server": "https://10.96.0.1:443",
            "certificate-authority": volume.join("ca.crt") } }],
        "users": [{ "name": "pod", "user": { "tokenFile": volume.join("token") } }],
        "contexts": [{ "name": "pod", "context": { "cluster": "in-pod", "user": "pod", "namespace": ns } }],
        "current-context": "pod",
    }))
    .unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let sa = Client::try_from(config).unwrap();
    Api::<TicketEvent>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list TicketEvents with the pod's token");
    Api::<Deployment>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list Deployments with the pod's token");
    let forbidden =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(ref s)) if s.code == 403);
    assert!(forbidden(
        Api::<Secret>::namespaced(sa.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Namespace>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    // After a rollout the old leader released its lease (or, if killed, lets it run out): a current pod must lead.
    let leases = Api::<Lease>::namespaced(sa, &ns);
    let holder = until(
        Duration::from_secs(60),
        "an operator pod of this release to hold the lease",
        || async {
            let lease = leases
                .get("tiketi-operator")
                .await
                .expect("the operator reads its Lease");
            let holder = lease.spec?.holder_identity?;
            pods(&client, &ns, "operator")
                .await
                .iter()
                .any(|p| p.name_any() == holder && is_ready(p))
                .then_some(holder)
        },
    )
    .await;
    eprintln!(
        "operator pod {} token: RBAC as granted; leader {holder}",
        pod.name_any()
    );
}

/// A rollout deletes the leading operator pod: it gives its Lease up on SIGTERM, so a standby pod
/// leads within seconds rather than after the 15 s lease (sales went unwatched that long).
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_leader_deleted_a_standby_leads_before_the_lease_runs_out() {
    if !real_node("real_pods_operator_leader_deleted_a_standby_leads_before_the_lease_runs_out") {
        return;
    }
    let _operators = OPERATOR_PODS.lock().await;
    let client = admin().await;
    let ns = release_ns();
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let leading_pod = || async {
        let holder = leases
            .get("tiketi-operator")
            .await
            .ok()?
            .spec?
            .holder_identity?;
        pods(&client, &ns, "operator")
            .await
            .into_iter()
            .find(|p| p.name_any() == holder && is_ready(p))
            .map(|p| p.name_any())
    };
    let old = until(
        Duration::from_secs(60),
        "a leading operator pod",
        leading_pod,
    )
    .await;
    let standby = until(
        Duration::from_secs(60),
        "a Ready standby operator pod",
        || async {
            pods(&client, &ns, "operator")
                .await
                .into_iter()
                .find(|p| p.name_any() != old && is_ready(p))
                .map(|p| p.name_any())
        },
    )
    .await;
    let started = tokio::time::Instant::now();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete(&old, &DeleteParams::default())
        .await
        .unwrap();
    let new = until(Duration::from_secs(60), "a new leader", || async {
        leading_pod().await.filter(|p| *p != old)
    })
    .await;
    let took = started.elapsed();
    eprintln!(
        "operator leader {old} deleted: {new} leads after {took:.1?} (standby was {standby})"
    );
    assert!(
        took < Duration::from_secs(15),
        "the standby waited {took:?}: the old leader did not release its 15 s lease"
    );
    // the other tests see the whole set again: the replacement pod Ready, the deleted one gone
    until(
        Duration::from_secs(60),
        "every operator pod Ready again",
        || async {
            let list = pods(&client, &ns, "operator").await;
            (list.len() >= 2
                && list.iter().all(is_ready)
                && list.iter().all(|p| p.name_any() != old))
            .then_some(())
        },
    )
    .await;
}
