//! TIKETI service: REST API and Socket.IO server, wire-compatible with the TIKETI React frontend.

pub mod admin;
pub mod api_docs;
pub mod app;
pub mod auth;
pub mod body;
pub mod breaker;
pub mod cache;
pub mod client_ip;
pub mod codes;
pub mod config;
pub mod effects;
pub mod error;
pub mod events;
pub mod eviction;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod news;
pub mod payments;
pub mod queue;
pub mod ratelimit;
pub mod realtime;
pub mod reservations;
pub mod seats;
pub mod seed;
pub mod state;
pub mod stores;
pub mod uploads;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

pub use crate::{config::Config, state::AppState};

/// How long a draining replica waits for its Socket.IO connections to close.
const SOCKET_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A ready service: its state (for jobs and tests) and its router.
pub struct Service {
    pub state: AppState,
    pub router: Router,
    /// The Socket.IO handle; `state` links to it weakly (see `realtime::Realtime`).
    io: std::sync::Arc<realtime::Io>,
}

impl Service {
    /// Connects to PostgreSQL and Redis and assembles the router. Nothing is served yet.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = stores::db_pool(&config)?;
        let redis = stores::redis_pool(&config).await?;
        let jwt = std::sync::Arc::new(auth::jwt::JwtKeys::new(config.jwt_secret()?.as_bytes()));
        let state = AppState::new(db, redis, jwt, config);
        let (sio_layer, io) = realtime::layer::build(&state).await?;
        eviction::check_at_start(&state).await?;
        let router = app::router(state.clone(), sio_layer);
        Ok(Self { state, router, io })
    }

    /// Start-up work: migrations (if asked), the admin account, dev demo data.
    pub async fn prepare(&self, migrate: bool) -> anyhow::Result<()> {
        let cfg = &self.state.config;
        if migrate {
            stores::migrate(&self.state.db).await?;
        }
        if let Some((email, password)) = cfg.admin_account() {
            auth::ensure_admin(&self.state.db, &email, &password).await?;
        }
        if cfg.dev && cfg.demo_data {
            seed::demo_data(&self.state.db).await?;
        }
        Ok(())
    }

    /// Serves until `shutdown` resolves. The per-replica loops (dependency checks, presence
    /// heartbeat, Redis eviction-policy re-checks) run beside the server and end with it, as they
    /// would with a killed process.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let health = self.state.health.clone();
        let io = (*self.io).clone();
        let shutdown = async move {
            shutdown.await;
            health.start_draining();
            // Close every Socket.IO connection (Engine.IO transport close, WebSocket close handshake):
            // socket.io-client reports "transport close" and reconnects at once, to a replica still
            // in the Service, and gets its session restored. The graceful HTTP shutdown does not
            // track upgraded connections: without this they would stay open until the process
            // exits (or forever, in-process), and clients would only find out from a dead TCP peer.
            if tokio::time::timeout(SOCKET_CLOSE_TIMEOUT, io.close())
                .await
                .is_err()
            {
                tracing::warn!(
                    "Socket.IO connections not all closed within {SOCKET_CLOSE_TIMEOUT:?}"
                );
            }
        };
        let server = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown);
        tokio::select! {
            served = server => served?,
            () = health::watch(self.state.clone()) => {}
            () = realtime::presence::heartbeat(self.state.clone()) => {}
            () = eviction::watch(self.state.clone()) => {}
            () = news::views::run(self.state.clone()) => {}
        }
        // the views counted since the last flush are not lost with the replica
        if let Err(e) = news::views::flush(&self.state).await {
            tracing::warn!(error = %e, "news views counted here were not written");
        }
        Ok(())
    }
}
