//! The results: one row per figure, printed as a table and written as JSON.

use std::{fmt::Write as _, path::Path};

use anyhow::Result;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub tiketi: Option<f64>,
    pub node: Option<f64>,
    pub unit: String,
    /// The docs/design.md §6 target in words, when there is one.
    pub target: Option<String>,
    /// Whether tiketi meets it.
    pub met: Option<bool>,
    /// Whether smaller is better (decides how the ratio reads).
    pub lower_is_better: bool,
    /// The same figure in the previous run (from the results file this run replaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Figures of the previous run, by (scenario, figure); those this run does not measure again are
    /// written back unchanged, so a partial run (`--scenarios holds`) keeps the others' history.
    #[serde(skip)]
    pub previous: Vec<Row>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
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
            previous: None,
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

/// The rows of an earlier results file (none if it is missing or unreadable).
pub fn previous_rows(path: &Path) -> Vec<Row> {
    #[derive(Deserialize)]
    struct Saved {
        rows: Vec<Row>,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|raw| serde_json::from_str::<Saved>(&raw).ok())
        .map(|s| s.rows)
        .unwrap_or_default()
}

impl Report {
    pub fn add(&mut self, mut f: Figure) {
        f.0.previous = self
            .previous
            .iter()
            .find(|p| p.scenario == f.0.scenario && p.figure == f.0.figure)
            .and_then(|p| p.tiketi);
        println!("{}", line(&f.0));
        self.rows.push(f.0);
    }

    /// Where the CPU of `ops` operations (`op`: "hold", "join") went, in µs per operation for each
    /// process of the split.
    pub fn add_cpu_per_op(
        &mut self,
        scenario: &str,
        op: &str,
        cpu: crate::servers::CpuSplit,
        ops: usize,
    ) {
        let per_op = |secs: f64| secs * 1e6 / ops.max(1) as f64;
        println!(
            "   CPU per {op}: service {:.0} µs, PostgreSQL {:.0} µs, Redis {:.0} µs, load generator {:.0} µs",
            per_op(cpu.service),
            per_op(cpu.postgres),
            per_op(cpu.redis),
            per_op(cpu.client)
        );
        for (who, secs) in [
            ("service", cpu.service),
            ("PostgreSQL", cpu.postgres),
            ("Redis", cpu.redis),
            ("load generator", cpu.client),
        ] {
            self.add(
                Figure::new(scenario, &format!("CPU per {op}: {who}"), "µs").tiketi(per_op(secs)),
            );
        }
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
            "| scenario | figure | tiketi | previous run | node | tiketi vs node | target | met |\n|---|---|---|---|---|---|---|---|"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.figure,
                value(r.tiketi, &r.unit),
                value(r.previous, &r.unit),
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

    /// Writes this run's rows, then the previous run's rows of figures not measured this time.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut saved = serde_json::to_value(self)?;
        let kept = self.previous.iter().filter(|p| {
            !self
                .rows
                .iter()
                .any(|r| r.scenario == p.scenario && r.figure == p.figure)
        });
        if let Some(rows) = saved["rows"].as_array_mut() {
            rows.extend(kept.map(|p| serde_json::to_value(p).unwrap_or_default()));
        }
        std::fs::write(path, serde_json::to_string_pretty(&saved)?)?;
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
        "  {:<12} {:<48} tiketi {:>14}  previous {:>14}  node {:>14}  {}",
        r.scenario,
        r.figure,
        value(r.tiketi, &r.unit),
        value(r.previous, &r.unit),
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

    #[test]
    fn each_figure_is_shown_beside_its_previous_run_and_history_survives_a_partial_run() {
        let dir = std::env::temp_dir().join(format!("tiketi-bench-report-{}", std::process::id()));
        let path = dir.join("results.json");
        let mut first = Report::default();
        first.add(Figure::new("holds", "rate", "/s").tiketi(900.0));
        first.add(Figure::new("queue", "rate", "/s").tiketi(3000.0));
        first.write_json(&path).unwrap();

        let mut second = Report {
            previous: previous_rows(&path),
            ..Report::default()
        };
        second.add(Figure::new("holds", "rate", "/s").tiketi(5000.0));
        assert_eq!(second.rows[0].previous, Some(900.0));
        assert!(
            second.table().contains("| 5000 /s | 900 /s |"),
            "{}",
            second.table()
        );
        second.write_json(&path).unwrap();
        let kept = previous_rows(&path);
        let _ = std::fs::remove_dir_all(&dir);
        let find = |s: &str| kept.iter().find(|r| r.scenario == s).and_then(|r| r.tiketi);
        assert_eq!((find("holds"), find("queue")), (Some(5000.0), Some(3000.0)));
    }
}
