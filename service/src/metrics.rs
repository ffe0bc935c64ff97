//! Prometheus metrics (text exposition on `/metrics`). Each replica's state owns its set
//! (`AppState::metrics`); parts built beside the state (breakers, the password hasher, socket
//! admission) hold the same handle, and error answers carry a mark the request metrics count
//! (`error::AnsweredOutage`).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentLabels {
    pub status: &'static str,
    pub payment_method: String,
}

/// One event's waiting room.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event_id: String,
}

/// Tickets sold: seats when paid (`ticket_type="seat"`), ticket-type units when booked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SoldLabels {
    pub event_id: String,
    pub ticket_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub r#type: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<HttpLabels>,
    pub http_active: Gauge,
    pub reservations_created: Family<KindLabels, Counter>,
    pub reservations_cancelled: Family<KindLabels, Counter>,
    pub holds_expired: Counter,
    pub seats_released: Counter,
    pub seatmap_snapshot_builds: Counter,
    pub news_views_flushed: Counter,
    pub payments: Family<PaymentLabels, Counter>,
    pub payment_amount: Histogram,
    pub auth_attempts: Family<AuthLabels, Counter>,
    pub rate_limited: Family<KindLabels, Counter>,
    pub db_pool_max: Gauge,
    pub db_pool_in_use: Gauge,
    pub db_pool_idle: Gauge,
    pub db_pool_timeouts: Counter,
    pub job_runs: Family<KindLabels, Counter>,
    pub queue_admitted: Counter,
    pub socket_floods: Family<KindLabels, Counter>,
    pub redis_breaker_opened: Counter,
    pub redis_steps_skipped: Counter,
    pub hold_duration: Histogram,
    pub payment_duration: Histogram,
    pub tickets_sold: Family<SoldLabels, Counter>,
    pub sockets_open: Gauge,
    pub queue_waiting: Family<EventLabels, Gauge>,
    pub queue_admitted_users: Family<EventLabels, Gauge>,
    pub queue_capacity: Family<EventLabels, Gauge>,
    pub queue_admission_rate: Family<EventLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub password_hash_refused: Counter,
    pub db_statement_timeouts: Counter,
    pub dependency_up: Family<DependencyLabels, Gauge>,
    pub redis_maxmemory_policy: Family<PolicyLabels, Gauge>,
    /// Reads of an event's published capacity that were zero, stale or unreadable (kind), answered
    /// with the last good value or the event's threshold instead.
    pub queue_capacity_fallbacks: Family<KindLabels, Counter>,
    pub socket_sessions: Gauge,
    pub socket_max_sessions: Gauge,
    pub socket_refused: Family<KindLabels, Counter>,
    /// Messages this replica's fan-out subscriber received (kind: room, namespace, other, uncounted).
    pub fanout_received: Family<KindLabels, Counter>,
}

fn http_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0])
}

