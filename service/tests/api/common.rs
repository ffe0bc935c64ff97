//! Test harness: each test gets its own database (migrated), its own Redis key prefix and its own
//! service on an ephemeral port, so tests run in parallel without seeing each other.

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tiketi_service::{AppState, Config, Service, stores};
use uuid::Uuid;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL the tests may create databases on (make test sets it)")
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into())
}

/// A fresh, migrated database; returns its URL.
pub async fn fresh_database() -> String {
    let name = tiketi_testkit::test_database_name("");
    let url = tiketi_testkit::create_database(&database_url(), &name, false)
        .await
        .expect("create test database");
    let pool = PgPool::connect(&url).await.expect("connect test database");
    stores::migrate(&pool).await.expect("migrations apply");
    pool.close().await;
    url
}

pub struct TestApp {
    pub config: Config,
    pub base: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub state: AppState,
    pub db: PgPool,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a service; `tweak` adjusts the test configuration first (dev mode, fast payments).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db_url = fresh_database().await;
        let mut config = Config::for_tests(
            &db_url,
            &redis_url(),
            &format!("test:{}", Uuid::new_v4().simple()),
        );
        config.upload_dir =
            std::env::temp_dir().join(format!("tiketi-uploads-{}", Uuid::new_v4().simple()));
        tweak(&mut config);
        Self::start(config).await
    }

    /// Another replica: same database, same Redis prefix, its own port.
    pub async fn replica(&self) -> Self {
        self.replica_with(|_| {}).await
    }

    /// Another replica whose configuration `tweak` adjusts (e.g. its clock offset).
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        tweak(&mut config);
        Self::start(config).await
    }

    /// Runs the background jobs (hold expiry, event status, waiting-room admission) in this replica.
    pub fn start_jobs(&self) {
        tiketi_service::jobs::spawn_all(&self.state);
    }

    /// A service that shuts down (drains, as on SIGTERM) when the returned sender fires.
    pub async fn spawn_stoppable() -> (Self, tokio::sync::oneshot::Sender<()>) {
        let db_url = fresh_database().await;
        let config = Config::for_tests(
            &db_url,
            &redis_url(),
            &format!("test:{}", Uuid::new_v4().simple()),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Self::start_until(config, async move {
            let _ = stopped.await;
        })
        .await;
        (app, stop)
    }

    async fn start(config: Config) -> Self {
        Self::start_until(config, std::future::pending()).await
    }

    async fn start_until(
        config: Config,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        let service = Service::build(config.clone())
            .await
            .expect("service builds");
        service.prepare(false).await.expect("service prepares");
        let state = service.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            service.serve(listener, shutdown).await.expect("serve");
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("client");
        TestApp {
            config,
            base: format!("http://{addr}"),
            addr,
            http,
            db: state.db.clone(),
            state,
            server,
        }
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// The `/metrics` text, as Prometheus scrapes it.
    pub async fn metrics(&self) -> String {
        let resp = self.req(Method::GET, "/metrics", None).send().await;
        resp.expect("scrape").text().await.expect("metrics text")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        read(
            self.req(Method::GET, path, token)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path, token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        read(r.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, token, Some(body)).await
    }

    /// Registers a new user with a unique email.
    pub async fn user(&self) -> User {
        let email = format!("u{}@example.com", Uuid::new_v4().simple());
        let (status, body) = self
            .post(
                "/api/auth/register",
                None,
                json!({ "email": email, "password": "secret123", "name": "테스트", "phone": "" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        User {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            email,
            token: body["token"].as_str().unwrap().to_string(),
        }
    }

    /// The dev-mode admin (admin@tiketi.gg / admin123), logged in.
    pub async fn admin(&self) -> User {
        let (status, body) = self
            .post(
                "/api/auth/login",
                None,
                json!({ "email": "admin@tiketi.gg", "password": "admin123" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        User {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            email: "admin@tiketi.gg".into(),
            token: body["token"].as_str().unwrap().to_string(),
        }
    }

    /// An event on sale now with the small_theater seat map (265 seats); returns (event, seat ids).
    pub async fn seat_event(&self) -> (Uuid, Vec<Uuid>) {
        self.seat_event_opening("-1 hour").await
    }

    /// A seat event (small_theater) whose sale opens at now + `start` (a Postgres interval) and ends
    /// in a day; returns (event, seat ids).
    pub async fn seat_event_opening(&self, start: &str) -> (Uuid, Vec<Uuid>) {
        let event = self.insert_event("small_theater", start, "+1 day").await;
        let layout: Uuid =
            sqlx::query_scalar("SELECT id FROM seat_layouts WHERE name = 'small_theater'")
                .fetch_one(&self.db)
                .await
                .unwrap();
        let mut tx = self.db.begin().await.unwrap();
        tiketi_service::seats::db::insert_layout_seats(&mut tx, event, layout)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let seats = tiketi_testkit::seats_of(&self.db, event).await.unwrap();
        (event, seats)
    }

    /// An event on sale now with one ticket type of `quantity` units at 50,000; returns (event, type).
    pub async fn ticket_event(&self, quantity: i32) -> (Uuid, Uuid) {
        let event = self.insert_event("", "-1 hour", "+1 day").await;
        let tt = sqlx::query_scalar(
            "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity) VALUES ($1, '일반석', 50000, $2, $2) RETURNING id",
        )
        .bind(event)
        .bind(quantity)
        .fetch_one(&self.db)
        .await
        .unwrap();
        (event, tt)
    }

    /// Adds a ticket type of `quantity` units at 1,000 to `event`; returns its id.
    pub async fn add_ticket_type(&self, event: Uuid, quantity: i32) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity) VALUES ($1, '일반석', 1000, $2, $2) RETURNING id",
        )
        .bind(event)
        .bind(quantity)
        .fetch_one(&self.db)
        .await
        .expect("insert ticket type")
    }

    /// Admits `user` to `event`'s waiting room as the admission loop does (until 5 minutes from now).
    pub async fn admit(&self, event: Uuid, user: Uuid) {
        use fred::prelude::SortedSetsInterface;
        let until = (chrono::Utc::now().timestamp_millis() + 300_000) as f64;
        let _: i64 = self
            .state
            .redis
            .zadd(
                self.state.keys.active(event),
                None,
                None,
                false,
                false,
                (until, user.to_string()),
            )
            .await
            .expect("admit");
    }

    /// How many reservations `event` has (any status).
    pub async fn reservations_of(&self, event: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM reservations WHERE event_id = $1")
            .bind(event)
            .fetch_one(&self.db)
            .await
            .expect("count reservations")
    }

    /// Inserts an event whose sale window is [now + start, now + end] (Postgres interval strings).
    pub async fn insert_event(&self, layout: &str, start: &str, end: &str) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO events (title, venue, event_date, sale_start_date, sale_end_date, status, seat_layout_id, artist_name)
             VALUES ('테스트 공연', '테스트홀', now() + interval '30 days', now() + $1::INTERVAL, now() + $2::INTERVAL,
                     CASE WHEN now() + $1::INTERVAL > now() THEN 'upcoming' WHEN now() + $2::INTERVAL > now() THEN 'on_sale' ELSE 'ended' END,
                     (SELECT id FROM seat_layouts WHERE name = $3), 'TEST ARTIST')
             RETURNING id",
        )
        .bind(start)
        .bind(end)
        .bind(layout)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }
}

pub async fn read(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Polls `check` until it returns true or `timeout` passes (no fixed sleeps in tests).
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestApp {
    /// `n` users created straight in the database with tokens signed by the service's keys (password
    /// hashing per registration would dominate the concurrency tests). They cannot log in.
    pub async fn users(&self, n: usize) -> Vec<User> {
        let ids = tiketi_testkit::insert_users(
            &self.db,
            "테스트",
            tiketi_service::auth::password::DUMMY_HASH,
            n,
        )
        .await
        .expect("insert users");
        ids.into_iter()
            .map(|(id, email)| User {
                token: self.state.jwt.issue(id, &email, "user").expect("token"),
                id,
                email,
            })
            .collect()
    }
}

/// Shared steps of the seat, reservation, payment and fault tests.
impl TestApp {
    /// Waits until `/health/redis` answers the contract's 503 error (after Redis was stopped).
    pub async fn wait_until_redis_reported_down(&self) {
        let down = eventually(Duration::from_secs(15), || async {
            let (status, body) = self.get("/health/redis", None).await;
            status == StatusCode::SERVICE_UNAVAILABLE
                && body["status"] == "error"
                && body["service"] == "redis"
                && body["message"].is_string()
        })
        .await;
        assert!(down, "/health/redis never reported the outage");
    }

    /// Sets the waiting-room threshold of `event` (before anyone checks in: the gate is cached).
    pub async fn set_queue_threshold(&self, event: Uuid, threshold: i32) {
        sqlx::query("UPDATE events SET queue_threshold = $2 WHERE id = $1")
            .bind(event)
            .bind(threshold)
            .execute(&self.db)
            .await
            .expect("set queue threshold");
    }

    /// The id of the seat labelled `label` (e.g. `VIP-1-1`) of `event`.
    pub async fn seat_id(&self, event: Uuid, label: &str) -> Uuid {
        sqlx::query_scalar("SELECT id FROM seats WHERE event_id = $1 AND seat_label = $2")
            .bind(event)
            .bind(label)
            .fetch_one(&self.db)
            .await
            .expect("seat exists")
    }

    /// A seat's status as stored.
    pub async fn seat_status(&self, seat: Uuid) -> String {
        tiketi_testkit::seat_status(&self.db, seat)
            .await
            .expect("seat exists")
    }

    /// (status, payment_status) of a reservation as stored.
    pub async fn reservation_state(&self, id: Uuid) -> (String, String) {
        sqlx::query_as("SELECT status, payment_status FROM reservations WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .expect("reservation exists")
    }

    /// POST /api/seats/reserve of one seat.
    pub async fn hold(&self, token: &str, event: Uuid, seat: Uuid) -> (StatusCode, Value) {
        self.post(
            "/api/seats/reserve",
            Some(token),
            json!({ "eventId": event, "seatIds": [seat] }),
        )
        .await
    }

    /// Holds one seat and returns the reservation id (asserting 201).
    pub async fn hold_ok(&self, token: &str, event: Uuid, seat: Uuid) -> Uuid {
        let (status, body) = self.hold(token, event, seat).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["reservation"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// POST /api/reservations of `items` (`[{ticketTypeId, quantity}]`).
    pub async fn book_items(&self, token: &str, event: Uuid, items: Value) -> (StatusCode, Value) {
        self.post(
            "/api/reservations",
            Some(token),
            json!({ "eventId": event, "items": items }),
        )
        .await
    }

    /// POST /api/reservations of `qty` tickets of one type.
    pub async fn book(&self, token: &str, event: Uuid, tt: Uuid, qty: i64) -> (StatusCode, Value) {
        let items = json!([{ "ticketTypeId": tt, "quantity": qty }]);
        self.book_items(token, event, items).await
    }

    /// Books `qty` tickets of one type and returns the reservation id (asserting 201).
    pub async fn book_ok(&self, token: &str, event: Uuid, tt: Uuid, qty: i64) -> Uuid {
        let (status, body) = self.book(token, event, tt, qty).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["reservation"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// POST /api/payments/process of a reservation.
    pub async fn pay(&self, token: &str, reservation: Uuid, method: &str) -> (StatusCode, Value) {
        self.post(
            "/api/payments/process",
            Some(token),
            json!({ "reservationId": reservation, "paymentMethod": method }),
        )
        .await
    }

    /// Pays a reservation with naver_pay (asserting 200).
    pub async fn pay_ok(&self, token: &str, reservation: Uuid) {
        let (status, body) = self.pay(token, reservation, "naver_pay").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// POST /api/reservations/:id/cancel (no body); `id` may be malformed on purpose.
    pub async fn cancel(&self, token: &str, id: impl std::fmt::Display) -> (StatusCode, Value) {
        let path = format!("/api/reservations/{id}/cancel");
        self.send(Method::POST, &path, Some(token), None).await
    }
}

/// The `{success:false, message, error}` body of a refused request.
pub fn refusal(code: &str, message: &str) -> Value {
    json!({ "success": false, "message": message, "error": message, "code": code })
}

/// The keys of a JSON object, sorted (for exact-shape assertions).
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// `names` sorted, to compare with [`keys`].
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// A timestamp in the wire format `YYYY-MM-DDTHH:MM:SS.sssZ` (JavaScript's `Date.toJSON`).
pub fn is_wire_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let b = s.as_bytes();
        b.len() == 24
            && s.ends_with('Z')
            && b[10] == b'T'
            && b[19] == b'.'
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

/// Every key of an event object (`GET /api/events/:id` and the admin answers), docs/wire-contract.md §1.3.
pub const EVENT_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "venue",
    "address",
    "event_date",
    "sale_start_date",
    "sale_end_date",
    "poster_image_url",
    "status",
    "seat_layout_id",
    "artist_name",
    "pre_scaled",
    "created_by",
    "created_at",
    "updated_at",
];

/// Waits until the current one-minute rate-limit window has at least 15 s left, so a test that
/// counts requests inside one window cannot straddle two.
pub async fn early_in_rate_window() {
    use chrono::Timelike;
    let ok = eventually(Duration::from_secs(20), || async {
        chrono::Utc::now().second() < 45
    })
    .await;
    assert!(ok, "clock never left the end of a minute");
}

/// Payments: the provider's charges, the payment intents, the ledger's invariant and injected faults.
impl TestApp {
    /// The mock provider's charges for a reservation (any key).
    pub fn charges_of(&self, reservation: Uuid) -> Vec<tiketi_service::payments::provider::Charge> {
        let ledger = self
            .state
            .payments
            .ledger()
            .expect("the mock keeps a ledger");
        ledger
            .into_values()
            .filter(|c| c.reference == reservation)
            .collect()
    }

    /// (id, state) of a reservation's payment intents, oldest first.
    pub async fn intents_of(&self, reservation: Uuid) -> Vec<(Uuid, String)> {
        sqlx::query_as(
            "SELECT id, state FROM payment_intents WHERE reservation_id = $1 ORDER BY created_at, id",
        )
        .bind(reservation)
        .fetch_all(&self.db)
        .await
        .expect("intents")
    }

    /// The ledger balances: the SQL check finds nothing (every captured charge has exactly one
    /// confirmed reservation and every confirmed reservation exactly one captured charge), every
    /// intent is resolved, and the provider agrees — the charges it still holds are exactly the
    /// captured intents, of their reservations and amounts.
    pub async fn assert_ledger_balances(&self) {
        let bad = tiketi_service::payments::db::ledger_violations(&self.db)
            .await
            .expect("ledger check runs");
        assert!(bad.is_empty(), "ledger does not balance: {bad:?}");
        let open: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, state FROM payment_intents WHERE state NOT IN ('captured', 'refunded', 'failed')",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert!(open.is_empty(), "unresolved intents: {open:?}");
        let captured: Vec<(Uuid, Uuid, i32)> = sqlx::query_as(
            "SELECT id, reservation_id, amount FROM payment_intents WHERE state = 'captured'",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        let ledger = self
            .state
            .payments
            .ledger()
            .expect("the mock keeps a ledger");
        let held: std::collections::HashMap<_, _> =
            ledger.into_iter().filter(|(_, c)| !c.refunded).collect();
        for (key, reservation, amount) in &captured {
            let c = held
                .get(key)
                .unwrap_or_else(|| panic!("captured intent {key} has no charge at the provider"));
            assert_eq!((c.reference, c.amount), (*reservation, *amount), "{key}");
        }
        assert_eq!(
            held.len(),
            captured.len(),
            "the provider holds charges no captured intent accounts for: {held:?}"
        );
    }

    /// Makes every confirmation fail as a statement timeout would (SQLSTATE 57014), from inside the
    /// database, until `heal_confirmations`; with `every` = n only every n-th one fails.
    pub async fn fail_confirmations(&self, every: i64) {
        for sql in [
            "CREATE SEQUENCE IF NOT EXISTS test_confirm_attempts".to_string(),
            format!(
                "CREATE OR REPLACE FUNCTION test_fail_confirm() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF nextval('test_confirm_attempts') % {every} = 0 THEN
                         RAISE EXCEPTION 'injected statement timeout' USING ERRCODE = 'query_canceled';
                     END IF;
                     RETURN NEW;
                 END $$"
            ),
            "DROP TRIGGER IF EXISTS test_fail_confirm ON reservations".to_string(),
            "CREATE TRIGGER test_fail_confirm BEFORE UPDATE ON reservations FOR EACH ROW
             WHEN (NEW.status = 'confirmed' AND OLD.status <> 'confirmed')
             EXECUTE FUNCTION test_fail_confirm()"
                .to_string(),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&self.db)
                .await
                .expect("fault installed");
        }
    }

    pub async fn heal_confirmations(&self) {
        sqlx::query("DROP TRIGGER IF EXISTS test_fail_confirm ON reservations")
            .execute(&self.db)
            .await
            .expect("fault removed");
    }
}
