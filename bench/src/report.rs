//! `bench/RESULTS.md`: the machine, the method, and a table per scenario with the median,
//! min and max of every figure, beside the target and whether it is met.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::stats::Summary;

/// The wall clock, for the report's date.
#[expect(
    clippy::disallowed_methods,
    reason = "a report's date is the wall clock by definition; nothing here is under test"
)]
pub fn wall_clock() -> DateTime<Utc> {
    Utc::now()
}

/// How a figure is shown.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Things per second, e.g. "req/s".
    PerSecond(&'static str),
    Millis,
    Micros,
    /// Megabytes of 10^6 bytes, as the "30 MB".
    MB,
    /// Rampart ÷ something: shown as a ratio and as the percentage it costs.
    Ratio,
    /// A whole number of things, e.g. "hashes".
    Count(&'static str),
    /// An average count of things, to two decimals, e.g. "commands".
    Mean(&'static str),
}

impl Unit {
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::PerSecond(what) => {
                if v >= 100.0 {
                    format!("{} {what}", thousands(v.round() as u64))
                } else {
                    format!("{v:.1} {what}")
                }
            }
            Unit::Millis => {
                if v < 10.0 {
                    format!("{v:.2} ms")
                } else if v < 1000.0 {
                    format!("{v:.1} ms")
                } else {
                    format!("{} ms", thousands(v.round() as u64))
                }
            }
            Unit::Micros => format!("{} µs", thousands(v.round() as u64)),
            Unit::MB => format!("{v:.1} MB"),
            Unit::Ratio => format!("{v:.2}× ({:+.0} %)", (v - 1.0) * 100.0),
            Unit::Count(what) => format!("{} {what}", thousands(v.round() as u64)),
            Unit::Mean(what) => format!("{v:.2} {what}"),
        }
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Which side of a bound the median must be on.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

/// A target from the issue, in words and as a bound on the median.
#[derive(Debug, Clone)]
pub struct Target {
    pub text: String,
    pub goal: Goal,
    /// Why the figure cannot be judged against the target in this run (e.g. a quick run's
    /// smaller data set); shown instead of met / not met.
    pub caveat: Option<String>,
}

impl Target {
    pub fn at_most(text: &str, bound: f64) -> Option<Self> {
        Some(Self {
            text: text.to_owned(),
            goal: Goal::AtMost(bound),
            caveat: None,
        })
    }

    pub fn at_least(text: &str, bound: f64) -> Option<Self> {
        Some(Self {
            text: text.to_owned(),
            goal: Goal::AtLeast(bound),
            caveat: None,
        })
    }

    /// The same target, not judged in this run for `why`.
    pub fn caveat(mut self, why: Option<String>) -> Self {
        self.caveat = why;
        self
    }

    fn met(&self, v: f64) -> bool {
        match self.goal {
            Goal::AtMost(b) => v <= b,
            Goal::AtLeast(b) => v >= b,
        }
    }
}

/// One line of a scenario's table.
#[derive(Debug, Clone)]
pub struct Row {
    pub subject: String,
    pub figure: String,
    pub unit: Unit,
    pub summary: Option<Summary>,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(subject: &str, figure: &str, unit: Unit, values: &[f64]) -> Self {
        Self {
            subject: subject.to_owned(),
            figure: figure.to_owned(),
            unit,
            summary: Summary::of(values),
            target: None,
        }
    }

    pub fn target(mut self, target: Option<Target>) -> Self {
        self.target = target;
        self
    }

    fn met(&self) -> String {
        match (&self.target, &self.summary) {
            (Some(t), _) if t.caveat.is_some() => t.caveat.clone().unwrap_or_default(),
            (Some(t), Some(s)) if t.met(s.median) => "yes".into(),
            (Some(_), Some(_)) => "**no**".into(),
            (Some(_), None) => "not measured".into(),
            (None, _) => String::new(),
        }
    }
}

/// A scenario: a title, what it does, its table and what to know about the numbers.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    pub intro: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            ..Self::default()
        }
    }
}

/// The machine and the build the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub load_at_start: String,
    pub nice: String,
    pub commit: String,
    pub rustc: String,
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix(prefix)
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
    })
}

