//! The hostile crowd beside the rehearsal's fans, through the same nginx, each from client addresses of
//! its own (127.2.x.y; the fans use 127.1.x.y): scripts that hold seats without queueing, spoofed
//! forwarding headers against the per-address limits, an anonymous seat-map herd, event-list parameter
//! floods against the shared cache, tokenless Socket.IO handshakes, and payments retried by an impatient
//! client. One async fn per attack returns its figures (every request bounded by a client timeout, every
//! attack by a deadline: a failing attack never hangs the run); the verdicts are pure functions over the
//! figures, unit-tested below.

use std::collections::BTreeMap;

use fred::prelude::ClientLike;

use crate::support::*;

/// Answers of one attack by status ("201", "429", "timeout", "error", ...).
pub type Statuses = BTreeMap<String, u64>;

fn bump(s: &mut Statuses, key: impl Into<String>) {
    *s.entry(key.into()).or_default() += 1;
}

fn merge(into: &mut Statuses, from: Statuses) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

fn count(s: &Statuses, key: &str) -> u64 {
    s.get(key).copied().unwrap_or(0)
}

/// Sends `req`, and once more when the kept-alive connection it reused was closed under it (nginx
/// closes idle ones on every reload, e.g. when a pod turns Ready), as a browser does; a failure that
/// persists, or a timeout, stays a failure.
async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
    let again = req.try_clone();
    match (req.send().await, again) {
        (Err(e), Some(again)) if !e.is_timeout() => again.send().await,
        (r, _) => r,
    }
}

/// "status" of an answer, "timeout" or "error" when none came.
fn answered(r: &Result<reqwest::Response, reqwest::Error>) -> String {
    match r {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "error".into(),
    }
}

/// Server errors the service must never give even to a hostile client: a bare 500, a proxy without an
/// answer (502/504), no answer at all. 503 (shedding load, "come back") and 429 are fair answers.
fn failures(s: &Statuses) -> u64 {
    s.iter()
        .filter(|(k, _)| {
            matches!(k.as_str(), "timeout" | "error") || (k.starts_with('5') && k.as_str() != "503")
        })
        .map(|(_, n)| n)
        .sum()
}

fn client(source: &str, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(source.parse().expect("a client address")))
        .timeout(timeout)
        .build()
        .expect("a reqwest client")
}

/// Runs `attack` for at most `deadline`; None (and the run says why) when it overran.
pub async fn bounded<T>(
    deadline: Duration,
    attack: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::time::timeout(deadline, attack).await.ok()
}

// (a) Scripts: registered accounts that never join the waiting room and fire holds anyway.

/// A script's account.
pub struct Script {
    pub id: Uuid,
    pub token: String,
    pub source: String,
}

/// Registers `n` script accounts (four per client address), retrying 503 as the storm does.
pub async fn enlist_scripts(nginx: &str, n: usize) -> Vec<Script> {
    let mut scripts = Vec::new();
    for i in 0..n {
        let source = format!("127.2.1.{}", i / 4 + 1);
        let http = client(&source, Duration::from_secs(30));
        let id = Uuid::new_v4().simple().to_string();
        let user = json!({
            "email": format!("script-{}@e2e.tiketi.test", &id[..16]),
            "password": "script-password", "name": "Script", "phone": "010-0000-0000",
        });
        for _ in 0..10 {
            let Ok(r) = http
                .post(format!("{nginx}/api/auth/register"))
                .json(&user)
                .send()
                .await
            else {
                break;
            };
            if r.status() == 503 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let id = body["user"]["id"].as_str().and_then(|s| s.parse().ok());
            if let (Some(id), Some(token)) = (id, body["token"].as_str()) {
                scripts.push(Script {
                    id,
                    token: token.to_string(),
                    source: source.clone(),
                });
            }
            break;
        }
    }
    scripts
}

