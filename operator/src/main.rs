use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use clap::Parser;
use kube::{Client, runtime::events::Recorder};
use tiketi_operator::{
    controller::{self, Deps},
    leader::{self, Elector, Timing},
    metrics::Metrics,
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
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    #[arg(long, env = "LEASE_NAME", default_value = "tiketi-operator")]
    lease_name: String,
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
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
    let client = Client::try_default().await?;
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
    let deps = Deps {
        recorder: Recorder::new(client.clone(), controller::reporter(Some(identity.clone()))),
        client: client.clone(),
        db,
        redis,
        keys: tiketi_core::keys::Keys::new(cfg.redis_prefix.clone()),
        metrics: metrics.clone(),
    };

    let web_metrics = metrics.clone();
    let web = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(web_metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok")));
    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr).await?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, web).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    if !cfg.leader_election {
        metrics.leader.set(1);
        return controller::run(deps, shutdown_signal()).await;
    }
    let elector = Elector::new(
        client,
        &cfg.namespace,
        &cfg.lease_name,
        identity.clone(),
        Timing::default(),
    );
    if !leader::acquire(&elector, shutdown_signal()).await {
        return Ok(());
    }
    tracing::info!(%identity, "leading");
    metrics.leader.set(1);
    // renew until the lease is lost or the renew deadline passes; then stop acting (and exit: a
    // standby takes over once the lease runs out)
    let timing = elector.timing();
    let elector = Arc::new(elector);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renewing = {
        let elector = elector.clone();
        tokio::spawn(async move {
            let why = leader::keep_leading(|| elector.try_lead(), timing).await;
            tracing::warn!(?why, "leadership lost: stopping");
            let _ = lost_tx.send(());
        })
    };
    let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => { let _ = shut_tx.send(()); }
            _ = lost_rx => {}
        }
    };
    let result = controller::run(deps, stop).await;
    metrics.leader.set(0);
    // shut down (not lost): the controller stopped acting, so hand the lease over now rather than
    // leave the target leaderless for the rest of the lease
    if shut_rx.await.is_ok() {
        renewing.abort();
        match tokio::time::timeout(Duration::from_secs(3), elector.release()).await {
            Ok(Ok(true)) => tracing::info!(%identity, "lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "lease not released"),
            Err(_) => tracing::warn!("lease not released: the API server did not answer"),
        }
    }
    result
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
