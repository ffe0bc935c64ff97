//! Process configuration: environment variables with `--flag` equivalents.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

/// Secrets that must never protect a production deployment.
const KNOWN_WEAK_SECRETS: &[&str] = &[
    "your-secret-key-change-in-production",
    "your-super-secret-jwt-key-change-this-in-production",
    "secret",
    "changeme",
];
const DEV_JWT_SECRET: &str = "tiketi-dev-only-secret-do-not-use-in-production";

#[derive(Parser, Debug)]
#[command(
    name = "tiketi-service",
    version,
    about = "TIKETI REST API and Socket.IO server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Redis connection URL (Redis >= 7).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Prefix of every Redis key (lets tenants and tests share one Redis).
    #[arg(long, env = "REDIS_PREFIX", default_value = tiketi_core::keys::DEFAULT_PREFIX)]
    pub redis_prefix: String,
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, env = "PORT", default_value_t = 3001)]
    pub port: u16,
    /// HS256 signing secret; required (>= 32 bytes) unless TIKETI_DEV=1.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Development mode: dev secret allowed, demo data and the demo admin are created.
    #[arg(long = "dev", env = "TIKETI_DEV", action = clap::ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub dev: bool,
    /// In dev mode, create the demo events and news on an empty database.
    #[arg(long, env = "TIKETI_DEMO_DATA", action = clap::ArgAction::Set, value_parser = parse_bool, default_value = "true")]
    pub demo_data: bool,
    /// Time zone of naive admin date inputs.
    #[arg(long, env = "TIKETI_TIMEZONE", default_value = "Asia/Seoul")]
    pub timezone: chrono_tz::Tz,
    /// Maximum PostgreSQL connections of this process (keep replicas x this under max_connections).
    #[arg(long, env = "DB_POOL_MAX", default_value_t = 10)]
    pub db_pool_max: u32,
    /// How long a request waits for a free DB connection before it gets 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub db_acquire_timeout_ms: u64,
    /// Password hashes (login, registration) running at once in this process. Each argon2 hash holds
    /// 19 MiB while it runs: 4 x 19 MiB = 76 MiB of a 512 Mi pod; more slots add memory, not
    /// throughput, on a pod with 1-2 CPUs.
    #[arg(long, env = "PASSWORD_HASH_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub password_hash_concurrency: u32,
    /// How long a login or registration waits for a hashing slot before it gets 503 SERVER_BUSY.
    #[arg(long, env = "PASSWORD_HASH_WAIT_MS", default_value_t = 1000)]
    pub password_hash_wait_ms: u64,
    /// PostgreSQL `statement_timeout` of every pooled connection (0 = none): a statement running
    /// longer (e.g. stuck behind a row lock) is cancelled and its request gets 503 DB_TIMEOUT.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_statement_timeout_ms: u64,
    /// PostgreSQL `idle_in_transaction_session_timeout` (0 = none): a session left idle inside an
    /// open transaction is ended by the server, releasing its locks.
    #[arg(long, env = "DB_IDLE_IN_TX_TIMEOUT_MS", default_value_t = 10000)]
    pub db_idle_in_tx_timeout_ms: u64,
    /// How long a replica's users stay counted in `room-info` and `traffic_logs` after it stopped
    /// heartbeating (killed); replicas heartbeat every third of it.
    #[arg(long, env = "PRESENCE_TTL_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub presence_ttl_seconds: u64,
    /// What to do when Redis's maxmemory-policy can evict keys (anything but noeviction): `refuse`
    /// to start (default outside dev mode), `warn` (default in dev mode) or `off`. An unreadable
    /// policy (CONFIG forbidden) only warns.
    #[arg(long, env = "REDIS_EVICTION_POLICY_CHECK", value_enum)]
    pub redis_eviction_policy_check: Option<CheckMode>,
    /// Comma-separated allowed CORS origins, or `*`.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Apply migrations at start.
    #[arg(long, env = "TIKETI_MIGRATE", action = clap::ArgAction::Set, value_parser = parse_bool, default_value = "false")]
    pub migrate: bool,
    /// Account to create (as admin) at start when missing.
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Directory of uploaded images (served under /uploads/).
    #[arg(long, env = "UPLOAD_DIR", default_value = "uploads")]
    pub upload_dir: PathBuf,
    /// Public origin of this service, used in upload URLs (default http://localhost:PORT).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seat hold length before an unpaid seat reservation expires.
    #[arg(long, env = "HOLD_SECONDS", default_value_t = 300)]
    pub hold_seconds: u64,
    /// Period of the hold-expiry sweep.
    #[arg(long, env = "HOLD_SWEEP_SECONDS", default_value_t = 5)]
    pub hold_sweep_seconds: u64,
    /// Seats one user may hold or own per event (live holds + confirmed); 0 = no cap.
    #[arg(long, env = "MAX_SEATS_PER_USER_PER_EVENT", default_value_t = 4)]
    pub max_seats_per_user_per_event: u32,
    /// Tickets (ticket-type units) one user may book per event (not cancelled); 0 = no cap.
    #[arg(long, env = "MAX_TICKETS_PER_USER_PER_EVENT", default_value_t = 8)]
    pub max_tickets_per_user_per_event: u32,
    /// How long an event's hold writer waits for more holds to decide them in one transaction
    /// (`reservations::batch`); 0 = each hold is its own transaction.
    #[arg(long, env = "HOLD_BATCH_WINDOW_MS", default_value_t = 2)]
    pub hold_batch_window_ms: u64,
    /// Most holds one grouped transaction decides (≥ 1).
    #[arg(long, env = "HOLD_BATCH_MAX", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub hold_batch_max: u32,
    /// Holds that may wait for one event's writer; one more is answered 503 `DB_BUSY`, like a pool
    /// timeout (≥ 1).
    #[arg(long, env = "HOLD_BATCH_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub hold_batch_queue: u32,
    /// Mock payment delay bounds.
    #[arg(long, env = "PAYMENT_DELAY_MIN_MS", default_value_t = 500)]
    pub payment_delay_min_ms: u64,
    #[arg(long, env = "PAYMENT_DELAY_MAX_MS", default_value_t = 1500)]
    pub payment_delay_max_ms: u64,
    /// Period of the payment recovery job (resolves payment intents a request left unfinished).
    #[arg(long, env = "PAYMENT_RECOVERY_SECONDS", default_value_t = 30)]
    pub payment_recovery_seconds: u64,
    /// Age (since its last change) at which the recovery job takes over an unfinished payment
    /// intent; longer than any provider call (30 s), so it never races a request still waiting.
    #[arg(long, env = "PAYMENT_RECOVERY_GRACE_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(31..))]
    pub payment_recovery_grace_seconds: u64,
    /// Waiting-room admissions per event per second.
    #[arg(long, env = "ADMISSION_RATE", default_value_t = 50)]
    pub admission_rate: u32,
    /// Period of the admission loop.
    #[arg(long, env = "ADMISSION_TICK_MS", default_value_t = 200)]
    pub admission_tick_ms: u64,
    /// Minimum interval between `queue-updated` broadcasts of one event (each makes every waiting
    /// frontend re-fetch its status). A quiet queue's change goes out on the next admission tick;
    /// during a storm the oldest change waits this long rounded up to the tick, so 400 ms on 200 ms
    /// ticks leaves ≈ 400 ms of the promised 1 s for a loaded loop and the broadcast itself.
    #[arg(long, env = "QUEUE_UPDATE_MS", default_value_t = 400)]
    pub queue_update_ms: u64,
    /// Arrivals from this long before a sale opens get a random place in its waiting room (earlier
    /// ones are not entered yet).
    #[arg(long, env = "FAIR_OPENING_LEAD_SECONDS", default_value_t = 1800)]
    pub fair_opening_lead_seconds: u64,
    /// Arrivals up to this long after a sale opens still get a random place; later ones queue FIFO.
    #[arg(long, env = "FAIR_OPENING_WINDOW_SECONDS", default_value_t = 60)]
    pub fair_opening_window_seconds: u64,
    /// Redis replicas that must have a waiting-room place or admission before it is told to the user
    /// (`WAIT` after the write), so a failover of the primary cannot lose it. 0: do not wait (a
    /// single Redis, or losing the last writes of a failover accepted). 1 with a replica per primary.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// How long a waiting-room write waits for `REDIS_WAIT_REPLICAS`; fewer by then: 503 +
    /// `Retry-After`, and the retry keeps the place.
    #[arg(long, env = "REDIS_WAIT_MS", default_value_t = 200)]
    pub redis_wait_ms: u64,
    /// Broadcasts to one event's room travel on a channel of that room, which only the replicas
    /// with sockets in it subscribe to; `false`: on the namespace channel every replica reads.
    /// Every replica of one install must agree: turn it off before rolling out over a version
    /// without room channels, and on again once every replica runs this one.
    #[arg(long, env = "FANOUT_ROOM_CHANNELS", action = clap::ArgAction::Set, value_parser = parse_bool, default_value = "true")]
    pub fanout_room_channels: bool,
    /// Tests only (no flag, no variable): shifts this replica's waiting-room clock by this many ms,
    /// to play a host whose clock is off. Buying is decided on PostgreSQL's clock whatever it is.
    #[arg(skip)]
    pub clock_offset_ms: i64,
    /// Period of the traffic sampler (rows are per minute).
    #[arg(long, env = "TRAFFIC_SAMPLE_SECONDS", default_value_t = 60)]
    pub traffic_sample_seconds: u64,
    /// How often a replica asks Redis whether another replica changed an event's seat map: the
    /// longest a hold made elsewhere can be missing from this replica's map (its own changes show
    /// at once; without Redis, snapshots are rebuilt every 5 s).
    #[arg(long, env = "SEATMAP_REVALIDATE_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub seatmap_revalidate_ms: u64,
    /// How often the news views counted in memory are written to PostgreSQL (one UPDATE per batch).
    #[arg(long, env = "NEWS_VIEWS_FLUSH_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..))]
    pub news_views_flush_ms: u64,
    /// Seat holds, ticket bookings and payments allowed per user per minute.
    #[arg(long, env = "RESERVE_RATE_LIMIT_PER_MINUTE", default_value_t = 60)]
    pub reserve_rate_limit: u32,
    /// Waiting-room checks allowed per user per minute.
    #[arg(long, env = "QUEUE_CHECK_RATE_LIMIT_PER_MINUTE", default_value_t = 120)]
    pub queue_check_rate_limit: u32,
    /// Seat holds and ticket bookings allowed per client IP per minute, against scripts cycling
    /// through accounts. Offices and carrier NATs share an IP: keep it far above the per-user
    /// limit. 0 = off.
    #[arg(
        long,
        env = "RESERVE_RATE_LIMIT_PER_IP_PER_MINUTE",
        default_value_t = 600
    )]
    pub reserve_rate_limit_per_ip: u32,
    /// Waiting-room checks allowed per client IP per minute; 0 = off.
    #[arg(
        long,
        env = "QUEUE_CHECK_RATE_LIMIT_PER_IP_PER_MINUTE",
        default_value_t = 1200
    )]
    pub queue_check_rate_limit_per_ip: u32,
    /// Proxies whose forwarding header is believed (comma-separated CIDRs or addresses, e.g. the
    /// ingress controller's pod CIDR). Per-IP limits then key on the right-most address in
    /// `TRUSTED_PROXY_HEADER` that is not a trusted proxy; empty (the default): trust nobody, use the
    /// TCP peer.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,
    /// The forwarding header the trusted proxies own: `x-forwarded-for` (nginx, ingress-nginx, cloud
    /// load balancers append to it) or `forwarded` (only for a proxy that sets RFC 7239 `Forwarded`
    /// and drops a client's own). The other header is the client's and never read.
    #[arg(
        long,
        env = "TRUSTED_PROXY_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub trusted_proxy_header: crate::client_ip::ProxyHeader,
    /// Login and registration attempts allowed per client IP per minute.
    #[arg(long, env = "LOGIN_RATE_LIMIT_PER_MINUTE", default_value_t = 30)]
    pub login_rate_limit: u32,
    /// Failed logins one client address may make against one account per failure window; beyond,
    /// that address gets 429 for that account (other addresses, the owner's, are not affected).
    /// 0 turns the per-account throttle (this budget and the slowdown) off.
    #[arg(long, env = "LOGIN_FAILURES_PER_ADDRESS", default_value_t = 10)]
    pub login_failures_per_address: u32,
    /// How long a failed login counts (from an address's first failure on the account).
    #[arg(long, env = "LOGIN_FAILURE_WINDOW_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_failure_window_seconds: u64,
    /// Failures of one account (all addresses, per window) after which every address that has
    /// failed on it waits longer before each attempt (an address without failures never waits).
    #[arg(
        long,
        env = "LOGIN_SLOWDOWN_AFTER_ACCOUNT_FAILURES",
        default_value_t = 20
    )]
    pub login_slowdown_after_account_failures: u32,
    /// The longest wait before a login attempt of an address with failures on the account.
    #[arg(long, env = "LOGIN_SLOWDOWN_MAX_MS", default_value_t = 5000)]
    pub login_slowdown_max_ms: u64,
    /// Socket.IO events one socket may send per second (token bucket refill); beyond it, and the
    /// burst, the socket is disconnected as a flood.
    #[arg(long, env = "SOCKET_EVENTS_PER_SECOND", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub socket_events_per_second: u32,
    /// Socket.IO events one socket may send at once (token bucket size).
    #[arg(long, env = "SOCKET_EVENTS_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub socket_events_burst: u32,
    /// Rooms one socket may be in (a frontend socket uses at most five, session restore included);
    /// beyond it the socket is disconnected.
    #[arg(long, env = "SOCKET_MAX_ROOMS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..))]
    pub socket_max_rooms: u32,
    /// Socket.IO (Engine.IO) sessions this process accepts at once; beyond, a handshake gets 503
    /// SERVER_BUSY + Retry-After. 0 (the default): derived from the memory limit (cgroup
    /// `memory.max`, else the host's memory) as (limit - SOCKET_MEMORY_RESERVED_MIB - password
    /// hashing) / SOCKET_MEMORY_PER_CONNECTION_KIB.
    #[arg(long, env = "SOCKET_MAX_CONNECTIONS", default_value_t = 0)]
    pub socket_max_connections: u32,
    /// Memory budgeted per Socket.IO connection when the cap is derived (measured ≈ 9 KiB idle;
    /// the rest is headroom for send buffers during broadcasts and polling).
    #[arg(long, env = "SOCKET_MEMORY_PER_CONNECTION_KIB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub socket_memory_per_connection_kib: u64,
    /// Memory kept out of the connection budget for everything else (runtime, pools, caches,
    /// requests in flight); password hashing's PASSWORD_HASH_CONCURRENCY x 19 MiB is kept as well.
    #[arg(long, env = "SOCKET_MEMORY_RESERVED_MIB", default_value_t = 64)]
    pub socket_memory_reserved_mib: u64,
    /// An Engine.IO session that has not sent its Socket.IO CONNECT (with a valid token) within
    /// this is closed. The frontend sends it right after the transport opens.
    #[arg(long, env = "SOCKET_CONNECT_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub socket_connect_timeout_seconds: u64,
    /// New Socket.IO sessions one client address may open per minute, in this process (a bucket of
    /// this size refilled over a minute); beyond, 429 + Retry-After. Carrier NATs put many phones
    /// behind one address and each page opens up to three sockets: keep it generous. 0 = off.
    #[arg(
        long,
        env = "SOCKET_HANDSHAKES_PER_ADDRESS_PER_MINUTE",
        default_value_t = 600
    )]
    pub socket_handshakes_per_address: u32,
    /// JSON logs (default) or human-readable ones.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

