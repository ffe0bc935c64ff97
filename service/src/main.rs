use clap::Parser;
use tiketi_service::{
    Service,
    config::{Cli, Command},
    jobs, stores,
};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc (docs/benchmarks.md, "Memory per socket"): glibc adds a
/// 16-byte header to every chunk and keeps the memory the connect phase's transient allocations
/// freed resident (`malloc_trim(0)` gave back ≈ 2.6 KiB per idle socket); jemalloc packs small
/// objects in size-class slabs without headers and returns freed pages to the kernel. Its settings
/// are built in (`JEMALLOC_SYS_WITH_MALLOC_CONF` in `.cargo/config.toml`: a background thread
/// purges freed pages after 1 s, so an idle process gives them back too); `_RJEM_MALLOC_CONF` in
/// the environment overrides them at start-up.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if cli.config.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let db = stores::db_pool(&cli.config)?;
            stores::migrate(&db).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let addr = cli.config.listen_addr()?;
            let migrate = cli.config.migrate;
            let service = Service::build(cli.config).await?;
            service.prepare(migrate).await?;
            jobs::spawn_all(&service.state);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "tiketi-service listening");
            service.serve(listener, shutdown_signal()).await?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
