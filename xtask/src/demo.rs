//! `cargo xtask demo`: boot a tiny VM and save a screenshot of its screen.

use std::path::Path;
use std::time::{Duration, Instant};

use vgashot_framebuffer::{Frame, PngCompression};
use vgashot_qemu_process::Launch;
use vgashot_qmp::{Config, Qmp, ScreenshotRequest};

use crate::{Result, workspace_root};

/// SeaBIOS's text console: 80x25 characters of 9x16 pixels.
const SEABIOS_CONSOLE: (u32, u32) = (720, 400);
/// How long SeaBIOS takes to try every boot device and say none is bootable.
const SEABIOS_SETTLE: Duration = Duration::from_secs(3);
/// How long the guest may take to draw its screen (TCG on a slow machine).
const BOOT_BOUND: Duration = Duration::from_secs(60);

pub fn run() -> Result {
    crate::qemu::ensure_installed()?;
    let output = workspace_root().join("demo-output");
    std::fs::create_dir_all(&output)
        .map_err(|error| format!("cannot create {}: {error}", output.display()))?;
    let runtime = tempfile::tempdir()
        .map_err(|error| format!("cannot create a runtime directory: {error}"))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start tokio: {error}"))?
        .block_on(screenshot_a_vm(
            runtime.path(),
            &output.join("screenshot.png"),
        ))
}

async fn screenshot_a_vm(runtime: &Path, target: &Path) -> Result {
    let launch = Launch::new(runtime)
        .map_err(|error| describe(&error))?
        .die_with_parent(true)
        .args(["-machine", "pc", "-m", "64", "-vga", "std", "-nic", "none"]);
    eprintln!(
        "xtask: booting a VM ({}, no disk: SeaBIOS's screen)",
        launch.accelerator().as_str()
    );
    let mut qemu = launch.spawn().await.map_err(|error| describe(&error))?;
    let qmp = Qmp::connect(qemu.qmp_socket(), Config::default())
        .await
        .map_err(|error| describe(&error))?;
    eprintln!(
        "xtask: QEMU {} answers on {}",
        qmp.greeting().version.qemu,
        qemu.qmp_socket().display()
    );

    let (frame, took) = capture_settled_console(&qmp).await?;
    eprintln!(
        "xtask: captured {}x{} in {:.1} ms (PPM into a memfd, no host path)",
        frame.width(),
        frame.height(),
        took.as_secs_f64() * 1e3
    );
    let png = frame
        .encode_png(PngCompression::Fastest)
        .map_err(|error| describe(&error))?;
    std::fs::write(target, &png)
        .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
    println!("{}", target.display());

    qmp.quit().await.map_err(|error| describe(&error))?;
    qemu.wait().await.map_err(|error| describe(&error))?;
    Ok(())
}

/// Waits for SeaBIOS's text console to settle, and returns it with how long its capture took.
async fn capture_settled_console(qmp: &Qmp) -> Result<(Frame, Duration)> {
    let started = Instant::now();
    loop {
        let taken = Instant::now();
        match qmp.screenshot(&ScreenshotRequest::default()).await {
            Ok(ppm) => {
                let took = taken.elapsed();
                let frame = Frame::from_ppm_vec(ppm).map_err(|error| describe(&error))?;
                // Until the guest sets a mode, QEMU draws a 640x480 placeholder.
                let text_mode = (frame.width(), frame.height()) == SEABIOS_CONSOLE;
                let drawn = frame.rgb().iter().any(|&value| value != 0);
                if text_mode && drawn && started.elapsed() >= SEABIOS_SETTLE {
                    return Ok((frame, took));
                }
            }
            Err(error) if error.qmp_error().is_some() => {}
            Err(error) => return Err(format!("screenshot failed: {}", describe(&error))),
        }
        if started.elapsed() > BOOT_BOUND {
            return Err("the VM drew nothing on its screen".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An error with its causes, for a one-line message.
fn describe(error: &dyn std::error::Error) -> String {
    let mut causes = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(next) = cause {
        causes.push(next.to_string());
        cause = next.source();
    }
    causes.join(": ")
}
