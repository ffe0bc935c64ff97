use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use clap::Parser;
use kube::{Client, runtime::events::Recorder};
use tiketi_operator::{
    clock::{self, Clock},
    controller::{self, Watch},
    health::Health,
    leader::{self, Elector, Fence, Leadership, Timing},
    metrics::Metrics,
    scope::Scope,
};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "tiketi-operator",
    version,
    about = "Pre-scales the TIKETI service for ticket sales"
)]
struct Config {
    /// PostgreSQL with the service's traffic history (read) and sale_forecasts (written).
    /// Without it every forecast falls back to fallbackExpectedUsers.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Redis of the service: waiting-queue depth in, ready capacity out.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    #[arg(long, env = "REDIS_PREFIX", default_value = tiketi_core::keys::DEFAULT_PREFIX)]
    redis_prefix: String,
    /// Elect a leader through a Lease (run two replicas); off runs the controller at once.
    #[arg(long, env = "LEADER_ELECTION", action = clap::ArgAction::Set, default_value = "true")]
    leader_election: bool,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Namespaces whose TicketEvents this install reconciles, comma-separated; empty: its own
    /// namespace (POD_NAMESPACE) only; `*`: every namespace (needs the cluster-wide RBAC).
    #[arg(long, env = "WATCH_NAMESPACES", default_value = "")]
    watch_namespaces: String,
    /// Label selector: reconcile only the TicketEvents it matches (e.g. `tiketi.io/instance=prod`);
    /// empty: all of the watched namespaces.
    #[arg(long, env = "TICKET_EVENT_SELECTOR", default_value = "")]
    ticket_event_selector: String,
    /// Honour `otherAutoscalers: Cooperate` (patch HPAs and ScaledObjects; needs that RBAC). Off:
    /// such TicketEvents only report the other autoscaler.
    #[arg(long, env = "ALLOW_COOPERATE", action = clap::ArgAction::Set, default_value = "false")]
    allow_cooperate: bool,
    /// Measure pod start-up for `leadTime: auto` (lists the target's pods; needs that RBAC). Off:
    /// `auto` uses its default lead time.
    #[arg(long, env = "LEAD_TIME_AUTO", action = clap::ArgAction::Set, default_value = "false")]
    lead_time_auto: bool,
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    #[arg(long, env = "LEASE_NAME", default_value = "tiketi-operator")]
    lease_name: String,
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// Remove the operator's finalizer from the watched TicketEvents and exit (the chart's
    /// post-delete hook: with the operator gone, it would block namespace and CRD deletion).
    #[arg(long)]
    release_finalizers: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if cfg.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let watch = Watch {
        scope: Scope::parse(&cfg.watch_namespaces, &cfg.namespace).map_err(anyhow::Error::msg)?,
        selector: Some(cfg.ticket_event_selector.trim().to_string()).filter(|s| !s.is_empty()),
    };
    tracing::info!(scope = ?watch.scope, selector = ?watch.selector, "reconciling");
    // every response's Date header measures this replica's skew against the API server's clock
    let clock = Arc::new(Clock::default());
    let client: Client = kube::client::ClientBuilder::try_from(kube::Config::infer().await?)?
        .with_layer(&clock::layer(clock.clone()))
        .build();
    if cfg.release_finalizers {
        let n = tiketi_operator::uninstall::release_finalizers(client, &watch).await?;
        tracing::info!(released = n, "finalizers released");
        return Ok(());
    }
    let identity = cfg
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("tiketi-operator-{}", uuid::Uuid::new_v4().simple()));
    let db = match &cfg.database_url {
        Some(url) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy(url)?,
        ),
        None => None,
    };
    let redis = match &cfg.redis_url {
        Some(url) => {
            use fred::prelude::{Builder, Config as RedisConfig, ReconnectPolicy};
            let pool = Builder::from_config(RedisConfig::from_url(url)?)
                .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(1))
                .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
                .build_pool(2)?;
            pool.connect_pool();
            Some(pool)
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let timing = Timing::default();
    // a leader-loop round takes at most a retry plus the renew deadline (hanging calls time out)
    let health = Arc::new(Health::new(3 * (timing.retry + timing.renew_deadline)));
    let (leadership, fence) = if cfg.leader_election {
        let (l, f) = Leadership::new();
        (Some(l), f)
    } else {
        (None, Fence::always())
    };
    let shared = tiketi_operator::context::Shared {
        recorder: Recorder::new(client.clone(), controller::reporter(Some(identity.clone()))),
        client: client.clone(),
        db,
        redis,
        keys: tiketi_core::keys::Keys::new(cfg.redis_prefix.clone()),
        metrics: metrics.clone(),
        fence,
        clock: clock.clone(),
        allow: tiketi_operator::context::Allow {
            cooperate: cfg.allow_cooperate,
            pod_starts: cfg.lead_time_auto,
        },
        identity: identity.clone(),
    };

    let web_metrics = metrics.clone();
    let web_health = health.clone();
    let web = Router::new()
        .route(
            "/metrics",
            get(move || {
                web_metrics.clock_skew_ms.set(clock.skew_ms());
                std::future::ready(web_metrics.render())
            }),
        )
        .route(
            "/healthz",
            get(move || {
                std::future::ready(match web_health.check() {
                    Ok(()) => (axum::http::StatusCode::OK, "ok"),
                    Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why),
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr).await?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, web).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    let Some(leadership) = leadership else {
        metrics.leader.set(1);
        return controller::run(shared, health, watch, shutdown_signal()).await;
    };
    let health_for_controller = health.clone();
    let elector = Elector::new(client, &cfg.namespace, &cfg.lease_name, identity, timing);
    let beat = move || health.beat();
    let leading = move |yes: bool| {
        metrics.leader.set(i64::from(yes));
    };
    leader::run(
        elector,
        leadership,
        shutdown_signal,
        beat,
        leading,
        |stop| controller::run(shared, health_for_controller, watch, stop),
    )
    .await
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
}
