//! The screenshot benchmark, run by `cargo xtask bench`; rewrites `BENCHMARKS.md`.
//!
//! How it measures:
//! 1. Every comparison runs both sides on the same VM in the same run, rounds interleaved, so
//!    drift in the machine hits both alike; each row reports min, median and p95 latency, and
//!    the ratio of its median to its section's baseline.
//! 2. [`qmp_latency`]: `vgashot-qmp`'s screenshot against the plainest screendump (a blocking
//!    socket and a file path, as upstream Incus does).
//! 3. [`driver_latency`]: the qemu driver's `console_screenshot` (PPM through a memfd, PNG encoded
//!    by us) against QEMU's own PNG screendump, in text mode and two graphics modes.
//! 4. [`frame_latency`]: a capture as the screens engine takes it (PPM decoded, no PNG) against
//!    the same with our PNG encoded, what every capture paid before; `-- frames` runs it alone.
//! 5. [`confinement`]: VM start time and screenshot latency with QEMU confined (its own user,
//!    seccomp) against QEMU unconfined.
//! 6. [`viewers`]: the release daemon under 1 to 500 concurrent clients of one screen, shared
//!    captures against a capture per request, and what each costs QEMU (the guest) in CPU time.
//! 7. The VNC mirror of a screen against the screendump path, in the same daemon and run
//!    ([`mirror_sections`]; `-- mirror` runs them alone): [`dashboard`] (many still screens
//!    polled as the web page does, and the daemon's memory per mirrored screen), [`changes`]
//!    (a changing screen streamed: frames, their cost, change-to-viewer latency) and
//!    [`single_shot`] (one screenshot against QEMU's PNG). [`daemon`] is what they and
//!    [`viewers`] share to drive the release daemon.
//! 8. [`history_store`] and [`history_daemon`]: the screen history's recording cost per frame
//!    against a plain screenshot, `at=` in a week against an hour, an idle VM with the history enabled
//!    against disabled, and bytes per hour against keeping every PNG; `-- history` runs them alone.

mod baseline;
mod changes;
mod confinement;
mod daemon;
mod dashboard;
mod driver_latency;
mod frame_latency;
mod history_daemon;
mod history_store;
mod qmp_latency;
mod report;
mod single_shot;
mod stats;
mod viewers;

use std::path::{Path, PathBuf};
use std::time::Instant;

use vgashot_qemu_process::Accel;

use crate::report::{Report, Section};
use crate::stats::Samples;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Measured rounds per row.
const ROUNDS: usize = 300;
/// Rounds before measuring, to warm caches and pools.
const WARMUP: usize = 20;

fn main() -> Result {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result {
    // One section alone, printed; BENCHMARKS.md is only written by a whole run.
    let alone = match std::env::args().nth(1).as_deref() {
        Some("frames") => {
            let (qemu_version, section) = frame_latency::measure().await?;
            Some((qemu_version, vec![section]))
        }
        Some("history") => {
            let (qemu_version, sections) = history().await?;
            Some((qemu_version, sections))
        }
        Some("mirror") => {
            print!("{}", mirror_sections(None).await?.markdown());
            return Ok(());
        }
        _ => None,
    };
    if let Some((qemu_version, sections)) = alone {
        let mut report = Report::new(qemu_version, Accel::detect());
        for section in sections {
            report.push(section);
        }
        print!("{}", report.markdown());
        return Ok(());
    }
    let (qemu_version, qmp_section) = qmp_latency::measure().await?;
    let mut report = Report::new(qemu_version, Accel::detect());
    report.push(qmp_section);
    report.push(driver_latency::measure().await?);
    report.push(frame_latency::measure().await?.1);
    report.push(confinement::measure().await?);
    // The figures so far, for a run interrupted in the longest section that follows.
    eprintln!("bench: measured so far:\n{}", report.markdown());
    let (viewers, guest_impact) = viewers::measure().await?;
    report.push(viewers);
    report.push(guest_impact);
    let mut report = mirror_sections(Some(report)).await?;
    eprintln!(
        "bench: measured so far:
{}",
        report.markdown()
    );
    for section in history().await?.1 {
        report.push(section);
    }

    let markdown = report.markdown();
    print!("{markdown}");
    let target = workspace_root().join("BENCHMARKS.md");
    std::fs::write(&target, markdown)?;
    eprintln!("wrote {}", target.display());
    Ok(())
}

/// The screen history's sections, and the version of the QEMU they ran.
async fn history() -> Result<(String, Vec<Section>)> {
    let (qemu_version, recording) = history_store::measure_recording().await?;
    let lookup = history_store::measure_lookup().await?;
    let (idle, bytes) = history_daemon::measure().await?;
    Ok((qemu_version, vec![recording, lookup, idle, bytes]))
}

/// The mirror's sections, added to `report` (or to a new one); the figures so far are printed
/// after each part, for a run interrupted in the next.
async fn mirror_sections(report: Option<Report>) -> Result<Report> {
    let (qemu_version, single) = single_shot::measure().await?;
    let mut report = report.unwrap_or_else(|| Report::new(qemu_version, Accel::detect()));
    report.push(single);
    let (dashboard, memory) = dashboard::measure().await?;
    report.push(dashboard);
    report.push(memory);
    eprintln!("bench: measured so far:\n{}", report.markdown());
    let (streaming, latency) = changes::measure().await?;
    report.push(streaming);
    report.push(latency);
    Ok(report)
}

/// Runs `capture` and, past the warm-up rounds, records how long it took.
async fn timed<T, F: Future<Output = Result<T>>>(
    samples: &mut Samples,
    round: usize,
    capture: F,
) -> Result<T> {
    let started = Instant::now();
    let output = capture.await?;
    if round >= WARMUP {
        samples.push(started.elapsed());
    }
    Ok(output)
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
