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
    printcolumn(name = "Why", type_ = "string", json_path = ".status.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[kube(validation = Rule::new(TARGET_FIXED_RULE).message(TARGET_FIXED_MESSAGE))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("timestamp(self.closesAt) > timestamp(self.opensAt)").message("closesAt must be after opensAt"))]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.afterSale) || !has(self.afterSale.replicas) || (self.afterSale.replicas >= self.minReplicas && self.afterSale.replicas <= self.maxReplicas)").message("afterSale.replicas must lie within minReplicas..maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.connectionBudget) || self.connectionBudget.poolPerReplica <= 0 || (self.connectionBudget.maxConnections - (has(self.connectionBudget.reserved) ? self.connectionBudget.reserved : 10)) / self.connectionBudget.poolPerReplica >= (self.minReplicas > 1 ? self.minReplicas : 1)").message("connectionBudget must leave room for minReplicas (and at least 1 replica)"))]
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
    /// How long before `opensAt` scaling starts, so replicas are Ready at the opening (e.g. 30m), or
    /// `auto`: the measured start-to-Ready time of the target's pods (kept in status across sales)
    /// times a safety factor (30m until something was measured).
    #[serde(default = "default_lead_time")]
    #[x_kube(validation = Rule::new("self == 'auto' || (self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') && self != '')").message("leadTime must be a duration like 30m or 1h30m, or auto"))]
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
    /// What to do when an HPA or a KEDA ScaledObject also scales the target: `Report` (default) does
    /// not scale and says so; `Cooperate` raises the HPA's `minReplicas` (or pauses the ScaledObject at
    /// the wished replicas) during the sale window and restores it afterwards.
    #[serde(default)]
    pub other_autoscalers: OtherAutoscalers,
}

/// A transition rule on the whole object (it needs the status): while the sale's plan holds the
/// target (pre-scaling to draining), the target cannot change, or the old one would stay at sale size.
pub const TARGET_FIXED_RULE: &str = "!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['PreScaling', 'Ready', 'OnSale', 'Draining']) || self.spec.target == oldSelf.spec.target";
pub const TARGET_FIXED_MESSAGE: &str =
    "target is immutable while the sale window is in progress (PreScaling to Draining)";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum OtherAutoscalers {
    #[default]
    Report,
    Cooperate,
}

impl TicketEventSpec {
    /// The CRD's CEL rules, checked again in Rust: the operator must not trust that every object it
    /// reads went through this version of the schema. Timestamps are left to the caller, which parses
    /// them anyway (`opensAt`/`closesAt` format and `closesAt > opensAt`). `Err` is the rule's message.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_string()) };
        check(is_uuid(&self.event_id), "eventId must be a UUID")?;
        let artist = self.artist.chars().count();
        check(
            artist > 0 && artist <= 255,
            "artist must be 1 to 255 characters",
        )?;
        check(
            !self.target.name.is_empty() && self.target.name.len() <= 253,
            "target.name must not be empty",
        )?;
        check(
            self.users_per_replica > 0,
            "usersPerReplica must be positive",
        )?;
        check(
            self.lead_time == LEAD_TIME_AUTO
                || (self.lead_time.len() <= 20
                    && duration::parse_seconds(&self.lead_time).is_some()),
            "leadTime must be a duration like 30m or 1h30m, or auto",
        )?;
        check(self.min_replicas >= 0, "minReplicas must not be negative")?;
        check(self.max_replicas >= 1, "maxReplicas must be at least 1")?;
        check(
            self.min_replicas <= self.max_replicas,
            "minReplicas must not exceed maxReplicas",
        )?;
        check(
            self.fallback_expected_users >= 0,
            "fallbackExpectedUsers must not be negative",
        )?;
        self.queue_scaling.validate()?;
        if let Some(a) = &self.after_sale {
            check(
                a.hold.len() <= 20
                    && (a.hold.is_empty() || duration::parse_seconds(&a.hold).is_some()),
                "afterSale.hold must be a duration like 10m",
            )?;
            check(
                a.replicas
                    .is_none_or(|r| r >= self.min_replicas && r <= self.max_replicas),
                "afterSale.replicas must lie within minReplicas..maxReplicas",
            )?;
        }
        if let Some(b) = &self.connection_budget {
            check(b.max_connections > 0, "maxConnections must be positive")?;
            check(b.pool_per_replica > 0, "poolPerReplica must be positive")?;
            check(b.reserved >= 0, "reserved must not be negative")?;
            check(
                b.max_connections > b.reserved,
                "maxConnections must exceed reserved",
            )?;
            check(
                (b.max_connections - b.reserved) / b.pool_per_replica >= self.min_replicas.max(1),
                "connectionBudget must leave room for minReplicas (and at least 1 replica)",
            )?;
        }
        Ok(())
    }
}

