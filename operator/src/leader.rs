//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never both scale.
//! client-go's semantics: the leader renews every `retry`; when no renewal succeeded within
//! `renew_deadline` (shorter than the lease) it steps down — stops acting — before a standby may take
//! over. A standby judges expiry by its own clock: the lease is expired once the record it observed
//! has not changed for `lease` (never by comparing the holder's renewTime with its own clock, which
//! skew would break). Updates carry the Lease's resourceVersion, so two candidates cannot both win.

use std::{future::Future, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::{
    sync::{Mutex, watch},
    time::Instant,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease stays valid without renewal.
    pub lease: Duration,
    /// The leader steps down when no renewal succeeded for this long (< `lease`).
    pub renew_deadline: Duration,
    /// Pause between two attempts.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// The lease record as last observed, and when (this process's monotonic clock).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: Option<String>,
    renew: Option<String>,
    transitions: Option<i32>,
    duration: Option<i32>,
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Mutex<Option<(Seen, Instant)>>,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity,
            timing,
            observed: Mutex::new(None),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    fn seen(spec: &LeaseSpec) -> Seen {
        Seen {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            transitions: spec.lease_transitions,
            duration: spec.lease_duration_seconds,
        }
    }

    /// One round: acquire or renew. True while this identity holds the lease.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease.as_secs() as i32),
            acquire_time: acquired.or(Some(now.clone())),
            renew_time: Some(now.clone()),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(created) => {
                    self.remember(created.spec.as_ref()).await;
                    Ok(true)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let seen = Self::seen(&current);
        let observed_at = {
            let mut observed = self.observed.lock().await;
            match observed.as_ref() {
                Some((s, at)) if *s == seen => *at,
                _ => {
                    let at = Instant::now();
                    *observed = Some((seen.clone(), at));
                    at
                }
            }
        };
        let mine = seen.holder.as_deref() == Some(&self.identity);
        let valid_for = Duration::from_secs(
            current
                .lease_duration_seconds
                .unwrap_or(self.timing.lease.as_secs() as i32)
                .max(0) as u64,
        );
        let expired = seen.holder.is_none() || observed_at + valid_for <= Instant::now();
        if !mine && !expired {
            return Ok(false);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
        lease.spec = Some(spec(
            transitions,
            if mine { current.acquire_time } else { None },
        ));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.remember(updated.spec.as_ref()).await;
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up after this candidate stopped acting (shutdown), as client-go's
    /// `ReleaseOnCancel` does: no holder and a one-second duration, so a standby takes over on its
    /// next attempt instead of waiting the whole lease out. A lease another holds is left alone.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(false);
        }
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // renewed or taken meanwhile: not ours to release any more
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn remember(&self, spec: Option<&LeaseSpec>) {
        if let Some(spec) = spec {
            *self.observed.lock().await = Some((Self::seen(spec), Instant::now()));
        }
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// Another candidate holds the lease.
    Lost,
    /// No renewal succeeded within the renew deadline (errors or calls that hang).
    DeadlinePassed,
}

/// What this replica may do, as the leader loop last established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// No leader election (a single replica): always leading.
    Always,
    /// Leading until this instant: the last renewal's send time plus the renew deadline. A standby
    /// takes over no sooner than a whole lease after it saw that renewal, which is later.
    Until(Instant),
    Lost,
}

/// The leader loop's side: publishes each renewal and the loss.
pub struct Leadership {
    tx: watch::Sender<Lead>,
}

/// The controller's side: every write of a pass asks `leads()` first, and a pass is cancelled by
/// `lost()` once leadership is lost or its renewal is overdue, so no pass outlives the lease.
#[derive(Clone, Debug)]
pub struct Fence {
    rx: watch::Receiver<Lead>,
}

impl Leadership {
    /// Not leading until `renewed` is called.
    pub fn new() -> (Self, Fence) {
        let (tx, rx) = watch::channel(Lead::Lost);
        (Leadership { tx }, Fence { rx })
    }

    /// A renewal sent at `sent` succeeded: leading until `sent + renew_deadline`.
    pub fn renewed(&self, sent: Instant, timing: Timing) {
        self.tx
            .send_replace(Lead::Until(sent + timing.renew_deadline));
    }

    pub fn lost(&self) {
        self.tx.send_replace(Lead::Lost);
    }
}

impl Fence {
    /// Without leader election: never fenced.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(Lead::Always);
        // the receiver keeps the last value once the sender is gone
        drop(tx);
        Fence { rx }
    }

    /// Whether a write may go out now.
    pub fn leads(&self) -> bool {
        match *self.rx.borrow() {
            Lead::Always => true,
            Lead::Until(t) => Instant::now() < t,
            Lead::Lost => false,
        }
    }

    /// Completes once leadership is lost or its renewal overdue (never without leader election).
    pub async fn lost(&self) {
        let mut rx = self.rx.clone();
        loop {
            let lead = *rx.borrow_and_update();
            match lead {
                Lead::Always => std::future::pending::<()>().await,
                Lead::Lost => return,
                Lead::Until(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {
                            if *rx.borrow() == lead {
                                return;
                            }
                        }
                        changed = rx.changed() => {
                            if changed.is_err() {
                                // the leader loop is gone: nobody renews any more
                                tokio::time::sleep_until(t).await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Keeps leadership by calling `renew` every `retry`; returns as soon as it is lost or when no
/// renewal succeeded within `renew_deadline` — a hanging call counts as a failed one. Each success
/// extends `leadership` (from the time the renewal was sent); `beat` is called once per round.
pub async fn keep_leading<F, Fut, E>(
    mut renew: F,
    timing: Timing,
    leadership: &Leadership,
    mut beat: impl FnMut(),
) -> StepDown
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let mut last_ok = Instant::now();
    let why = loop {
        tokio::time::sleep(timing.retry).await;
        beat();
        let deadline = last_ok + timing.renew_deadline;
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, renew()).await {
            Ok(Ok(true)) => {
                last_ok = sent;
                leadership.renewed(sent, timing);
            }
            Ok(Ok(false)) => break StepDown::Lost,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if Instant::now() >= deadline {
                    break StepDown::DeadlinePassed;
                }
            }
            Err(_) => break StepDown::DeadlinePassed,
        }
    };
    leadership.lost();
    why
}

/// Waits until this candidate leads (the send time of the winning attempt) or `shutdown` completes
/// (None). `beat` is called once per attempt.
pub async fn acquire(
    elector: &Elector,
    shutdown: impl Future<Output = ()>,
    mut beat: impl FnMut(),
) -> Option<Instant> {
    tokio::pin!(shutdown);
    loop {
        beat();
        let sent = Instant::now();
        match elector.try_lead().await {
            Ok(true) => return Some(sent),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "lease not reachable"),
        }
        tokio::select! {
            _ = tokio::time::sleep(elector.timing.retry) => {}
            _ = &mut shutdown => return None,
        }
    }
}

/// What leading does: `act` runs until the future it is given completes. That future completes when
/// leadership is lost or `shutdown` fires.
///
/// The whole life of a leader-elected replica: wait for the Lease (or `shutdown`), then run `act`
/// while renewing; leadership lost or the renew deadline passed → `act` is stopped and the process
/// ends (a standby takes over once the lease runs out); shut down → `act` is stopped and the Lease
/// handed over at once rather than left to run out. `beat` is called once per election round (the
/// liveness probe), `leading` with whether this replica leads (the metric).
pub async fn run<Shutdown, Act, ActFut>(
    elector: Elector,
    leadership: Leadership,
    shutdown: impl Fn() -> Shutdown,
    beat: impl Fn() + Clone + Send + 'static,
    leading: impl Fn(bool),
    act: Act,
) -> anyhow::Result<()>
where
    Shutdown: Future<Output = ()> + Send + Sync + 'static,
    Act: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>) -> ActFut,
    ActFut: Future<Output = anyhow::Result<()>>,
{
    let timing = elector.timing;
    let Some(since) = acquire(&elector, shutdown(), beat.clone()).await else {
        return Ok(());
    };
    leadership.renewed(since, timing);
    tracing::info!(identity = %elector.identity, "leading");
    leading(true);
    let elector = std::sync::Arc::new(elector);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renewing = {
        let elector = elector.clone();
        tokio::spawn(async move {
            let why = keep_leading(|| elector.try_lead(), timing, &leadership, beat).await;
            tracing::warn!(?why, "leadership lost: stopping");
            let _ = lost_tx.send(());
        })
    };
    let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
    let shutting_down = shutdown();
    let stop = Box::pin(async move {
        tokio::select! {
            _ = shutting_down => { let _ = shut_tx.send(()); }
            _ = lost_rx => {}
        }
    });
    let result = act(stop).await;
    leading(false);
    if shut_rx.await.is_ok() {
        renewing.abort();
        match tokio::time::timeout(Duration::from_secs(3), elector.release()).await {
            Ok(Ok(true)) => tracing::info!(identity = %elector.identity, "lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "lease not released"),
            Err(_) => tracing::warn!("lease not released: the API server did not answer"),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Expect, verifier};
    use serde_json::json;

    fn lease(holder: &str, renew: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "op", "namespace": "ns", "resourceVersion": "7" },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew, "leaseTransitions": 1 }
        })
    }

    /// The holder's clock runs an hour behind: its renewTime looks ancient to the standby, which
    /// must still wait a whole lease duration of its own observation before taking over.
    #[tokio::test(start_paused = true)]
    async fn leader_standby_judges_expiry_by_its_own_observation() {
        let skewed = "2026-12-01T10:00:00.000000Z";
        let (client, done) = verifier(vec![
            Expect::get("/leases/op", lease("other", skewed)),
            Expect::get("/leases/op", lease("other", skewed)),
            Expect::put(
                "/leases/op",
                json!({ "spec": { "holderIdentity": "me" } }),
                lease("me", skewed),
            ),
        ]);
        let e = Elector::new(client, "ns", "op", "me".into(), Timing::default());
        assert!(
            !e.try_lead().await.unwrap(),
            "took over a lease renewed moments ago"
        );
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(
            e.try_lead().await.unwrap(),
            "unchanged for a lease duration: expired"
        );
        drop(e);
        done.await;
    }

    /// A leader that shuts down gives the lease up, and a standby takes it on its next attempt —
    /// without waiting the 15 s lease out (the service went leaderless that long on every rollout).
    #[tokio::test(start_paused = true)]
    async fn leader_releases_the_lease_on_shutdown_so_a_standby_takes_over_at_once() {
        let now = "2026-12-01T10:00:00.000000Z";
        let mut released = lease("", now);
        released["spec"]["leaseDurationSeconds"] = json!(1);
        let (client, done) = verifier(vec![
            Expect::get("/leases/op", lease("me", now)),
            Expect::put(
                "/leases/op",
                json!({ "spec": { "holderIdentity": "", "leaseDurationSeconds": 1 } }),
                released.clone(),
            ),
            Expect::get("/leases/op", released),
            Expect::put(
                "/leases/op",
                json!({ "spec": { "holderIdentity": "standby", "leaseDurationSeconds": 15 } }),
                lease("standby", now),
            ),
        ]);
        let leader = Elector::new(client.clone(), "ns", "op", "me".into(), Timing::default());
        assert!(
            leader.release().await.unwrap(),
            "the lease was not given up"
        );
        let standby = Elector::new(client, "ns", "op", "standby".into(), Timing::default());
        assert!(
            standby.try_lead().await.unwrap(),
            "the standby waited for a released lease"
        );
        drop((leader, standby));
        done.await;
    }

    /// A renewal that hangs (API server unreachable without an error) must not keep a leader acting.
    #[tokio::test(start_paused = true)]
    async fn leader_steps_down_when_no_renewal_succeeds_within_the_deadline() {
        let timing = Timing::default();
        let started = Instant::now();
        let renew = || std::future::pending::<Result<bool, String>>();
        let stepped = tokio::time::timeout(
            timing.lease,
            keep_leading(renew, timing, &Leadership::new().0, || {}),
        )
        .await;
        assert_eq!(
            stepped,
            Ok(StepDown::DeadlinePassed),
            "still leading after the lease ran out"
        );
        assert!(started.elapsed() <= timing.renew_deadline + timing.retry);
    }

    #[tokio::test(start_paused = true)]
    async fn leader_steps_down_after_failures_past_the_deadline_not_a_count() {
        let timing = Timing::default();
        let mut calls = 0;
        let renew = || {
            calls += 1;
            let ok = calls <= 2;
            async move { if ok { Ok(true) } else { Err("unreachable") } }
        };
        let started = Instant::now();
        assert_eq!(
            keep_leading(renew, timing, &Leadership::new().0, || {}).await,
            StepDown::DeadlinePassed
        );
        // two good renewals (2 s, 4 s), then failures until 4 s + the deadline
        assert!(started.elapsed() >= Duration::from_secs(14));
        assert!(started.elapsed() <= Duration::from_secs(16));
    }

    /// A pass stops acting once the renewal is overdue, even if no step-down was announced (the
    /// leader loop itself hangs): the fence runs out at the last renewal's send time + the deadline.
    #[tokio::test(start_paused = true)]
    async fn fence_runs_out_at_the_renew_deadline_of_the_last_renewal() {
        let timing = Timing::default();
        let (leadership, fence) = Leadership::new();
        assert!(!fence.leads(), "leading before any renewal");
        let sent = Instant::now();
        leadership.renewed(sent, timing);
        assert!(fence.leads());
        tokio::time::advance(Duration::from_secs(4)).await;
        leadership.renewed(sent + Duration::from_secs(4), timing);
        let lost = {
            let fence = fence.clone();
            tokio::spawn(async move {
                fence.lost().await;
                Instant::now()
            })
        };
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(fence.leads(), "13 s: the renewal at 4 s holds until 14 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!fence.leads(), "14 s: overdue");
        assert_eq!(lost.await.unwrap(), sent + Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn fence_is_lost_as_soon_as_the_leader_loop_steps_down() {
        let timing = Timing::default();
        let (leadership, fence) = Leadership::new();
        leadership.renewed(Instant::now(), timing);
        let renew = || async { Ok::<_, String>(false) };
        assert_eq!(
            keep_leading(renew, timing, &leadership, || {}).await,
            StepDown::Lost
        );
        assert!(!fence.leads());
        tokio::time::timeout(Duration::from_millis(1), fence.lost())
            .await
            .expect("lost() waited after the step-down");
        assert!(Fence::always().leads());
    }
}
