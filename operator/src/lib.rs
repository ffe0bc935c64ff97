//! TIKETI operator: plans, pre-scales and follows ticket sales (`TicketEvent`).

pub mod act;
pub mod controller;
#[cfg(test)]
mod controller_tests;
pub mod decide;
#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod io_tests;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod signals;
#[cfg(test)]
mod spec_props;
pub mod status;

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
        }
    }
}