/// Every script fires a hold every `period` until `until`, on seats of the sales in turn.
pub async fn script_holds(
    nginx: &str,
    scripts: &[Script],
    sales: &[(Uuid, std::sync::Arc<Vec<Uuid>>)],
    until: tokio::time::Instant,
    period: Duration,
) -> Statuses {
    let shots = scripts.iter().enumerate().map(|(i, s)| {
        // patient enough for a hold that waits on a Redis timeout inside the service
        let http = client(&s.source, Duration::from_secs(15));
        async move {
            let mut statuses = Statuses::new();
            let mut shot = 0usize;
            while tokio::time::Instant::now() < until {
                let (event, seats) = &sales[(i + shot) % sales.len()];
                let seat = seats[(i * 7 + shot * 13) % seats.len()];
                let r = send(
                    http.post(format!("{nginx}/api/seats/reserve"))
                        .bearer_auth(&s.token)
                        .json(&json!({ "eventId": event, "seatIds": [seat] })),
                )
                .await;
                bump(&mut statuses, answered(&r));
                shot += 1;
                tokio::time::sleep(period).await;
            }
            statuses
        }
    });
    let mut all = Statuses::new();
    for s in futures::future::join_all(shots).await {
        merge(&mut all, s);
    }
    all
}

#[derive(Debug, Default, Clone)]
pub struct ScriptFigures {
    pub accounts: usize,
    /// Holds fired across the opening (from before it until a few seconds after) and during the Redis
    /// stall, by answer.
    pub opening: Statuses,
    pub stall: Statuses,
    /// PostgreSQL: reservations (any status) of the script accounts.
    pub reservations: i64,
}

/// Scripts never queue, so they never have an admission: no hold of theirs may succeed, before the
/// opening, in the lottery or while the pods cannot reach Redis.
pub fn scripts_verdict(f: &ScriptFigures) -> Vec<String> {
    let mut broken = Vec::new();
    for (phase, s) in [
        ("across the opening", &f.opening),
        ("during the Redis stall", &f.stall),
    ] {
        if s.values().sum::<u64>() == 0 {
            broken.push(format!("scripts: no hold fired {phase} (not exercised)"));
        }
        let won = count(s, "201");
        if won > 0 {
            broken.push(format!(
                "scripts: {won} holds without an admission answered 201 {phase}"
            ));
        }
        let failed = failures(s);
        if failed > 0 {
            broken.push(format!(
                "scripts: {failed} holds {phase} got a server error or no answer"
            ));
        }
    }
    if f.reservations > 0 {
        broken.push(format!(
            "scripts: {} reservations in PostgreSQL for accounts that never queued",
            f.reservations
        ));
    }
    if f.accounts == 0 {
        broken.push("scripts: no script account registered".into());
    }
    broken
}

// (b) Spoofed forwarding headers against the per-address registration limit.

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub enum Spoof {
    #[default]
    Forwarded,
    XForwardedFor,
    /// No forwarding header: the control burst, which tells a spoof that escaped the limit from a
    /// limit that did not apply at all (Redis unreachable: the limiter lets attempts through).
    Control,
}

