//! One TicketEvent as a pass reads it: the spec, the last status and the spec validated and parsed
//! once (times and durations are strings in the CRD). `observe` chooses its reads from the phase it
//! gives, `decide` decides from it; and the RFC 3339 timestamps status uses.

use chrono::{DateTime, Utc};
use tiketi_crds::{LEAD_TIME_AUTO, TicketEventSpec, TicketEventStatus, duration};
use uuid::Uuid;

use crate::plan::{self, Phase, Window};

/// What one pass works from. The spec is the one the install lets the pass act on (`controller`
/// narrows `otherAutoscalers` where the install forbids cooperating).
pub struct Sale<'a> {
    pub spec: &'a TicketEventSpec,
    pub old: &'a TicketEventStatus,
    /// The spec parsed, or why it is refused.
    pub parsed: Result<Parsed, String>,
}

impl<'a> Sale<'a> {
    pub fn new(spec: &'a TicketEventSpec, old: &'a TicketEventStatus) -> Self {
        Self {
            spec,
            old,
            parsed: parse(spec, old),
        }
    }

    /// The phase the window gives at `now` (whatever status says); `None` for a refused spec.
    pub fn phase_at(&self, now: DateTime<Utc>) -> Option<Phase> {
        self.parsed
            .as_ref()
            .ok()
            .map(|p| plan::phase_at(&p.window, now).0)
    }
}

/// The spec, parsed (times and durations are strings in the CRD).
pub struct Parsed {
    pub event: Uuid,
    pub window: Window,
    pub baseline: i32,
}

/// Longest `leadTime` and `afterSale.hold` the operator plans with: keeps every instant of the window
/// representable (an absurd duration would overflow the date arithmetic).
const MAX_WINDOW_DURATION_SECS: i64 = 366 * 86_400;

/// The spec, validated (the CEL rules again, see `TicketEventSpec::validate`) and parsed; `leadTime:
/// auto` takes the lead time measured so far from `st`.
pub fn parse(s: &TicketEventSpec, st: &TicketEventStatus) -> Result<Parsed, String> {
    s.validate()?;
    let time = |v: &str, what: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{what}: {e}"))
    };
    let dur = |v: &str, what: &str| match duration::parse_seconds(v) {
        Some(secs) if secs <= MAX_WINDOW_DURATION_SECS => Ok(chrono::Duration::seconds(secs)),
        Some(_) => Err(format!("{what}: longer than 366 days")),
        None => Err(format!("{what}: not a duration")),
    };
    let hold = s.after_sale.as_ref().map_or("10m", |a| a.hold.as_str());
    let (opens, closes) = (
        time(&s.opens_at, "opensAt")?,
        time(&s.closes_at, "closesAt")?,
    );
    if closes <= opens {
        return Err("closesAt must be after opensAt".into());
    }
    let lead = if s.lead_time == LEAD_TIME_AUTO {
        let secs = st
            .startup
            .as_ref()
            .and_then(|u| u.lead_time_seconds)
            .unwrap_or(plan::LEAD_AUTO_DEFAULT_SECS);
        chrono::Duration::seconds(secs.clamp(0, MAX_WINDOW_DURATION_SECS))
    } else {
        dur(&s.lead_time, "leadTime")?
    };
    Ok(Parsed {
        event: s.event_id.parse().map_err(|e| format!("eventId: {e}"))?,
        window: Window {
            opens,
            closes,
            lead,
            hold: if hold.is_empty() {
                chrono::Duration::zero()
            } else {
                dur(hold, "afterSale.hold")?
            },
        },
        baseline: baseline(s),
    })
}

/// What the target goes back to after the sale (never below `MIN_TARGET_REPLICAS`).
pub fn baseline(s: &TicketEventSpec) -> i32 {
    s.after_sale
        .as_ref()
        .and_then(|a| a.replicas)
        .unwrap_or(s.min_replicas)
        .max(plan::MIN_TARGET_REPLICAS)
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn parse_ts(s: &Option<String>) -> Option<DateTime<Utc>> {
    s.as_deref()
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}
