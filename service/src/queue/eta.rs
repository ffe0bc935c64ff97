//! The queue's ETA as a pure function of what was read (`place` reads it from Redis).

use tiketi_core::rules::OutflowRecord;

use super::{ADMISSION_TTL_MS, Gate};

/// How long a place in the queue will wait, and how the figure was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eta {
    pub secs: i64,
    /// Measured from the queue's real outflow (false: an estimate from holds or the configured rate).
    pub known: bool,
    /// `outflow`, `holdExpiry` (nobody left the queue lately and the room is full: when the holds
    /// in front run out), `admissionRate` (nothing measured yet, room not full), `opening`/`none`.
    pub basis: &'static str,
}

/// What the ETA is computed from, read in the same step as the place itself (`check.lua`) or
/// separately (`eta`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EtaInputs {
    /// The admission loop's published outflow, if any.
    pub outflow: Option<OutflowRecord>,
    /// Live admissions.
    pub live: i64,
    /// When the admission `(position - 1) % live` places from the oldest expires (ms), if any.
    pub nth_expiry_ms: Option<i64>,
}

/// When `position` gets in: until the sale opens, then from the measured outflow of the last
/// minutes. Without one (nobody left the queue lately) and a full room, places open no later than
/// the admissions in front of it expire, so that is the estimate; with room to spare and nothing
/// measured yet, the configured admission rate.
pub fn estimate(
    position: i64,
    gate: Gate,
    now: i64,
    inputs: &EtaInputs,
    admission_rate: u32,
) -> Eta {
    if position <= 0 {
        return Eta {
            secs: 0,
            known: true,
            basis: "none",
        };
    }
    let until_open = ((gate.opens_ms - now).max(0) + 999) / 1000;
    if let Some(secs) = tiketi_core::rules::queue_eta_from_outflow(position, inputs.outflow) {
        return Eta {
            secs: until_open + secs,
            known: true,
            basis: if until_open > 0 { "opening" } else { "outflow" },
        };
    }
    let live = inputs.live;
    if live > 0
        && live >= gate.threshold
        && let Some(expires_ms) = inputs.nth_expiry_ms
    {
        let rounds = (position - 1) / live;
        let first = ((expires_ms - now).max(0) + 999) / 1000;
        return Eta {
            secs: until_open.max(first + rounds * (ADMISSION_TTL_MS / 1000)),
            known: false,
            basis: "holdExpiry",
        };
    }
    let rate = f64::from(admission_rate.max(1));
    Eta {
        secs: until_open + tiketi_core::rules::queue_eta_secs(position, rate),
        known: false,
        basis: if until_open > 0 {
            "opening"
        } else {
            "admissionRate"
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: Gate = Gate {
        threshold: 2,
        opens_ms: 0,
    };

    #[test]
    fn estimate_follows_the_outflow_then_the_holds_then_the_rate() {
        let now = 1_000_000;
        let outflow = OutflowRecord {
            per_second: 2.0,
            admitted_per_second: 2.0,
            window_secs: 60.0,
            at_ms: now,
            replicas: None,
        };
        let measured = EtaInputs {
            outflow: Some(outflow),
            live: 2,
            nth_expiry_ms: None,
        };
        let eta = estimate(10, GATE, now, &measured, 5);
        assert_eq!((eta.known, eta.basis), (true, "outflow"));

        // a full room and nothing measured: place 3 waits for the first admission's end, one round later
        let full = EtaInputs {
            outflow: None,
            live: 2,
            nth_expiry_ms: Some(now + 30_000),
        };
        let eta = estimate(3, GATE, now, &full, 5);
        assert_eq!(
            (eta.secs, eta.known, eta.basis),
            (30 + ADMISSION_TTL_MS / 1000, false, "holdExpiry")
        );

        let room = EtaInputs::default();
        let eta = estimate(10, GATE, now, &room, 5);
        assert_eq!((eta.known, eta.basis), (false, "admissionRate"));
        assert_eq!(estimate(0, GATE, now, &room, 5).basis, "none");
        // before the opening the wait runs at least until then
        let later = Gate {
            opens_ms: now + 60_000,
            ..GATE
        };
        let eta = estimate(1, later, now, &room, 5);
        assert!(eta.secs >= 60 && eta.basis == "opening", "{eta:?}");
    }
}