impl Spoof {
    pub fn header(self) -> &'static str {
        match self {
            Spoof::Forwarded => "Forwarded",
            Spoof::XForwardedFor => "X-Forwarded-For",
            Spoof::Control => "(no header: control)",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct SpoofFigures {
    pub spoof: Spoof,
    pub source: String,
    pub sent: u64,
    /// The per-address limit (LOGIN_RATE_LIMIT_PER_MINUTE, which registration shares).
    pub limit: u32,
    pub statuses: Statuses,
}

/// `sent` registrations from the one real address `source`, each claiming a different address in the
/// spoofed header. The body is invalid (a 3-character password): the limit is counted before the body
/// is read, so a 400 is an attempt that got through the limit, without an expensive password hash.
pub async fn spoofed_registrations(
    nginx: &str,
    source: &str,
    spoof: Spoof,
    sent: u64,
    limit: u32,
) -> SpoofFigures {
    let http = client(source, Duration::from_secs(20));
    let tries = (0..sent).map(|i| {
        let claimed = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let mut req = http.post(format!("{nginx}/api/auth/register"));
        match spoof {
            Spoof::Forwarded => req = req.header("Forwarded", format!("for={claimed}")),
            Spoof::XForwardedFor => req = req.header("X-Forwarded-For", claimed),
            Spoof::Control => {}
        }
        let req = req
            .json(&json!({ "email": format!("spoof-{i}@e2e.tiketi.test"), "password": "abc", "name": "Spoof" }));
        async move { answered(&req.send().await) }
    });
    let mut statuses = Statuses::new();
    // ten at a time: a burst, well inside one rate-limit window
    let mut answers = futures::stream::iter(tries).buffer_unordered(10);
    while let Some(a) = answers.next().await {
        bump(&mut statuses, a);
    }
    SpoofFigures {
        spoof,
        source: source.to_string(),
        sent,
        limit,
        statuses,
    }
}

/// The limit applies to the real address whatever it claims: of a burst inside at most two
/// one-minute windows, at most 2 × limit get through; the rest are 429.
pub fn spoof_verdict(f: &SpoofFigures) -> Vec<String> {
    let limited = count(&f.statuses, "429");
    let through = f.sent - limited;
    let allowed = 2 * u64::from(f.limit);
    let mut broken = Vec::new();
    if through > allowed {
        broken.push(format!(
            "spoofed {}: {through} of {} registrations from one address got past its limit of {}/min (at most {allowed} may, over two windows)",
            f.spoof.header(),
            f.sent,
            f.limit
        ));
    }
    let failed = failures(&f.statuses);
    if failed > 0 {
        broken.push(format!(
            "spoofed {}: {failed} server errors or no answers",
            f.spoof.header()
        ));
    }
    broken
}

// (c) An anonymous seat-map herd during the opening.

#[derive(Debug, Default, Clone)]
pub struct HerdFigures {
    pub clients: usize,
    /// Run seconds the herd ran between.
    pub window: (f64, f64),
    pub statuses: Statuses,
    pub p99: Option<f64>,
    /// Fans' holds sent within the window, and their p99 (filled in by the rehearsal).
    pub holds: usize,
    pub hold_p99: Option<f64>,
}

/// `clients` anonymous clients (two per address) fetch the seat map of `event` back to back for
/// `duration`.
pub async fn seat_map_herd(
    nginx: &str,
    event: Uuid,
    clients: usize,
    duration: Duration,
    t0: tokio::time::Instant,
) -> HerdFigures {
    let start = t0.elapsed().as_secs_f64();
    let until = tokio::time::Instant::now() + duration;
    let herd = (0..clients).map(|i| {
        let http = client(
            &format!("127.2.3.{}", i / 2 % 250 + 1),
            Duration::from_secs(20),
        );
        async move {
            let (mut statuses, mut took) = (Statuses::new(), Vec::new());
            while tokio::time::Instant::now() < until {
                let sent = std::time::Instant::now();
                let r = send(http.get(format!("{nginx}/api/seats/events/{event}"))).await;
                let r = match r {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.map(|_| status)
                    }
                    Err(e) => Err(e),
                };
                took.push(sent.elapsed().as_secs_f64());
                bump(
                    &mut statuses,
                    match r {
                        Ok(s) => s.as_u16().to_string(),
                        Err(e) if e.is_timeout() => "timeout".into(),
                        Err(_) => "error".into(),
                    },
                );
            }
            (statuses, took)
        }
    });
    let (mut statuses, mut took) = (Statuses::new(), Vec::new());
    for (s, t) in futures::future::join_all(herd).await {
        merge(&mut statuses, s);
        took.extend(t);
    }
    HerdFigures {
        clients,
        window: (start, t0.elapsed().as_secs_f64()),
        statuses,
        p99: crate::verdicts::p99(&took),
        holds: 0,
        hold_p99: None,
    }
}

/// The herd is answered (no server error) and the fans' holds during it stay within the hold bound.
pub fn herd_verdict(f: &HerdFigures, hold_latencies: &[f64]) -> Vec<String> {
    let mut broken = crate::verdicts::hold_p99("during the seat-map herd", hold_latencies);
    if f.statuses.values().sum::<u64>() == 0 {
        broken.push("herd: no seat-map request sent (not exercised)".into());
    }
    let failed = failures(&f.statuses);
    if failed > 0 {
        broken.push(format!(
            "herd: {failed} seat-map requests got a server error or no answer"
        ));
    }
    broken
}

// (d) Event-list parameter floods against the shared response cache in Redis.

/// The suite's Redis: memory, keys, and the event-list cache's keys.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RedisLook {
    pub used_memory: u64,
    pub dbsize: u64,
    pub list_keys: u64,
}

