//! `BENCHMARKS.md`: the figures, the ratios, and the machine they came from.

use std::fmt::Write;

use vgashot_qemu_process::Accel;

use crate::stats::Samples;

/// One measured path.
pub struct Row {
    name: String,
    samples: usize,
    min: f64,
    median: f64,
    p95: f64,
    ratio: Option<f64>,
}

impl Row {
    /// Summarises `samples`; with a `baseline`, also the ratio of the medians.
    pub fn new(name: String, samples: &Samples, baseline: Option<&Samples>) -> Self {
        let ms = |fraction| samples.quantile(fraction).as_secs_f64() * 1e3;
        let median = ms(0.5);
        Self {
            name,
            samples: samples.len(),
            min: ms(0.0),
            median,
            p95: ms(0.95),
            ratio: baseline.map(|baseline| median / (baseline.quantile(0.5).as_secs_f64() * 1e3)),
        }
    }
}

/// One table of the report, with what it measures.
pub struct Section {
    title: String,
    intro: String,
    rows: Vec<Row>,
}

impl Section {
    /// A section titled `title`, explained by `intro`.
    pub fn new(title: impl Into<String>, intro: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            intro: intro.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }
}

/// The whole report.
pub struct Report {
    qemu: String,
    accel: Accel,
    sections: Vec<Section>,
}

impl Report {
    /// A report for a run on QEMU `qemu` with `accel`.
    pub fn new(qemu: String, accel: Accel) -> Self {
        Self {
            qemu,
            accel,
            sections: Vec::new(),
        }
    }

    /// Adds a section.
    pub fn push(&mut self, section: Section) {
        self.sections.push(section);
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Regenerate with `cargo xtask bench` (release build; boots a few VMs; a few minutes). \
             Every figure below comes from one run on one machine; each ratio compares medians \
             measured in that same run, with the rounds of both sides interleaved.\n"
        );
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "- CPU: {} ({} cores)", cpu_model(), num_cpus());
        let _ = writeln!(out, "- QEMU {} with {}", self.qemu, self.accel.as_str());
        let _ = writeln!(out, "- Kernel: {}", kernel());
        let _ = writeln!(out, "- Run at: {}", now());
        for section in &self.sections {
            let _ = writeln!(out, "\n## {}\n\n{}\n", section.title, section.intro);
            let _ = writeln!(out, "| path | n | min ms | median ms | p95 ms | ratio |");
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
            for row in &section.rows {
                let ratio = row
                    .ratio
                    .map_or("—".to_owned(), |ratio| format!("{ratio:.3}"));
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {:.3} | {:.3} | {} |",
                    row.name, row.samples, row.min, row.median, row.p95, ratio
                );
            }
        }
        out
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn now() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output();
    output
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
