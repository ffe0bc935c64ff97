//! Grouped seat holds: the holds of one event that arrive together are decided and committed
//! together. Each event has one writer task per replica; a hold queues to it, the writer takes what
//! has arrived (waiting at most `HOLD_BATCH_WINDOW_MS` after the oldest, or until `HOLD_BATCH_MAX`),
//! runs one `hold_seats_batch` (migration 0013: one statement, one transaction, one commit) and
//! answers each waiting hold with its own outcome, exactly what `hold_seats` would have answered
//! had the holds run one after the other in arrival order.
//!
//! One writer per event: holds of one event compete for the same seats and caps, so deciding them
//! in one transaction turns N commits (and N waits on the same hot rows) into one; holds of other
//! events go to other writers and run in parallel. A writer idle for `Limits::idle` goes away, so event ids
//! a script makes up leave nothing behind; at most `MAX_WRITERS` exist at once, beyond which a
//! hold is decided alone (still through the batch statement). A full queue is answered 503
//! `DB_BUSY`, as a pool timeout is; a failed statement fails every hold it carried, as the
//! one-hold path would fail it. A client that goes away while queued changes nothing: its hold is
//! still decided, and if held, its notices still go out (`Job::orphan`).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    sync::{
        mpsc::{self, error::TryRecvError, error::TrySendError},
        oneshot,
    },
    time::Instant,
};
use uuid::Uuid;

use super::db::{HoldOutcome, HoldRequest};
use crate::error::{Error, Outage};

/// `Limits::idle` in service.
const IDLE: Duration = Duration::from_secs(2);
/// Most writers (events with holds in flight) at once per replica.
const MAX_WRITERS: usize = 4096;

/// The settings of [`Batcher`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `HOLD_BATCH_WINDOW_MS`.
    pub window: Duration,
    /// `HOLD_BATCH_MAX`.
    pub max: usize,
    /// `HOLD_BATCH_QUEUE`.
    pub queue: usize,
    /// A writer with nothing to do for this long stops (the next hold of its event starts another).
    pub idle: Duration,
}

impl Limits {
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            window: Duration::from_millis(config.hold_batch_window_ms),
            max: usize::try_from(config.hold_batch_max).unwrap_or(1).max(1),
            queue: usize::try_from(config.hold_batch_queue).unwrap_or(1).max(1),
            idle: IDLE,
        }
    }

    /// Grouping is off at window 0: each hold is its own `hold_seats` transaction.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

/// What a batch statement answered, or why it failed.
pub type Decided = sqlx::Result<Vec<HoldOutcome>>;
/// Decides one batch (in production `db::hold_seats_batch` on the pool).
pub type Decide =
    Arc<dyn Fn(Arc<[HoldRequest]>) -> Pin<Box<dyn Future<Output = Decided> + Send>> + Send + Sync>;
/// Runs a held outcome's effects when its caller is no longer waiting for it.
pub type Orphan = Box<dyn FnOnce(HoldOutcome) + Send>;

/// The batch statement's failure, told to each of its holds as the one-hold path would tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    Outage(Outage),
    Other(String),
}

impl Failed {
    pub fn of(e: &sqlx::Error) -> Self {
        match Outage::of_db(e) {
            Some(outage) => Failed::Outage(outage),
            None => Failed::Other(e.to_string()),
        }
    }

    pub fn error(self) -> Error {
        match self {
            Failed::Outage(outage) => Error::Outage(outage),
            Failed::Other(e) => Error::internal(anyhow::anyhow!("grouped hold failed: {e}")),
        }
    }
}

struct Job {
    request: HoldRequest,
    queued: Instant,
    reply: oneshot::Sender<Result<HoldOutcome, Failed>>,
    orphan: Orphan,
}

type Writers = Arc<Mutex<HashMap<Uuid, mpsc::Sender<Job>>>>;

