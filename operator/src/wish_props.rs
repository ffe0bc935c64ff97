//! Sales sharing one Deployment, their passes interleaved as concurrent reconciles run them: a pass
//! reads the target (and the TicketEvent store, whose statuses lag the writes), decides, and writes
//! the replicas with its wish conditional on the version it read, its status afterwards. Whatever the
//! interleaving, the target never sits below a wish a sale has applied (no 7 -> 5 -> 7).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use proptest::prelude::*;
use tiketi_crds::{TicketEvent, TicketEventSpec, TicketEventStatus};

use crate::{
    decide,
    observe::{self, Observed, Target},
    sale::Sale,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()
}

/// A sale pre-scaling on Deployment `svc` (opens in 10 minutes) for `users` expected users.
fn sale(name: &str, users: i64) -> TicketEvent {
    let opens = now() + chrono::Duration::minutes(10);
    let spec: TicketEventSpec = serde_json::from_value(serde_json::json!({
        "eventId": "6a8c3a57-94f1-4f5c-9d5b-2f0b8c1d7e11",
        "artist": "IU",
        "opensAt": opens.to_rfc3339(),
        "closesAt": (opens + chrono::Duration::hours(2)).to_rfc3339(),
        "target": { "kind": "Deployment", "name": "svc" },
        "fallbackExpectedUsers": users,
    }))
    .unwrap();
    let mut te = TicketEvent::new(name, spec);
    te.metadata.namespace = Some("default".into());
    te
}

/// The Deployment as the API server holds it.
#[derive(Debug, Clone)]
struct Stored {
    version: u64,
    replicas: i32,
    annotations: BTreeMap<String, String>,
}

impl Stored {
    fn deployment(&self) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.annotations = Some(self.annotations.clone());
        d
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Sale `i`'s pass reads the target and the store.
    Read(usize),
    /// Sale `i`'s pass decides from its read and writes.
    Write(usize),
    /// Sale `i`'s expected users are edited (its wish moves).
    Edit(usize, i64),
    /// The store catches up with sale `i`'s last status.
    Sync(usize),
}

fn op(sales: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..sales).prop_map(Op::Read),
        (0..sales).prop_map(Op::Write),
        (0..sales, 0i64..30_000).prop_map(|(i, u)| Op::Edit(i, u)),
        (0..sales).prop_map(Op::Sync),
    ]
}

/// One pass of `te` from what it read: the status it writes, or `None` when its write is refused
/// (the target changed since the read; nothing is written).
fn pass(
    te: &TicketEvent,
    seen: &Stored,
    store: &[TicketEvent],
    stored: &mut Stored,
) -> Option<TicketEventStatus> {
    let name = te.name_any();
    let d = seen.deployment();
    let wishes = observe::wishes_on(&d);
    let on_target: Vec<&TicketEvent> = store.iter().collect();
    let o = Observed {
        target: Some(Target {
            replicas: seen.replicas,
            existing: seen.replicas,
            ready: seen.replicas,
            rolling_out: false,
        }),
        target_version: Some(seen.version.to_string()),
        own_wish: wishes.get(&crate::context::wish_key(&name)).cloned(),
        siblings: observe::siblings(&name, &wishes, &on_target, now()),
        ..Observed::empty(&format!("default/{name}"))
    };
    let old = te.status.clone().unwrap_or_default();
    let out = decide::decide(&Sale::new(&te.spec, &old), &o, now());
    if out.replicas.is_some() || out.wish.is_some() {
        if seen.version != stored.version {
            return None;
        }
        if let Some(n) = out.replicas {
            stored.replicas = n;
        }
        match &out.wish {
            Some(Some(w)) => {
                stored.annotations.insert(
                    crate::context::wish_key(&name),
                    serde_json::to_string(w).unwrap(),
                );
            }
            Some(None) => {
                stored.annotations.remove(&crate::context::wish_key(&name));
            }
            None => {}
        }
        stored.version += 1;
    }
    out.status
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_sibling_passes_never_undo_an_applied_wish(
        sales in 2usize..4,
        ops in proptest::collection::vec(op(3), 1..80),
    ) {
        let mut tes: Vec<TicketEvent> = (0..sales).map(|i| sale(&format!("sale-{i}"), 7_500)).collect();
        let mut store = tes.clone();
        let mut target = Stored { version: 1, replicas: 2, annotations: BTreeMap::new() };
        let mut reads: Vec<Option<(Stored, Vec<TicketEvent>)>> = vec![None; sales];
        let mut applied: Vec<Option<i32>> = vec![None; sales];
        for op in ops {
            match op {
                Op::Read(i) if i < sales => reads[i] = Some((target.clone(), store.clone())),
                Op::Write(i) if i < sales => {
                    let Some((seen, store_seen)) = reads[i].take() else { continue };
                    let before = target.version;
                    if let Some(st) = pass(&tes[i], &seen, &store_seen, &mut target) {
                        applied[i] = st.desired_replicas;
                        tes[i].status = Some(st);
                    } else {
                        prop_assert_eq!(target.version, before, "a refused write changed the target");
                    }
                }
                Op::Edit(i, users) if i < sales => tes[i].spec.fallback_expected_users = users,
                Op::Sync(i) if i < sales => store[i] = tes[i].clone(),
                _ => {}
            }
            for (i, w) in applied.iter().enumerate() {
                if let Some(w) = w {
                    prop_assert!(
                        target.replicas >= *w,
                        "target at {} below sale-{}'s applied wish {}", target.replicas, i, w
                    );
                }
            }
        }
    }
}