impl Default for Metrics {
    /// A fresh registry: each replica (`AppState`) owns one, so replicas in one process (the tests)
    /// count apart.
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(http_histogram),
            http_active: Gauge::default(),
            reservations_created: Family::default(),
            reservations_cancelled: Family::default(),
            holds_expired: Counter::default(),
            seats_released: Counter::default(),
            seatmap_snapshot_builds: Counter::default(),
            news_views_flushed: Counter::default(),
            payments: Family::default(),
            payment_amount: Histogram::new([
                10_000.0, 50_000.0, 100_000.0, 150_000.0, 200_000.0, 300_000.0,
            ]),
            auth_attempts: Family::default(),
            rate_limited: Family::default(),
            db_pool_max: Gauge::default(),
            db_pool_in_use: Gauge::default(),
            db_pool_idle: Gauge::default(),
            db_pool_timeouts: Counter::default(),
            job_runs: Family::default(),
            queue_admitted: Counter::default(),
            socket_floods: Family::default(),
            redis_breaker_opened: Counter::default(),
            redis_steps_skipped: Counter::default(),
            hold_duration: http_histogram(),
            payment_duration: Histogram::new([0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]),
            tickets_sold: Family::default(),
            sockets_open: Gauge::default(),
            queue_waiting: Family::default(),
            queue_admitted_users: Family::default(),
            queue_capacity: Family::default(),
            queue_admission_rate: Family::default(),
            password_hash_refused: Counter::default(),
            db_statement_timeouts: Counter::default(),
            dependency_up: Family::default(),
            redis_maxmemory_policy: Family::default(),
            queue_capacity_fallbacks: Family::default(),
            socket_sessions: Gauge::default(),
            socket_max_sessions: Gauge::default(),
            socket_refused: Family::default(),
            fanout_received: Family::default(),
            registry: Registry::default(),
        };
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            m.http_duration.clone(),
        );
        r.register(
            "http_requests_active",
            "HTTP requests in flight",
            m.http_active.clone(),
        );
        r.register(
            "tiketi_reservations_created",
            "Reservations created (kind: seat|ticket)",
            m.reservations_created.clone(),
        );
        r.register(
            "tiketi_reservations_cancelled",
            "Reservations cancelled (kind: user_cancel|admin)",
            m.reservations_cancelled.clone(),
        );
        r.register(
            "tiketi_holds_expired",
            "Seat holds expired unpaid",
            m.holds_expired.clone(),
        );
        r.register(
            "tiketi_seats_released",
            "Seats returned to sale",
            m.seats_released.clone(),
        );
        r.register(
            "tiketi_seatmap_snapshot_builds",
            "Seat map snapshots built (PostgreSQL reads of a whole map)",
            m.seatmap_snapshot_builds.clone(),
        );
        r.register(
            "tiketi_news_views_flushed",
            "News views written to PostgreSQL by the batched counter",
            m.news_views_flushed.clone(),
        );
        r.register(
            "tiketi_payments",
            "Payments by outcome and method",
            m.payments.clone(),
        );
        r.register(
            "tiketi_payment_amount",
            "Paid amounts (KRW)",
            m.payment_amount.clone(),
        );
        r.register(
            "tiketi_auth_attempts",
            "Login and registration attempts",
            m.auth_attempts.clone(),
        );
        r.register(
            "tiketi_rate_limited",
            "Requests refused by a rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "tiketi_db_pool_max_connections",
            "Configured DB pool size",
            m.db_pool_max.clone(),
        );
        r.register(
            "tiketi_db_pool_in_use",
            "DB connections in use",
            m.db_pool_in_use.clone(),
        );
        r.register(
            "tiketi_db_pool_idle",
            "Idle DB connections",
            m.db_pool_idle.clone(),
        );
        r.register(
            "tiketi_queue_admitted",
            "Users admitted from waiting rooms",
            m.queue_admitted.clone(),
        );
        r.register(
            "tiketi_db_pool_timeouts",
            "Requests that found the DB pool exhausted (answered 503)",
            m.db_pool_timeouts.clone(),
        );
        r.register(
            "tiketi_job_runs",
            "Background job runs that did work",
            m.job_runs.clone(),
        );
        r.register(
            "tiketi_socket_floods",
            "Sockets disconnected for flooding (kind: events|rooms)",
            m.socket_floods.clone(),
        );
        r.register(
            "tiketi_redis_breaker_opened",
            "Times Redis became unreachable and optional Redis steps started being skipped",
            m.redis_breaker_opened.clone(),
        );
        r.register(
            "tiketi_redis_steps_skipped",
            "Optional Redis steps skipped at once while the Redis breaker was open",
            m.redis_steps_skipped.clone(),
        );
        r.register(
            "tiketi_hold_duration_seconds",
            "Seat hold requests that succeeded, end to end",
            m.hold_duration.clone(),
        );
        r.register(
            "tiketi_payment_duration_seconds",
            "Payment requests (provider call included), whatever their outcome",
            m.payment_duration.clone(),
        );
        r.register(
            "tiketi_tickets_sold",
            "Tickets sold by event and type (seat: paid seats; else booked ticket-type units)",
            m.tickets_sold.clone(),
        );
        r.register(
            "tiketi_sockets_open",
            "Socket.IO connections open on this replica",
            m.sockets_open.clone(),
        );
        r.register(
            "tiketi_queue_waiting",
            "Users waiting in an event's waiting room (Redis, the same on every replica: use max)",
            m.queue_waiting.clone(),
        );
        r.register(
            "tiketi_queue_admitted_users",
            "Users holding a live admission to an event (same on every replica: use max)",
            m.queue_admitted_users.clone(),
        );
        r.register(
            "tiketi_queue_capacity_in_force",
            "Admitted users an event's waiting room allows now: its threshold capped by the published capacity",
            m.queue_capacity.clone(),
        );
        r.register(
            "tiketi_queue_admission_rate",
            "Measured admissions per second of an event's waiting room (last 2 minutes)",
            m.queue_admission_rate.clone(),
        );
        r.register(
            "tiketi_password_hash_refused",
            "Logins and registrations refused with 503 because every password-hashing slot stayed busy",
            m.password_hash_refused.clone(),
        );
        r.register(
            "tiketi_db_statement_timeouts",
            "Statements cancelled by statement_timeout (answered 503 DB_TIMEOUT)",
            m.db_statement_timeouts.clone(),
        );
        r.register(
            "tiketi_dependency_up",
            "Last check of a shared dependency from this replica (1 up, 0 down; readiness ignores it)",
            m.dependency_up.clone(),
        );
        r.register(
            "tiketi_redis_maxmemory_policy",
            "Redis maxmemory-policy last read by this replica (1 on the current one; \"unknown\" when CONFIG is forbidden)",
            m.redis_maxmemory_policy.clone(),
        );
        r.register(
            "tiketi_queue_capacity_fallbacks",
            "Published capacities not used as they were (kind: zero|stale|unreadable)",
            m.queue_capacity_fallbacks.clone(),
        );
        r.register(
            "tiketi_socket_sessions",
            "Engine.IO sessions admitted and open on this replica, with or without a Socket.IO CONNECT yet",
            m.socket_sessions.clone(),
        );
        r.register(
            "tiketi_socket_max_sessions",
            "This replica's cap of Engine.IO sessions (SOCKET_MAX_CONNECTIONS or derived from its memory limit)",
            m.socket_max_sessions.clone(),
        );
        r.register(
            "tiketi_socket_refused",
            "Socket.IO handshakes refused (kind: full = at the cap, answered 503; rate = the address's handshake rate, answered 429)",
            m.socket_refused.clone(),
        );
        r.register(
            "tiketi_fanout_received",
            "Messages this replica's Socket.IO adapter received from Redis (kind: room = an event room's own channel, namespace = the channel every replica reads, other = requests to it alone and answers to its own, uncounted = received while this counter lagged)",
            m.fanout_received.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Renders the OpenMetrics text, refreshing the pool gauges first.
    pub fn render(&self, pool: &sqlx::PgPool) -> String {
        let size = i64::from(pool.size());
        let idle = pool.num_idle() as i64;
        self.db_pool_max
            .set(i64::from(pool.options().get_max_connections()));
        self.db_pool_in_use.set(size - idle);
        self.db_pool_idle.set(idle);
        self.render_registry()
    }

    /// The OpenMetrics text of the registry as it is.
    pub fn render_registry(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
