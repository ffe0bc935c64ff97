//! The results: one row per figure, printed as a table and written as JSON.

use std::{fmt::Write as _, path::Path};

use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub tiketi: Option<f64>,
    pub node: Option<f64>,
    pub unit: String,
    /// The DESIGN.md §6 target in words, when there is one.
    pub target: Option<String>,
    /// Whether tiketi meets it.
    pub met: Option<bool>,
    /// Whether smaller is better (decides how the ratio reads).
    pub lower_is_better: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub started: String,
}

impl Machine {
    pub fn here() -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            started: chrono::Utc::now().to_rfc3339(),
        }
    }
}

/// Builder for one row.
pub struct Figure(Row);

impl Figure {
    pub fn new(scenario: &str, figure: &str, unit: &str) -> Self {
        Self(Row {
            scenario: scenario.into(),
            figure: figure.into(),
            tiketi: None,
            node: None,
            unit: unit.into(),
            target: None,
            met: None,
            lower_is_better: true,
        })
    }
    pub fn tiketi(mut self, v: f64) -> Self {
        self.0.tiketi = Some(v);
        self
    }
    pub fn node(mut self, v: Option<f64>) -> Self {
        self.0.node = v;
        self
    }
    pub fn higher_is_better(mut self) -> Self {
        self.0.lower_is_better = false;
        self
    }
    /// A target the tiketi figure must not exceed (or, if higher is better, must reach).
    pub fn target(mut self, words: impl Into<String>, bound: f64) -> Self {
        self.0.target = Some(words.into());
        self.0.met = self.0.tiketi.map(|v| {
            if self.0.lower_is_better {
                v <= bound
            } else {
                v >= bound
            }
        });
        self
    }
    /// A yes/no target (e.g. "exactly one winner per seat").
    pub fn check(mut self, words: impl Into<String>, ok: bool) -> Self {
        self.0.target = Some(words.into());
        self.0.met = Some(ok);
        self
    }
}

impl Report {
    pub fn add(&mut self, f: Figure) {
        println!("{}", line(&f.0));
        self.rows.push(f.0);
    }

    pub fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        println!("  note: {n}");
        self.notes.push(n);
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| scenario | figure | tiketi | node | tiketi vs node | target | met |\n|---|---|---|---|---|---|---|"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.figure,
                value(r.tiketi, &r.unit),
                value(r.node, &r.unit),
                ratio(r).unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

fn value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => String::new(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0} {unit}"),
        Some(v) => format!("{v:.2} {unit}"),
    }
}

/// "2.1× better" / "1.3× worse", from tiketi's point of view.
fn ratio(r: &Row) -> Option<String> {
    let (t, n) = (r.tiketi?, r.node?);
    if t <= 0.0 || n <= 0.0 {
        return None;
    }
    let better = if r.lower_is_better { n / t } else { t / n };
    Some(if better >= 1.0 {
        format!("{better:.2}× better")
    } else {
        format!("{:.2}× worse", 1.0 / better)
    })
}

fn line(r: &Row) -> String {
    format!(
        "  {:<12} {:<48} tiketi {:>14}  node {:>14}  {}",
        r.scenario,
        r.figure,
        value(r.tiketi, &r.unit),
        value(r.node, &r.unit),
        match r.met {
            Some(true) => "target met",
            Some(false) => "TARGET MISSED",
            None => "",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_from_tiketis_side() {
        let f = Figure::new("s", "rss", "KiB")
            .tiketi(10.0)
            .node(Some(20.0))
            .target("≤ 10", 10.0);
        assert_eq!(ratio(&f.0).as_deref(), Some("2.00× better"));
        assert_eq!(f.0.met, Some(true));
        let f = Figure::new("s", "rate", "/s")
            .tiketi(10.0)
            .node(Some(20.0))
            .higher_is_better()
            .target("≥ 15", 15.0);
        assert_eq!(ratio(&f.0).as_deref(), Some("2.00× worse"));
        assert_eq!(f.0.met, Some(false));
    }
}
