//! `make rehearsal`: a full-dress sale opening on the real node. Two sales on the chart's one service
//! Deployment (one artist with sales history, one without), pre-scaled by the operator; simulated fans through
//! nginx (register storm from many client addresses, live sockets, the waiting room's lottery at the opening,
//! seat holds, payments, double and impatient payments, cancels) and beside them a hostile crowd through the
//! same nginx (`hostile`: scripts holding seats without queueing, spoofed forwarding headers, a seat-map herd,
//! event-list floods, tokenless Socket.IO handshakes). During the sale one pod is killed, the pods' Redis link
//! is cut and restored, Redis is restarted and the release is upgraded with helm. Every figure the report
//! prints is asserted (`verdicts`, `hostile`): target/rehearsal-report.md gets the figures, each with its
//! rule and verdict, and a timeline; any broken rule fails the run. Runs only with E2E_REHEARSAL=1
//! (`E2E_REAL_NODE=1 e2e/run.sh rehearsal`); REHEARSAL_USERS sets the number of fans (default 1000).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use crate::{
    hostile::{self, Statuses},
    support::*,
    verdicts::{self, LedgerRow, QueueSample, TwoSales},
};

#[derive(Default)]
struct Tally {
    timeline: Mutex<Vec<(f64, String)>>,
    broken: Mutex<Vec<String>>,
    statuses: Mutex<std::collections::BTreeMap<String, u64>>,
    /// The first answer (or client error) of each failing "request status", and when, for the report.
    examples: Mutex<std::collections::BTreeMap<String, (f64, String)>>,
    unanswered: AtomicU64,
    resent: AtomicU64,
    too_many: AtomicU64,
    requests: AtomicU64,
    reconnects: AtomicU64,
    restored: AtomicU64,
    not_restored: AtomicU64,
    /// Fans whose waiting-room check is still to come back: positions are compared only after the
    /// whole check wave (a later lottery arrival may draw a better place than an earlier one).
    checks_pending: AtomicU64,
    checked_in: AtomicU64,
    queued: AtomicU64,
    admitted: AtomicU64,
    moved_back: AtomicU64,
    reached_hold: AtomicU64,
    holds: AtomicU64,
    hold_conflicts: AtomicU64,
    /// (run seconds sent, seconds taken) of every fan's hold.
    hold_latencies: Mutex<Vec<(f64, f64)>>,
    paid: AtomicU64,
    /// One entry per payment answered paid (or settled: ALREADY_PAID after an abandoned attempt).
    paid_ids: Mutex<Vec<Uuid>>,
    /// (run seconds of the first attempt, how it went) of every impatient payment.
    pay_retries: Mutex<Vec<(f64, hostile::PayRetry)>>,
    second_payment_accepted: AtomicU64,
    cancelled: AtomicU64,
}

struct Run {
    t0: tokio::time::Instant,
    tally: Tally,
    nginx: String,
    stop: AtomicBool,
    /// Run seconds the pods' Redis was cut or restarting (an open one ends at infinity).
    redis_faults: Mutex<Vec<(f64, f64)>>,
    /// Run seconds a service pod was deleted with grace 0.
    pod_kills: Mutex<Vec<f64>>,
    /// The seat-map herd is running: payers pay impatiently then (the pool is saturated).
    herd_on: AtomicBool,
    /// For the timeline picture: (run seconds, sale index, waiting-room depth) and (run seconds, fans
    /// admitted so far).
    depths: Mutex<Vec<(f64, usize, usize)>>,
    admissions: Mutex<Vec<(f64, u64)>>,
}

impl Run {
    fn note(&self, what: impl Into<String>) {
        let what = what.into();
        let at = self.t0.elapsed().as_secs_f64();
        eprintln!("rehearsal +{at:.1}s {what}");
        self.tally.timeline.lock().unwrap().push((at, what));
    }
    fn broken(&self, what: impl Into<String>) {
        let what = what.into();
        self.note(format!("BROKEN: {what}"));
        self.tally.broken.lock().unwrap().push(what);
    }
    fn redis_fault_starts(&self) {
        let at = self.t0.elapsed().as_secs_f64();
        self.redis_faults.lock().unwrap().push((at, f64::INFINITY));
    }
    fn redis_fault_ends(&self) {
        let at = self.t0.elapsed().as_secs_f64();
        if let Some(w) = self.redis_faults.lock().unwrap().last_mut() {
            w.1 = at;
        }
    }
    /// Sent while a Redis fault lasted, or within the breaker's 5 s after it.
    fn in_redis_fault(&self, sent: f64) -> bool {
        self.redis_faults
            .lock()
            .unwrap()
            .iter()
            .any(|(from, to)| sent >= from - 1.0 && sent <= to + 5.0)
    }
    fn pod_kill_starts(&self) {
        let at = self.t0.elapsed().as_secs_f64();
        self.pod_kills.lock().unwrap().push(at);
    }
    /// The report's key of an answer: a 502/504 of a request in flight on the killed pod, a fail-closed
    /// 503 during a Redis fault, or `what status`.
    fn status_key(
        &self,
        what: &str,
        status: u16,
        code: &Value,
        sent: f64,
        answered: f64,
    ) -> String {
        if matches!(status, 502 | 504)
            && verdicts::in_flight_at_kill(&self.pod_kills.lock().unwrap(), sent, answered)
        {
            format!("{what} {}", verdicts::IN_FLIGHT_AT_POD_KILL)
        } else if status == 503
            && (code == "REDIS_UNAVAILABLE" || code == "QUEUE_UNAVAILABLE")
            && self.in_redis_fault(sent)
        {
            format!("{what} {}", verdicts::DURING_REDIS_FAULT)
        } else {
            format!("{what} {status}")
        }
    }
    /// One request through nginx: its status (0 when no answer within the client's 90 s) and JSON body.
    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
        self.tally.requests.fetch_add(1, Relaxed);
        let sent = self.t0.elapsed().as_secs_f64();
        // A browser sends a request again when the kept-alive connection it reused was closed under it
        // (nginx closes idle ones on every reload, e.g. when a pod becomes Ready); so does this client,
        // once. A failure that persists, or a timeout, stays unanswered.
        let again = req.try_clone();
        let mut answer = req.send().await;
        if let (Err(e), Some(again)) = (&answer, again)
            && !e.is_timeout()
        {
            self.tally.resent.fetch_add(1, Relaxed);
            answer = again.send().await;
        }
        let (status, body, error) = match answer {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json::<Value>().await.unwrap_or(Value::Null), None)
            }
            Err(e) => (0, Value::Null, Some(e.to_string())),
        };
        if !(200..300).contains(&status) && status != 400 {
            self.tally
                .examples
                .lock()
                .unwrap()
                .entry(format!("{what} {status}"))
                .or_insert_with(|| (sent, error.unwrap_or_else(|| body.to_string())));
        }
        match status {
            0 => {
                self.tally.unanswered.fetch_add(1, Relaxed);
            }
            429 => {
                self.tally.too_many.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        let answered = self.t0.elapsed().as_secs_f64();
        let key = self.status_key(what, status, &body["code"], sent, answered);
        *self.tally.statuses.lock().unwrap().entry(key).or_default() += 1;
        (status, body)
    }
}

