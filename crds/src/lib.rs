//! The `TicketEvent` custom resource (`ticketevents.tiketi.io/v1alpha1`): one ticket sale whose
//! service capacity the operator plans, pre-scales, follows during the sale and restores afterwards.
//! Types only (no client), so the e2e tests and tools share them without the controller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub mod duration;

/// The sale and how to scale for it.
// clippy mistakes the repeated `type_` keys of separate printcolumns for duplicated attributes
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tiketi.io",
    version = "v1alpha1",
    kind = "TicketEvent",
    namespaced,
    status = "TicketEventStatus",
    shortname = "te",
    category = "tiketi",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Opens", type_ = "date", json_path = ".spec.opensAt"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Queue", type_ = "integer", json_path = ".status.queueDepth"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("timestamp(self.closesAt) > timestamp(self.opensAt)").message("closesAt must be after opensAt"))]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.afterSale) || !has(self.afterSale.replicas) || (self.afterSale.replicas >= self.minReplicas && self.afterSale.replicas <= self.maxReplicas)").message("afterSale.replicas must lie within minReplicas..maxReplicas"))]
pub struct TicketEventSpec {
    /// The TIKETI event id (UUID): its waiting queue is read from Redis during the sale.
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("eventId must be a UUID"))]
    #[schemars(length(max = 36))]
    pub event_id: String,
    /// Artist whose past sales (traffic_logs) forecast this one.
    #[x_kube(validation = Rule::new("size(self) > 0 && size(self) <= 255").message("artist must be 1 to 255 characters"))]
    #[schemars(length(max = 255))]
    pub artist: String,
    /// Sale opening, RFC 3339 with an offset (e.g. 2026-12-01T20:00:00+09:00).
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')").message("opensAt must be RFC 3339 with an offset"))]
    #[schemars(length(max = 40))]
    pub opens_at: String,
    /// Sale end, RFC 3339 with an offset.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')").message("closesAt must be RFC 3339 with an offset"))]
    #[schemars(length(max = 40))]
    pub closes_at: String,
    /// The workload that serves the sale.
    pub target: TargetRef,
    /// Concurrent users one replica serves.
    #[serde(default = "default_users_per_replica")]
    #[x_kube(validation = Rule::new("self > 0").message("usersPerReplica must be positive"))]
    pub users_per_replica: i32,
    /// How long before `opensAt` scaling starts, so replicas are Ready at the opening (e.g. 30m).
    #[serde(default = "default_lead_time")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') && self != ''").message("leadTime must be a duration like 30m or 1h30m"))]
    #[schemars(length(max = 20))]
    pub lead_time: String,
    #[serde(default = "default_min_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("minReplicas must not be negative"))]
    pub min_replicas: i32,
    #[serde(default = "default_max_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("maxReplicas must be at least 1"))]
    pub max_replicas: i32,
    /// Expected concurrent users when the artist has no history.
    #[serde(default = "default_fallback_users")]
    #[x_kube(validation = Rule::new("self >= 0").message("fallbackExpectedUsers must not be negative"))]
    pub fallback_expected_users: i64,
    /// Scaling on the waiting-queue depth during the sale.
    #[serde(default)]
    pub queue_scaling: QueueScaling,
    /// What happens once the sale closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_sale: Option<AfterSale>,
    /// Database connection budget that caps replicas: floor((maxConnections - reserved) / poolPerReplica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_budget: Option<ConnectionBudget>,
    /// `Plan` publishes the plan in status without scaling; `Active` scales.
    #[serde(default)]
    pub mode: Mode,
}