impl QueueScaling {
    fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_string()) };
        check(
            (1..=60).contains(&self.poll_seconds),
            "pollSeconds must be 1 to 60",
        )?;
        check(self.rules.len() <= 10, "at most 10 step rules")?;
        check(
            self.target_queue_per_replica.is_none_or(|t| t > 0),
            "targetQueuePerReplica must be positive",
        )?;
        check(
            self.drain_within_seconds.is_none_or(|t| t > 0),
            "drainWithinSeconds must be positive",
        )?;
        let rules = &self.rules;
        for r in rules {
            check(
                r.above.is_some() != r.below.is_some(),
                "a step rule has exactly one of above or below",
            )?;
            check(
                (r.above.is_some() && r.change > 0) || (r.below.is_some() && r.change < 0),
                "rules with above add replicas (change > 0); rules with below remove them (change < 0)",
            )?;
            check(
                r.cooldown_seconds >= 0,
                "cooldownSeconds must not be negative",
            )?;
        }
        for a in rules {
            for b in rules {
                if let (Some(above), Some(below)) = (a.above, b.below) {
                    check(
                        below < above,
                        "step rules overlap: every below threshold must be under every above threshold",
                    )?;
                }
                if let (Some(x), Some(y)) = (a.above, b.above) {
                    check(
                        x == y || (x < y) == (a.change < b.change),
                        "step rules are unordered: a higher above threshold must add more replicas",
                    )?;
                }
                if let (Some(x), Some(y)) = (a.below, b.below) {
                    check(
                        x == y || (x > y) == (a.change > b.change),
                        "step rules are unordered: a lower below threshold must remove more replicas",
                    )?;
                }
            }
            let same = rules
                .iter()
                .filter(|b| {
                    (a.above.is_some() && a.above == b.above)
                        || (a.below.is_some() && a.below == b.below)
                })
                .count();
            check(same == 1, "step rules repeat a threshold")?;
        }
        Ok(())
    }
}