fn users() -> usize {
    std::env::var("REHEARSAL_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A sale in PostgreSQL opening at `opens` (the waiting room's lottery draws places for arrivals from
/// before it until a minute after) with `seats` seats; returns its id and seat ids.
async fn sale(
    db: &sqlx::PgPool,
    artist: &str,
    seats: i32,
    opens: DateTime<Utc>,
) -> (Uuid, Vec<Uuid>) {
    let (event,): (Uuid,) = sqlx::query_as(
        "INSERT INTO events (title, venue, event_date, sale_start_date, sale_end_date, status,
                             seat_layout_id, artist_name, queue_threshold)
         VALUES ($1, 'Rehearsal Arena', now() + interval '30 days', $2,
                 now() + interval '29 days', 'on_sale',
                 (SELECT id FROM seat_layouts ORDER BY total_seats DESC LIMIT 1), $1, 100)
         RETURNING id",
    )
    .bind(artist)
    .bind(opens)
    .fetch_one(db)
    .await
    .unwrap();
    let ids: Vec<(Uuid,)> = sqlx::query_as(
        "INSERT INTO seats (event_id, section, row_number, seat_number, seat_label, price)
         SELECT $1, 'R', g / 100 + 1, g % 100 + 1, 'R-' || (g / 100 + 1) || '-' || (g % 100 + 1), 50000
         FROM generate_series(0, $2::int - 1) g ORDER BY g RETURNING id",
    )
    .bind(event)
    .bind(seats)
    .fetch_all(db)
    .await
    .unwrap();
    (event, ids.into_iter().map(|(id,)| id).collect())
}

/// A live seat-map socket of one user: reconnects (as socket.io-client does) whenever its connection ends and
/// expects `session-restored` with its event each time, until the run stops.
async fn live_socket(run: Arc<Run>, n: usize, token: String, event: Uuid) {
    let join = json!({ "eventId": event });
    let from = source(n);
    let mut ws =
        match tokio::time::timeout(Duration::from_secs(20), connect(&run.nginx, &from, &token))
            .await
        {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => {
                run.broken(format!(
                    "user {n}: a live socket could not connect through nginx: {why}"
                ));
                return;
            }
            Err(_) => {
                run.broken(format!(
                    "user {n}: a live socket got no CONNECT answer in 20 s"
                ));
                return;
            }
        };
    if ws.send(event_frame("join-event", &join)).await.is_err() {
        return;
    }
    while !run.stop.load(Relaxed) {
        // pings answered; closed, dropped or a server DISCONNECT ends it
        let ended =
            match tokio::time::timeout(Duration::from_secs(1), sio::next_frame(&mut ws)).await {
                Err(_) => false,
                Ok(Frame::Text(t)) => t.starts_with("41"),
                Ok(Frame::Closed | Frame::Dropped(_)) => true,
            };
        if !ended {
            continue;
        }
        run.tally.reconnects.fetch_add(1, Relaxed);
        // socket.io-client's back-off, then the session must come back from Redis on whichever pod answers.
        let mut restored = false;
        for attempt in 0..10u64 {
            if run.stop.load(Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
            let Ok(Ok(mut again)) =
                tokio::time::timeout(Duration::from_secs(10), connect(&run.nginx, &from, &token))
                    .await
            else {
                continue;
            };
            let got = tokio::time::timeout(
                Duration::from_secs(10),
                next_event(&mut again, "session-restored"),
            )
            .await;
            if let Ok(Some(payload)) = got {
                restored = payload["eventId"] == json!(event);
                ws = again;
                break;
            }
        }
        if restored {
            run.tally.restored.fetch_add(1, Relaxed);
        } else {
            run.tally.not_restored.fetch_add(1, Relaxed);
            return;
        }
    }
}

/// Engine.IO + Socket.IO CONNECT with the token from the user's own client address (nginx balances by
/// it), or why not.
async fn connect(base: &str, source: &str, token: &str) -> Result<Ws, String> {
    let mut ws = ws_from(base, source).await?;
    sio::handshake(&mut ws, token, Duration::from_secs(60))
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(ws)
}

/// The client address of user `n`: 20 users per address, as behind a few hundred home routers.
fn source(n: usize) -> String {
    format!("127.1.{}.{}", n / 20 / 250, (n / 20) % 250 + 1)
}

/// One buyer: joins the waiting room, follows its position until admitted, holds a seat and pays
/// (sometimes twice, sometimes impatiently), or cancels.
async fn buyer(run: Arc<Run>, n: usize, token: String, event: Uuid, seats: Arc<Vec<Uuid>>) {
    let http = from(&source(n));
    // a 503 says "come back": a person reloads the page (each 503 still counts in the statuses)
    let (mut status, mut body) = (0, Value::Null);
    for _ in 0..10 {
        (status, body) = run
            .call(
                http.post(format!("{}/api/queue/check/{event}", run.nginx))
                    .bearer_auth(&token),
                "queue-check",
            )
            .await;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    run.tally.checks_pending.fetch_sub(1, Relaxed);
    if status != 200 {
        return;
    }
    run.tally.checked_in.fetch_add(1, Relaxed);
    if body["queued"] == json!(true) {
        run.tally.queued.fetch_add(1, Relaxed);
        // compared only once every fan's check is in (see Tally::checks_pending)
        let mut last: Option<i64> = None;
        loop {
            if run.stop.load(Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let settled = run.tally.checks_pending.load(Relaxed) == 0;
            let (status, body) = run
                .call(
                    http.get(format!("{}/api/queue/status/{event}", run.nginx))
                        .bearer_auth(&token),
                    "queue-status",
                )
                .await;
            if status != 200 {
                continue;
            }
            if body["queued"] != json!(true) {
                break;
            }
            let Some(position) = body["position"].as_i64() else {
                continue;
            };
            if !settled {
                continue;
            }
            if let Some(last) = last
                && position > last
            {
                run.tally.moved_back.fetch_add(1, Relaxed);
                run.broken(format!(
                    "user {n}: queue position moved back {last} -> {position}"
                ));
            }
            last = Some(position);
        }
    }
    run.tally.admitted.fetch_add(1, Relaxed);
    // a person looks at the seat map before choosing
    tokio::time::sleep(Duration::from_secs(3 + (n % 8) as u64)).await;
    purchase(&run, &http, n, &token, event, &seats).await;
    // Done: the buyer leaves the sale's page, which gives its admission to the next in line (the
    // frontend's 대기열 나가기; left alone an admission lasts 5 minutes).
    for _ in 0..5 {
        let (status, _) = run
            .call(
                http.post(format!("{}/api/queue/leave/{event}", run.nginx))
                    .bearer_auth(&token),
                "queue-leave",
            )
            .await;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// An admitted buyer: holds a seat (two buyers per seat: exactly one may hold it), then pays (sometimes
/// twice, sometimes with a client that gives up after 1.5 s and sends again) or cancels.
async fn purchase(
    run: &Run,
    http: &reqwest::Client,
    n: usize,
    token: &str,
    event: Uuid,
    seats: &[Uuid],
) {
    let seat = seats[(n / 2) % seats.len()];
    run.tally.reached_hold.fetch_add(1, Relaxed);
    // a 503 that says when to come back (the waiting room failing closed while Redis cannot be read,
    // a saturated pool) is clicked again then, as a person would; each attempt is one latency sample
    let mut attempts = 0;
    let (status, body) = loop {
        let sent = run.t0.elapsed().as_secs_f64();
        let (status, body) = run
            .call(
                http.post(format!("{}/api/seats/reserve", run.nginx))
                    .bearer_auth(token)
                    .json(&json!({ "eventId": event, "seatIds": [seat] })),
                "hold",
            )
            .await;
        run.tally
            .hold_latencies
            .lock()
            .unwrap()
            .push((sent, run.t0.elapsed().as_secs_f64() - sent));
        attempts += 1;
        if status != 503 || attempts >= 15 {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // the other buyer of the seat was first (the contract's 400 with code SEAT_TAKEN)
    if status == 409 || body["code"] == "SEAT_TAKEN" {
        run.tally.hold_conflicts.fetch_add(1, Relaxed);
    }
    if status != 201 {
        return;
    }
    run.tally.holds.fetch_add(1, Relaxed);
    let Some(id) = body["reservation"]["id"].as_str().map(str::to_string) else {
        run.broken(format!(
            "user {n}: a 201 hold without a reservation id: {body}"
        ));
        return;
    };
    if n % 5 == 4 {
        let (status, _) = run
            .call(
                http.post(format!("{}/api/reservations/{id}/cancel", run.nginx))
                    .bearer_auth(token),
                "cancel",
            )
            .await;
        if status == 200 {
            run.tally.cancelled.fetch_add(1, Relaxed);
        }
        return;
    }
    // and fills in the payment form
    tokio::time::sleep(Duration::from_secs(2 + (n % 4) as u64)).await;
    let paid_id = id.parse::<Uuid>().ok();
    if n % 10 == 7 || run.herd_on.load(Relaxed) {
        // (g) an impatient payer (every tenth, and everyone while the herd saturates the pool): gives
        // up after 1.5 s and pays again, as on a slow page
        let sent = run.t0.elapsed().as_secs_f64();
        let retry =
            hostile::pay_with_retries(http, &run.nginx, token, &id, Duration::from_millis(1500))
                .await;
        {
            let mut statuses = run.tally.statuses.lock().unwrap();
            for a in &retry.attempts {
                let (sent, answered) = (
                    a.sent.duration_since(run.t0).as_secs_f64(),
                    a.answered.duration_since(run.t0).as_secs_f64(),
                );
                let key = match a.status.parse::<u16>() {
                    Ok(s) => run.status_key("pay-impatient", s, &a.code, sent, answered),
                    Err(_) => format!("pay-impatient {}", a.status),
                };
                *statuses.entry(key).or_default() += 1;
            }
        }
        if matches!(retry.end, hostile::PayEnd::Paid | hostile::PayEnd::Settled) {
            run.tally.paid.fetch_add(1, Relaxed);
            run.tally.paid_ids.lock().unwrap().extend(paid_id);
        }
        run.tally.pay_retries.lock().unwrap().push((sent, retry));
        return;
    }
    let pay = json!({ "reservationId": id, "paymentMethod": "naver_pay" });
    let (status, _) = run
        .call(
            http.post(format!("{}/api/payments/process", run.nginx))
                .bearer_auth(token)
                .json(&pay),
            "pay",
        )
        .await;
    if status == 200 {
        run.tally.paid.fetch_add(1, Relaxed);
        run.tally.paid_ids.lock().unwrap().extend(paid_id);
        if n % 10 == 3 {
            // A double click on "pay": never a second charge.
            let (again, _) = run
                .call(
                    http.post(format!("{}/api/payments/process", run.nginx))
                        .bearer_auth(token)
                        .json(&pay),
                    "pay-again",
                )
                .await;
            if again == 200 {
                run.tally.second_payment_accepted.fetch_add(1, Relaxed);
                run.tally.paid_ids.lock().unwrap().extend(paid_id);
            }
        }
    }
}

async fn replicas(api: &Api<Deployment>, name: &str) -> (i32, i32) {
    let Ok(d) = api.get(name).await else {
        return (0, 0);
    };
    (
        d.spec.and_then(|s| s.replicas).unwrap_or(0),
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

/// The picture of the run: both waiting rooms and the admissions, the Deployment and each sale's wish,
/// the injected Redis faults.
fn timeline(run: &Run, sales: &[TwoSales]) -> crate::timeline::Timeline {
    use crate::timeline::{Series, Timeline};
    let depths = run.depths.lock().unwrap();
    let queue = |i: usize, name: &str| Series {
        name: name.into(),
        points: depths
            .iter()
            .filter(|d| d.1 == i)
            .map(|&(at, _, n)| (at, n as f64))
            .collect(),
    };
    let line = |name: &str, value: &dyn Fn(&TwoSales) -> Option<i32>| Series {
        name: name.into(),
        points: sales
            .iter()
            .filter_map(|s| Some((s.at, f64::from(value(s)?))))
            .collect(),
    };
    let admitted = Series {
        name: "fans admitted (both sales)".into(),
        points: run
            .admissions
            .lock()
            .unwrap()
            .iter()
            .map(|&(at, n)| (at, n as f64))
            .collect(),
    };
    Timeline {
        crowd: vec![
            queue(0, "waiting room A"),
            queue(1, "waiting room B"),
            admitted,
        ],
        replicas: vec![
            line("replicas desired", &|s| Some(s.replicas)),
            line("replicas Ready", &|s| Some(s.ready)),
            line("sale A's wish", &|s| s.wishes[0]),
            line("sale B's wish", &|s| s.wishes[1]),
        ],
        faults: run.redis_faults.lock().unwrap().clone(),
    }
}

/// The two sales and their Deployment every second until the run stops: each TicketEvent's phase and
/// wish, the Deployment's replicas and Ready pods (changes go to the timeline).
async fn watch_sales(
    run: Arc<Run>,
    tes: Api<TicketEvent>,
    names: [String; 2],
    deployments: Api<Deployment>,
    name: String,
    samples: Arc<Mutex<Vec<TwoSales>>>,
) {
    let mut last: Option<TwoSales> = None;
    while !run.stop.load(Relaxed) {
        let (replicas, ready) = replicas(&deployments, &name).await;
        let (mut phases, mut wishes) = ([None, None], [None, None]);
        for (i, te) in names.iter().enumerate() {
            if let Ok(Some(status)) = tes.get(te).await.map(|t| t.status) {
                phases[i] = status.phase;
                wishes[i] = status.desired_replicas;
            }
        }
        let now = TwoSales {
            at: run.t0.elapsed().as_secs_f64(),
            phases,
            wishes,
            replicas,
            ready,
        };
        if last.as_ref().is_none_or(|l| {
            (l.phases.clone(), l.wishes, l.replicas, l.ready)
                != (now.phases.clone(), now.wishes, now.replicas, now.ready)
        }) {
            run.note(format!(
                "replicas desired {replicas} ready {ready}; sale A {:?} wishes {:?}, sale B {:?} wishes {:?}",
                now.phases[0], now.wishes[0], now.phases[1], now.wishes[1]
            ));
        }
        samples.lock().unwrap().push(now.clone());
        run.admissions
            .lock()
            .unwrap()
            .push((now.at, run.tally.admitted.load(Relaxed)));
        last = Some(now);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The waiting rooms' queues (user -> lottery score) from the suite's Redis every 250 ms until the run
/// stops; each sample is judged against the one before (`verdicts::lottery_order`) as it comes, so only
/// the last is kept. A failed read (Redis restarting) just widens the interval. Samples taken and the
/// broken ones.
async fn watch_lottery(
    run: Arc<Run>,
    redis: fred::prelude::Client,
    queues: Vec<(&'static str, String)>,
) -> (u64, Vec<String>) {
    use fred::prelude::ClientLike as _;
    let mut last: Vec<Option<QueueSample>> = vec![None; queues.len()];
    let (mut samples, mut broken) = (0u64, Vec::new());
    while !run.stop.load(Relaxed) {
        for (i, (sale, key)) in queues.iter().enumerate() {
            let args = vec![key.clone(), "0".into(), "-1".into(), "WITHSCORES".into()];
            let Ok(flat) = redis
                .custom::<Vec<String>, String>(fred::cmd!("ZRANGE"), args)
                .await
            else {
                continue;
            };
            let sample: QueueSample = flat
                .chunks(2)
                .filter_map(|c| Some((c[0].clone(), c.get(1)?.parse().ok()?)))
                .collect();
            let at = run.t0.elapsed().as_secs_f64();
            run.depths.lock().unwrap().push((at, i, sample.len()));
            if let Some(prev) = last[i].take() {
                for b in verdicts::lottery_order(&[prev, sample.clone()]) {
                    broken.push(format!("sale {sale} at +{at:.1} s: {b}"));
                }
            }
            last[i] = Some(sample);
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (samples, broken)
}

/// The payment ledger of the two sales: PostgreSQL's side (every reservation confirmed or with a payment
/// status past pending) against the payments the fans were told succeeded (`answered`, one entry per
/// answer), and the service's payment intents against the reservations. Rows read and the broken rules.
async fn ledger(db: &sqlx::PgPool, events: &[Uuid], answered: &[Uuid]) -> (usize, Vec<String>) {
    let rows: Vec<(Uuid, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, payment_status, payment_method FROM reservations
          WHERE event_id = ANY($1) AND (status = 'confirmed' OR payment_status <> 'pending')",
    )
    .bind(events)
    .fetch_all(db)
    .await
    .unwrap();
    let rows: Vec<LedgerRow> = rows
        .into_iter()
        .map(|(id, status, payment_status, payment_method)| LedgerRow {
            id,
            status,
            payment_status,
            payment_method,
        })
        .collect();
    let mut broken = verdicts::ledger(&rows, answered);
    // the service's own ledger (migration 0010): every captured charge has its confirmed, paid
    // reservation and every confirmed reservation exactly one captured charge
    let intents: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT p.reservation_id, 'captured charge without its confirmed, paid reservation'
           FROM payment_intents p JOIN reservations r ON r.id = p.reservation_id
          WHERE r.event_id = ANY($1) AND p.state = 'captured'
            AND NOT (r.status = 'confirmed' AND r.payment_status = 'completed' AND r.total_amount = p.amount)
         UNION ALL
         SELECT r.id, 'confirmed reservation with ' || count(p.id) || ' captured charges'
           FROM reservations r LEFT JOIN payment_intents p ON p.reservation_id = r.id AND p.state = 'captured'
          WHERE r.event_id = ANY($1) AND r.status = 'confirmed'
          GROUP BY r.id HAVING count(p.id) <> 1",
    )
    .bind(events)
    .fetch_all(db)
    .await
    .unwrap();
    broken.extend(
        intents
            .into_iter()
            .map(|(id, problem)| format!("payment intents: {id}: {problem}")),
    );
    (rows.len(), broken)
}

/// The release's configured login/registration limit per client address (the chart's ConfigMap).
async fn login_limit(client: &Client, ns: &str) -> u32 {
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=tiketi"))
        .await
        .ok()
        .and_then(|l| {
            l.items.into_iter().find_map(|c| {
                c.data?
                    .get("LOGIN_RATE_LIMIT_PER_MINUTE")
                    .and_then(|v| v.parse().ok())
            })
        })
        .expect("the chart's ConfigMap sets LOGIN_RATE_LIMIT_PER_MINUTE")
}

/// The service PDB's maxUnavailable (the chart's default: 1).
async fn max_unavailable(client: &Client, ns: &str) -> i32 {
    use k8s_openapi::{
        api::policy::v1::PodDisruptionBudget, apimachinery::pkg::util::intstr::IntOrString,
    };
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .list(&component_selector("service"))
        .await
        .expect("the service PDB");
    match pdbs.items.into_iter().find_map(|p| p.spec?.max_unavailable) {
        Some(IntOrString::Int(n)) => n,
        other => panic!("the service PDB's maxUnavailable is not a number: {other:?}"),
    }
}

/// One row of the report: a figure, the rule it is held to, and what broke it (empty: held).
struct Row {
    figure: String,
    value: String,
    rule: String,
    broken: Vec<String>,
}

fn row(figure: &str, value: impl ToString, rule: &str, broken: Vec<String>) -> Row {
    Row {
        figure: figure.to_string(),
        value: value.to_string(),
        rule: rule.to_string(),
        broken,
    }
}

fn table(rows: &[Row]) -> String {
    let mut md = "| figure | value | rule | verdict |\n|---|---|---|---|\n".to_string();
    for r in rows {
        let verdict = if r.broken.is_empty() {
            "held".to_string()
        } else {
            format!("**BROKEN**: {}", r.broken.join("; "))
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.figure,
            r.value.replace('|', "/"),
            r.rule,
            verdict.replace('|', "/")
        ));
    }
    md
}

fn statuses_text(s: &Statuses) -> String {
    if s.is_empty() {
        return "none".into();
    }
    s.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3} s"))
}

async fn joined<T>(h: tokio::task::JoinHandle<Option<T>>) -> Option<T> {
    h.await.ok().flatten()
}

/// An attack that overran its deadline: the figures it would have given, and why they are missing.
fn overran<T: Default>(run: &Run, what: &str, figures: Option<T>) -> T {
    figures.unwrap_or_else(|| {
        run.broken(format!("{what}: the attack overran its deadline"));
        T::default()
    })
}

/// Script accounts firing holds without ever queueing.
const SCRIPTS: usize = 20;
/// Anonymous clients of the seat-map herd, and how long it runs (from 2 s before the opening).
const HERD_CLIENTS: usize = 100;
const HERD_SECS: u64 = 25;
/// Distinct event-list queries of the flood.
const FLOOD_QUERIES: u64 = 3000;
/// Tokenless Socket.IO handshakes.
const TOKENLESS: usize = 200;
/// Spoofed registrations per forwarding header, from one real address.
const SPOOFED: u64 = 100;
/// How long the Deployment may stay below the larger wish of the two sales (one operator pass plus the
/// sampler's second).
const WISH_LAG_SECS: f64 = 5.0;

// Two workers: the fans, the hostile crowd and the samplers measure latencies, which one thread shared
// with a herd (or blocked by a harness command) would inflate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run E2E_REAL_NODE=1 e2e/run.sh rehearsal"]
async fn rehearsal_full_dress_sale_opening() {
    if std::env::var("E2E_REHEARSAL").as_deref() != Ok("1") {
        eprintln!("rehearsal: skipped: E2E_REHEARSAL=1 (make rehearsal) runs it");
        return;
    }
    if !real_node("rehearsal_full_dress_sale_opening") {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let run = Arc::new(Run {
        t0: tokio::time::Instant::now(),
        tally: Tally::default(),
        nginx: env("E2E_NGINX_URL"),
        stop: AtomicBool::new(false),
        redis_faults: Mutex::default(),
        pod_kills: Mutex::default(),
        herd_on: AtomicBool::new(false),
        depths: Mutex::default(),
        admissions: Mutex::default(),
    });
    let n_users = users();
    let client = admin().await;
    let ns = release_ns();
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let redis = hostile::suite_redis().await;
    let prefix = env("REDIS_PREFIX");
    let keys = tiketi_core::keys::Keys::new(prefix.clone());
    let (deployments, name) = service_deployment(&client).await;
    let start_replicas = replicas(&deployments, &name).await;
    run.note(format!(
        "{n_users} users; service Deployment {name} at {start_replicas:?} (desired, ready)"
    ));

    // Two sales on one Deployment: artist A has history (3 past sales peaking at 3000), artist B none.
    let tag = Uuid::new_v4().simple().to_string();
    let artist_a = format!("Rehearsal A {}", &tag[..8]);
    let artist_b = format!("Rehearsal B {}", &tag[..8]);
    history(&artist_a, &[3000; 3]).await;
    let seats_per_sale = (n_users / 4).max(10) as i32;
    let opens_at = Utc::now() + chrono::Duration::seconds(75);
    let (event_a, seats_a) = sale(&db, &artist_a, seats_per_sale, opens_at).await;
    let (event_b, seats_b) = sale(&db, &artist_b, seats_per_sale, opens_at).await;
    let (seats_a, seats_b) = (Arc::new(seats_a), Arc::new(seats_b));
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let te_names = [
        format!("rehearsal-a-{}", &tag[..8]),
        format!("rehearsal-b-{}", &tag[..8]),
    ];
    for (te, event, artist) in [
        (&te_names[0], event_a, &artist_a),
        (&te_names[1], event_b, &artist_b),
    ] {
        create_te(
            &client,
            &ns,
            te,
            json!({
                "eventId": event,
                "artist": artist,
                "opensAt": fmt(opens_at),
                "closesAt": fmt(opens_at + chrono::Duration::minutes(15)),
                "target": { "kind": "Deployment", "name": name },
                "usersPerReplica": 1000,
                "minReplicas": 2,
                "maxReplicas": 4,
                "leadTime": "60s",
                "fallbackExpectedUsers": 1500,
                "queueScaling": { "pollSeconds": 1, "rules": [
                    { "above": 200, "change": 1, "cooldownSeconds": 20 },
                ] },
            }),
        )
        .await
        .unwrap();
    }
    run.note(format!(
        "two TicketEvents on {name}, opening at {}",
        fmt(opens_at)
    ));

    // The samplers: the two sales and the Deployment every second, the waiting rooms every 250 ms.
    let sales_seen = Arc::new(Mutex::new(Vec::<TwoSales>::new()));
    let sales_watch = tokio::spawn(watch_sales(
        run.clone(),
        Api::namespaced(client.clone(), &ns),
        te_names.clone(),
        deployments.clone(),
        name.clone(),
        sales_seen.clone(),
    ));
    let lottery_watch = tokio::spawn(watch_lottery(
        run.clone(),
        redis.clone(),
        vec![("A", keys.queue(event_a)), ("B", keys.queue(event_b))],
    ));

    // (a) the scripts' accounts: registered like anyone, they never join a waiting room.
    let scripts = Arc::new(hostile::enlist_scripts(&run.nginx, SCRIPTS).await);
    run.note(format!(
        "hostile: {} of {SCRIPTS} script accounts registered",
        scripts.len()
    ));

    // The registration storm through nginx, 20 users per client address, 100 at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(100));
    let mut regs = Vec::new();
    for n in 0..n_users {
        let (run, gate) = (run.clone(), gate.clone());
        regs.push(tokio::spawn(async move {
            let _p = gate.acquire().await.unwrap();
            let http = from(&source(n));
            let id = Uuid::new_v4().simple().to_string();
            let user = json!({
                "email": format!("rehearsal-{}@e2e.tiketi.test", &id[..16]),
                "password": "rehearsal-password",
                "name": "Rehearsal",
                "phone": "010-0000-0000",
            });
            // 503 SERVER_BUSY (every hashing slot taken) says when to come back: a person clicks again
            for _ in 0..30 {
                let (status, body) = run
                    .call(
                        http.post(format!("{}/api/auth/register", run.nginx))
                            .json(&user),
                        "register",
                    )
                    .await;
                match status {
                    201 => return body["token"].as_str().map(str::to_string),
                    503 => tokio::time::sleep(Duration::from_secs(1)).await,
                    _ => return None,
                }
            }
            None
        }));
    }
    let mut tokens = Vec::new();
    for r in regs {
        if let Some(t) = r.await.unwrap() {
            tokens.push(t);
        }
    }
    run.note(format!(
        "registration storm: {} of {n_users} users registered",
        tokens.len()
    ));
    // Live seat-map sockets for every user (half on each sale).
    let sockets: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let event = if n % 2 == 0 { event_a } else { event_b };
            tokio::spawn(live_socket(run.clone(), n, t.clone(), event))
        })
        .collect();
    run.note(format!("{} live sockets opening", sockets.len()));
    let opening =
        tokio::time::Instant::now() + (opens_at - Utc::now()).to_std().unwrap_or_default();
    let secs = Duration::from_secs;

    // (d) the event-list flood, before the fans arrive (the herd would drown it in 503s)
    let flood = {
        let (nginx, redis, prefix) = (run.nginx.clone(), redis.clone(), prefix.clone());
        let cap = opening
            .checked_sub(secs(6))
            .map_or(secs(8), |by| {
                by.saturating_duration_since(tokio::time::Instant::now())
            })
            .max(secs(8));
        tokio::spawn(async move {
            hostile::bounded(
                cap + secs(20),
                hostile::list_flood(&nginx, &redis, &prefix, FLOOD_QUERIES, cap),
            )
            .await
        })
    };

    // (b) one address each, a different spoofed address per request: the per-address limit must hold.
    let limit = login_limit(&client, &ns).await;
    let mut spoofs = Vec::new();
    for (spoof, source) in [
        (hostile::Spoof::Forwarded, "127.2.2.1"),
        (hostile::Spoof::XForwardedFor, "127.2.2.2"),
        (hostile::Spoof::Control, "127.2.2.3"),
    ] {
        let figures = hostile::bounded(
            Duration::from_secs(60),
            hostile::spoofed_registrations(&run.nginx, source, spoof, SPOOFED, limit),
        )
        .await;
        let figures = overran(&run, &format!("spoofed {}", spoof.header()), figures);
        run.note(format!(
            "hostile: {SPOOFED} registrations from {source} with a spoofed {}: {}",
            spoof.header(),
            statuses_text(&figures.statuses)
        ));
        spoofs.push(figures);
    }

    // The opening. Fans reach the waiting room in the last seconds before it (everyone in the lottery);
    // the hostile crowd comes with them.
    tokio::time::sleep_until(opening - secs(4)).await;
    // pre-scaling is judged before the crowd arrives: at the opening itself the queue rule may already
    // have asked for one more replica (the fans queue 4 s early), which is not yet Ready
    let prescaled = replicas(&deployments, &name).await;
    run.note(format!(
        "pre-scaled before the crowd: replicas {prescaled:?} (desired, ready); every fan joins the waiting room (4 s before the opening)"
    ));
    run.tally.checks_pending.store(tokens.len() as u64, Relaxed);
    let buyers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let (event, seats) = if n % 2 == 0 {
                (event_a, seats_a.clone())
            } else {
                (event_b, seats_b.clone())
            };
            tokio::spawn(buyer(run.clone(), n, t.clone(), event, seats))
        })
        .collect();
    let sales_and_seats = Arc::new(vec![(event_a, seats_a.clone()), (event_b, seats_b.clone())]);
    // (a) scripts fire holds from 3 s before the opening to 6 s after, never queueing
    let scripts_opening = {
        let (nginx, scripts, sales) = (run.nginx.clone(), scripts.clone(), sales_and_seats.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(opening - secs(3)).await;
            hostile::bounded(
                secs(40),
                hostile::script_holds(
                    &nginx,
                    &scripts,
                    &sales,
                    opening + secs(6),
                    Duration::from_millis(300),
                ),
            )
            .await
        })
    };
    // (c) the anonymous seat-map herd, from 2 s before the opening
    let herd = {
        let run = run.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(opening - secs(2)).await;
            run.herd_on.store(true, Relaxed);
            let herd = hostile::bounded(
                secs(HERD_SECS + 30),
                hostile::seat_map_herd(&run.nginx, event_a, HERD_CLIENTS, secs(HERD_SECS), run.t0),
            )
            .await;
            run.herd_on.store(false, Relaxed);
            herd
        })
    };
    // (e) the tokenless handshakes, at the opening
    let tokenless = {
        let nginx = run.nginx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(opening).await;
            hostile::bounded(
                secs(hostile::TOKENLESS_BOUND_SECS + 30),
                hostile::tokenless_sockets(&nginx, TOKENLESS, secs(hostile::TOKENLESS_BOUND_SECS)),
            )
            .await
        })
    };
    tokio::time::sleep_until(opening).await;
    let at_opening = replicas(&deployments, &name).await;
    run.note(format!(
        "the sale opens: replicas {at_opening:?} (desired, ready); hostile crowd: scripts, herd, tokenless sockets"
    ));

    // Faults during the sale: a pod killed, the pods' Redis link cut and restored, a rolling restart.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let victim = pods(&client, &ns, "service")
        .await
        .into_iter()
        .find(is_ready)
        .expect("a ready service pod");
    run.pod_kill_starts();
    pods_api
        .delete(
            &victim.name_any(),
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    run.note(format!("fault: pod {} killed (grace 0)", victim.name_any()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    run.redis_fault_starts();
    control_plane(&["forward-stop", "redis"]);
    run.note("fault: Redis cut from the pods; (f) scripts fire holds through the stall");
    // (f) the scripts again while the pods cannot reach Redis (the lottery still running)
    let stall_end = tokio::time::Instant::now() + secs(5);
    let scripts_stall = hostile::bounded(
        secs(30),
        hostile::script_holds(
            &run.nginx,
            &scripts,
            &sales_and_seats,
            stall_end,
            Duration::from_millis(250),
        ),
    );
    let scripts_stall = scripts_stall.await;
    tokio::time::sleep_until(stall_end).await;
    control_plane(&["forward-start", "redis"]);
    run.redis_fault_ends();
    run.note("fault: Redis back");
    tokio::time::sleep(Duration::from_secs(10)).await;
    // a real restart of the suite's Redis (SHUTDOWN flushes its append-only file, then it loads it again)
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis.sh");
    run.redis_fault_starts();
    let restarted = std::process::Command::new(script)
        .arg("restart")
        .output()
        .expect("run e2e/scripts/redis.sh");
    run.redis_fault_ends();
    assert!(
        restarted.status.success(),
        "redis.sh restart: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    run.note("fault: Redis restarted (SHUTDOWN, then started on its append-only file)");
    tokio::time::sleep(Duration::from_secs(15)).await;
    // A real `helm upgrade` of the release mid-sale, as a platform team ships a change: the chart's
    // pre-upgrade migration Job, then a new pod template rolled out one pod at a time.
    let before_upgrade = replicas(&deployments, &name).await;
    let upgrade_start = run.t0.elapsed().as_secs_f64();
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tiketi");
    let upgrade = tokio::process::Command::new("helm")
        .args(["upgrade", "tiketi", chart, "-n", &ns, "--reuse-values"])
        .args([
            "--wait",
            "--wait-for-jobs",
            "--timeout",
            "5m",
            "--set-string",
        ])
        .arg(format!(
            "service.podAnnotations.tiketi\\.dev/rehearsal-upgrade={}",
            Uuid::new_v4()
        ))
        .output();
    let upgrade = tokio::spawn(upgrade);
    run.note(format!(
        "fault: helm upgrade of the release (migration Job, rolling update) at {before_upgrade:?} (desired, ready)"
    ));

    // The sale runs until every buyer is through, at most 5 minutes after the opening.
    let deadline = opening + Duration::from_secs(300);
    let mut unfinished = 0;
    for b in buyers {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, b).await.is_err() {
            unfinished += 1;
        }
    }
    run.note(format!(
        "buyers done ({unfinished} still waiting at the deadline)"
    ));
    // The rollout must complete: every pod of the new template Ready.
    let rolled_by = tokio::time::Instant::now() + Duration::from_secs(180);
    let rolled = loop {
        let done = deployments.get(&name).await.ok().and_then(|d| {
            let s = d.status?;
            let want = d.spec?.replicas?;
            Some(s.updated_replicas? == want && s.ready_replicas? == want)
        });
        if done == Some(true) {
            break true;
        }
        if tokio::time::Instant::now() > rolled_by {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let upgrade_end = run.t0.elapsed().as_secs_f64();
    let mut upgrade_broken = Vec::new();
    if !rolled {
        upgrade_broken.push("the rolled Deployment not Ready within 3 min".to_string());
    }
    match hostile::bounded(Duration::from_secs(120), upgrade).await {
        Some(Ok(Ok(out))) if out.status.success() => run.note("helm upgrade done"),
        Some(Ok(Ok(out))) => upgrade_broken.push(format!(
            "helm upgrade failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Some(Ok(Err(e))) => upgrade_broken.push(format!("helm upgrade did not run: {e}")),
        Some(Err(e)) => upgrade_broken.push(format!("helm upgrade task: {e}")),
        None => upgrade_broken.push("helm upgrade still running 2 min after the rollout".into()),
    }
    run.note("rollout complete");

    // The hostile crowd's figures (each attack long over, or overran its deadline).
    let mut scripts_figures = hostile::ScriptFigures {
        accounts: scripts.len(),
        opening: overran(
            &run,
            "scripts across the opening",
            joined(scripts_opening).await,
        ),
        stall: overran(&run, "scripts during the Redis stall", scripts_stall),
        reservations: 0,
    };
    let mut herd = overran(&run, "seat-map herd", joined(herd).await);
    let flood = overran(&run, "event-list flood", joined(flood).await);
    let tokenless = overran(&run, "tokenless sockets", joined(tokenless).await);

    run.stop.store(true, Relaxed);
    // every socket stops within a reconnect attempt (at most 25 s); one deadline for all of them
    let _ = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(sockets)).await;
    let _ = sales_watch.await;
    let (lottery_samples, lottery_broken) = lottery_watch.await.unwrap_or_default();

    // Against PostgreSQL and the cluster.
    let events = [event_a, event_b];
    let script_ids: Vec<Uuid> = scripts.iter().map(|s| s.id).collect();
    let (script_reservations,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM reservations WHERE user_id = ANY($1)")
            .bind(&script_ids)
            .fetch_one(&db)
            .await
            .unwrap();
    scripts_figures.reservations = script_reservations;
    let (sold_twice,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT ri.seat_id FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
          WHERE r.event_id = ANY($1) AND r.status IN ('pending', 'confirmed') AND ri.seat_id IS NOT NULL
          GROUP BY ri.seat_id HAVING count(*) > 1) x",
    )
    .bind(&events[..])
    .fetch_one(&db)
    .await
    .unwrap();
    let (unpaid_reserved,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM seats s WHERE s.event_id = ANY($1) AND s.status = 'reserved' AND NOT EXISTS (
           SELECT 1 FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
            WHERE ri.seat_id = s.id AND r.status = 'confirmed' AND r.payment_status = 'completed')",
    )
    .bind(&events[..])
    .fetch_one(&db)
    .await
    .unwrap();
    let (confirmed,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM reservations WHERE event_id = ANY($1) AND status = 'confirmed' AND payment_status = 'completed'",
    )
    .bind(&events[..])
    .fetch_one(&db)
    .await
    .unwrap();
    let paid_ids = run.tally.paid_ids.lock().unwrap().clone();
    let (ledger_rows, ledger_broken) = ledger(&db, &events, &paid_ids).await;
    let mut oom = Vec::new();
    for p in pods(&client, &ns, "service").await {
        for c in p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
        {
            let last = c.last_state.and_then(|s| s.terminated);
            if last.as_ref().and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
                oom.push(format!(
                    "pod {} OOM-killed",
                    p.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    for te in &te_names {
        let status = Api::<TicketEvent>::namespaced(client.clone(), &ns)
            .get(te)
            .await
            .ok()
            .and_then(|t| serde_json::to_value(t.status).ok())
            .unwrap_or(Value::Null);
        run.note(format!(
            "{te}: phase {} forecast {} last decision {}",
            status["phase"], status["forecast"], status["lastDecision"]
        ));
        delete_te(&client, &ns, te).await;
    }
    let pdb_max_unavailable = max_unavailable(&client, &ns).await;

    // The verdicts, each next to its figures in the report.
    let t = &run.tally;
    let sales_seen = sales_seen.lock().unwrap().clone();
    let peak = sales_seen
        .iter()
        .fold((0, 0), |p, s| (p.0.max(s.replicas), p.1.max(s.ready)));
    let latencies = t.hold_latencies.lock().unwrap().clone();
    let all_holds: Vec<f64> = latencies.iter().map(|(_, l)| *l).collect();
    let herd_holds: Vec<f64> = latencies
        .iter()
        .filter(|(at, _)| *at >= herd.window.0 && *at <= herd.window.1)
        .map(|(_, l)| *l)
        .collect();
    herd.holds = herd_holds.len();
    herd.hold_p99 = verdicts::p99(&herd_holds);
    let mut pay_retries = hostile::PayRetryFigures::default();
    for (at, r) in t.pay_retries.lock().unwrap().iter() {
        pay_retries.add(r, *at >= herd.window.0 && *at <= herd.window.1);
    }
    let crowd = verdicts::Crowd {
        sent: n_users as u64,
        registered: tokens.len() as u64,
        checked_in: t.checked_in.load(Relaxed),
        admitted: t.admitted.load(Relaxed),
        reached_hold: t.reached_hold.load(Relaxed),
        holds: t.holds.load(Relaxed),
        hold_conflicts: t.hold_conflicts.load(Relaxed),
        paid: t.paid.load(Relaxed),
        confirmed: confirmed as u64,
    };
    let crowd_broken = verdicts::crowd(&crowd);
    let crowd_rule = |rule: verdicts::CrowdRule| -> Vec<String> {
        crowd_broken
            .iter()
            .filter(|(r, _)| *r == rule)
            .map(|(_, b)| b.clone())
            .collect()
    };
    let when = |cond: bool, what: String| if cond { vec![what] } else { vec![] };
    let requests = t.requests.load(Relaxed);
    let too_many = t.too_many.load(Relaxed);
    let unanswered = t.unanswered.load(Relaxed);
    let second = t.second_payment_accepted.load(Relaxed);
    let not_restored = t.not_restored.load(Relaxed);
    let moved_back = t.moved_back.load(Relaxed);
    let queued = t.queued.load(Relaxed);
    let statuses = t.statuses.lock().unwrap().clone();
    let max_wish = sales_seen
        .iter()
        .filter_map(|s| s.wishes.iter().flatten().max().copied())
        .max();
    let min_ready_upgrade = sales_seen
        .iter()
        .filter(|s| s.at >= upgrade_start && s.at <= upgrade_end)
        .map(|s| s.ready)
        .min();
    upgrade_broken.extend(verdicts::rollout(
        &sales_seen,
        upgrade_start,
        upgrade_end,
        before_upgrade.0,
        pdb_max_unavailable,
    ));
    let sale_rows = vec![
        row(
            "registered",
            format!("{} of {n_users}", crowd.registered),
            "= users sent (503 SERVER_BUSY retried)",
            crowd_rule(verdicts::CrowdRule::Registered),
        ),
        row(
            "in the waiting room (queued in the lottery)",
            format!("{} ({queued})", crowd.checked_in),
            "= registered",
            crowd_rule(verdicts::CrowdRule::CheckedIn),
        ),
        row(
            "admitted",
            crowd.admitted,
            "= in the waiting room",
            crowd_rule(verdicts::CrowdRule::Admitted),
        ),
        row(
            "queue positions moved back",
            moved_back,
            "0 (compared once every check is in)",
            when(moved_back > 0, format!("{moved_back} positions moved back")),
        ),
        row(
            "admission order (queue samples every 250 ms)",
            format!("{lottery_samples} samples"),
            "nobody admitted while a better lottery place waited (order within one sample interval not observable)",
            lottery_broken,
        ),
        row(
            "holds / conflicts / fans who sent a hold",
            format!(
                "{} / {} / {}",
                crowd.holds, crowd.hold_conflicts, crowd.reached_hold
            ),
            "holds + conflicts = fans who sent a hold",
            crowd_rule(verdicts::CrowdRule::Holds),
        ),
        row(
            "hold p99 over the sale",
            format!(
                "{} over {} holds",
                fmt_secs(verdicts::p99(&all_holds)),
                all_holds.len()
            ),
            &format!("≤ {} s", verdicts::HOLD_P99_BOUND_SECS),
            verdicts::hold_p99("over the sale", &all_holds),
        ),
        row(
            "paid (PostgreSQL: confirmed)",
            format!("{} ({confirmed})", crowd.paid),
            "paid = confirmed",
            crowd_rule(verdicts::CrowdRule::Paid),
        ),
        row(
            "payment ledger (reservations with a payment, cancelled)",
            format!(
                "{ledger_rows} rows, {} answered paid, {} cancelled",
                paid_ids.len(),
                t.cancelled.load(Relaxed)
            ),
            "each confirmed reservation completed and answered paid exactly once, and no other",
            ledger_broken,
        ),
        row(
            "second payments accepted",
            second,
            "0",
            when(
                second > 0,
                format!("{second} second payments of one reservation accepted"),
            ),
        ),
        row(
            "seats held/sold twice (PostgreSQL)",
            sold_twice,
            "0",
            when(
                sold_twice > 0,
                format!("{sold_twice} seats held or sold twice"),
            ),
        ),
        row(
            "seats reserved without a paid reservation (PostgreSQL)",
            unpaid_reserved,
            "0",
            when(
                unpaid_reserved > 0,
                format!("{unpaid_reserved} seats reserved without a paid reservation"),
            ),
        ),
        row(
            "requests through nginx / 429 answers",
            format!("{requests} / {too_many}"),
            "429 ≤ 1 %",
            when(
                too_many * 100 > requests,
                format!("mass 429: {too_many} of {requests} requests"),
            ),
        ),
        row(
            "unanswered requests (sent again after a closed kept-alive connection)",
            format!("{unanswered} ({})", t.resent.load(Relaxed)),
            "0 (90 s; the proxy answers 504 after 60 s)",
            when(
                unanswered > 0,
                format!("{unanswered} requests without an answer"),
            ),
        ),
        row(
            "5xx answers",
            statuses
                .iter()
                .filter(|(k, _)| k.rsplit(' ').next().is_some_and(|s| s.starts_with('5')))
                .map(|(_, v)| v)
                .sum::<u64>(),
            "0 but register 503 (retried), 503 during a Redis fault, 502/504 in flight on the killed pod",
            verdicts::no_server_errors(&statuses),
        ),
        row(
            "buyers still waiting 5 min after the opening",
            unfinished,
            "0",
            when(
                unfinished > 0,
                format!("{unfinished} buyers still in the waiting room 5 min after the opening"),
            ),
        ),
        row(
            "socket reconnects / restored / not restored",
            format!(
                "{} / {} / {not_restored}",
                t.reconnects.load(Relaxed),
                t.restored.load(Relaxed)
            ),
            "every reconnect restored",
            when(
                not_restored > 0,
                format!("{not_restored} sockets without a session-restored after reconnecting"),
            ),
        ),
        row(
            "replicas at start / at the opening (desired, ready)",
            format!("{start_replicas:?} / {prescaled:?}"),
            "pre-scaled to ≥ 3 (A's history), all Ready at the opening",
            when(
                prescaled.0 < 3 || prescaled.1 < prescaled.0,
                format!("not pre-scaled before the opening: {prescaled:?} from {start_replicas:?}"),
            ),
        ),
        row(
            "peak replicas (desired, ready)",
            format!("{peak:?}"),
            "above the pre-scaled count when > 400 queued (queue rule +1 above 200)",
            when(
                queued > 400 && peak.0 <= prescaled.0,
                format!(
                    "{queued} users queued yet the replicas never went above the pre-scaled {}",
                    prescaled.0
                ),
            ),
        ),
        row(
            "two sales: largest wish / phases reached",
            format!(
                "{max_wish:?} / A {:?}, B {:?}",
                sales_seen
                    .iter()
                    .filter_map(|s| s.phases[0].clone())
                    .collect::<std::collections::BTreeSet<_>>(),
                sales_seen
                    .iter()
                    .filter_map(|s| s.phases[1].clone())
                    .collect::<std::collections::BTreeSet<_>>()
            ),
            &format!("both OnSale; replicas ≥ the larger wish (lag ≤ {WISH_LAG_SECS} s)"),
            verdicts::two_sales(&sales_seen, WISH_LAG_SECS),
        ),
        row(
            "helm upgrade: replicas before (desired, ready) / lowest Ready during",
            format!("{before_upgrade:?} / {min_ready_upgrade:?}"),
            &format!(
                "Ready ≥ before − {pdb_max_unavailable} (PDB maxUnavailable); all Ready after"
            ),
            upgrade_broken,
        ),
        row("OOM-killed pods", oom.len(), "0", oom),
    ];

    let (scripts_opening_broken, scripts_stall_broken): (Vec<String>, Vec<String>) =
        hostile::scripts_verdict(&scripts_figures)
            .into_iter()
            .partition(|b| b.contains("across the opening") || b.contains("no script account"));
    let (herd_holds_broken, herd_broken): (Vec<String>, Vec<String>) =
        hostile::herd_verdict(&herd, &herd_holds)
            .into_iter()
            .partition(|b| b.starts_with("hold p99"));
    let (flood_redis_broken, flood_broken): (Vec<String>, Vec<String>) =
        hostile::flood_verdict(&flood)
            .into_iter()
            .partition(|b| b.contains("Redis"));
    let hostile_rows = vec![
        row(
            "(a) scripts: accounts / holds across the opening (−3 s to +6 s)",
            format!("{} / {}", scripts_figures.accounts, statuses_text(&scripts_figures.opening)),
            "no hold answered 201, no server error",
            scripts_opening_broken,
        ),
        row(
            "(f) scripts: holds during the Redis stall / reservations in PostgreSQL",
            format!("{} / {}", statuses_text(&scripts_figures.stall), scripts_figures.reservations),
            "no hold answered 201, no server error; no reservation of a script at all in PostgreSQL (they never queued)",
            scripts_stall_broken,
        ),
    ]
    .into_iter()
    .chain(spoofs.iter().map(|f| {
        row(
            &format!("(b) registrations with a spoofed {} from {}", f.spoof.header(), f.source),
            format!("{} sent: {}", f.sent, statuses_text(&f.statuses)),
            &format!("≤ 2 × {}/min through (per-address limit, two windows), the rest 429", f.limit),
            hostile::spoof_verdict(f),
        )
    }))
    .chain([
        row(
            "(c) seat-map herd (sale A): clients, run seconds, answers, p99",
            format!(
                "{} clients, +{:.0}..+{:.0} s, {}, p99 {}",
                herd.clients, herd.window.0, herd.window.1, statuses_text(&herd.statuses), fmt_secs(herd.p99)
            ),
            "no server error or missing answer (503 and 429 are fair)",
            herd_broken,
        ),
        row(
            "(c) fans' hold p99 during the herd",
            format!("{} over {} holds", fmt_secs(herd.hold_p99), herd.holds),
            &format!("≤ {} s", verdicts::HOLD_P99_BOUND_SECS),
            herd_holds_broken,
        ),
        row(
            "(d) event-list flood: queries, seconds, answers",
            format!("{} in {:.1} s: {}", flood.sent, flood.secs, statuses_text(&flood.statuses)),
            "no server error",
            flood_broken,
        ),
        row(
            "(d) Redis before → after the flood: list-cache keys, DBSIZE, used_memory",
            match (flood.before, flood.after) {
                (Some(b), Some(a)) => format!(
                    "{} → {}, {} → {}, {} KiB → {} KiB",
                    b.list_keys, a.list_keys, b.dbsize, a.dbsize, b.used_memory >> 10, a.used_memory >> 10
                ),
                _ => "not read".into(),
            },
            &format!(
                "≤ {} new list-cache keys, ≤ {} MiB more memory",
                hostile::LIST_KEYS_BOUND,
                hostile::FLOOD_MEMORY_BOUND >> 20
            ),
            flood_redis_broken,
        ),
        row(
            "(e) tokenless Socket.IO handshakes: sent / opened / still open",
            format!(
                "{} / {} / {} after {} s{}",
                tokenless.sent,
                tokenless.opened,
                tokenless.still_open,
                tokenless.after_secs,
                if tokenless.refused.is_empty() { String::new() } else { format!(" (refused: {})", statuses_text(&tokenless.refused)) }
            ),
            &format!("all closed within {} s", hostile::TOKENLESS_BOUND_SECS),
            hostile::tokenless_verdict(&tokenless),
        ),
        row(
            "(g) impatient payers (1.5 s, up to 5 attempts): payers / during the herd / attempts / abandoned / paid / settled by ALREADY_PAID / refused",
            format!(
                "{} / {} / {} / {} / {} / {} / {}",
                pay_retries.payers,
                pay_retries.during_herd,
                pay_retries.attempts,
                pay_retries.abandoned,
                pay_retries.paid,
                pay_retries.settled,
                statuses_text(&pay_retries.refused)
            ),
            "every one paid exactly once (the ledger above)",
            hostile::pay_retry_verdict(&pay_retries),
        ),
    ])
    .collect::<Vec<_>>();
    for r in sale_rows.iter().chain(&hostile_rows) {
        for b in &r.broken {
            run.broken(b.clone());
        }
    }

    // The report.
    let mut md = format!(
        "# Rehearsal report\n\n{} UTC, {n_users} users, {:.0} s, service image {} ({} build)\n\n## The sale\n\n{}",
        Utc::now().format("%Y-%m-%d %H:%M"),
        run.t0.elapsed().as_secs_f64(),
        std::env::var("TIKETI_SERVICE_IMAGE").unwrap_or_default(),
        std::env::var("TIKETI_IMAGES_PROFILE").unwrap_or_else(|_| "release".into()),
        table(&sale_rows)
    );
    md.push_str(&format!(
        "\n## The hostile crowd\n\nThrough the same nginx, from client addresses of its own (127.2.x.y).\n\n{}",
        table(&hostile_rows)
    ));
    md.push_str("\n## Answers to the fans\n\n| request status | count | rule |\n|---|---|---|\n");
    for (k, v) in &statuses {
        let rule = if verdicts::no_server_errors(&[(k.clone(), *v)].into()).is_empty() {
            ""
        } else {
            "**BROKEN**: no 5xx"
        };
        md.push_str(&format!("| {k} | {v} | {rule} |\n"));
    }
    md.push_str("\n## First failing answer of each kind\n\n| request status | sent at | answer |\n|---|---|---|\n");
    for (k, (at, answer)) in t.examples.lock().unwrap().iter() {
        let answer: String = answer.chars().take(200).collect();
        md.push_str(&format!(
            "| {k} | +{at:.1} s | {} |\n",
            answer.replace('|', "/")
        ));
    }
    md.push_str("\n## Timeline\n\n");
    let picture = timeline(&run, &sales_seen);
    match picture.svg() {
        Ok(svg) => {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/rehearsal-timeline.svg"
            );
            std::fs::write(path, svg).unwrap();
            md.push_str("![the waiting rooms, admissions and replicas over the run, faults shaded](rehearsal-timeline.svg)\n\n");
        }
        Err(e) => eprintln!("rehearsal: the timeline picture could not be drawn: {e}"),
    }
    for (at, what) in t.timeline.lock().unwrap().iter() {
        md.push_str(&format!("- +{at:.1} s {what}\n"));
    }
    let broken = t.broken.lock().unwrap().clone();
    md.push_str(&format!(
        "\n## Invariants\n\n{}\n",
        if broken.is_empty() {
            "all held".to_string()
        } else {
            broken.iter().map(|b| format!("- BROKEN: {b}\n")).collect()
        }
    ));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/rehearsal-report.md");
    std::fs::write(path, &md).unwrap();
    eprintln!("{md}");
    if !broken.is_empty() {
        eprintln!(
            "## What the service pods logged (errors; warnings on holds and the database)\n\n{}",
            service_problems(&ns)
        );
        eprintln!(
            "## What nginx logged (errors and worse; a 500 of its own says why here)\n\n{}",
            nginx_problems()
        );
    }
    assert!(broken.is_empty(), "broken invariants: {broken:?}");
}

/// The last 40 lines of nginx's error log above a warning, beside the upstream list it includes.
fn nginx_problems() -> String {
    let Some(dir) = std::env::var_os("E2E_NGINX_UPSTREAM")
        .map(std::path::PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    else {
        return "(E2E_NGINX_UPSTREAM is not set)".into();
    };
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_else(|e| e.to_string());
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["[error]", "[crit]", "[alert]", "[emerg]"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    kept[kept.len().saturating_sub(40)..].join("\n")
}