/// The parsed `TRUSTED_PROXIES`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

fn parse_proxies(s: &str) -> Result<TrustedProxies, String> {
    crate::client_ip::parse_trusted(s).map(TrustedProxies)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("not a boolean: {s}")),
    }
}

impl Config {
    /// The JWT secret, refusing a missing, short or well-known one outside dev mode.
    pub fn jwt_secret(&self) -> anyhow::Result<String> {
        match (&self.jwt_secret, self.dev) {
            (Some(s), false) if s.len() < 32 || KNOWN_WEAK_SECRETS.contains(&s.as_str()) => {
                Err(anyhow::anyhow!(
                    "JWT_SECRET is too weak: use at least 32 random bytes (e.g. `openssl rand -hex 32`)"
                ))
            }
            (Some(s), _) if !s.is_empty() => Ok(s.clone()),
            (_, true) => Ok(DEV_JWT_SECRET.to_string()),
            (_, false) => Err(anyhow::anyhow!(
                "JWT_SECRET is required outside dev mode (TIKETI_DEV=1)"
            )),
        }
    }

    /// `REDIS_EVICTION_POLICY_CHECK`, defaulting to refuse outside dev mode: a Redis that evicts
    /// loses waiting-room places mid-sale, which a failed rollout is much cheaper than.
    pub fn eviction_check(&self) -> CheckMode {
        self.redis_eviction_policy_check.unwrap_or(if self.dev {
            CheckMode::Warn
        } else {
            CheckMode::Refuse
        })
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(format!("{}:{}", self.host, self.port).parse()?)
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{}", self.port))
            .trim_end_matches('/')
            .to_string()
    }

