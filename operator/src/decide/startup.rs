//! The start-to-Ready times `leadTime: auto` learns from.

use tiketi_crds::{LEAD_TIME_AUTO, StartupStatus, TicketEventSpec, TicketEventStatus};

use super::{parse_ts, ts};
use crate::{observe::Observed, plan};

/// Start-to-Ready samples kept in status for `leadTime: auto`.
const STARTUP_SAMPLES: usize = 20;

/// Learns pod start-to-Ready times for `leadTime: auto`.
pub(super) fn startup(
    s: &TicketEventSpec,
    old: &TicketEventStatus,
    o: &Observed,
) -> Option<StartupStatus> {
    if s.lead_time != LEAD_TIME_AUTO {
        return old.startup.clone();
    }
    let mut st = old.startup.clone().unwrap_or_default();
    let until = parse_ts(&st.measured_until);
    let mut fresh: Vec<_> = o
        .pod_starts
        .iter()
        .filter(|p| until.is_none_or(|u| p.ready_at > u))
        .collect();
    fresh.sort_by_key(|p| p.ready_at);
    for p in &fresh {
        st.samples_seconds.push(p.seconds);
    }
    let excess = st.samples_seconds.len().saturating_sub(STARTUP_SAMPLES);
    st.samples_seconds.drain(..excess);
    if let Some(last) = fresh.last() {
        st.measured_until = Some(ts(last.ready_at));
    }
    st.lead_time_seconds = Some(plan::auto_lead_secs(&st.samples_seconds));
    Some(st)
}
