//! The rehearsal's invariants as pure functions over what it measured: each returns the broken ones as
//! sentences for the report (empty: it held). The rehearsal gathers the figures (answers, PostgreSQL,
//! Redis, the cluster); these decide. They run without a cluster in `cargo test -p tiketi-e2e`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// The bound on a fan's seat hold at the 99th percentile, during the seat-map herd and over the sale
/// (which includes a pod killed, the Redis link cut and a rolling upgrade, on 2 shared cores: the
/// first release run measured 2.0 s).
pub const HOLD_P99_BOUND_SECS: f64 = 3.0;

/// Nearest-rank 99th percentile (seconds); None without samples.
pub fn p99(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (s.len() * 99).div_ceil(100).max(1);
    Some(s[rank - 1])
}

/// The fans' path through the sale, counted from the answers they got.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Crowd {
    /// Users the storm registered (each may retry after 503 SERVER_BUSY: the service's documented
    /// "busy, come back" answer while every hashing slot is taken).
    pub sent: u64,
    pub registered: u64,
    /// Fans whose waiting-room check answered 200 (queued in the lottery, or let in at once).
    pub checked_in: u64,
    pub admitted: u64,
    /// Admitted fans that sent a hold, and how those holds ended.
    pub reached_hold: u64,
    pub holds: u64,
    pub hold_conflicts: u64,
    /// Payments the fans were told succeeded (200, or ALREADY_PAID after an abandoned attempt).
    pub paid: u64,
    /// PostgreSQL: confirmed and completed reservations of the two sales.
    pub confirmed: u64,
}

/// The rules `crowd` checks, so the report can put each next to its figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CrowdRule {
    Registered,
    CheckedIn,
    Admitted,
    Holds,
    Paid,
}

/// registered = sent, checked in = registered, admitted = checked in, holds + conflicts = fans who sent
/// a hold, paid = PostgreSQL's confirmed.
pub fn crowd(c: &Crowd) -> Vec<(CrowdRule, String)> {
    let mut broken = Vec::new();
    if c.registered != c.sent {
        broken.push((
            CrowdRule::Registered,
            format!(
                "{} of {} users registered (503 SERVER_BUSY is retried, nothing else)",
                c.registered, c.sent
            ),
        ));
    }
    if c.checked_in != c.registered {
        broken.push((
            CrowdRule::CheckedIn,
            format!(
                "{} of {} registered fans got into the waiting room",
                c.checked_in, c.registered
            ),
        ));
    }
    if c.admitted != c.checked_in {
        broken.push((
            CrowdRule::Admitted,
            format!(
                "{} of {} fans in the waiting room were admitted",
                c.admitted, c.checked_in
            ),
        ));
    }
    if c.holds + c.hold_conflicts != c.reached_hold {
        broken.push((
            CrowdRule::Holds,
            format!(
                "{} fans sent a hold but only {} holds + {} conflicts came back",
                c.reached_hold, c.holds, c.hold_conflicts
            ),
        ));
    }
    if c.paid != c.confirmed {
        broken.push((
            CrowdRule::Paid,
            format!(
                "{} payments answered paid, {} confirmed reservations in PostgreSQL",
                c.paid, c.confirmed
            ),
        ));
    }
    broken
}

/// The report's status of a 503 REDIS_UNAVAILABLE answered to a request sent while the rehearsal had
/// cut the pods' Redis link or was restarting Redis (and for the breaker's few seconds after): the
/// service failing closed, as it must, not a server error.
pub const DURING_REDIS_FAULT: &str = "503 during an injected Redis fault";

/// The report's status of a 502 or 504 the ingress answered for a request that was in flight on the
/// pod the rehearsal killed without a goodbye (grace 0): nginx cannot send a POST that reached the
/// dead pod elsewhere, and the client retries as a browser's user would. A request sent after the
/// kill and still answered 502 stays a server error (nginx retries a connection the pod refused).
pub const IN_FLIGHT_AT_POD_KILL: &str = "in flight on the killed pod (502/504)";