    /// The admin account to ensure at start: explicit settings, else the demo admin in dev mode.
    pub fn admin_account(&self) -> Option<(String, String)> {
        match (&self.admin_email, &self.admin_password) {
            (Some(e), Some(p)) => Some((e.clone(), p.clone())),
            _ if self.dev => Some(("admin@tiketi.gg".into(), "admin123".into())),
            _ => None,
        }
    }

    /// A configuration for tests and tools: dev mode, fast payments, the given stores.
    pub fn for_tests(database_url: &str, redis_url: &str, redis_prefix: &str) -> Self {
        let cli = Cli::parse_from([
            "tiketi-service",
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--redis-prefix",
            redis_prefix,
            "--dev",
            "true",
        ]);
        Config {
            payment_delay_min_ms: 0,
            payment_delay_max_ms: 5,
            login_rate_limit: 1000,
            demo_data: false,
            reserve_rate_limit: 10_000,
            queue_check_rate_limit: 10_000,
            reserve_rate_limit_per_ip: 0,
            queue_check_rate_limit_per_ip: 0,
            login_failures_per_address: 0,
            socket_handshakes_per_address: 0,
            // like the rate limits, off unless a test is about them
            max_seats_per_user_per_event: 0,
            max_tickets_per_user_per_event: 0,
            ..cli.config
        }
    }
}

