//! A real QEMU for the tests: SeaBIOS on `-vga std` with no disk, whose text console (720x400)
//! says that there is no bootable device.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::time::{Duration, Instant};

use tempfile::TempDir;
use vgashot_framebuffer::Frame;
use vgashot_qemu_process::{Launch, QemuProcess};
use vgashot_qmp::{Config, Qmp, ScreenshotRequest};

/// A booted VM with a QMP connection; QEMU dies with the test process.
pub struct Vm {
    pub qmp: Qmp,
    pub process: QemuProcess,
    pub dir: TempDir,
}

/// Boots the VM, or returns `None` when QEMU is missing and the test may be skipped.
pub async fn boot() -> Option<Vm> {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::for_tests(dir.path().join("run"))?;
    let process = launch
        .args(["-machine", "pc", "-m", "64", "-vga", "std", "-nic", "none"])
        .spawn()
        .await
        .unwrap();
    let qmp = Qmp::connect(process.qmp_socket(), Config::default())
        .await
        .unwrap();
    Some(Vm { qmp, process, dir })
}

/// SeaBIOS's text console: 80x25 characters of 9x16 pixels.
pub const TEXT_CONSOLE: (u32, u32) = (720, 400);

/// Waits until SeaBIOS shows text on its console and returns a PPM screenshot of it.
pub async fn first_frame(qmp: &Qmp) -> Frame {
    let started = Instant::now();
    loop {
        let attempt = qmp.screenshot(&ScreenshotRequest::default()).await;
        match attempt {
            Ok(ppm) => {
                let frame = Frame::from_ppm(&ppm).unwrap();
                // The VGA BIOS passes through a blank 640x480 mode before text mode.
                if (frame.width(), frame.height()) == TEXT_CONSOLE && distinct_colours(&frame) > 1 {
                    return frame;
                }
            }
            // Before SeaBIOS sets a video mode there is nothing to capture.
            Err(error) if error.to_string().contains("not initialized") => {}
            Err(error) if error.qmp_error().is_some() => {}
            Err(error) => panic!("screenshot failed: {error}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the guest never showed text on its console"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many different colours a frame has: 1 means blank.
pub fn distinct_colours(frame: &Frame) -> usize {
    let mut colours: Vec<[u8; 3]> = frame
        .rgb()
        .chunks_exact(3)
        .map(|pixel| [pixel[0], pixel[1], pixel[2]])
        .collect();
    colours.sort_unstable();
    colours.dedup();
    colours.len()
}