/// The per-event writers of this replica.
pub struct Batcher {
    limits: Limits,
    decide: Decide,
    writers: Writers,
}

impl Batcher {
    pub fn new(limits: Limits, decide: Decide) -> Self {
        Self {
            limits,
            decide,
            writers: Arc::default(),
        }
    }

    /// Decides with `db::hold_seats_batch` on `db`.
    pub fn on_pool(limits: Limits, db: sqlx::PgPool) -> Self {
        Self::new(
            limits,
            Arc::new(move |holds| {
                let db = db.clone();
                Box::pin(async move { super::db::hold_seats_batch(&db, &holds).await })
            }),
        )
    }

    pub fn enabled(&self) -> bool {
        self.limits.enabled()
    }

    /// Writers alive now.
    pub fn writers(&self) -> usize {
        lock(&self.writers).len()
    }

    /// Queues `request` to its event's writer and waits for its outcome. `orphan` runs instead of
    /// the answer when the caller stopped waiting (it is dropped otherwise).
    pub async fn hold(&self, request: HoldRequest, orphan: Orphan) -> Result<HoldOutcome, Error> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            queued: Instant::now(),
            reply,
            orphan,
        };
        if let Some(job) = self.enqueue(job)? {
            // too many writers: this hold is decided alone
            let outcome = decide_retrying_conflicts(&self.decide, Arc::from([job.request])).await;
            return match outcome {
                Ok(mut o) if o.len() == 1 => Ok(o.remove(0)),
                Ok(o) => Err(Failed::Other(format!("{} outcomes for 1 hold", o.len())).error()),
                Err(e) => Err(Failed::of(&e).error()),
            };
        }
        match answer.await {
            Ok(outcome) => outcome.map_err(Failed::error),
            // the writer stopped without answering (it panicked): never a silent success
            Err(_) => Err(Failed::Other("hold writer stopped".into()).error()),
        }
    }

    /// Hands `job` to its event's writer, starting one if needed; gives it back when no writer
    /// may start.
    fn enqueue(&self, job: Job) -> Result<Option<Job>, Error> {
        let event = job.request.event_id;
        // sends happen under the map's lock, so a writer that removed itself under it receives
        // nothing more than what is already in its queue
        let mut writers = lock(&self.writers);
        let job = match writers.get(&event) {
            None => job,
            Some(w) => match w.try_send(job) {
                Ok(()) => return Ok(None),
                Err(TrySendError::Full(_)) => return Err(Error::db_busy(1)),
                Err(TrySendError::Closed(job)) => {
                    writers.remove(&event);
                    job
                }
            },
        };
        if writers.len() >= MAX_WRITERS {
            return Ok(Some(job));
        }
        let (tx, rx) = mpsc::channel(self.limits.queue);
        if tx.try_send(job).is_err() {
            return Err(Error::db_busy(1));
        }
        writers.insert(event, tx.clone());
        tokio::spawn(writer(
            event,
            rx,
            tx,
            Arc::clone(&self.writers),
            self.limits,
            Arc::clone(&self.decide),
        ));
        Ok(None)
    }
}

fn lock(writers: &Writers) -> MutexGuard<'_, HashMap<Uuid, mpsc::Sender<Job>>> {
    writers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One event's writer: batches until idle, then removes itself and decides what is left queued.
async fn writer(
    event: Uuid,
    mut rx: mpsc::Receiver<Job>,
    mine: mpsc::Sender<Job>,
    writers: Writers,
    limits: Limits,
    decide: Decide,
) {
    loop {
        let first = match tokio::time::timeout(limits.idle, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) | Err(_) => break,
        };
        let jobs = gather(first, &mut rx, limits).await;
        run(jobs, &decide).await;
    }
    {
        let mut map = lock(&writers);
        if map.get(&event).is_some_and(|w| w.same_channel(&mine)) {
            map.remove(&event);
        }
    }
    rx.close();
    let mut rest = Vec::new();
    while let Ok(job) = rx.try_recv() {
        rest.push(job);
        if rest.len() == limits.max {
            run(std::mem::take(&mut rest), &decide).await;
        }
    }
    if !rest.is_empty() {
        run(rest, &decide).await;
    }
}