fn command_line(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The load average (1, 5 and 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

impl Machine {
    /// Reads the machine, and the commit of the workspace at `repo` (its root).
    pub fn read(repo: &Path) -> Self {
        let memory = first_line_with("/proc/meminfo", "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".into(),
                |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
            );
        let commit = match command_line("git", &["rev-parse", "--short", "HEAD"], repo) {
            Some(c) => {
                // Only what the measured binary is built from: changes to bench/ or to the
                // workspace manifest (adding this crate) do not change the figures.
                let dirty = command_line("git", &["status", "--porcelain", "--", "crates"], repo)
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!(
                        "{c}, with uncommitted changes under crates/ (the binary measured was built from the work tree)"
                    )
                } else {
                    c
                }
            }
            None => "unknown (not a git checkout)".into(),
        };
        // Field 19 of /proc/self/stat is the nice value.
        let nice = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let after = &s[s.rfind(')')? + 1..];
                after.split_whitespace().nth(16).map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpu: first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            load_at_start: load_average(),
            nice,
            commit,
            rustc: command_line("rustc", &["--version"], repo).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// Everything the report says.
pub struct Report {
    pub title: String,
    pub command: String,
    pub date: DateTime<Utc>,
    pub machine: Machine,
    pub load_at_end: String,
    /// Cores used by other processes during the measured runs.
    pub other_load: Option<Summary>,
    pub elapsed_secs: f64,
    /// Time spent building `rampart` before the suite started.
    pub build_secs: f64,
    pub method: Vec<String>,
    pub sections: Vec<Section>,
    pub todo: Vec<String>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "# {}\n", self.title);
        let _ = writeln!(
            s,
            "Generated by `{}` on {}, in {:.0} s (after {:.0} s building `rampart`). Regenerate it \
             with the same command; nothing in the suite asserts on time.\n",
            self.command,
            self.date.format("%Y-%m-%d %H:%M UTC"),
            self.elapsed_secs,
            self.build_secs
        );
        let _ = writeln!(s, "## Machine\n");
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| CPU | {} × {} (nproc) |", m.cpu, m.cores);
        let _ = writeln!(s, "| memory | {} |", m.memory);
        let _ = writeln!(s, "| kernel | Linux {} |", m.kernel);
        let _ = writeln!(
            s,
            "| load average (1/5/15 min) | {} at start, {} at end |",
            m.load_at_start, self.load_at_end
        );
        if let Some(o) = self.other_load {
            let _ = writeln!(
                s,
                "| CPU used by other processes during the measured runs | median {:.2}, max {:.2} cores (of {}) |",
                o.median, o.max, m.cores
            );
        }
        let _ = writeln!(s, "| bench process nice value | {} |", m.nice);
        let _ = writeln!(s, "| commit | {} |", m.commit);
        let _ = writeln!(s, "| toolchain | {} |\n", m.rustc);
        let _ = writeln!(s, "## Method\n");
        for line in &self.method {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(s, "\n## Against the issue's targets\n");
        let _ = writeln!(
            s,
            "| target | subject | figure | median (min – max) | met |\n|---|---|---|---|---|"
        );
        for section in &self.sections {
            for row in section.rows.iter().filter(|r| r.target.is_some()) {
                let target = row.target.as_ref().map_or("", |t| t.text.as_str());
                let _ = writeln!(
                    s,
                    "| {target} | {} | {} | {} | {} |",
                    row.subject,
                    row.figure,
                    row.summary.map_or_else(
                        || "—".into(),
                        |x| format!(
                            "{} ({} – {})",
                            row.unit.show(x.median),
                            row.unit.show(x.min),
                            row.unit.show(x.max)
                        )
                    ),
                    row.met()
                );
            }
        }
        for section in &self.sections {
            let _ = writeln!(s, "\n## {}\n", section.title);
            for p in &section.intro {
                let _ = writeln!(s, "{p}\n");
            }
            if !section.rows.is_empty() {
                let _ = writeln!(
                    s,
                    "| subject | figure | median | min | max | runs | target | met |\n|---|---|---|---|---|---|---|---|"
                );
                for row in &section.rows {
                    let cells = row.summary.map_or_else(
                        || {
                            [
                                "—".to_owned(),
                                "—".to_owned(),
                                "—".to_owned(),
                                "0".to_owned(),
                            ]
                        },
                        |x| {
                            [
                                row.unit.show(x.median),
                                row.unit.show(x.min),
                                row.unit.show(x.max),
                                x.runs.to_string(),
                            ]
                        },
                    );
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        row.subject,
                        row.figure,
                        cells[0],
                        cells[1],
                        cells[2],
                        cells[3],
                        row.target.as_ref().map_or("", |t| t.text.as_str()),
                        row.met()
                    );
                }
                let _ = writeln!(s);
            }
            for n in &section.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        if !self.todo.is_empty() {
            let _ = writeln!(s, "\n## Not measured yet (TODO)\n");
            for t in &self.todo {
                let _ = writeln!(s, "- {t}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(Unit::PerSecond("req/s").show(12_345.4), "12,345 req/s");
        assert_eq!(
            Unit::PerSecond("req/s").show(1_234_567.0),
            "1,234,567 req/s"
        );
        assert_eq!(Unit::PerSecond("req/s").show(42.0), "42.0 req/s");
        assert_eq!(Unit::Millis.show(1.234), "1.23 ms");
        assert_eq!(Unit::Ratio.show(0.87), "0.87× (-13 %)");
        assert_eq!(Unit::MB.show(12.34), "12.3 MB");
        assert_eq!(Unit::Mean("commands").show(2.0004), "2.00 commands");
    }

    #[test]
    fn a_row_is_met_on_its_median() {
        let row = Row::new("s", "f", Unit::Millis, &[1.0, 9.0, 2.0])
            .target(Target::at_most("≤ 5 ms", 5.0));
        assert_eq!(row.met(), "yes");
        let row = Row::new("s", "f", Unit::Millis, &[6.0]).target(Target::at_most("≤ 5 ms", 5.0));
        assert_eq!(row.met(), "**no**");
        let row = Row::new("s", "f", Unit::Millis, &[]).target(Target::at_most("≤ 5 ms", 5.0));
        assert_eq!(row.met(), "not measured");
    }
}