/// `REDIS_EVICTION_POLICY_CHECK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckMode {
    /// Do not start on an evicting policy (default outside dev mode).
    Refuse,
    /// Start, and log an error (default in dev mode).
    Warn,
    /// Do not check.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Config {
        let mut all = vec!["tiketi-service", "--database-url", "postgres://x"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().config
    }

    #[test]
    fn config_secret_required_outside_dev() {
        assert!(cfg(&[]).jwt_secret().is_err());
        assert!(cfg(&["--jwt-secret", "short"]).jwt_secret().is_err());
        assert!(
            cfg(&["--jwt-secret", "your-secret-key-change-in-production"])
                .jwt_secret()
                .is_err()
        );
        let strong = "0123456789abcdef0123456789abcdef";
        assert_eq!(cfg(&["--jwt-secret", strong]).jwt_secret().unwrap(), strong);
        assert_eq!(cfg(&["--dev", "1"]).jwt_secret().unwrap(), DEV_JWT_SECRET);
    }

    #[test]
    fn config_trusted_proxies_parsed_or_refused() {
        assert!(cfg(&[]).trusted_proxies.0.is_empty());
        let c = cfg(&["--trusted-proxies", "10.0.0.0/8,127.0.0.1"]);
        assert_eq!(c.trusted_proxies.0.len(), 2);
        let all = [
            "tiketi-service",
            "--database-url",
            "x",
            "--trusted-proxies",
            "10.0.0.0/40",
        ];
        assert!(Cli::try_parse_from(all).is_err());
    }

    #[test]
    fn config_admin_only_in_dev_or_explicit() {
        assert!(cfg(&[]).admin_account().is_none());
        assert_eq!(
            cfg(&["--dev", "1"]).admin_account().unwrap().0,
            "admin@tiketi.gg"
        );
    }
}