/// Whether a request sent at `sent` and answered at `answered` (run seconds) was in flight when a pod
/// was killed at one of `kills`: the kill lands within `KILL_LANDS_WITHIN` seconds of the delete (the
/// kubelet acts on a grace-0 delete as soon as it sees it).
pub fn in_flight_at_kill(kills: &[f64], sent: f64, answered: f64) -> bool {
    kills
        .iter()
        .any(|&k| sent <= k + KILL_LANDS_WITHIN && answered >= k)
}

/// How long after the delete of a pod with grace 0 its process is surely gone.
pub const KILL_LANDS_WITHIN: f64 = 5.0;

/// No 5xx answer at all, except the registration's 503 (documented: retried by the storm) and the
/// fail-closed answers during an injected Redis fault. `statuses` is keyed "what status", as in the
/// report's table.
pub fn no_server_errors(statuses: &BTreeMap<String, u64>) -> Vec<String> {
    statuses
        .iter()
        .filter(|(k, _)| {
            let status = k.split(' ').nth(1).unwrap_or("");
            status.starts_with('5')
                && k.as_str() != "register 503"
                && !k.ends_with(DURING_REDIS_FAULT)
                && !k.ends_with(IN_FLIGHT_AT_POD_KILL)
        })
        .map(|(k, n)| format!("{n} answers {k}"))
        .collect()
}

/// One reservation of the sales as PostgreSQL has it (any with a payment or confirmed).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub id: Uuid,
    pub status: String,
    pub payment_status: String,
    pub payment_method: Option<String>,
}

/// The payment ledger balances: every confirmed reservation is paid (completed, with a method) and was
/// answered paid exactly once; every reservation answered paid is confirmed and completed. `answered`:
/// one entry per paid answer (duplicates are double charges). Until the service keeps a payment row of
/// its own, the answers are the payment side of the ledger.
pub fn ledger(rows: &[LedgerRow], answered: &[Uuid]) -> Vec<String> {
    let mut broken = Vec::new();
    let mut told: HashMap<Uuid, u32> = HashMap::new();
    for id in answered {
        *told.entry(*id).or_default() += 1;
    }
    let mut paid_in_db = BTreeSet::new();
    for r in rows {
        let confirmed = r.status == "confirmed";
        let completed = r.payment_status == "completed";
        if confirmed != completed || (completed && r.payment_method.is_none()) {
            broken.push(format!(
                "reservation {}: status {} payment {} method {:?}",
                r.id, r.status, r.payment_status, r.payment_method
            ));
        }
        if confirmed && completed {
            paid_in_db.insert(r.id);
            match told.get(&r.id).copied().unwrap_or(0) {
                1 => {}
                0 => broken.push(format!(
                    "reservation {} paid in PostgreSQL, no payment answered",
                    r.id
                )),
                n => broken.push(format!("reservation {} answered paid {n} times", r.id)),
            }
        }
    }
    for id in told.keys().filter(|id| !paid_in_db.contains(id)) {
        broken.push(format!(
            "reservation {id} answered paid, not paid in PostgreSQL"
        ));
    }
    broken.sort();
    broken
}

/// One look at an event's waiting room: each queued user and its lottery score (lower goes first).
pub type QueueSample = BTreeMap<String, f64>;

