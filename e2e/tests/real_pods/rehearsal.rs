//! `make rehearsal`: a full-dress sale opening on the real node (issue 12 item 5). Two sales on the chart's one
//! service Deployment (one artist with sales history, one without), pre-scaled by the operator; simulated users
//! through nginx (register storm from many client addresses, live sockets, the waiting room at a fair opening,
//! seat holds, payments, double payments, cancels); during the sale one pod is killed, the pods' Redis link is cut
//! and restored, and the Deployment is rolled. Invariants are checked against PostgreSQL and the cluster as well
//! as the answers; target/rehearsal-report.md gets the figures and a timeline. Runs only with E2E_REHEARSAL=1
//! (`E2E_REAL_NODE=1 e2e/run.sh rehearsal`); REHEARSAL_USERS sets the number of users (default 1000).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use crate::support::*;

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
    queued: AtomicU64,
    admitted: AtomicU64,
    moved_back: AtomicU64,
    holds: AtomicU64,
    hold_conflicts: AtomicU64,
    paid: AtomicU64,
    second_payment_accepted: AtomicU64,
    cancelled: AtomicU64,
}

struct Run {
    t0: tokio::time::Instant,
    tally: Tally,
    nginx: String,
    stop: AtomicBool,
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
        *self
            .tally
            .statuses
            .lock()
            .unwrap()
            .entry(format!("{what} {status}"))
            .or_default() += 1;
        (status, body)
    }
}

fn users() -> usize {
    std::env::var("REHEARSAL_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A sale on now in PostgreSQL with `seats` seats; returns its id and seat ids.
async fn sale(db: &sqlx::PgPool, artist: &str, seats: i32) -> (Uuid, Vec<Uuid>) {
    let (event,): (Uuid,) = sqlx::query_as(
        "INSERT INTO events (title, venue, event_date, sale_start_date, sale_end_date, status,
                             seat_layout_id, artist_name, queue_threshold)
         VALUES ($1, 'Rehearsal Arena', now() + interval '30 days', now() - interval '1 hour',
                 now() + interval '29 days', 'on_sale',
                 (SELECT id FROM seat_layouts ORDER BY total_seats DESC LIMIT 1), $1, 100)
         RETURNING id",
    )
    .bind(artist)
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
    let join = format!("42{}", json!(["join-event", { "eventId": event }]));
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
    if ws.send(Message::text(join.clone())).await.is_err() {
        return;
    }
    while !run.stop.load(Relaxed) {
        let ended = match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Err(_) => false,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.is_err()
            }
            Ok(Some(Ok(Message::Text(t)))) => t.as_str() == "1" || t.starts_with("41"),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => true,
            Ok(Some(Ok(_))) => false,
        };
        if !ended {
            continue;
        }
        run.tally.reconnects.fetch_add(1, Relaxed);
        // socket.io-client's back-off, then the session must come back from Redis on whichever pod answers.
        let mut restored = false;
        for attempt in 0..10u64 {
            tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
            let Ok(Ok(mut again)) =
                tokio::time::timeout(Duration::from_secs(10), connect(&run.nginx, &from, &token))
                    .await
            else {
                continue;
            };
            let got = tokio::time::timeout(
                Duration::from_secs(10),
                wait_event(&mut again, "session-restored"),
            )
            .await;
            if let Ok(payload) = got {
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
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("http", "ws", 1)
    );
    let proxy: std::net::SocketAddr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("proxy address {base}: {e}"))?;
    let tcp = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    tcp.bind(std::net::SocketAddr::new(
        source.parse().map_err(|e| format!("{source}: {e}"))?,
        0,
    ))
    .map_err(|e| format!("bind {source}: {e}"))?;
    let tcp = tcp
        .connect(proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
    let open = next_text(&mut ws).await.ok_or("no Engine.IO open")?;
    if !open.starts_with('0') {
        return Err(format!("Engine.IO open: {open}"));
    }
    ws.send(Message::text(format!("40{}", json!({ "token": token }))))
        .await
        .map_err(|e| format!("CONNECT: {e}"))?;
    loop {
        let m = next_text(&mut ws).await.ok_or("no CONNECT answer")?;
        if m.starts_with("40") {
            return Ok(ws);
        }
        if m.starts_with("44") {
            return Err(format!("CONNECT refused: {m}"));
        }
    }
}

/// The client address of user `n`: 20 users per address, as behind a few hundred home routers.
fn source(n: usize) -> String {
    format!("127.1.{}.{}", n / 20 / 250, (n / 20) % 250 + 1)
}

/// One buyer: waits for the opening, joins the waiting room, follows its position until admitted, holds a seat
/// and pays (sometimes twice), or cancels.
async fn buyer(run: Arc<Run>, n: usize, token: String, event: Uuid, seats: Arc<Vec<Uuid>>) {
    let http = from(&source(n));
    let (status, body) = run
        .call(
            http.post(format!("{}/api/queue/check/{event}", run.nginx))
                .bearer_auth(&token),
            "queue-check",
        )
        .await;
    if status != 200 {
        return;
    }
    if body["queued"] == json!(true) {
        run.tally.queued.fetch_add(1, Relaxed);
        let mut last = body["position"].as_i64().unwrap_or(i64::MAX);
        loop {
            if run.stop.load(Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
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
            if position > last {
                run.tally.moved_back.fetch_add(1, Relaxed);
                run.broken(format!(
                    "user {n}: queue position moved back {last} -> {position}"
                ));
            }
            last = position;
        }
    }
    run.tally.admitted.fetch_add(1, Relaxed);
    // a person looks at the seat map before choosing
    tokio::time::sleep(Duration::from_secs(3 + (n % 8) as u64)).await;
    purchase(&run, &http, n, &token, event, &seats).await;
    // Done: the buyer leaves the sale's page, which gives its admission to the next in line (the
    // frontend's 대기열 나가기; left alone an admission lasts 5 minutes).
    run.call(
        http.post(format!("{}/api/queue/leave/{event}", run.nginx))
            .bearer_auth(&token),
        "queue-leave",
    )
    .await;
}

/// An admitted buyer: holds a seat (two buyers per seat: exactly one may hold it), then pays (sometimes
/// twice) or cancels.
async fn purchase(
    run: &Run,
    http: &reqwest::Client,
    n: usize,
    token: &str,
    event: Uuid,
    seats: &[Uuid],
) {
    let seat = seats[(n / 2) % seats.len()];
    let (status, body) = run
        .call(
            http.post(format!("{}/api/seats/reserve", run.nginx))
                .bearer_auth(token)
                .json(&json!({ "eventId": event, "seatIds": [seat] })),
            "hold",
        )
        .await;
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
            }
        }
    }
}