/// A client of the suite's Redis (REDIS_URL) that reconnects (the rehearsal restarts Redis) and gives up
/// on a command after 2 s.
pub async fn suite_redis() -> fred::prelude::Client {
    let mut builder = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&env("REDIS_URL")).unwrap(),
    );
    builder
        .set_policy(fred::types::config::ReconnectPolicy::new_constant(0, 500))
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2));
    let redis = builder.build().unwrap();
    redis.init().await.unwrap();
    redis
}

pub async fn redis_look(redis: &fred::prelude::Client, prefix: &str) -> Option<RedisLook> {
    let info: String = redis
        .custom(fred::cmd!("INFO"), vec!["memory"])
        .await
        .ok()?;
    let used_memory = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())?;
    let dbsize: u64 = redis
        .custom(fred::cmd!("DBSIZE"), Vec::<String>::new())
        .await
        .ok()?;
    let pattern = format!("{prefix}:events:list:*");
    let (mut cursor, mut list_keys) = ("0".to_string(), 0u64);
    loop {
        let page: fred::types::Value = redis
            .custom(
                fred::cmd!("SCAN"),
                vec![
                    cursor.clone(),
                    "MATCH".into(),
                    pattern.clone(),
                    "COUNT".into(),
                    "1000".into(),
                ],
            )
            .await
            .ok()?;
        let fred::types::Value::Array(mut parts) = page else {
            return None;
        };
        let keys = parts.pop()?;
        cursor = parts.pop()?.as_string()?;
        if let fred::types::Value::Array(keys) = keys {
            list_keys += keys.len() as u64;
        }
        if cursor == "0" {
            break;
        }
    }
    Some(RedisLook {
        used_memory,
        dbsize,
        list_keys,
    })
}

#[derive(Debug, Default, Clone)]
pub struct FloodFigures {
    pub sent: u64,
    pub secs: f64,
    pub statuses: Statuses,
    pub before: Option<RedisLook>,
    pub after: Option<RedisLook>,
}

/// Event-list cache entries a flood may add (the cache keys on page and limit, so a bounded cache
/// normalises or caps them).
pub const LIST_KEYS_BOUND: u64 = 256;
/// Redis memory a flood may add.
pub const FLOOD_MEMORY_BOUND: u64 = 32 << 20;