fn default_users_per_replica() -> i32 {
    1500
}
fn default_lead_time() -> String {
    "30m".into()
}
fn default_min_replicas() -> i32 {
    2
}
fn default_max_replicas() -> i32 {
    20
}
fn default_fallback_users() -> i64 {
    7500
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum TargetKind {
    Deployment,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Only `Deployment` is supported.
    pub kind: TargetKind,
    #[x_kube(validation = Rule::new("size(self) > 0").message("target.name must not be empty"))]
    #[schemars(length(max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum Mode {
    Plan,
    #[default]
    Active,
}

/// One step: above `above` queued users add `change` replicas; below `below` remove them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.above) != has(self.below)").message("a step rule has exactly one of above or below"))]
#[x_kube(validation = Rule::new("(has(self.above) && self.change > 0) || (has(self.below) && self.change < 0)").message("rules with above add replicas (change > 0); rules with below remove them (change < 0)"))]
pub struct StepRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<i64>,
    pub change: i32,
    /// Least time between two actions of this rule.
    #[x_kube(validation = Rule::new("self >= 0").message("cooldownSeconds must not be negative"))]
    pub cooldown_seconds: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.rules.all(a, self.rules.all(b, !has(a.above) || !has(b.below) || b.below < a.above))").message("step rules overlap: every below threshold must be under every above threshold"))]
#[x_kube(validation = Rule::new("self.rules.all(a, self.rules.all(b, !has(a.above) || !has(b.above) || a.above == b.above || (a.above < b.above) == (a.change < b.change)))").message("step rules are unordered: a higher above threshold must add more replicas"))]
#[x_kube(validation = Rule::new("self.rules.all(a, self.rules.all(b, !has(a.below) || !has(b.below) || a.below == b.below || (a.below > b.below) == (a.change > b.change)))").message("step rules are unordered: a lower below threshold must remove more replicas"))]
#[x_kube(validation = Rule::new("self.rules.all(a, size(self.rules.filter(b, (has(a.above) && has(b.above) && a.above == b.above) || (has(a.below) && has(b.below) && a.below == b.below))) == 1)").message("step rules repeat a threshold"))]
pub struct QueueScaling {
    /// How often the queue depth is read during the sale (1–60 s).
    #[serde(default = "default_poll")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 60").message("pollSeconds must be 1 to 60"))]
    pub poll_seconds: i64,
    #[serde(default = "default_rules")]
    #[schemars(length(max = 10))]
    pub rules: Vec<StepRule>,
    /// Target tracking instead of (or beside) steps: replicas = ceil(queue / this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("targetQueuePerReplica must be positive"))]
    pub target_queue_per_replica: Option<i64>,
}

fn default_poll() -> i64 {
    2
}

pub fn default_rules() -> Vec<StepRule> {
    vec![
        StepRule {
            above: Some(5_000),
            below: None,
            change: 2,
            cooldown_seconds: 180,
        },
        StepRule {
            above: Some(20_000),
            below: None,
            change: 5,
            cooldown_seconds: 300,
        },
        StepRule {
            above: None,
            below: Some(1_000),
            change: -1,
            cooldown_seconds: 600,
        },
    ]
}

impl Default for QueueScaling {
    fn default() -> Self {
        Self {
            poll_seconds: default_poll(),
            rules: default_rules(),
            target_queue_per_replica: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AfterSale {
    /// How long to keep sale capacity after `closesAt` (e.g. 10m).
    #[serde(default = "default_hold")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$')").message("afterSale.hold must be a duration like 10m"))]
    #[schemars(length(max = 20))]
    pub hold: String,
    /// Replicas to return to (default: minReplicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

fn default_hold() -> String {
    "10m".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxConnections > self.reserved").message("maxConnections must exceed reserved"))]
pub struct ConnectionBudget {
    #[x_kube(validation = Rule::new("self > 0").message("maxConnections must be positive"))]
    pub max_connections: i32,
    #[x_kube(validation = Rule::new("self > 0").message("poolPerReplica must be positive"))]
    pub pool_per_replica: i32,
    /// Connections kept for everything else (superuser, migrations, the operator).
    #[serde(default = "default_reserved")]
    #[x_kube(validation = Rule::new("self >= 0").message("reserved must not be negative"))]
    pub reserved: i32,
}

fn default_reserved() -> i32 {
    10
}

/// What the operator planned, saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketEventStatus {
    /// Scheduled, PreScaling, Ready, OnSale, Draining, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
    /// Replicas this event wants now (before merging with other events on the same target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
    /// Last scale-up and scale-down by queue rules (RFC 3339), for cooldowns across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_up_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_down_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_queue_depth: Option<i64>,
    /// Peak concurrent users seen during the sale, against the forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_actual_users: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Forecast {
    pub expected_users: i64,
    pub replicas: i32,
    /// How the figure was made (e.g. "recency-weighted median of 3 past sales", "fallback").
    pub method: String,
    /// The past sales it stands on.
    #[serde(default)]
    pub basis: Vec<PastSale>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PastSale {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub peak_users: i64,
    /// When that sale ended (RFC 3339).
    pub at: String,
    pub weight: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub at: String,
    pub replicas: i32,
    pub reason: String,
}

pub mod condition {
    pub const READY: &str = "Ready";
    pub const BUDGET_LIMITED: &str = "BudgetLimited";
    pub const FORECAST_FALLBACK: &str = "ForecastFallback";
    pub const TARGET_CONFLICT: &str = "TargetConflict";
}

pub mod phase {
    pub const SCHEDULED: &str = "Scheduled";
    pub const PRE_SCALING: &str = "PreScaling";
    pub const READY: &str = "Ready";
    pub const ON_SALE: &str = "OnSale";
    pub const DRAINING: &str = "Draining";
    pub const COMPLETED: &str = "Completed";
    pub const FAILED: &str = "Failed";
}
