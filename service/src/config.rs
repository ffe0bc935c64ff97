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
    pub redis_eviction_policy_check: Option<crate::eviction::CheckMode>,
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
    /// Mock payment delay bounds.
    #[arg(long, env = "PAYMENT_DELAY_MIN_MS", default_value_t = 500)]
    pub payment_delay_min_ms: u64,
    #[arg(long, env = "PAYMENT_DELAY_MAX_MS", default_value_t = 1500)]
    pub payment_delay_max_ms: u64,
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
    /// Period of the traffic sampler (rows are per minute).
    #[arg(long, env = "TRAFFIC_SAMPLE_SECONDS", default_value_t = 60)]
    pub traffic_sample_seconds: u64,
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
    /// Proxies whose forwarding headers are believed (comma-separated CIDRs or addresses, e.g. the
    /// ingress controller's pod CIDR). Per-IP limits then key on the client address from
    /// `Forwarded`/`X-Forwarded-For`; empty (the default): trust nobody, use the TCP peer.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,
    /// Login attempts allowed per client IP per minute.
    #[arg(long, env = "LOGIN_RATE_LIMIT_PER_MINUTE", default_value_t = 30)]
    pub login_rate_limit: u32,
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
    pub fn eviction_check(&self) -> crate::eviction::CheckMode {
        use crate::eviction::CheckMode;
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
            // like the rate limits, off unless a test is about them
            max_seats_per_user_per_event: 0,
            max_tickets_per_user_per_event: 0,
            ..cli.config
        }
    }
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