/// `sent` anonymous event-list requests, each with a distinct page/limit pair and a junk parameter,
/// 50 at a time from 25 addresses, for at most `cap`; Redis looked at before and after. At least
/// 2 × `LIST_KEYS_BOUND` must be answered 200 for the bound to mean anything.
pub async fn list_flood(
    nginx: &str,
    redis: &fred::prelude::Client,
    prefix: &str,
    sent: u64,
    cap: Duration,
) -> FloodFigures {
    let before = redis_look(redis, prefix).await;
    let started = std::time::Instant::now();
    let until = tokio::time::Instant::now() + cap;
    let clients: Vec<reqwest::Client> = (0..25)
        .map(|i| client(&format!("127.2.4.{}", i + 1), Duration::from_secs(10)))
        .collect();
    let requests = (0..sent).map(|i| {
        let http = clients[i as usize % clients.len()].clone();
        let url = format!(
            "{nginx}/api/events?limit={}&page={}&junk={}",
            1 + i % 997,
            1 + i / 997,
            Uuid::new_v4().simple()
        );
        async move {
            if tokio::time::Instant::now() >= until {
                return None;
            }
            // a flood that meets an nginx reload resends like any client of a kept-alive connection
            let r = send(http.get(url)).await;
            Some(match r {
                Ok(r) => {
                    let s = r.status().as_u16().to_string();
                    let _ = r.bytes().await;
                    s
                }
                Err(e) if e.is_timeout() => "timeout".into(),
                Err(_) => "error".into(),
            })
        }
    });
    let mut statuses = Statuses::new();
    let mut answers = futures::stream::iter(requests).buffer_unordered(50);
    while let Some(a) = answers.next().await {
        if let Some(a) = a {
            bump(&mut statuses, a);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    FloodFigures {
        sent: statuses.values().sum(),
        secs,
        statuses,
        before,
        after: redis_look(redis, prefix).await,
    }
}

/// The flood leaves at most `LIST_KEYS_BOUND` new list-cache entries and `FLOOD_MEMORY_BOUND` more
/// Redis memory, and gets no server error.
pub fn flood_verdict(f: &FloodFigures) -> Vec<String> {
    let mut broken = Vec::new();
    match (f.before, f.after) {
        (Some(b), Some(a)) => {
            let keys = a.list_keys.saturating_sub(b.list_keys);
            if keys > LIST_KEYS_BOUND {
                broken.push(format!(
                    "list flood: {keys} new event-list cache entries in Redis after {} distinct queries (bound {LIST_KEYS_BOUND})",
                    f.sent
                ));
            }
            let memory = a.used_memory.saturating_sub(b.used_memory);
            if memory > FLOOD_MEMORY_BOUND {
                broken.push(format!(
                    "list flood: Redis used_memory grew {} KiB (bound {} KiB)",
                    memory >> 10,
                    FLOOD_MEMORY_BOUND >> 10
                ));
            }
        }
        _ => broken.push("list flood: Redis could not be looked at".into()),
    }
    let answered = count(&f.statuses, "200");
    if answered <= 2 * LIST_KEYS_BOUND {
        broken.push(format!(
            "list flood: only {answered} of {} queries answered 200, too few to show the cache bounded (not exercised)",
            f.sent
        ));
    }
    let failed = failures(&f.statuses);
    if failed > 0 {
        broken.push(format!(
            "list flood: {failed} requests got a server error or no answer"
        ));
    }
    broken
}

// (e) Tokenless Socket.IO handshakes: Engine.IO open, never a Socket.IO CONNECT.

/// How long a session without a Socket.IO CONNECT may stay open.
pub const TOKENLESS_BOUND_SECS: u64 = 30;

#[derive(Debug, Default, Clone)]
pub struct TokenlessFigures {
    pub sent: usize,
    /// Engine.IO sessions opened (the `0{...}` packet came).
    pub opened: usize,
    /// Of those, still open `after_secs` after their open packet (the script answers pings).
    pub still_open: usize,
    pub after_secs: u64,
    pub refused: Statuses,
}

/// `n` WebSocket Engine.IO sessions from 40 addresses that never send a Socket.IO CONNECT but answer
/// every ping, as a connection-hoarding script does; counts those still open after `after`.
pub async fn tokenless_sockets(nginx: &str, n: usize, after: Duration) -> TokenlessFigures {
    let sessions = (0..n).map(|i| async move {
        let source = format!("127.2.5.{}", i % 40 + 1);
        let mut ws =
            match tokio::time::timeout(Duration::from_secs(10), ws_from(nginx, &source)).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return Err(e.split(':').next().unwrap_or("error").to_string()),
                Err(_) => return Err("no upgrade in 10 s".into()),
            };
        // the Engine.IO open, then never the CONNECT that sio::handshake would send: the script's whole point
        match tokio::time::timeout(Duration::from_secs(10), sio::next_frame(&mut ws)).await {
            Ok(Frame::Text(t)) if t.starts_with('0') => {}
            _ => return Err("no Engine.IO open".into()),
        }
        let until = tokio::time::Instant::now() + after;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            // pings answered, as the script does
            match tokio::time::timeout(left, sio::next_frame(&mut ws)).await {
                Err(_) => return Ok(true),
                Ok(Frame::Closed | Frame::Dropped(_)) => return Ok(false),
                Ok(Frame::Text(_)) => {}
            }
        }
    });
    let mut f = TokenlessFigures {
        sent: n,
        after_secs: after.as_secs(),
        ..TokenlessFigures::default()
    };
    for r in futures::future::join_all(sessions).await {
        match r {
            Ok(open) => {
                f.opened += 1;
                f.still_open += usize::from(open);
            }
            Err(why) => bump(&mut f.refused, why),
        }
    }
    f
}