async fn replicas(api: &Api<Deployment>, name: &str) -> (i32, i32) {
    let d = api.get(name).await.unwrap();
    (
        d.spec.and_then(|s| s.replicas).unwrap_or(0),
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

#[tokio::test]
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
    });
    let n_users = users();
    let client = admin().await;
    let ns = release_ns();
    let db = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let (deployments, name) = service_deployment(&client).await;
    let start_replicas = replicas(&deployments, &name).await;
    run.note(format!(
        "{n_users} users; service Deployment {name} at {start_replicas:?} (desired, ready)"
    ));

    // Two sales on one Deployment: artist A has history (3 past sales peaking at 3000), artist B none.
    let tag = Uuid::new_v4().simple().to_string();
    let artist_a = format!("Rehearsal A {}", &tag[..8]);
    let artist_b = format!("Rehearsal B {}", &tag[..8]);
    history(&artist_a, 3000).await;
    let seats_per_sale = (n_users / 4).max(10) as i32;
    let (event_a, seats_a) = sale(&db, &artist_a, seats_per_sale).await;
    let (event_b, seats_b) = sale(&db, &artist_b, seats_per_sale).await;
    let (seats_a, seats_b) = (Arc::new(seats_a), Arc::new(seats_b));
    let opens_at = Utc::now() + chrono::Duration::seconds(75);
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (te, event, artist) in [
        (format!("rehearsal-a-{}", &tag[..8]), event_a, &artist_a),
        (format!("rehearsal-b-{}", &tag[..8]), event_b, &artist_b),
    ] {
        create_te(
            &client,
            &ns,
            &te,
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
        .await;
    }
    run.note(format!(
        "two TicketEvents on {name}, opening at {}",
        fmt(opens_at)
    ));

    // The replica sampler: what the operator asked for and what was Ready, every second.
    let peak = Arc::new(Mutex::new((0i32, 0i32)));
    let sampler = {
        let (run, deployments, name, peak) =
            (run.clone(), deployments.clone(), name.clone(), peak.clone());
        tokio::spawn(async move {
            let mut last = (-1, -1);
            while !run.stop.load(Relaxed) {
                let now = replicas(&deployments, &name).await;
                if now != last {
                    run.note(format!("replicas desired {} ready {}", now.0, now.1));
                    last = now;
                }
                {
                    let mut p = peak.lock().unwrap();
                    *p = (p.0.max(now.0), p.1.max(now.1));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

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

    // The fair opening: everyone joins the waiting room at opensAt.
    let wait = (opens_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let prescaled = replicas(&deployments, &name).await;
    run.note(format!(
        "at the opening: replicas {prescaled:?} (desired, ready)"
    ));
    // Artist A's history (peak 3000, 1000 users per replica) asks for at least 3, Ready at opensAt.
    if prescaled.0 < 3 || prescaled.1 < prescaled.0 {
        run.broken(format!(
            "not pre-scaled at the opening: {prescaled:?} (desired, ready) from {start_replicas:?}"
        ));
    }

    run.note("the sale opens: every user joins the waiting room");
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

    // Faults during the sale: a pod killed, the pods' Redis link cut and restored, a rolling restart.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let victim = pods(&client, &ns, "service")
        .await
        .into_iter()
        .find(is_ready)
        .expect("a ready service pod");
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
    control_plane(&["forward-stop", "redis"]);
    run.note("fault: Redis cut from the pods");
    tokio::time::sleep(Duration::from_secs(5)).await;
    control_plane(&["forward-start", "redis"]);
    run.note("fault: Redis back");
    tokio::time::sleep(Duration::from_secs(10)).await;
    // a real restart of the suite's Redis (SHUTDOWN flushes its append-only file, then it loads it again)
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis.sh");
    let restarted = std::process::Command::new(script)
        .arg("restart")
        .output()
        .expect("run e2e/scripts/redis.sh");
    assert!(
        restarted.status.success(),
        "redis.sh restart: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    run.note("fault: Redis restarted (SHUTDOWN, then started on its append-only file)");
    tokio::time::sleep(Duration::from_secs(15)).await;
    // A real `helm upgrade` of the release mid-sale, as a platform team ships a change: the chart's
    // pre-upgrade migration Job, then a new pod template rolled out one pod at a time.
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
    run.note("fault: helm upgrade of the release (migration Job, rolling update)");

    // The sale runs until every buyer is through, at most 6 minutes after the opening.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
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
    // The rollout must have completed: every pod Ready again.
    until(
        Duration::from_secs(180),
        "the rolled Deployment to be Ready",
        || async {
            let d = deployments.get(&name).await.ok()?;
            let s = d.status?;
            let want = d.spec?.replicas?;
            (s.updated_replicas? == want && s.ready_replicas? == want).then_some(())
        },
    )
    .await;
    match upgrade.await.unwrap() {
        Ok(out) if out.status.success() => run.note("helm upgrade done"),
        Ok(out) => run.broken(format!(
            "helm upgrade failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => run.broken(format!("helm upgrade did not run: {e}")),
    }
    run.note("rollout complete");
    run.stop.store(true, Relaxed);
    for s in sockets {
        let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
    }
    let _ = sampler.await;

    // Invariants against PostgreSQL and the cluster.
    let events = [event_a, event_b];
    let (sold_twice,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT ri.seat_id FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
          WHERE r.event_id = ANY($1) AND r.status IN ('pending', 'confirmed') AND ri.seat_id IS NOT NULL
          GROUP BY ri.seat_id HAVING count(*) > 1) x",
    )
    .bind(&events[..])
    .fetch_one(&db)
    .await
    .unwrap();
    if sold_twice > 0 {
        run.broken(format!(
            "{sold_twice} seats held or sold twice (PostgreSQL)"
        ));
    }
    let (mismatch,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM seats s WHERE s.event_id = ANY($1) AND s.status = 'reserved' AND NOT EXISTS (
           SELECT 1 FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
            WHERE ri.seat_id = s.id AND r.status = 'confirmed' AND r.payment_status = 'completed')",
    )
    .bind(&events[..])
    .fetch_one(&db)
    .await
    .unwrap();
    if mismatch > 0 {
        run.broken(format!(
            "{mismatch} seats reserved without a paid reservation (PostgreSQL)"
        ));
    }
    let (confirmed,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM reservations WHERE event_id = ANY($1) AND status = 'confirmed' AND payment_status = 'completed'",
    )
    .bind(&events[..])
    .fetch_one(&db)
    .await
    .unwrap();
    let paid = run.tally.paid.load(Relaxed) as i64;
    if confirmed != paid {
        run.broken(format!(
            "{confirmed} paid reservations in PostgreSQL, {paid} payments answered 200"
        ));
    }
    let second = run.tally.second_payment_accepted.load(Relaxed);
    if second > 0 {
        run.broken(format!(
            "{second} second payments of one reservation accepted"
        ));
    }
    let unanswered = run.tally.unanswered.load(Relaxed);
    if unanswered > 0 {
        run.broken(format!(
            "{unanswered} requests without an answer (90 s; the proxy answers 504 after 60 s)"
        ));
    }
    let requests = run.tally.requests.load(Relaxed);
    let too_many = run.tally.too_many.load(Relaxed);
    if too_many * 100 > requests {
        run.broken(format!("mass 429: {too_many} of {requests} requests"));
    }
    let not_restored = run.tally.not_restored.load(Relaxed);
    if not_restored > 0 {
        run.broken(format!(
            "{not_restored} sockets without a session-restored after reconnecting"
        ));
    }
    if unfinished > 0 {
        run.broken(format!(
            "{unfinished} buyers still in the waiting room 5 min after the opening"
        ));
    }
    for p in pods(&client, &ns, "service").await {
        for c in p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
        {
            let last = c.last_state.and_then(|s| s.terminated);
            if last.as_ref().and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
                run.broken(format!(
                    "pod {} OOM-killed",
                    p.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    for te in [
        format!("rehearsal-a-{}", &tag[..8]),
        format!("rehearsal-b-{}", &tag[..8]),
    ] {
        let status = Api::<TicketEvent>::namespaced(client.clone(), &ns)
            .get(&te)
            .await
            .ok()
            .and_then(|t| serde_json::to_value(t.status).ok())
            .unwrap_or(Value::Null);
        run.note(format!(
            "{te}: phase {} forecast {} last decision {}",
            status["phase"], status["forecast"], status["lastDecision"]
        ));
        delete_te(&client, &ns, &te).await;
    }

    // The queue rule (+1 above 200 waiting) must have scaled the pre-scaled Deployment.
    let peak = *peak.lock().unwrap();
    let queued = run.tally.queued.load(Relaxed);
    if queued > 2 * 200 && peak.0 <= prescaled.0 {
        run.broken(format!(
            "{queued} users queued yet the replicas never went above the pre-scaled {}",
            prescaled.0
        ));
    }

    // The report.
    let t = &run.tally;
    let mut md = format!(
        "# Rehearsal report\n\n{} UTC, {n_users} users, {:.0} s\n\n| figure | value |\n|---|---|\n",
        Utc::now().format("%Y-%m-%d %H:%M"),
        run.t0.elapsed().as_secs_f64()
    );
    let figures: Vec<(&str, String)> = vec![
        ("registered", tokens.len().to_string()),
        (
            "replicas at start (desired, ready)",
            format!("{start_replicas:?}"),
        ),
        ("replicas before the opening", format!("{prescaled:?}")),
        ("peak replicas (desired, ready)", format!("{peak:?}")),
        ("requests through nginx", requests.to_string()),
        ("unanswered requests", unanswered.to_string()),
        (
            "sent again after a closed kept-alive connection",
            t.resent.load(Relaxed).to_string(),
        ),
        ("429 answers", too_many.to_string()),
        ("queued at the opening", t.queued.load(Relaxed).to_string()),
        ("admitted", t.admitted.load(Relaxed).to_string()),
        (
            "queue positions moved back",
            t.moved_back.load(Relaxed).to_string(),
        ),
        (
            "holds / 409 conflicts",
            format!(
                "{} / {}",
                t.holds.load(Relaxed),
                t.hold_conflicts.load(Relaxed)
            ),
        ),
        (
            "paid (PostgreSQL: confirmed)",
            format!("{paid} ({confirmed})"),
        ),
        ("second payments accepted", second.to_string()),
        ("cancelled", t.cancelled.load(Relaxed).to_string()),
        ("seats held/sold twice (PostgreSQL)", sold_twice.to_string()),
        (
            "socket reconnects / restored / not restored",
            format!(
                "{} / {} / {not_restored}",
                t.reconnects.load(Relaxed),
                t.restored.load(Relaxed)
            ),
        ),
    ];
    for (k, v) in figures {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    md.push_str("\n## Answers\n\n| request status | count |\n|---|---|\n");
    for (k, v) in t.statuses.lock().unwrap().iter() {
        md.push_str(&format!("| {k} | {v} |\n"));
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
    assert!(broken.is_empty(), "broken invariants: {broken:?}");
}
