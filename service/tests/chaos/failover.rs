//! Scenarios 3 and 4: the Redis primary serving the sale is SIGKILLed while users keep joining the
//! waiting room, and its replica is promoted: on a Redis Cluster (the cluster elects it), and on a
//! single Redis with a replica behind a stable address (a failover agent promotes it and moves the
//! address). What was acknowledged must survive it.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tiketi_core::keys::Keys;

use crate::{
    common::eventually,
    harness::{Failover, Http, PREFIX, PrimaryReplica, RedisCluster, User, users},
    report::Rec,
    sio::Clients,
    steps::{
        Buying, Sale, close_sale, connect, connect_front, fill_waiting_room, home, keep_reading,
        never_crashed, ok, open_sale,
    },
};

pub const TITLE: &str = "3. SIGKILL the Redis Cluster primary serving the sale, mid-sale";
pub const SETUP: &str = "Three replicas (REDIS_WAIT_REPLICAS=1), one database, a private Redis \
Cluster (3 primaries, each with a replica; cluster-node-timeout 1 s). Waiting-room threshold 3: three \
buyers are admitted, twelve users queue; the first three in line have socket.io-client sockets. \
Throughout, the buyers hold and pay seats through all three replicas, a reader polls, and newcomers \
keep joining the queue through every replica (a 503 is retried, as the frontend does). The replica \
of the primary serving the event's slot is frozen (SIGSTOP: it lags), a join is tried, the primary \
is SIGKILLed and the replica thawed: it takes the slots over with what it had.";

pub const TITLE_PAIR: &str =
    "4. SIGKILL the primary of a single Redis, mid-sale; its replica is promoted";
pub const SETUP_PAIR: &str = "As scenario 3, on one Redis with one replica instead of a cluster: the \
replicas reach it through a stable address (a forwarder standing in for a Kubernetes Service or a \
VIP). The replica is frozen, a join is tried, the primary is SIGKILLed and the replica thawed; then \
the failover agent (Sentinel's part, played by the harness) promotes it with REPLICAOF NO ONE and \
points the address at it, which ends every connection to the old one. The killed node comes back \
as the new primary's replica.";

const THRESHOLD: usize = 3;
const WAITERS: usize = 12;
const FRONT: usize = 3;
const NEWCOMERS: usize = 60;
/// Newcomers answered before the kill; the others join across the failover.
const JOINED_BEFORE_KILL: usize = 20;
const HOLD_SECS: u64 = 5;
/// How soon after the kill every replica must answer the waiting room again.
const ANSWERS_AGAIN_WITHIN: Duration = Duration::from_secs(10);

/// Newcomers' joins: the place each was told (user index, position), and the answers that were not
/// a place (a 503 is retried until a place comes).
#[derive(Default)]
struct Joins {
    told: Vec<(usize, i64)>,
    retried: usize,
    failed: Vec<String>,
}

