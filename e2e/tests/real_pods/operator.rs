//! The operator pods on a shared cluster: a leader that stops mid-sale, a refused restore on
//! deletion, a postponed sale. The targets are Deployments on the kwok nodes (their pods are Ready at
//! once), so the operator pods scale them quickly; the operator itself runs as the chart's real pods.

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event;
use kube::api::{WatchEvent, WatchParams};

use crate::support::*;

const WRITTEN_BY: &str = "tiketi.io/written-by";
const FINALIZER: &str = "tiketi.io/restore-replicas";
/// The operator's lease duration and retry period (operator/src/leader.rs `Timing::default`).
const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(2);
/// Sales scaling at once when the leader freezes: as many passes due when it is thawed.
const SALES: usize = 4;

/// What each test here starts from: the admin client, the release's namespace and a fresh namespace
/// for the test's objects; the operator pods' logs and the objects are printed if the test fails.
struct Scene {
    client: Client,
    release: String,
    ns: String,
    _logs: LogsOnFailure,
}

async fn scene(prefix: &str) -> Scene {
    let client = admin().await;
    let release = release_ns();
    let ns = namespace(&client, prefix).await;
    let _logs = LogsOnFailure(vec![Logs::Objects(ns.clone()), Logs::Pods(release.clone())]);
    Scene {
        client,
        release,
        ns,
        _logs,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn rv(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the watches saw, in one list. With one etcd behind the API server a resourceVersion is its
/// revision, so versions order writes across the Lease, the Deployment and the Events.
#[derive(Debug, Clone)]
enum Seen {
    Lease {
        rv: u64,
        holder: String,
    },
    Target {
        rv: u64,
        name: String,
        replicas: i32,
        written_by: String,
        wishes: BTreeMap<String, String>,
    },
    Event {
        rv: u64,
        instance: String,
        reason: String,
    },
}

/// Watches `api` from now (name `name` only, when given) and records every object as `map` makes it.
async fn record<K, F>(
    api: Api<K>,
    name: Option<&str>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    map: F,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(&K) -> Seen + Send + 'static,
{
    let mut wp = WatchParams::default().timeout(290);
    if let Some(name) = name {
        wp = wp.fields(&format!("metadata.name={name}"));
    }
    let from = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    tokio::spawn(async move {
        let stream = api.watch(&wp, &from).await.unwrap();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                    seen.lock().unwrap().push(map(&o))
                }
                Ok(_) => {}
                Err(e) => panic!("watch ended: {e}"),
            }
        }
    })
}

/// The leading operator pod freezes (SIGSTOP: no renewal, no release, no SIGTERM handler — a hung
/// process or a partitioned node) while a sale is OnSale and the queue makes it scale step by step.
/// The standby takes the Lease within a lease duration (plus its retries) of the freeze. The old
/// leader is then thawed (SIGCONT) with its timers due (several sales, each polling every second, so
/// several passes are due at once), and the watches over the whole takeover
/// window show that no write of it lands after the takeover: every change of the target after the
/// takeover's resourceVersion is written by the new leader (`tiketi.io/written-by`, recorded in the
/// same fenced update), and no Event comes from the old one; it notices the loss and exits.
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_leader_frozen_mid_sale_standby_takes_over_and_the_old_one_never_writes_again()
 {
    if !real_node(
        "real_pods_operator_leader_frozen_mid_sale_standby_takes_over_and_the_old_one_never_writes_again",
    ) {
        return;
    }
    use fred::prelude::{KeysInterface, SortedSetsInterface};
    // a leaderless window would delay the other tests' scaling: none of them runs meanwhile
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let _operators = OPERATOR_PODS.lock().await;
    let started = tokio::time::Instant::now();
    let Scene {
        client,
        release,
        ns,
        _logs,
    } = scene("takeover").await;
    let (old, standby) = leader_and_standby(&client, &release).await;
    let (redis, keys) = redis().await;
    let now = Utc::now();
    let mut events = Vec::new();
    for i in 0..SALES {
        kwok_deployment(&client, &ns, &format!("svc-{i}"), 2).await;
        let event = Uuid::new_v4();
        events.push(event);
        create_te(
            &client,
            &ns,
            &format!("sale-{i}"),
            json!({
                "eventId": event,
                "artist": format!("E2E takeover {}", Uuid::new_v4().simple()),
                "opensAt": rfc3339(now - chrono::Duration::seconds(5)),
                "closesAt": rfc3339(now + chrono::Duration::minutes(10)),
                "target": { "kind": "Deployment", "name": format!("svc-{i}") },
                "usersPerReplica": 1000,
                "minReplicas": 2,
                "maxReplicas": 60,
                "fallbackExpectedUsers": 1000,
                // one replica more every second or so for as long as the test runs: the operator is
                // writing the target when its leader stops, and the new leader goes on
                "queueScaling": { "pollSeconds": 1, "rules": [
                    { "above": 100, "change": 1, "cooldownSeconds": 1 } ] },
            }),
        )
        .await
        .unwrap();
        let users: Vec<(f64, String)> =
            (0..5000).map(|i| (i as f64, format!("user-{i}"))).collect();
        let _: () = redis
            .zadd(keys.queue(event), None, None, false, false, users)
            .await
            .unwrap();
    }
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let written = |d: &Deployment| {
        (
            d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            d.annotations().get(WRITTEN_BY).cloned().unwrap_or_default(),
        )
    };
    until(
        Duration::from_secs(60),
        "the leader scaling the sale",
        || async {
            let (replicas, by) = written(&deployments.get("svc-0").await.ok()?);
            (replicas >= 3 && by == old).then_some(())
        },
    )
    .await;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
    let watches = [
        record(
            Api::<Lease>::namespaced(client.clone(), &release),
            Some("tiketi-operator"),
            seen.clone(),
            |l: &Lease| Seen::Lease {
                rv: rv(&l.metadata),
                holder: l
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default(),
            },
        )
        .await,
        record(deployments.clone(), None, seen.clone(), |d: &Deployment| {
            Seen::Target {
                rv: rv(&d.metadata),
                name: d.name_any(),
                replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                written_by: d.annotations().get(WRITTEN_BY).cloned().unwrap_or_default(),
                wishes: d
                    .annotations()
                    .iter()
                    .filter(|(k, _)| k.starts_with("wish.tiketi.io/"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        })
        .await,
        record(
            Api::<Event>::namespaced(client.clone(), &ns),
            None,
            seen.clone(),
            |e: &Event| Seen::Event {
                rv: rv(&e.metadata),
                instance: e.reporting_instance.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
            },
        )
        .await,
    ];

    let pod_api = Api::<Pod>::namespaced(client.clone(), &release);
    let restarts_before = restarts(&pod_api.get(&old).await.unwrap());
    let pid = operator_pid(&old).unwrap_or_else(|| panic!("the host process of {old}"));
    let frozen_at = tokio::time::Instant::now();
    assert!(signal(pid, "STOP"), "SIGSTOP {old} (pid {pid})");
    let leases = Api::<Lease>::namespaced(client.clone(), &release);
    let new = until(
        LEASE + Duration::from_secs(30),
        "the standby taking the Lease over",
        || async {
            let holder = leases
                .get("tiketi-operator")
                .await
                .ok()?
                .spec?
                .holder_identity?;
            (!holder.is_empty() && holder != old).then_some(holder)
        },
    )
    .await;
    let took = frozen_at.elapsed();
    // the old leader wakes up with its timers due; it must see the loss before writing anything
    let thawed = signal(pid, "CONT");
    eprintln!(
        "operator leader {old} frozen: {new} leads after {took:.1?} (standby was {standby}); thawed: {thawed}"
    );
    assert_eq!(new, standby, "the Ready standby took over");
    // the standby counts the lease from when it saw the last renewal (up to a retry after it was
    // made, itself up to a retry before the freeze) and tries once per retry: lease + 2 retries,
    // and a few seconds for the calls
    assert!(
        took <= LEASE + 2 * RETRY + Duration::from_secs(3),
        "the standby took {took:?} (lease {LEASE:?}, retry {RETRY:?})"
    );
    // the old process exits once it sees the loss (or the kubelet's liveness probe killed it)
    until(
        Duration::from_secs(60),
        "the old leader's process to exit",
        || async { (restarts(&pod_api.get(&old).await.ok()?) > restarts_before).then_some(()) },
    )
    .await;
    let after_exit = written(&deployments.get("svc-0").await.unwrap()).0;
    until(
        Duration::from_secs(30),
        "the new leader scaling on",
        || async {
            let (replicas, by) = written(&deployments.get("svc-0").await.ok()?);
            (replicas > after_exit && by == new).then_some(())
        },
    )
    .await;
    let elapsed = frozen_at.elapsed();
    for w in watches {
        w.abort();
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|s| match s {
        Seen::Lease { rv, .. } | Seen::Target { rv, .. } | Seen::Event { rv, .. } => *rv,
    });
    let takeover = seen
        .iter()
        .find_map(|s| match s {
            Seen::Lease { rv, holder } if *holder == new => Some(*rv),
            _ => None,
        })
        .expect("the watch saw the takeover");
    let (mut before, mut by_new) = (0, 0);
    let mut prev = BTreeMap::<String, (i32, String, BTreeMap<String, String>)>::new();
    for s in &seen {
        match s {
            Seen::Target {
                rv,
                name,
                replicas,
                written_by,
                wishes,
            } => {
                let now = (*replicas, written_by.clone(), wishes.clone());
                let write = prev.get(name).is_some_and(|p| *p != now);
                prev.insert(name.clone(), now);
                if !write {
                    continue;
                }
                if *rv < takeover {
                    before += 1;
                    continue;
                }
                assert_eq!(
                    written_by, &new,
                    "a write of {name} (rv {rv}, {replicas} replicas) after the takeover (rv {takeover}) not by the new leader"
                );
                by_new += 1;
            }
            Seen::Event {
                rv,
                instance,
                reason,
            } if *rv > takeover => assert_ne!(
                instance, &old,
                "Event {reason} (rv {rv}) from the old leader after the takeover (rv {takeover})"
            ),
            _ => {}
        }
    }
    eprintln!(
        "takeover window {elapsed:.1?}: {before} target writes before the takeover, {by_new} after it, all by {new}; {} watch events",
        seen.len()
    );
    assert!(
        by_new > 0,
        "the new leader wrote nothing after the takeover"
    );

    let tes = Api::<TicketEvent>::namespaced(client.clone(), &ns);
    for (i, event) in events.iter().enumerate() {
        let _: i64 = redis.del(keys.queue(*event)).await.unwrap();
        delete_te(&client, &ns, &format!("sale-{i}")).await;
    }
    until(Duration::from_secs(60), "the TicketEvents gone", || async {
        tes.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
    eprintln!(
        "leader frozen mid-sale: test took {:.1?}",
        started.elapsed()
    );
    // the other tests see the whole set again
    until(
        Duration::from_secs(60),
        "every operator pod Ready again",
        || async {
            let list = pods(&client, &release, "operator").await;
            (list.len() >= 2 && list.iter().all(is_ready)).then_some(())
        },
    )
    .await;
}

/// Refusals of the admission policy `policy` so far (the API server's own counter).
fn refusals(policy: &str) -> u64 {
    let metrics = kubectl(&["get", "--raw", "/metrics"], None).expect("the API server's metrics");
    let label = format!("policy=\"{policy}\"");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_validating_admission_policy_check_total")
                && l.contains(&label)
                && l.contains("enforcement_action=\"deny\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A TicketEvent deleted mid-sale while the write that gives its target back is refused (an
/// admission policy denies the operator's update of the Deployment, as a quota or a policy engine
/// would): the finalizer stays, the target keeps the sale's replicas, the operator retries; once the
/// refusal is lifted the restore goes through, then the finalizer goes.
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_delete_while_the_restore_is_refused_keeps_the_finalizer_until_restored()
{
    if !real_node(
        "real_pods_operator_delete_while_the_restore_is_refused_keeps_the_finalizer_until_restored",
    ) {
        return;
    }
    let _operators = OPERATOR_PODS.lock().await;
    let started = tokio::time::Instant::now();
    let Scene {
        client,
        release,
        ns,
        _logs,
    } = scene("refused").await;
    let deployments = kwok_deployment(&client, &ns, "svc", 2).await;
    let now = Utc::now();
    let te = "sale";
    create_te(
        &client,
        &ns,
        te,
        json!({
            "eventId": Uuid::new_v4(),
            "artist": format!("E2E refused {}", Uuid::new_v4().simple()),
            "opensAt": rfc3339(now - chrono::Duration::seconds(5)),
            "closesAt": rfc3339(now + chrono::Duration::minutes(10)),
            "target": { "kind": "Deployment", "name": "svc" },
            "usersPerReplica": 1500,
            "minReplicas": 2,
            "maxReplicas": 12,
            "fallbackExpectedUsers": 6000,
        }),
    )
    .await
    .unwrap();
    let tes = Api::<TicketEvent>::namespaced(client.clone(), &ns);
    until(
        Duration::from_secs(60),
        "the sale OnSale at 4 replicas",
        || async {
            let d = deployments.get("svc").await.ok()?;
            let t = tes.get(te).await.ok()?;
            (d.spec?.replicas? == 4
                && t.status?.phase.as_deref() == Some("OnSale")
                && t.metadata.finalizers?.iter().any(|f| f == FINALIZER))
            .then_some(())
        },
    )
    .await;
    let sa = pods(&client, &release, "operator").await[0]
        .spec
        .as_ref()
        .unwrap()
        .service_account_name
        .clone()
        .unwrap();
    let user = format!("system:serviceaccount:{release}:{sa}");
    let policy = format!("e2e-refuse-{ns}");
    // the operator's updates of this namespace's Deployments are refused; a server-side dry run of
    // anyone's too, so the test can tell when the policy is in force
    let manifest = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
          "metadata": { "name": policy },
          "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
              "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns } },
              "resourceRules": [{ "apiGroups": ["apps"], "apiVersions": ["v1"],
                                  "operations": ["UPDATE"], "resources": ["deployments"] }] },
            "matchConditions": [{ "name": "operator-or-dry-run",
              "expression": format!("request.userInfo.username == '{user}' || request.dryRun") }],
            "validations": [{ "expression": "false", "message": "e2e: the restore is refused" }] } },
        { "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
          "metadata": { "name": policy },
          "spec": { "policyName": policy, "validationActions": ["Deny"] } },
    ]});
    kubectl(&["apply", "-f", "-"], Some(&manifest.to_string())).expect("the admission policy");
    until(
        Duration::from_secs(30),
        "the admission policy in force",
        || async {
            deployments
                .patch(
                    "svc",
                    &PatchParams::default().dry_run(),
                    &Patch::Merge(json!({ "metadata": { "labels": { "probe": "1" } } })),
                )
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let refused_before = refusals(&policy);
    let t0 = tokio::time::Instant::now();
    delete_te(&client, &ns, te).await;
    // the restore tried and refused twice (the operator retries with backoff: 1 s, 2 s, ...); the
    // TicketEvent must stay meanwhile, or nothing would ever give the target back
    until(
        Duration::from_secs(30),
        "the operator's restore refused twice",
        || async {
            let held = tes.get_opt(te).await.ok()?;
            assert!(
                held.is_some_and(|t| t.finalizers().iter().any(|f| f == FINALIZER)),
                "the TicketEvent let go while its restore was refused: the target stays at {:?}",
                deployments.get("svc").await.ok()?.spec?.replicas
            );
            (refusals(&policy) >= refused_before + 2).then_some(())
        },
    )
    .await;
    let held = tes.get(te).await.expect("the TicketEvent is still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        held.finalizers().iter().any(|f| f == FINALIZER),
        "the finalizer went while the restore was refused: {:?}",
        held.finalizers()
    );
    let d = deployments.get("svc").await.unwrap();
    assert_eq!(
        d.spec.as_ref().unwrap().replicas,
        Some(4),
        "the target changed although every update of it was refused"
    );
    eprintln!(
        "restore refused {} times in {:.1?}: finalizer kept, target at 4",
        refusals(&policy) - refused_before,
        t0.elapsed()
    );
    kubectl(&["delete", "-f", "-"], Some(&manifest.to_string())).expect("lift the refusal");
    let lifted = tokio::time::Instant::now();
    until(
        Duration::from_secs(60),
        "the TicketEvent gone once the restore goes through",
        || async { tes.get_opt(te).await.ok()?.is_none().then_some(()) },
    )
    .await;
    let d = deployments.get("svc").await.unwrap();
    assert_eq!(
        d.spec.as_ref().unwrap().replicas,
        Some(2),
        "the finalizer went before the target was restored"
    );
    assert!(
        !d.annotations()
            .contains_key(&format!("wish.tiketi.io/{te}")),
        "the sale's wish is left on the target: {:?}",
        d.annotations()
    );
    eprintln!(
        "refusal lifted: restored to 2 and the TicketEvent gone after {:.1?}",
        lifted.elapsed()
    );
    delete_namespace(&client, &ns).await;
    eprintln!("refused restore: test took {:.1?}", started.elapsed());
}

/// `opensAt` moved later while the sale is OnSale: the operator pods give back what the old plan held
/// — the target to the baseline, its wish and the waiting room's capacity key removed — and the phase
/// is Scheduled again until the new pre-scaling window (docs/operator.md, "Several sales").
#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_operator_postponed_mid_sale_releases_the_target_and_the_capacity() {
    if !real_node("real_pods_operator_postponed_mid_sale_releases_the_target_and_the_capacity") {
        return;
    }
    use fred::prelude::KeysInterface;
    let _operators = OPERATOR_PODS.lock().await;
    let started = tokio::time::Instant::now();
    let Scene {
        client, ns, _logs, ..
    } = scene("postponed").await;
    let deployments = kwok_deployment(&client, &ns, "svc", 2).await;
    let (redis, keys) = redis().await;
    let event = Uuid::new_v4();
    let capacity = keys.capacity(event);
    let now = Utc::now();
    let te = "sale";
    create_te(
        &client,
        &ns,
        te,
        json!({
            "eventId": event,
            "artist": format!("E2E postponed {}", Uuid::new_v4().simple()),
            "opensAt": rfc3339(now - chrono::Duration::seconds(5)),
            "closesAt": rfc3339(now + chrono::Duration::minutes(10)),
            "target": { "kind": "Deployment", "name": "svc" },
            "usersPerReplica": 1500,
            "minReplicas": 2,
            "maxReplicas": 12,
            "fallbackExpectedUsers": 6000,
        }),
    )
    .await
    .unwrap();
    let tes = Api::<TicketEvent>::namespaced(client.clone(), &ns);
    let wish = format!("wish.tiketi.io/{te}");
    until(
        Duration::from_secs(60),
        "the sale OnSale at 4 replicas with its capacity published",
        || async {
            let d = deployments.get("svc").await.ok()?;
            let phase = tes.get(te).await.ok()?.status?.phase;
            let published: bool = redis.exists(&capacity).await.ok()?;
            (d.spec.as_ref()?.replicas? == 4
                && d.annotations().contains_key(&wish)
                && phase.as_deref() == Some("OnSale")
                && published)
                .then_some(())
        },
    )
    .await;
    let later = Utc::now() + chrono::Duration::hours(2);
    let t0 = tokio::time::Instant::now();
    tes.patch(
        te,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": {
            "opensAt": rfc3339(later),
            "closesAt": rfc3339(later + chrono::Duration::hours(1)),
        } })),
    )
    .await
    .expect("opensAt moved later");
    until(
        Duration::from_secs(60),
        "the postponed sale Scheduled, the target at 2, no wish, no capacity key",
        || async {
            let d = deployments.get("svc").await.ok()?;
            let phase = tes.get(te).await.ok()?.status?.phase;
            let published: bool = redis.exists(&capacity).await.ok()?;
            (d.spec.as_ref()?.replicas? == 2
                && !d.annotations().contains_key(&wish)
                && phase.as_deref() == Some("Scheduled")
                && !published)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "opensAt moved 2 h later mid-sale: Scheduled, back to 2, capacity removed after {:.1?}",
        t0.elapsed()
    );
    delete_te(&client, &ns, te).await;
    until(Duration::from_secs(60), "the TicketEvent gone", || async {
        tes.get_opt(te).await.ok()?.is_none().then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
    eprintln!("postponed mid-sale: test took {:.1?}", started.elapsed());
}
