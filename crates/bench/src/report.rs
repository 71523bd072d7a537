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
    table: Table,
}

/// What a section's table holds.
enum Table {
    /// Latency rows: n, min, median, p95 and the ratio to the section's baseline.
    Latency(Vec<Row>),
    /// Cells already formatted, under headers of the section's own: for figures that are not
    /// one latency distribution per row (throughput, CPU time, memory).
    Custom {
        /// The headers; the first column is left-aligned, the others (figures) right-aligned.
        headers: Vec<String>,
        /// One `Vec` of cells a row, as many as `headers`.
        rows: Vec<Vec<String>>,
    },
}

impl Section {
    /// A section of latency [`Row`]s titled `title`, explained by `intro`.
    pub fn new(title: impl Into<String>, intro: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            intro: intro.into(),
            table: Table::Latency(Vec::new()),
        }
    }

    /// A section whose table has the columns `headers` (rows added with [`Self::push_cells`]).
    pub fn custom(title: impl Into<String>, intro: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            intro: intro.into(),
            table: Table::Custom {
                headers: headers.iter().map(|header| (*header).to_owned()).collect(),
                rows: Vec::new(),
            },
        }
    }

    /// Adds a latency row.
    ///
    /// # Panics
    /// In a section made by [`Self::custom`]: a latency row has no place in its columns.
    pub fn push(&mut self, row: Row) {
        match &mut self.table {
            Table::Latency(rows) => rows.push(row),
            Table::Custom { .. } => panic!("a latency row pushed into a custom table"),
        }
    }

    /// Adds a row of formatted cells.
    ///
    /// # Panics
    /// In a latency section, or when the number of cells is not the number of columns: either
    /// would print a broken table.
    pub fn push_cells(&mut self, cells: Vec<String>) {
        match &mut self.table {
            Table::Custom { headers, rows } => {
                assert_eq!(cells.len(), headers.len(), "a row of the wrong width");
                rows.push(cells);
            }
            Table::Latency(_) => panic!("cells pushed into a latency table"),
        }
    }

    fn write_table(&self, out: &mut String) {
        match &self.table {
            Table::Latency(rows) => {
                let _ = writeln!(out, "| path | n | min ms | median ms | p95 ms | ratio |");
                let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
                for row in rows {
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
            Table::Custom { headers, rows } => {
                let _ = writeln!(out, "| {} |", headers.join(" | "));
                let alignments: Vec<&str> = (0..headers.len())
                    .map(|column| if column == 0 { "---" } else { "---:" })
                    .collect();
                let _ = writeln!(out, "|{}|", alignments.join("|"));
                for row in rows {
                    let _ = writeln!(out, "| {} |", row.join(" | "));
                }
            }
        }
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
            "Regenerate with `cargo xtask bench` (release build; boots a few VMs and the daemon; a few minutes). \
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
            section.write_table(&mut out);
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
