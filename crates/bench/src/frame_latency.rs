//! What the driver-level screenshot costs now that it makes no PNG: a frame as the screens
//! engine takes it (`FrameSource::frame`: `screendump` of a PPM into a memfd, then the PPM
//! decoded) against the same capture with our PNG encoded after it (`console_screenshot`, what
//! every capture paid before the engine made encodings lazy), on the same VM, rounds interleaved.
//!
//! Run alone with `cargo run --release -p vgashot-bench -- frames` (prints the section, writes
//! nothing); `cargo xtask bench` includes it in `BENCHMARKS.md`.

use std::time::Duration;

use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{Driver as _, Instance, QemuInstance, ScreenshotOptions};
use vgashot_screens::{FrameSource, ScreenId};

use crate::driver_latency::{definition, open_driver, wait_for_screen};
use crate::report::{Row, Section};
use crate::stats::Samples;
use crate::{Result, WARMUP, timed};

/// Measured rounds per row.
const ROUNDS: usize = 100;

/// The screens measured: a common desktop size and a full-HD one.
const SCREENS: [(&str, Fixture, (u32, u32)); 2] = [
    ("1024x768", Fixture::bars(1024, 768), (1024, 768)),
    ("1920x1080", Fixture::bars(1920, 1080), (1920, 1080)),
];

/// The section, and the version of the QEMU it ran (for a report of this section alone).
pub async fn measure() -> Result<(String, Section)> {
    let dir = tempfile::tempdir()?;
    let driver = open_driver(dir.path()).await?;
    let mut section = Section::new(
        "Driver screenshots: a frame without the PNG it no longer makes",
        "A capture as the screens engine takes it (`screendump` of a PPM into a memfd, PPM \
         decoded) against the same capture followed by our PNG encoding (the driver's \
         `console_screenshot`, what every capture cost before encodings became lazy and once per \
         distinct frame). The ratio is what a capture costs now against before.",
    );
    for (index, (name, fixture, size)) in SCREENS.into_iter().enumerate() {
        let vm = driver
            .create(definition(
                &format!("frames{index}"),
                Some(fixture),
                dir.path(),
            )?)
            .await?;
        vm.start().await?;
        let outcome = match wait_for_screen(&vm, Some(fixture), size).await {
            Ok(()) => measure_screen(&vm, name, &mut section).await,
            Err(error) => Err(error),
        };
        vm.stop(true, Duration::ZERO).await?;
        outcome?;
    }
    Ok((driver.version().unwrap_or_default(), section))
}

async fn measure_screen(vm: &QemuInstance, name: &str, section: &mut Section) -> Result {
    let screen = ScreenId::default();
    let with_png = ScreenshotOptions::default();
    let mut frames = Samples::default();
    let mut pngs = Samples::default();
    for round in 0..WARMUP + ROUNDS {
        timed(&mut pngs, round, async {
            Ok(vm.console_screenshot(&with_png).await?)
        })
        .await?;
        timed(&mut frames, round, async { Ok(vm.frame(&screen).await?) }).await?;
    }
    section.push(Row::new(
        format!("{name}: screendump + PPM decode + PNG encode (before)"),
        &pngs,
        None,
    ));
    section.push(Row::new(
        format!("{name}: screendump + PPM decode (now)"),
        &frames,
        Some(&pngs),
    ));
    Ok(())
}