/// Every tokenless session was closed within the bound (and the attack ran).
pub fn tokenless_verdict(f: &TokenlessFigures) -> Vec<String> {
    let mut broken = Vec::new();
    if f.opened == 0 {
        broken.push(format!(
            "tokenless sockets: none of {} opened (not exercised): {:?}",
            f.sent, f.refused
        ));
    }
    if f.after_secs < TOKENLESS_BOUND_SECS {
        broken.push(format!(
            "tokenless sockets: observed for {} s, less than the bound",
            f.after_secs
        ));
    }
    if f.still_open > 0 {
        broken.push(format!(
            "tokenless sockets: {} of {} Engine.IO sessions without a Socket.IO CONNECT still open after {} s (bound {TOKENLESS_BOUND_SECS} s)",
            f.still_open, f.opened, f.after_secs
        ));
    }
    broken
}

// (g) Payments retried by an impatient client while the pool is saturated.

/// How one impatient payment ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PayEnd {
    /// 200 on some attempt.
    Paid,
    /// ALREADY_PAID after an attempt this client gave up on: that attempt went through.
    Settled,
    /// Anything else on the last attempt (its status, or "abandoned").
    Refused(String),
}

/// The attempts of one impatient payment, in order.
#[derive(Debug, Clone)]
pub struct PayRetry {
    pub attempts: Vec<PayAttempt>,
    pub end: PayEnd,
}

/// One attempt: its status ("abandoned" when the client gave up waiting, "error" without an answer),
/// the answer's `code`, and when it was sent and answered (the report tells an answer of the ingress
/// for a request in flight on a killed pod by them).
#[derive(Debug, Clone)]
pub struct PayAttempt {
    pub status: String,
    pub code: Value,
    pub sent: tokio::time::Instant,
    pub answered: tokio::time::Instant,
}

impl PayAttempt {
    #[cfg(test)]
    fn answered(status: &str) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            status: status.into(),
            code: Value::Null,
            sent: now,
            answered: now,
        }
    }
}

