//! The one-line `status.summary`: the phase and reason, then whatever holds the plan back.

use tiketi_crds::AutoscalerStatus;

/// The target's replicas as the summary shows them.
pub(super) struct Replicas {
    pub(super) ready: i32,
    pub(super) replicas: i32,
    pub(super) starting: i32,
}

/// What the summary says.
pub(super) struct Facts<'a> {
    pub(super) phase: &'a str,
    pub(super) reason: &'a str,
    /// `None`: no target, or no sale in progress.
    pub(super) replicas: Option<Replicas>,
    pub(super) target: &'a str,
    /// Another sale's larger wish on the target.
    pub(super) other_sale_wants: Option<i32>,
    /// The drain-time rule has no measured outflow yet.
    pub(super) drain_waits: bool,
    /// `leadTime: auto` before pre-scaling: the start-ups measured so far.
    pub(super) lead_auto_samples: Option<usize>,
    /// The sibling sale a scale-down waits for.
    pub(super) held_for: Option<&'a str>,
    pub(super) budget_limited: bool,
    pub(super) autoscaler: Option<&'a AutoscalerStatus>,
    pub(super) history_unreadable: bool,
    pub(super) signals_unreadable: bool,
    /// The sale is over: forecast users and the actual peak.
    pub(super) completed: Option<(i64, Option<i64>)>,
}

/// "forecast N users, actual peak demand M (error +E%)" (the SaleCompleted event says the same).
pub(super) fn forecast_vs_actual(forecast_users: i64, peak_users: Option<i64>) -> String {
    let error = forecast_error_percent(forecast_users, peak_users)
        .map_or(String::new(), |e| format!(" (error {e:+}%)"));
    format!(
        "forecast {forecast_users} users, actual peak demand {}{error}",
        peak_users.map_or("unknown".into(), |p| p.to_string())
    )
}

/// (peak - forecast) / forecast in percent, rounded; `None` without a peak or a forecast.
pub(crate) fn forecast_error_percent(forecast_users: i64, peak_users: Option<i64>) -> Option<i64> {
    let peak = peak_users?;
    (forecast_users > 0).then(|| {
        ((peak as f64 - forecast_users as f64) * 100.0 / forecast_users as f64).round() as i64
    })
}

pub(super) fn summary(f: &Facts<'_>) -> String {
    let mut summary = format!("{}: {}", f.phase, f.reason);
    if let Some(r) = &f.replicas {
        summary.push_str(&format!("; {}/{} ready", r.ready, r.replicas));
        if r.starting > 0 {
            summary.push_str(&format!(", {} starting", r.starting));
        }
    }
    if let Some(n) = f.other_sale_wants {
        summary.push_str(&format!("; another sale on {} wants {n}", f.target));
    }
    if f.drain_waits {
        summary.push_str("; drain-time rule waits for a measured outflow");
    }
    if let Some(n) = f.lead_auto_samples {
        summary.push_str(&format!("; leadTime auto from {n} measured start-up(s)"));
    }
    if let Some(x) = f.held_for {
        summary.push_str(&format!(
            "; not scaling down before sale {x} reports its wish"
        ));
    }
    if f.budget_limited {
        summary.push_str("; capped by the connection budget");
    }
    if let Some(a) = f.autoscaler {
        summary.push_str(&format!("; {} {}: {}", a.kind, a.name, a.effect));
    }
    if f.history_unreadable {
        summary.push_str("; history unreadable, forecast fallback");
    }
    if f.signals_unreadable {
        summary.push_str("; signals unreadable");
    }
    if let Some((users, peak)) = f.completed {
        summary.push_str(&format!("; {}", forecast_vs_actual(users, peak)));
    }
    summary
}