/// `first` and what follows it: everything already queued, then arrivals until `window` after
/// `first` was queued, at most `max` in all.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, limits: Limits) -> Vec<Job> {
    let deadline = first.queued + limits.window;
    let mut jobs = vec![first];
    while jobs.len() < limits.max {
        match rx.try_recv() {
            Ok(job) => {
                jobs.push(job);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(job)) => jobs.push(job),
            Ok(None) | Err(_) => break,
        }
    }
    jobs
}

/// How many times a batch is decided before a conflict's rollback is answered (503 `DB_BUSY`).
const CONFLICT_ATTEMPTS: usize = 3;

/// Runs `decide`, again if PostgreSQL rolled it back to end a deadlock or a serialization conflict
/// (nothing of it happened), at most [`CONFLICT_ATTEMPTS`] times. Every seat writer locks seats in
/// id order, as the batch does, but a lock another transaction takes outside that order (an admin's
/// event lock, a future statement) must cost a retry, not a whole group's answers.
async fn decide_retrying_conflicts(decide: &Decide, holds: Arc<[HoldRequest]>) -> Decided {
    let mut attempt = 1;
    loop {
        match decide(Arc::clone(&holds)).await {
            Err(e)
                if attempt < CONFLICT_ATTEMPTS
                    && matches!(Outage::of_db(&e), Some(Outage::DbConflict(_))) =>
            {
                tracing::warn!(holds = holds.len(), attempt, error = %e, "grouped hold rolled back in a conflict: retried");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Decides `jobs` in one statement and answers each.
async fn run(jobs: Vec<Job>, decide: &Decide) {
    let n = jobs.len();
    let mut waiting = Vec::with_capacity(n);
    let mut holds = Vec::with_capacity(n);
    for job in jobs {
        holds.push(job.request);
        waiting.push((job.reply, job.orphan));
    }
    let answers: Vec<Result<HoldOutcome, Failed>> =
        match decide_retrying_conflicts(decide, Arc::from(holds)).await {
            Ok(outcomes) if outcomes.len() == n => outcomes.into_iter().map(Ok).collect(),
            Ok(outcomes) => {
                let f = Failed::Other(format!("{} outcomes for {n} holds", outcomes.len()));
                vec![Err(f); n]
            }
            Err(e) => {
                tracing::warn!(error = %e, holds = n, "grouped hold failed");
                vec![Err(Failed::of(&e)); n]
            }
        };
    for ((reply, orphan), answer) in waiting.into_iter().zip(answers) {
        if let Err(Ok(outcome)) = reply.send(answer) {
            orphan(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::queue::Verdict;
    use axum::response::IntoResponse;

    fn request(event: Uuid) -> HoldRequest {
        HoldRequest {
            user_id: Uuid::new_v4(),
            event_id: event,
            seat_ids: vec![Uuid::new_v4()],
            reservation_id: Uuid::new_v4(),
            number: "TK1".into(),
            hold_secs: 300.0,
            cap: 0,
            admission: Verdict::Admitted { until_ms: 0 },
            fair_window_secs: 0.0,
        }
    }

    fn limits(window_ms: u64, max: usize, queue: usize) -> Limits {
        Limits {
            window: Duration::from_millis(window_ms),
            max,
            queue,
            idle: Duration::from_millis(50),
        }
    }

    /// Waits (bounded) until `done` holds.
    async fn until(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Answers each batch with `NotOnSale` for the first hold and `OverCap` for the others, and
    /// records the batch sizes.
    fn recording(sizes: Arc<Mutex<Vec<usize>>>) -> Decide {
        Arc::new(move |holds| {
            let sizes = Arc::clone(&sizes);
            Box::pin(async move {
                sizes.lock().unwrap().push(holds.len());
                Ok((0..holds.len())
                    .map(|i| {
                        if i == 0 {
                            HoldOutcome::NotOnSale
                        } else {
                            HoldOutcome::OverCap
                        }
                    })
                    .collect())
            })
        })
    }

    fn none() -> Orphan {
        Box::new(|_| {})
    }

    #[tokio::test]
    async fn holds_arriving_together_are_one_batch_answered_in_arrival_order() {
        let sizes = Arc::default();
        let b = Arc::new(Batcher::new(
            limits(5, 64, 64),
            recording(Arc::clone(&sizes)),
        ));
        let event = Uuid::new_v4();
        let answers =
            futures::future::join_all((0..10).map(|_| b.hold(request(event), none()))).await;
        assert_eq!(*sizes.lock().unwrap(), vec![10]);
        assert_eq!(answers[0].as_ref().unwrap(), &HoldOutcome::NotOnSale);
        assert!(
            answers[1..]
                .iter()
                .all(|a| a.as_ref().unwrap() == &HoldOutcome::OverCap)
        );
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_its_maximum() {
        let sizes = Arc::default();
        let b = Batcher::new(limits(5, 4, 64), recording(Arc::clone(&sizes)));
        let event = Uuid::new_v4();
        let answers =
            futures::future::join_all((0..10).map(|_| b.hold(request(event), none()))).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(*sizes.lock().unwrap(), vec![4, 4, 2]);
    }

    #[tokio::test]
    async fn events_have_their_own_writers_and_idle_writers_go_away() {
        let sizes = Arc::default();
        let b = Batcher::new(limits(1, 64, 64), recording(Arc::clone(&sizes)));
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, c) = tokio::join!(b.hold(request(one), none()), b.hold(request(two), none()));
        assert!(a.is_ok() && c.is_ok());
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1]);
        assert_eq!(b.writers(), 2);
        assert!(until(|| b.writers() == 0).await);
        // and a later hold starts a new one
        assert!(b.hold(request(one), none()).await.is_ok());
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_hold_of_its_batch() {
        let b = Batcher::new(
            limits(5, 64, 64),
            Arc::new(|_| Box::pin(async { Err(sqlx::Error::PoolTimedOut) })),
        );
        let event = Uuid::new_v4();
        let answers =
            futures::future::join_all((0..3).map(|_| b.hold(request(event), none()))).await;
        for a in answers {
            assert_eq!(a.unwrap_err().code(), crate::codes::Code::DbBusy);
        }
    }

    /// Decides `NotOnSale` for every hold, each batch once a permit of the returned gate is added;
    /// counts the batches started.
    fn gated() -> (Decide, Arc<tokio::sync::Semaphore>, Arc<AtomicUsize>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (g, st) = (Arc::clone(&gate), Arc::clone(&started));
        let decide: Decide = Arc::new(move |holds| {
            let (g, st) = (Arc::clone(&g), Arc::clone(&st));
            Box::pin(async move {
                st.fetch_add(1, Ordering::SeqCst);
                g.acquire().await.expect("gate open").forget();
                Ok(vec![HoldOutcome::NotOnSale; holds.len()])
            })
        });
        (decide, gate, started)
    }

    fn job(event: Uuid) -> (Job, oneshot::Receiver<Result<HoldOutcome, Failed>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request: request(event),
            queued: Instant::now(),
            reply,
            orphan: none(),
        };
        (job, answer)
    }

    #[tokio::test]
    async fn a_full_queue_answers_db_busy() {
        let (decide, gate, started) = gated();
        let b = Batcher::new(limits(1, 1, 2), decide);
        let event = Uuid::new_v4();
        let (first, first_answer) = job(event);
        assert!(b.enqueue(first).unwrap().is_none());
        assert!(until(|| started.load(Ordering::SeqCst) == 1).await);
        // one in the statement, two queued: the next is refused
        let (second, second_answer) = job(event);
        let (third, third_answer) = job(event);
        assert!(b.enqueue(second).unwrap().is_none());
        assert!(b.enqueue(third).unwrap().is_none());
        let refused = b.enqueue(job(event).0).map(|_| ()).unwrap_err();
        assert_eq!(refused.code(), crate::codes::Code::DbBusy);
        gate.add_permits(3);
        for answer in [first_answer, second_answer, third_answer] {
            assert_eq!(answer.await.unwrap(), Ok(HoldOutcome::NotOnSale));
        }
    }

    #[tokio::test]
    async fn a_caller_that_left_still_gets_its_hold_decided_and_announced() {
        let (decide, gate, started) = gated();
        let b = Arc::new(Batcher::new(limits(1, 8, 8), decide));
        let announced = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&announced);
        let orphan: Orphan = Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.hold(request(Uuid::new_v4()), orphan).await })
        };
        assert!(until(|| started.load(Ordering::SeqCst) == 1).await);
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        gate.add_permits(1);
        assert!(until(|| announced.load(Ordering::SeqCst) == 1).await);
    }

    #[derive(Debug)]
    struct Sqlstate(String);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            &self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(std::borrow::Cow::Borrowed(&self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    /// A batcher whose first `conflicts` statements are rolled back with `sqlstate`.
    fn rolled_back(conflicts: usize, sqlstate: &str, calls: &Arc<AtomicUsize>) -> Batcher {
        let seen = Arc::clone(calls);
        let sqlstate = sqlstate.to_string();
        Batcher::new(
            limits(1, 8, 8),
            Arc::new(move |holds| {
                let call = seen.fetch_add(1, Ordering::SeqCst);
                let sqlstate = sqlstate.clone();
                Box::pin(async move {
                    if call < conflicts {
                        Err(sqlx::Error::Database(Box::new(Sqlstate(sqlstate))))
                    } else {
                        Ok(vec![HoldOutcome::OverCap; holds.len()])
                    }
                })
            }),
        )
    }

    #[tokio::test]
    async fn a_batch_rolled_back_in_a_conflict_is_decided_again() {
        for sqlstate in ["40P01", "40001"] {
            let calls = Arc::new(AtomicUsize::new(0));
            let b = rolled_back(CONFLICT_ATTEMPTS - 1, sqlstate, &calls);
            let answer = b.hold(request(Uuid::new_v4()), none()).await;
            assert_eq!(answer.unwrap(), HoldOutcome::OverCap, "{sqlstate}");
            assert_eq!(calls.load(Ordering::SeqCst), CONFLICT_ATTEMPTS);
        }
    }

    #[tokio::test]
    async fn a_batch_that_keeps_conflicting_is_answered_busy_not_500() {
        let calls = Arc::new(AtomicUsize::new(0));
        let b = rolled_back(usize::MAX, "40P01", &calls);
        let answer = b.hold(request(Uuid::new_v4()), none()).await;
        let e = answer.unwrap_err();
        assert_eq!(e.code(), crate::codes::Code::DbBusy);
        assert_eq!(
            e.into_response().status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(calls.load(Ordering::SeqCst), CONFLICT_ATTEMPTS);
    }

    #[test]
    fn failures_keep_the_one_hold_paths_answers() {
        assert_eq!(
            Failed::of(&sqlx::Error::PoolTimedOut).error().code(),
            crate::codes::Code::DbBusy
        );
        let timeout = sqlx::Error::Database(Box::new(Sqlstate("57014".into())));
        assert!(matches!(
            Failed::of(&timeout),
            Failed::Outage(Outage::DbStatementTimeout(_))
        ));
        let other = sqlx::Error::Database(Box::new(Sqlstate("23505".into())));
        assert!(matches!(Failed::of(&other), Failed::Other(_)));
    }
}