/// Pays `reservation` giving each attempt `patience`, and sends it again (the same body) after a
/// timeout, a 5xx or a 429, at most five times: what a user hammering "pay" on a slow page does.
pub async fn pay_with_retries(
    http: &reqwest::Client,
    nginx: &str,
    token: &str,
    reservation: &str,
    patience: Duration,
) -> PayRetry {
    let pay = json!({ "reservationId": reservation, "paymentMethod": "kakao_pay" });
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let sent = tokio::time::Instant::now();
        let r = http
            .post(format!("{nginx}/api/payments/process"))
            .bearer_auth(token)
            .timeout(patience)
            .json(&pay)
            .send()
            .await;
        let (status, body) = match r {
            Ok(r) => {
                let s = r.status().as_u16();
                (
                    s.to_string(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
            Err(e) if e.is_timeout() => ("abandoned".to_string(), Value::Null),
            Err(_) => ("error".to_string(), Value::Null),
        };
        let gave_up_before = attempts
            .iter()
            .any(|a: &PayAttempt| a.status == "abandoned");
        attempts.push(PayAttempt {
            status: status.clone(),
            code: body["code"].clone(),
            sent,
            answered: tokio::time::Instant::now(),
        });
        let end = match status.as_str() {
            "200" => Some(PayEnd::Paid),
            "400" if body["code"] == "ALREADY_PAID" && gave_up_before => Some(PayEnd::Settled),
            "abandoned" | "error" | "429" => None,
            s if s.starts_with('5') => None,
            s => Some(PayEnd::Refused(s.to_string())),
        };
        if let Some(end) = end {
            return PayRetry { attempts, end };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let last = attempts
        .last()
        .map(|a| a.status.clone())
        .unwrap_or_default();
    PayRetry {
        attempts,
        end: PayEnd::Refused(last),
    }
}

#[derive(Debug, Default, Clone)]
pub struct PayRetryFigures {
    pub payers: u64,
    pub attempts: u64,
    pub abandoned: u64,
    pub paid: u64,
    pub settled: u64,
    pub refused: Statuses,
    /// Payers whose first attempt was sent while the seat-map herd ran.
    pub during_herd: u64,
}

impl PayRetryFigures {
    pub fn add(&mut self, r: &PayRetry, during_herd: bool) {
        self.payers += 1;
        self.attempts += r.attempts.len() as u64;
        self.abandoned += r
            .attempts
            .iter()
            .filter(|a| a.status == "abandoned")
            .count() as u64;
        self.during_herd += u64::from(during_herd);
        match &r.end {
            PayEnd::Paid => self.paid += 1,
            PayEnd::Settled => self.settled += 1,
            PayEnd::Refused(s) => bump(&mut self.refused, s.clone()),
        }
    }
}

/// Every impatient payer ends paid exactly once (the ledger checks "once"), none refused or lost.
pub fn pay_retry_verdict(f: &PayRetryFigures) -> Vec<String> {
    let mut broken = Vec::new();
    if f.payers == 0 {
        broken.push("payment retries: no impatient payer (not exercised)".into());
    }
    if f.payers > 0 && f.during_herd == 0 {
        broken.push(
            "payment retries: none while the seat-map herd saturated the pool (not exercised)"
                .into(),
        );
    }
    let refused: u64 = f.refused.values().sum();
    if refused > 0 {
        broken.push(format!(
            "payment retries: {refused} of {} impatient payers never paid: {:?}",
            f.payers, f.refused
        ));
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(pairs: &[(&str, u64)]) -> Statuses {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn scripts_verdict_holds_when_every_hold_is_refused_and_none_is_in_the_db() {
        let f = ScriptFigures {
            accounts: 20,
            opening: statuses(&[("400", 30), ("403", 300)]),
            stall: statuses(&[("403", 50), ("503", 10)]),
            reservations: 0,
        };
        assert!(scripts_verdict(&f).is_empty(), "{:?}", scripts_verdict(&f));
    }

    #[test]
    fn scripts_verdict_catches_a_seat_won_without_queueing() {
        let f = ScriptFigures {
            accounts: 20,
            opening: statuses(&[("403", 300)]),
            stall: statuses(&[("201", 3), ("403", 50)]),
            reservations: 3,
        };
        assert_eq!(scripts_verdict(&f).len(), 2, "{:?}", scripts_verdict(&f));
        let idle = ScriptFigures {
            accounts: 20,
            ..ScriptFigures::default()
        };
        assert_eq!(scripts_verdict(&idle).len(), 2, "not exercised");
    }

    #[test]
    fn spoof_verdict_wants_the_limit_on_the_real_address() {
        let held = SpoofFigures {
            spoof: Spoof::Forwarded,
            source: "127.2.2.1".into(),
            sent: 100,
            limit: 30,
            statuses: statuses(&[("400", 30), ("429", 70)]),
        };
        assert!(spoof_verdict(&held).is_empty());
        let escaped = SpoofFigures {
            statuses: statuses(&[("400", 100)]),
            ..held.clone()
        };
        assert_eq!(spoof_verdict(&escaped).len(), 1);
        let down = SpoofFigures {
            statuses: statuses(&[("502", 100)]),
            ..held
        };
        assert_eq!(spoof_verdict(&down).len(), 2, "no 429 and server errors");
    }

    #[test]
    fn herd_verdict_bounds_hold_p99_and_allows_shedding() {
        let f = HerdFigures {
            statuses: statuses(&[("200", 5000), ("503", 20)]),
            ..HerdFigures::default()
        };
        assert!(herd_verdict(&f, &[0.1, 0.2, 0.3]).is_empty());
        let over = crate::verdicts::HOLD_P99_BOUND_SECS + 0.5;
        assert_eq!(herd_verdict(&f, &[0.1, over]).len(), 1);
        assert_eq!(herd_verdict(&f, &[]).len(), 1, "not measured");
        let failing = HerdFigures {
            statuses: statuses(&[("200", 5000), ("504", 1)]),
            ..HerdFigures::default()
        };
        assert_eq!(herd_verdict(&failing, &[0.1]).len(), 1);
    }

    fn look(list_keys: u64, used_memory: u64) -> Option<RedisLook> {
        Some(RedisLook {
            used_memory,
            dbsize: list_keys + 100,
            list_keys,
        })
    }

    #[test]
    fn flood_verdict_bounds_the_list_cache_and_redis_memory() {
        let bounded = FloodFigures {
            sent: 3000,
            secs: 5.0,
            statuses: statuses(&[("200", 3000)]),
            before: look(3, 10 << 20),
            after: look(100, 12 << 20),
        };
        assert!(flood_verdict(&bounded).is_empty());
        let unbounded = FloodFigures {
            after: look(3003, 50 << 20),
            ..bounded.clone()
        };
        assert_eq!(flood_verdict(&unbounded).len(), 2);
        let blind = FloodFigures {
            before: None,
            ..bounded.clone()
        };
        assert_eq!(flood_verdict(&blind).len(), 1);
        let drowned = FloodFigures {
            statuses: statuses(&[("200", 100), ("503", 2900)]),
            ..bounded
        };
        assert_eq!(flood_verdict(&drowned).len(), 1, "not exercised");
    }

    #[test]
    fn tokenless_verdict_wants_every_session_closed_within_the_bound() {
        let closed = TokenlessFigures {
            sent: 200,
            opened: 200,
            still_open: 0,
            after_secs: TOKENLESS_BOUND_SECS,
            refused: Statuses::new(),
        };
        assert!(tokenless_verdict(&closed).is_empty());
        let hoarded = TokenlessFigures {
            still_open: 200,
            ..closed.clone()
        };
        assert_eq!(tokenless_verdict(&hoarded).len(), 1);
        let none = TokenlessFigures {
            opened: 0,
            ..closed
        };
        assert_eq!(tokenless_verdict(&none).len(), 1);
    }

    #[test]
    fn pay_retries_count_a_settled_payment_and_catch_a_lost_one() {
        let mut f = PayRetryFigures::default();
        let settled = PayRetry {
            attempts: vec![
                PayAttempt::answered("abandoned"),
                PayAttempt::answered("400"),
            ],
            end: PayEnd::Settled,
        };
        f.add(&settled, true);
        assert_eq!((f.settled, f.abandoned, f.during_herd), (1, 1, 1));
        assert!(pay_retry_verdict(&f).is_empty());
        let lost = PayRetry {
            attempts: vec![PayAttempt::answered("503"); 5],
            end: PayEnd::Refused("503".into()),
        };
        f.add(&lost, false);
        assert_eq!(pay_retry_verdict(&f).len(), 1);
        let mut calm = PayRetryFigures::default();
        calm.add(&settled, false);
        assert_eq!(pay_retry_verdict(&calm).len(), 1, "none during the herd");
        assert_eq!(
            pay_retry_verdict(&PayRetryFigures::default()).len(),
            1,
            "not exercised"
        );
    }
}
