//! What each scenario did and proved, rendered as markdown (target/chaos-report.md).

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::harness::{Meter, Tally};

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Scenario {
    pub title: String,
    pub setup: String,
    pub tally: Tally,
    pub reconnects: u64,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
    /// Set when the scenario could not run to its end (setup failure, panic, time limit).
    pub aborted: Option<String>,
}

impl Scenario {
    pub fn passed(&self) -> bool {
        self.aborted.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// A scenario's record, shared with the task that runs it so a panic or timeout keeps what was seen.
#[derive(Clone)]
pub struct Rec {
    inner: Arc<Mutex<Scenario>>,
    pub meter: Meter,
}

impl Rec {
    pub fn new(title: &str, setup: &str) -> Self {
        Rec {
            inner: Arc::new(Mutex::new(Scenario {
                title: title.into(),
                setup: setup.into(),
                ..Default::default()
            })),
            meter: Meter::default(),
        }
    }

    /// Records an invariant; returns `ok` so callers can stop early on a broken precondition.
    pub fn check(&self, name: &str, ok: bool, detail: impl Into<String>) -> bool {
        let detail = detail.into();
        let mark = if ok { "PASS" } else { "FAIL" };
        eprintln!("[chaos] {mark} {name}: {detail}");
        self.inner.lock().expect("rec").checks.push(Check {
            name: name.into(),
            ok,
            detail,
        });
        ok
    }

    pub fn note(&self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("[chaos] {note}");
        self.inner.lock().expect("rec").notes.push(note);
    }

    pub fn reconnected(&self) {
        self.inner.lock().expect("rec").reconnects += 1;
    }

    pub fn finish(&self, elapsed: Duration, aborted: Option<String>) -> Scenario {
        let mut s = self.inner.lock().expect("rec");
        s.tally = self.meter.lock().expect("tally").clone();
        s.elapsed = elapsed;
        s.aborted = aborted;
        std::mem::take(&mut *s)
    }
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report: a summary table, then per scenario its traffic, invariants and notes.
pub fn render(scenarios: &[Scenario], elapsed: Duration, references: &[&str]) -> String {
    let mut md = String::new();
    let all = scenarios.iter().all(Scenario::passed);
    let _ = writeln!(md, "# TIKETI-RS chaos report\n");
    let _ = writeln!(
        md,
        "Real `tiketi-service` processes (three replicas on loopback, one PostgreSQL database, one \
         private redis-server). Total time {:.1} s. Result: **{}**.\n",
        elapsed.as_secs_f64(),
        if all { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(
        md,
        "| scenario | result | requests | errors | reconnects | invariants | time |\n|---|---|---|---|---|---|---|"
    );
    for s in scenarios {
        let ok = s.checks.iter().filter(|c| c.ok).count();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {}/{} | {:.1} s |",
            s.title,
            if s.passed() { "PASS" } else { "FAIL" },
            s.tally.sent,
            s.tally.errors().values().sum::<u64>(),
            s.reconnects,
            ok,
            s.checks.len(),
            s.elapsed.as_secs_f64()
        );
    }
    for s in scenarios {
        let _ = writeln!(md, "\n## {}\n\n{}\n", s.title, s.setup);
        if let Some(why) = &s.aborted {
            let _ = writeln!(md, "**Aborted:** {why}\n");
        }
        let _ = writeln!(md, "- requests sent: {}", s.tally.sent);
        let _ = writeln!(md, "- answers by status: {}", counts(&s.tally.outcomes));
        let _ = writeln!(md, "- errors by status: {}", counts(&s.tally.errors()));
        let _ = writeln!(md, "- Socket.IO reconnects: {}\n", s.reconnects);
        let _ = writeln!(md, "| invariant | result | observed |\n|---|---|---|");
        for c in &s.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                c.name,
                if c.ok { "PASS" } else { "**FAIL**" },
                c.detail.replace('|', "\\|")
            );
        }
        if !s.notes.is_empty() {
            let _ = writeln!(md);
            for n in &s.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
    }
    if !references.is_empty() {
        let _ = writeln!(
            md,
            "\n## Covered elsewhere (service/tests/api/faults.rs, run by `make test`)\n"
        );
        for r in references {
            let _ = writeln!(md, "- {r}");
        }
    }
    md
}
