//! `vgashot-qmp`'s screenshot against the plainest screendump, on SeaBIOS's text console.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vgashot_qemu_process::{Launch, QemuProcess};
use vgashot_qmp::{Config, Qmp, ScreendumpFormat, ScreenshotRequest};

use crate::baseline::{Baseline, FdsetCapture};
use crate::report::{Row, Section};
use crate::stats::Samples;
use crate::{ROUNDS, Result, WARMUP, timed};

/// SeaBIOS's text console.
const TEXT_CONSOLE: (u32, u32) = (720, 400);

/// Measures, and returns QEMU's version with the section.
pub async fn measure() -> Result<(String, Section)> {
    let dir = tempfile::tempdir()?;
    let (_qemu, qmp, baseline_socket) = boot(dir.path()).await?;
    let mut baseline = Baseline::connect(&baseline_socket, dir.path())?;
    let fdset = FdsetCapture::register(&qmp).await?;

    let mut section = Section::new(
        "Screenshot latency through `vgashot-qmp`",
        "SeaBIOS text console, 720x400, `-vga std`. Baseline: one blocking QMP socket, \
         `screendump` to a file path, read the file back (what upstream Incus does). \
         Goal: `vgashot-qmp` adds under 5% to QEMU's own time (ratio ≤ 1.05). The rejected \
         `/dev/fdset` path is as fast; it lost on correctness (shared file offset, write-only \
         descriptor), see `crates/qmp/src/screenshot.rs`.",
    );
    for format in [ScreendumpFormat::Ppm, ScreendumpFormat::Png] {
        let request = ScreenshotRequest {
            format,
            ..Default::default()
        };
        let mut plain = Samples::default();
        let mut ours = Samples::default();
        let mut via_fdset = Samples::default();
        for round in 0..WARMUP + ROUNDS {
            let image = timed(&mut plain, round, async { baseline.screendump(format) }).await?;
            check(&image, format);
            let image = timed(&mut ours, round, async {
                Ok(qmp.screenshot(&request).await?)
            })
            .await?;
            check(&image, format);
            let image = timed(&mut via_fdset, round, fdset.capture(&qmp, format)).await?;
            check(&image, format);
        }
        let name = match format {
            ScreendumpFormat::Ppm => "PPM",
            ScreendumpFormat::Png => "PNG",
        };
        section.push(Row::new(
            format!("{name}: baseline (blocking socket, file path)"),
            &plain,
            None,
        ));
        section.push(Row::new(
            format!("{name}: vgashot-qmp screenshot (memfd, /proc/self/fd)"),
            &ours,
            Some(&plain),
        ));
        section.push(Row::new(
            format!("{name}: memfd via /dev/fdset (rejected)"),
            &via_fdset,
            Some(&plain),
        ));
    }
    fdset.release(&qmp).await?;
    let version = qmp.greeting().version.qemu.to_string();
    qmp.quit().await?;
    Ok((version, section))
}

fn check(image: &[u8], format: ScreendumpFormat) {
    let magic: &[u8] = match format {
        ScreendumpFormat::Ppm => b"P6",
        ScreendumpFormat::Png => b"\x89PNG",
    };
    assert!(
        image.starts_with(magic),
        "a capture returned no {format:?} image"
    );
}

/// Boots a VM with two QMP sockets and waits for SeaBIOS's text console.
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
            // QEMU draws a 640x480 placeholder until SeaBIOS sets its text mode.
            if (frame.width(), frame.height()) == TEXT_CONSOLE {
                return Ok((qemu, qmp, baseline_socket));
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the VM never showed its text console".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
