//! The screenshot benchmark, run by `cargo xtask bench`; rewrites `BENCHMARKS.md`.
//!
//! How it measures:
//! 1. Boot one VM with two QMP sockets: one for `vgashot-qmp`, one for the baseline.
//! 2. Baseline: the plainest screendump there is. One blocking socket, `screendump` to a path in
//!    a temporary directory, then read that file back (and delete it), as upstream Incus does.
//! 3. Candidates, on the same VM in the same run: `Qmp::screenshot` (PPM or PNG into a pooled
//!    memfd via `/proc/self/fd/N`), and the alternative it rejected, `/dev/fdset/N`.
//! 4. Rounds interleave baseline and candidates, so drift in the machine hits all alike; each
//!    row reports min, median and p95, and the ratio of its median to the baseline's.

mod baseline;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vgashot_qemu_process::{Launch, QemuProcess};
use vgashot_qmp::{Config, Qmp, ScreendumpFormat, ScreenshotRequest};

use crate::baseline::{Baseline, FdsetCapture};
use crate::report::{Report, Row};
use crate::stats::Samples;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Captures per path and format.
const ROUNDS: usize = 300;
/// Captures before measuring, to warm caches and pools.
const WARMUP: usize = 20;

fn main() -> Result {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result {
    let dir = tempfile::tempdir()?;
    let (qemu, qmp, baseline_socket) = boot(dir.path()).await?;
    let mut baseline = Baseline::connect(&baseline_socket, dir.path())?;
    let fdset = FdsetCapture::register(&qmp).await?;

    let mut report = Report::new(qmp.greeting().version.qemu.to_string(), qemu.accel());
    for format in [ScreendumpFormat::Ppm, ScreendumpFormat::Png] {
        let request = ScreenshotRequest {
            format,
            ..Default::default()
        };
        let mut plain = Samples::default();
        let mut ours = Samples::default();
        let mut via_fdset = Samples::default();
        for round in 0..WARMUP + ROUNDS {
            let measured = round >= WARMUP;
            let started = Instant::now();
            let image = baseline.screendump(format)?;
            record(&mut plain, measured, started, &image, format);

            let started = Instant::now();
            let image = qmp.screenshot(&request).await?;
            record(&mut ours, measured, started, &image, format);

            let started = Instant::now();
            let image = fdset.capture(&qmp, format).await?;
            record(&mut via_fdset, measured, started, &image, format);
        }
        let name = format_name(format);
        let baseline_row = Row::new(
            format!("{name}: baseline (blocking socket, file path)"),
            &plain,
            None,
        );
        report.push(Row::new(
            format!("{name}: vgashot-qmp screenshot (memfd, /proc/self/fd)"),
            &ours,
            Some(&plain),
        ));
        report.push(Row::new(
            format!("{name}: memfd via /dev/fdset (rejected)"),
            &via_fdset,
            Some(&plain),
        ));
        report.push_baseline(baseline_row);
    }
    fdset.release(&qmp).await?;
    qmp.quit().await?;

    let markdown = report.markdown();
    print!("{markdown}");
    let target = workspace_root().join("BENCHMARKS.md");
    std::fs::write(&target, markdown)?;
    eprintln!("wrote {}", target.display());
    Ok(())
}

fn record(
    samples: &mut Samples,
    measured: bool,
    started: Instant,
    image: &[u8],
    format: ScreendumpFormat,
) {
    let elapsed = started.elapsed();
    let magic: &[u8] = match format {
        ScreendumpFormat::Ppm => b"P6",
        ScreendumpFormat::Png => b"\x89PNG",
    };
    assert!(
        image.starts_with(magic),
        "a capture returned no {format:?} image"
    );
    if measured {
        samples.push(elapsed);
    }
}

fn format_name(format: ScreendumpFormat) -> &'static str {
    match format {
        ScreendumpFormat::Ppm => "PPM",
        ScreendumpFormat::Png => "PNG",
    }
}

/// Boots the VM with SeaBIOS's 720x400 text console and waits until it shows text.
async fn boot(dir: &Path) -> Result<(QemuProcess, Qmp, PathBuf)> {
    let baseline_socket = dir.join("baseline.sock");
    let mut qmp_arg = std::ffi::OsString::from("unix:");
    qmp_arg.push(&baseline_socket);
    qmp_arg.push(",server=on,wait=off");
    let qemu = Launch::new(dir.join("run"))?
        .die_with_parent(true)
        .args(["-machine", "pc", "-m", "64", "-vga", "std", "-nic", "none"])
        .arg("-qmp")
        .arg(qmp_arg)
        .spawn()
        .await?;
    let qmp = Qmp::connect(qemu.qmp_socket(), Config::default()).await?;
    let started = Instant::now();
    loop {
        if let Ok(ppm) = qmp.screenshot(&ScreenshotRequest::default()).await {
            let frame = vgashot_framebuffer::Frame::from_ppm_vec(ppm)?;
            // QEMU draws a 640x480 placeholder until SeaBIOS sets its 720x400 text mode.
            if (frame.width(), frame.height()) == (720, 400) {
                return Ok((qemu, qmp, baseline_socket));
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the VM never drew its console".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