/// Admission in lottery order, as far as samples of the queue taken `period` apart can see: a user who
/// left the queue between two samples must have had a better (lower) score than every user present in
/// both, i.e. nobody was let in while someone ahead of them still waited. The order inside one interval
/// (one or a few admission ticks: the batch granularity) is not observable and not checked; late arrivals
/// (first seen in the later sample) may draw any score. Fans never leave while queued, so leaving is
/// admission.
pub fn lottery_order(samples: &[QueueSample]) -> Vec<String> {
    let mut broken = Vec::new();
    for (i, pair) in samples.windows(2).enumerate() {
        let (before, after) = (&pair[0], &pair[1]);
        let best_waiting = before
            .iter()
            .filter(|(u, _)| after.contains_key(*u))
            .map(|(_, s)| *s)
            .min_by(f64::total_cmp);
        let Some(best_waiting) = best_waiting else {
            continue;
        };
        let jumped = before
            .iter()
            .filter(|(u, s)| !after.contains_key(*u) && **s > best_waiting)
            .count();
        if jumped > 0 {
            broken.push(format!(
                "{jumped} users admitted between queue samples {i} and {} while a user with a better lottery place waited",
                i + 1
            ));
        }
    }
    broken
}

/// One sample of the two sales on the Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoSales {
    pub at: f64,
    pub phases: [Option<String>; 2],
    /// Each TicketEvent's own wish (status.desiredReplicas).
    pub wishes: [Option<i32>; 2],
    /// The Deployment's spec.replicas and Ready pods.
    pub replicas: i32,
    pub ready: i32,
}

/// Both TicketEvents reached OnSale, and the Deployment never stayed below the larger of their wishes
/// for longer than `lag` seconds (the operator patches the target, then reports; one pass apart).
pub fn two_sales(samples: &[TwoSales], lag: f64) -> Vec<String> {
    let mut broken = Vec::new();
    for (i, name) in ["A", "B"].iter().enumerate() {
        if !samples
            .iter()
            .any(|s| s.phases[i].as_deref() == Some("OnSale"))
        {
            broken.push(format!("sale {name} never reached OnSale"));
        }
    }
    let mut below_since: Option<(f64, i32, i32)> = None;
    let mut worst: Option<(f64, f64, i32, i32)> = None;
    for s in samples {
        let wish = s.wishes.iter().flatten().copied().max();
        match wish {
            Some(w) if s.replicas < w => {
                let (since, _, _) = *below_since.get_or_insert((s.at, s.replicas, w));
                if s.at - since > lag && worst.is_none_or(|(d, ..)| s.at - since > d) {
                    worst = Some((s.at - since, since, s.replicas, w));
                }
            }
            _ => below_since = None,
        }
    }
    if let Some((d, since, replicas, wish)) = worst {
        broken.push(format!(
            "the Deployment had {replicas} replicas for {d:.0} s from +{since:.0} s while a sale wished {wish}"
        ));
    }
    broken
}

/// Ready replicas through the `helm upgrade` (samples at run seconds within [start, end]): never below
/// the replicas before it (or the wish, if that fell) minus what the PDB lets go (`max_unavailable`),
/// and all Ready again at `end`.
pub fn rollout(
    samples: &[TwoSales],
    start: f64,
    end: f64,
    before: i32,
    max_unavailable: i32,
) -> Vec<String> {
    let mut broken = Vec::new();
    let during: Vec<&TwoSales> = samples
        .iter()
        .filter(|s| s.at >= start && s.at <= end)
        .collect();
    if during.is_empty() {
        return vec!["no replica sample during the helm upgrade".into()];
    }
    if let Some(low) = during
        .iter()
        .filter(|s| s.ready < before.min(s.replicas) - max_unavailable)
        .min_by_key(|s| s.ready)
    {
        broken.push(format!(
            "{} Ready replicas at +{:.0} s during the helm upgrade (from {before}, at most {max_unavailable} unavailable)",
            low.ready, low.at
        ));
    }
    let last = during.last().expect("not empty");
    if last.ready < last.replicas {
        broken.push(format!(
            "{} of {} replicas Ready after the helm upgrade",
            last.ready, last.replicas
        ));
    }
    broken
}

