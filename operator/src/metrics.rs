//! Operator metrics (Prometheus text on :8080/metrics).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub ticket_event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub watch: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub forecast_users: Family<EventLabels, Gauge>,
    pub scale_latency: Histogram,
    /// Scales refused because the target changed since the pass read it (decided again).
    pub stale_scales: Counter,
    pub leader: Gauge,
    /// Errors of the HPA and ScaledObject watches (conflict detection is blind while they fail).
    pub watch_errors: Family<WatchLabels, Counter>,
    /// The API server's clock minus this replica's, in milliseconds.
    pub clock_skew_ms: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tiketi_operator");
        let m = Metrics {
            registry: Registry::default(),
            reconciles: Counter::default(),
            failures: Family::default(),
            decisions: Family::default(),
            forecast_users: Family::default(),
            scale_latency: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0]),
            stale_scales: Counter::default(),
            leader: Gauge::default(),
            watch_errors: Family::default(),
            clock_skew_ms: Gauge::default(),
        };
        registry.register(
            "watch_errors",
            "Errors of the HPA and ScaledObject watches, by watch",
            m.watch_errors.clone(),
        );
        registry.register(
            "clock_skew_milliseconds",
            "The API server's clock minus this replica's (phases and cooldowns use the API server's)",
            m.clock_skew_ms.clone(),
        );
        registry.register(
            "stale_scales",
            "Scales refused because the target changed since it was read; decided again",
            m.stale_scales.clone(),
        );
        registry.register("reconciles", "Reconcile passes", m.reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconcile passes by error",
            m.failures.clone(),
        );
        registry.register(
            "scaling_decisions",
            "Scale patches by direction",
            m.decisions.clone(),
        );
        registry.register(
            "forecast_users",
            "Forecast peak users per TicketEvent",
            m.forecast_users.clone(),
        );
        registry.register(
            "scale_patch_seconds",
            "Latency of /scale patches",
            m.scale_latency.clone(),
        );
        registry.register("leader", "1 while this replica leads", m.leader.clone());
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