/// Each newcomer joins through its home replica, retrying a 503 every 200 ms for up to 20 s.
fn keep_joining(
    http: &Http,
    bases: &[String],
    newcomers: &[User],
    event: uuid::Uuid,
) -> (Arc<Mutex<Joins>>, tokio::task::JoinHandle<()>) {
    let joins = Arc::new(Mutex::new(Joins::default()));
    let task = {
        let (http, bases, joins) = (http.clone(), bases.to_vec(), joins.clone());
        let tokens: Vec<String> = newcomers.iter().map(|u| u.token.clone()).collect();
        tokio::spawn(async move {
            let path = format!("/api/queue/check/{event}");
            for (i, token) in tokens.iter().enumerate() {
                let until = Instant::now() + Duration::from_secs(20);
                loop {
                    let a = http
                        .post(&bases[home(i, bases.len())], &path, Some(token), json!({}))
                        .await;
                    let done = {
                        let mut j = joins.lock().expect("joins");
                        let retry = Instant::now() < until;
                        match a {
                            Ok(a) if a.status == StatusCode::OK && a.body["queued"] == true => {
                                j.told.push((i, a.body["position"].as_i64().unwrap_or(0)));
                                true
                            }
                            Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE && retry => {
                                j.retried += 1;
                                false
                            }
                            Err(_) if retry => {
                                j.retried += 1;
                                false
                            }
                            Ok(a) => {
                                j.failed
                                    .push(format!("newcomer {i}: {} {}", a.status, a.body));
                                true
                            }
                            Err(e) => {
                                j.failed.push(format!("newcomer {i}: {e}"));
                                true
                            }
                        }
                    };
                    if done {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    (joins, task)
}

pub async fn run(rec: Rec, logs: PathBuf) -> anyhow::Result<()> {
    let cluster = RedisCluster::start(&logs).await?;
    run_on(rec, logs, cluster).await
}

pub async fn run_on_pair(rec: Rec, logs: PathBuf) -> anyhow::Result<()> {
    let pair = PrimaryReplica::start(&logs).await?;
    run_on(rec, logs, pair).await
}

async fn run_on(rec: Rec, logs: PathBuf, mut cluster: impl Failover) -> anyhow::Result<()> {
    let url = cluster.url();
    let settings = [
        ("HOLD_SECONDS", HOLD_SECS),
        ("HOLD_SWEEP_SECONDS", 1),
        ("PAYMENT_DELAY_MIN_MS", 50),
        ("PAYMENT_DELAY_MAX_MS", 200),
        // a place is told only once the primary's replica has it
        ("REDIS_WAIT_REPLICAS", 1),
    ];
    let Sale {
        db,
        jwt,
        mut replicas,
        bases,
        event,
        seats,
        buyers,
        waiters,
    } = open_sale(&url, &logs, &settings, THRESHOLD, WAITERS).await?;
    let http = Http::new(rec.meter.clone());
    let newcomers = users(&db, &jwt, NEWCOMERS).await?;
    let late = users(&db, &jwt, 1).await?.remove(0);
    let positions = fill_waiting_room(&http, &bases, event, &buyers, &waiters).await?;
    let at = |p: i64| {
        positions
            .iter()
            .position(|x| *x == p)
            .expect("a waiter at p")
    };

    let mut io = Clients::start();
    connect_front(&mut io, &bases, &waiters, &positions, FRONT, event, &url).await?;

    let buying = Buying::start(&http, &bases, &buyers, &seats, event);
    let reading = keep_reading(&http, &bases, &waiters, event);
    let selling = eventually(Duration::from_secs(15), || async { buying.paid() >= 3 }).await;
    anyhow::ensure!(selling, "the sale did not get going");
    let (joins, joining) = keep_joining(&http, &bases, &newcomers, event);
    let joined = eventually(Duration::from_secs(15), || async {
        joins.lock().expect("joins").told.len() >= JOINED_BEFORE_KILL
    })
    .await;
    anyhow::ensure!(joined, "newcomers did not get places before the kill");

    // the fault: the replica of the primary serving the event's keys lags (frozen), so whatever the
    // primary writes now exists nowhere else; then the primary dies and the replica, thawed, takes
    // over with what it had
    let queue_key = Keys::new(PREFIX).queue(event);
    let primary = cluster
        .primary_of(&queue_key)
        .ok_or_else(|| anyhow::anyhow!("no primary serves {queue_key}"))?;
    let replica = cluster
        .replica_of(primary)
        .ok_or_else(|| anyhow::anyhow!("primary {primary} has no replica"))?;
    cluster.freeze(replica);
    anyhow::ensure!(
        cluster.cut_replicas(primary),
        "the replication link was not cut"
    );
    let probe = ok(http
        .post(
            &bases[0],
            &format!("/api/queue/check/{event}"),
            Some(&late.token),
            json!({}),
        )
        .await)?;
    rec.check(
        "while no replica has a write, no place is told (REDIS_WAIT_REPLICAS=1): 503 + Retry-After",
        probe.status == StatusCode::SERVICE_UNAVAILABLE && probe.retry_after.is_some(),
        format!(
            "{} {} after {} ms",
            probe.status,
            probe.body,
            probe.took.as_millis()
        ),
    );
    cluster.kill(primary);
    let killed_at = Instant::now();
    cluster.thaw(replica);
    rec.note(format!(
        "replica {replica} frozen and its link cut, then its primary {primary} SIGKILLed with {} \
         seats sold and {} newcomers placed so far; the replica thawed",
        buying.paid(),
        joins.lock().expect("joins").told.len()
    ));
    let promoted = cluster
        .failed_over(&queue_key, primary, Duration::from_secs(20))
        .await;
    let promoted_after = killed_at.elapsed();
    // the killed node comes back as a pod would, and becomes the new primary's replica: until then
    // the new primary has no replica to wait for, and tells nobody a place
    cluster.restart(primary).await?;
    rec.check(
        "the killed primary's replica takes over; the killed node rejoins as its replica",
        promoted.is_some(),
        format!(
            "node {primary} killed; node {promoted:?} serves the sale {} ms later; node {primary} restarted {} ms after the kill",
            promoted_after.as_millis(),
            killed_at.elapsed().as_millis()
        ),
    );
    let status_path = format!("/api/queue/status/{event}");
    let answering = eventually(ANSWERS_AGAIN_WITHIN, || async {
        join_all(
            bases
                .iter()
                .map(|b| http.get(b, &status_path, Some(&waiters[at(1)].token))),
        )
        .await
        .iter()
        .all(|a| a.as_ref().is_ok_and(|a| a.status == StatusCode::OK))
    })
    .await;
    let gap = killed_at.elapsed();
    rec.check(
        "the waiting room answers again on every replica within seconds of the kill",
        answering,
        format!(
            "every replica answered queue status {} ms after the kill (limit {} s)",
            gap.as_millis(),
            ANSWERS_AGAIN_WITHIN.as_secs()
        ),
    );
    let _ = joining.await;
    let Joins {
        told,
        retried,
        failed,
    } = std::mem::take(&mut *joins.lock().expect("joins"));
    rec.check(
        "every newcomer gets a place (a 503 during the failover is retried)",
        told.len() == NEWCOMERS && failed.is_empty(),
        format!(
            "{} of {NEWCOMERS} placed; {retried} answers retried; not placed: {failed:?}",
            told.len()
        ),
    );

    // every place told before, during and after the failover, read through another replica
    let mut placed: Vec<(i64, i64)> = Vec::new(); // (told, now)
    let mut lost = Vec::new();
    // the join tried while the replica lagged counts too, had it been told a place
    let probed = (probe.status == StatusCode::OK && probe.body["queued"] == true)
        .then(|| (&late, probe.body["position"].as_i64().unwrap_or(0)));
    let everyone = waiters
        .iter()
        .zip(positions.iter().copied())
        .chain(told.iter().map(|&(i, p)| (&newcomers[i], p)))
        .chain(probed);
    for (k, (u, was)) in everyone.enumerate() {
        let a = ok(http
            .get(
                &bases[(k + 1) % 3],
                &format!("/api/queue/status/{event}"),
                Some(&u.token),
            )
            .await)?;
        match a.body["position"].as_i64() {
            Some(now) if a.body["queued"] == true => placed.push((was, now)),
            _ => lost.push(format!("told {was}: {}", a.body)),
        }
    }
    let moved_back: Vec<(i64, i64)> = placed
        .iter()
        .copied()
        .filter(|(was, now)| now > was)
        .collect();
    rec.check(
        "no acknowledged queue position is lost or moved back",
        lost.is_empty() && moved_back.is_empty(),
        format!(
            "{} places checked; lost {lost:?}; moved back (told, now) {moved_back:?}",
            placed.len() + lost.len()
        ),
    );
    let mut by_now = placed.clone();
    by_now.sort_by_key(|&(_, now)| now);
    let in_order = by_now
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
    rec.check(
        "the line keeps its order and no two users share a place",
        in_order,
        format!(
            "{} places, ordered as they were told: {in_order}",
            by_now.len()
        ),
    );
    let current = ok(http
        .get(
            &bases[0],
            &format!("/api/queue/status/{event}"),
            Some(&waiters[0].token),
        )
        .await)?
    .body["currentUsers"]
        .as_i64()
        .unwrap_or(-1);
    let mut admitted = 0;
    for (i, u) in buyers.iter().enumerate() {
        let a = ok(http
            .post(
                &bases[(i + 2) % 3],
                &format!("/api/queue/check/{event}"),
                Some(&u.token),
                json!({}),
            )
            .await)?;
        admitted += usize::from(a.status == StatusCode::OK && a.body["queued"] == false);
    }
    rec.check(
        "admissions survive and none is granted twice: the admitted set never passes the threshold",
        admitted == THRESHOLD && current == THRESHOLD as i64,
        format!("{admitted} of {THRESHOLD} buyers still admitted; {current} admitted in all"),
    );

    // sessions: a front socket reconnects to another replica and gets its session back
    let front = format!("w{}", at(1));
    let again = format!("{front}-again");
    io.disconnect(&front).await;
    connect(
        &mut io,
        &again,
        &bases[(home(at(1), 3) + 1) % 3],
        &waiters[at(1)].token,
        json!([]),
    )
    .await?;
    rec.reconnected();
    let restored = io
        .within(
            &again,
            "session-restored",
            |_| true,
            Duration::from_secs(10),
        )
        .await;
    rec.check(
        "a reconnecting socket gets its session back after the failover",
        restored
            .as_ref()
            .is_some_and(|s| s["queueEventId"] == json!(event)),
        format!("{restored:?}"),
    );

    reading.abort();
    let _ = reading.await;
    close_sale(&rec, &db, event, buying.finish().await, HOLD_SECS).await?;
    never_crashed(&rec, &mut replicas);
    Ok(())
}