/// Hold latency at the 99th percentile within the bound; `what` names the window.
pub fn hold_p99(what: &str, latencies: &[f64]) -> Vec<String> {
    match p99(latencies) {
        None => vec![format!("hold p99 {what}: no hold measured")],
        Some(p) if p > HOLD_P99_BOUND_SECS => vec![format!(
            "hold p99 {what} {p:.2} s over {} holds (bound {HOLD_P99_BOUND_SECS} s)",
            latencies.len()
        )],
        Some(_) => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_crowd() -> Crowd {
        Crowd {
            sent: 10,
            registered: 10,
            checked_in: 10,
            admitted: 10,
            reached_hold: 10,
            holds: 5,
            hold_conflicts: 5,
            paid: 4,
            confirmed: 4,
        }
    }

    #[test]
    fn crowd_holds_when_every_count_matches() {
        assert!(crowd(&good_crowd()).is_empty());
    }

    #[test]
    fn crowd_catches_a_registration_collapse_and_holds_that_answer_500() {
        let collapsed = Crowd {
            registered: 3,
            ..good_crowd()
        };
        let rules: Vec<CrowdRule> = crowd(&collapsed).into_iter().map(|(r, _)| r).collect();
        assert_eq!(rules, [CrowdRule::Registered, CrowdRule::CheckedIn]);
        let failed_holds = Crowd {
            holds: 0,
            hold_conflicts: 0,
            paid: 0,
            confirmed: 0,
            ..good_crowd()
        };
        assert_eq!(crowd(&failed_holds)[0].0, CrowdRule::Holds);
        let lost_payment = Crowd {
            confirmed: 5,
            ..good_crowd()
        };
        assert_eq!(crowd(&lost_payment)[0].0, CrowdRule::Paid);
    }

    #[test]
    fn server_errors_are_broken_except_the_registration_busy_answer() {
        let mut s = BTreeMap::new();
        s.insert("register 201".to_string(), 10);
        s.insert("register 503".to_string(), 3);
        s.insert("hold 201".to_string(), 4);
        s.insert(format!("queue-check {DURING_REDIS_FAULT}"), 7);
        s.insert(format!("pay-impatient {IN_FLIGHT_AT_POD_KILL}"), 1);
        assert!(no_server_errors(&s).is_empty());
        s.insert("hold 500".to_string(), 1);
        s.insert("pay 503".to_string(), 2);
        assert_eq!(
            no_server_errors(&s),
            vec!["1 answers hold 500", "2 answers pay 503"]
        );
    }

    #[test]
    fn in_flight_at_kill_wants_the_request_alive_when_the_pod_went() {
        let kills = [85.3];
        assert!(
            in_flight_at_kill(&kills, 84.9, 85.4),
            "sent before, answered after"
        );
        assert!(
            in_flight_at_kill(&kills, 86.0, 86.1),
            "sent while the kill lands"
        );
        assert!(
            !in_flight_at_kill(&kills, 80.0, 84.0),
            "answered before the kill"
        );
        assert!(
            !in_flight_at_kill(&kills, 91.0, 91.2),
            "sent after the pod was gone"
        );
        assert!(!in_flight_at_kill(&[], 84.9, 85.4), "no kill");
    }

    fn row(id: Uuid, status: &str, payment: &str) -> LedgerRow {
        LedgerRow {
            id,
            status: status.into(),
            payment_status: payment.into(),
            payment_method: (payment == "completed").then(|| "naver_pay".into()),
        }
    }

    #[test]
    fn ledger_balances_one_answer_per_paid_reservation() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let rows = [
            row(a, "confirmed", "completed"),
            row(b, "cancelled", "pending"),
        ];
        assert!(ledger(&rows, &[a]).is_empty());
    }

    #[test]
    fn ledger_catches_double_charges_lost_payments_and_half_states() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let rows = [row(a, "confirmed", "completed")];
        assert_eq!(ledger(&rows, &[a, a]).len(), 1, "answered twice");
        assert_eq!(ledger(&rows, &[]).len(), 1, "paid without an answer");
        assert_eq!(ledger(&rows, &[a, b]).len(), 1, "answered, not in the db");
        let half = [row(c, "pending", "completed")];
        assert_eq!(ledger(&half, &[]).len(), 1, "completed but not confirmed");
    }

    fn sample(users: &[(&str, f64)]) -> QueueSample {
        users.iter().map(|(u, s)| (u.to_string(), *s)).collect()
    }

    #[test]
    fn lottery_order_holds_when_the_best_places_leave_first() {
        let samples = [
            sample(&[("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]),
            sample(&[("c", 3.0), ("d", 4.0), ("late", 0.5)]),
            sample(&[("d", 4.0)]),
            sample(&[]),
        ];
        assert!(lottery_order(&samples).is_empty());
    }

    #[test]
    fn lottery_order_catches_a_user_admitted_ahead_of_a_better_place() {
        let samples = [
            sample(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]),
            sample(&[("a", 1.0), ("b", 2.0)]),
        ];
        assert_eq!(lottery_order(&samples).len(), 1);
    }

    fn two(at: f64, phases: [&str; 2], wishes: [i32; 2], replicas: i32) -> TwoSales {
        TwoSales {
            at,
            phases: phases.map(|p| Some(p.to_string())),
            wishes: wishes.map(Some),
            replicas,
            ready: replicas,
        }
    }

    #[test]
    fn two_sales_take_the_larger_wish_and_tolerate_one_pass_of_lag() {
        let s = [
            two(0.0, ["PreScaling", "PreScaling"], [3, 2], 2),
            two(1.0, ["OnSale", "OnSale"], [3, 2], 3),
            two(2.0, ["OnSale", "OnSale"], [4, 2], 3),
            two(3.0, ["OnSale", "OnSale"], [4, 2], 4),
        ];
        assert!(two_sales(&s, 5.0).is_empty(), "{:?}", two_sales(&s, 5.0));
    }

    #[test]
    fn two_sales_catch_a_wish_ignored_and_a_sale_that_never_opened() {
        let s: Vec<TwoSales> = (0..10)
            .map(|i| two(i as f64, ["OnSale", "Ready"], [2, 4], 2))
            .collect();
        let broken = two_sales(&s, 5.0);
        assert_eq!(broken.len(), 2, "{broken:?}");
    }

    #[test]
    fn rollout_allows_one_pod_down_and_wants_all_ready_at_the_end() {
        let mut s = vec![
            two(10.0, ["OnSale", "OnSale"], [3, 3], 3),
            two(11.0, ["OnSale", "OnSale"], [3, 3], 3),
        ];
        s[1].ready = 2;
        s.push(two(12.0, ["OnSale", "OnSale"], [3, 3], 3));
        assert!(rollout(&s, 10.0, 12.0, 3, 1).is_empty());
        s[1].ready = 1;
        assert_eq!(rollout(&s, 10.0, 12.0, 3, 1).len(), 1);
        s[2].ready = 2;
        assert_eq!(rollout(&s, 10.0, 12.0, 3, 1).len(), 2);
        assert_eq!(rollout(&s, 20.0, 30.0, 3, 1).len(), 1, "no sample");
    }

    #[test]
    fn hold_p99_is_bounded_and_must_be_measured() {
        let fast: Vec<f64> = (0..200).map(|i| 0.01 * f64::from(i % 50)).collect();
        assert!(hold_p99("during the herd", &fast).is_empty());
        let mut slow = fast.clone();
        slow.extend([1.0, 2.0, 3.0].map(|s| HOLD_P99_BOUND_SECS + s));
        assert_eq!(hold_p99("during the herd", &slow).len(), 1);
        assert_eq!(hold_p99("during the herd", &[]).len(), 1);
        assert_eq!(p99(&[1.0]), Some(1.0));
        assert_eq!(
            p99(&(1..=100).map(f64::from).collect::<Vec<_>>()),
            Some(99.0)
        );
    }
}
