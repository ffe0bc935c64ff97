//! TIKETI operator: plans, pre-scales and follows ticket sales (`TicketEvent`).

pub mod act;
pub mod clock;
pub mod context;
pub mod controller;
#[cfg(test)]
mod controller_tests;
pub mod decide;
#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod fixtures;
pub mod health;
#[cfg(all(test, feature = "io-tests"))]
mod io_tests;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod sale;
pub mod sale_data;
pub mod scope;
#[cfg(test)]
mod shared_cluster_tests;
#[cfg(test)]
mod spec_props;
pub mod status;
pub mod uninstall;
#[cfg(test)]
mod wish_props;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("TicketEvent must be namespaced")]
    NotNamespaced,
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The target changed between this pass's read and its scale (another pass scaled it).
    #[error("the target changed since it was read")]
    TargetChanged,
    /// Leadership was lost (or its renewal is overdue): the pass stops before its next write.
    #[error("not leading")]
    NotLeading,
    /// The HPA, ScaledObject or TicketEvent store has not had a complete list yet.
    #[error("the watch caches are not synced yet")]
    StoresNotReady,
}

impl Error {
    /// A stable label for the failures metric.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Db(_) => "postgres",
            Error::Redis(_) => "redis",
            Error::NotNamespaced => "spec",
            Error::Finalizer(_) => "finalizer",
            Error::TargetChanged => "target_changed",
            Error::NotLeading => "not_leading",
            Error::StoresNotReady => "stores_not_ready",
        }
    }
}