/// The CRD's eventId pattern: 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn default_users_per_replica() -> i32 {
    1500
}
/// `leadTime: auto`: from measured pod start-up times.
pub const LEAD_TIME_AUTO: &str = "auto";

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
    /// Drain-time target: enough replicas to empty the waiting room within this many seconds, from
    /// the queue depth and the admission outflow per ready replica the service measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("drainWithinSeconds must be positive"))]
    pub drain_within_seconds: Option<i64>,
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
            drain_within_seconds: None,
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
    /// Peak demand seen during the sale (distinct users on the page or in the queue, the measure the
    /// forecast is made in), against the forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_actual_users: Option<i64>,
    /// (peak demand - forecast users) / forecast users, in percent, rounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_error_percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Replicas asked of the target (this event's wish merged with the other live events').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_replicas: Option<i32>,
    /// The Deployment that records this sale's wish: when `spec.target` moves away from it, the
    /// operator gives it back (baseline replicas, its HPA or ScaledObject restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wish_target: Option<String>,
    /// Replicas that exist but are not Ready yet (counted toward scale-up decisions: warm-up credit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_replicas: Option<i32>,
    /// Users the waiting room of this event may admit (its share of the target's ready capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_users: Option<i64>,
    /// Inputs and result of the drain-time rule, when it is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
    /// Another autoscaler on the target and what the operator did about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    /// Measured start-to-Ready times of the target's pods, for `leadTime: auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<StartupStatus>,
    /// One line: what the operator does now and why (the `Why` column of `kubectl get te`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    pub queue_depth: i64,
    /// Admissions per second per replica, as the service measured them (none yet: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outflow_per_replica: Option<f64>,
    /// The replicas that outflow was measured with (the service's count, else Ready now).
    pub ready_replicas: i32,
    pub within_seconds: i64,
    /// Replicas the rule asks for (none while the outflow is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// `HorizontalPodAutoscaler` or `ScaledObject`.
    pub kind: String,
    pub name: String,
    /// `Report` or `Cooperate` (spec.otherAutoscalers).
    pub policy: String,
    /// What was done, e.g. "minReplicas 2 -> 5 until the sale ends".
    pub effect: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartupStatus {
    /// The last measured start-to-Ready times in seconds (newest last, at most 20).
    #[serde(default)]
    pub samples_seconds: Vec<i64>,
    /// The lead time `auto` plans with (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time_seconds: Option<i64>,
    /// Ready time of the newest pod measured (RFC 3339): only pods Ready after it add samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_until: Option<String>,
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
    /// The queue depth or the service's outflow could not be read this pass.
    pub const SIGNALS_DEGRADED: &str = "SignalsDegraded";
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TicketEventSpec {
        TicketEventSpec {
            event_id: "0b6c7a52-3f4e-4a43-9d1e-2f3c4b5a6d7e".into(),
            artist: "아이유".into(),
            opens_at: "2026-12-01T20:00:00+09:00".into(),
            closes_at: "2026-12-01T23:00:00+09:00".into(),
            target: TargetRef {
                kind: TargetKind::Deployment,
                name: "tiketi".into(),
            },
            users_per_replica: default_users_per_replica(),
            lead_time: default_lead_time(),
            min_replicas: 2,
            max_replicas: 20,
            fallback_expected_users: 7500,
            queue_scaling: QueueScaling::default(),
            after_sale: Some(AfterSale {
                hold: "10m".into(),
                replicas: Some(3),
            }),
            connection_budget: Some(ConnectionBudget {
                max_connections: 200,
                pool_per_replica: 10,
                reserved: 10,
            }),
            mode: Mode::Active,
            other_autoscalers: OtherAutoscalers::Report,
        }
    }

    type Change = Box<dyn FnOnce(&mut TicketEventSpec)>;

    fn refused(change: impl FnOnce(&mut TicketEventSpec)) -> String {
        let mut s = spec();
        change(&mut s);
        s.validate().expect_err("spec should be refused")
    }

    #[test]
    fn validate_accepts_the_defaults_and_refuses_what_cel_refuses() {
        assert_eq!(spec().validate(), Ok(()));
        let rule = |above: Option<i64>, below: Option<i64>, change: i32| StepRule {
            above,
            below,
            change,
            cooldown_seconds: 60,
        };
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.event_id = "not-a-uuid".into()),
                "eventId must be a UUID",
            ),
            (
                Box::new(|s| s.artist = String::new()),
                "artist must be 1 to 255 characters",
            ),
            (
                Box::new(|s| s.artist = "가".repeat(256)),
                "artist must be 1 to 255 characters",
            ),
            (
                Box::new(|s| s.target.name = String::new()),
                "target.name must not be empty",
            ),
            (
                Box::new(|s| s.users_per_replica = 0),
                "usersPerReplica must be positive",
            ),
            (
                Box::new(|s| s.lead_time = "30".into()),
                "leadTime must be a duration like 30m or 1h30m, or auto",
            ),
            (
                Box::new(|s| s.lead_time = String::new()),
                "leadTime must be a duration like 30m or 1h30m, or auto",
            ),
            (
                Box::new(|s| s.queue_scaling.drain_within_seconds = Some(0)),
                "drainWithinSeconds must be positive",
            ),
            (
                Box::new(|s| s.min_replicas = -1),
                "minReplicas must not be negative",
            ),
            (
                Box::new(|s| s.max_replicas = 0),
                "maxReplicas must be at least 1",
            ),
            (
                Box::new(|s| s.min_replicas = 21),
                "minReplicas must not exceed maxReplicas",
            ),
            (
                Box::new(|s| s.fallback_expected_users = -1),
                "fallbackExpectedUsers must not be negative",
            ),
            (
                Box::new(|s| s.queue_scaling.poll_seconds = 61),
                "pollSeconds must be 1 to 60",
            ),
            (
                Box::new(|s| s.queue_scaling.target_queue_per_replica = Some(0)),
                "targetQueuePerReplica must be positive",
            ),
            (
                Box::new(move |s| s.queue_scaling.rules = vec![rule(Some(1), Some(2), 1)]),
                "a step rule has exactly one of above or below",
            ),
            (
                Box::new(move |s| s.queue_scaling.rules = vec![rule(Some(1), None, -1)]),
                "rules with above add replicas (change > 0); rules with below remove them (change < 0)",
            ),
            (
                Box::new(move |s| {
                    s.queue_scaling.rules = vec![rule(Some(10), None, 1), rule(None, Some(10), -1)]
                }),
                "step rules overlap: every below threshold must be under every above threshold",
            ),
            (
                Box::new(move |s| {
                    s.queue_scaling.rules = vec![rule(Some(10), None, 2), rule(Some(20), None, 1)]
                }),
                "step rules are unordered: a higher above threshold must add more replicas",
            ),
            (
                Box::new(move |s| {
                    s.queue_scaling.rules = vec![rule(None, Some(10), -2), rule(None, Some(5), -1)]
                }),
                "step rules are unordered: a lower below threshold must remove more replicas",
            ),
            (
                Box::new(move |s| {
                    s.queue_scaling.rules = vec![rule(Some(10), None, 2), rule(Some(10), None, 2)]
                }),
                "step rules repeat a threshold",
            ),
            (
                Box::new(|s| s.after_sale.as_mut().unwrap().hold = "10x".into()),
                "afterSale.hold must be a duration like 10m",
            ),
            (
                Box::new(|s| s.after_sale.as_mut().unwrap().replicas = Some(1)),
                "afterSale.replicas must lie within minReplicas..maxReplicas",
            ),
            (
                Box::new(|s| s.connection_budget.as_mut().unwrap().reserved = 200),
                "maxConnections must exceed reserved",
            ),
            (
                Box::new(|s| s.connection_budget.as_mut().unwrap().pool_per_replica = 0),
                "poolPerReplica must be positive",
            ),
            (
                Box::new(|s| {
                    s.connection_budget = Some(ConnectionBudget {
                        max_connections: 100,
                        pool_per_replica: 10,
                        reserved: 95,
                    })
                }),
                "connectionBudget must leave room for minReplicas (and at least 1 replica)",
            ),
            (
                Box::new(|s| {
                    s.connection_budget = Some(ConnectionBudget {
                        max_connections: 40,
                        pool_per_replica: 10,
                        reserved: 10,
                    });
                    s.min_replicas = 4;
                    s.after_sale = None;
                }),
                "connectionBudget must leave room for minReplicas (and at least 1 replica)",
            ),
        ];
        for (change, message) in cases {
            assert_eq!(refused(change), message);
        }
    }

    /// Every CEL message of the generated schema is one `validate` can give (so a new CEL rule
    /// without its Rust twin fails here).
    #[test]
    fn validate_mirrors_every_cel_rule() {
        let crd = serde_json::to_string(&<TicketEvent as kube::CustomResourceExt>::crd()).unwrap();
        let source = include_str!("lib.rs");
        let validate =
            &source[source.find("pub fn validate").unwrap()..source.find("fn is_uuid").unwrap()];
        let messages: Vec<&str> = crd
            .split("\"message\":\"")
            .skip(1)
            .map(|m| &m[..m.find('"').unwrap()])
            .collect();
        assert!(messages.len() >= 20, "{} CEL messages", messages.len());
        for m in messages {
            let timestamps = m.starts_with("opensAt") || m.starts_with("closesAt");
            // a transition rule compares with the stored object, which validate() has not got
            let transition = m == TARGET_FIXED_MESSAGE;
            assert!(
                timestamps || transition || validate.contains(m),
                "CEL rule `{m}` has no twin in validate()"
            );
        }
    }
}
