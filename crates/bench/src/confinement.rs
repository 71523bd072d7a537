//! What confining QEMU costs: VM start time and screenshot latency with QEMU confined (its own
//! user, the seccomp sandbox) against QEMU unconfined (the daemon's user, root here, no
//! sandbox), in the same run.
//!
//! How it measures:
//! 1. Two qemu drivers over temporary directories, one per side, identical but for
//!    [`DriverOptions::confinement`]; both hand QEMU its disk by descriptor, which is not
//!    optional.
//! 2. Start time: `start()` of a stopped VM (plan, host files opened, QEMU launched detached,
//!    QMP answering), sides interleaved, a forced stop after each.
//! 3. Screenshot latency: `console_screenshot` (PPM through a memfd, our PNG) of a 1024x768
//!    screen on one running VM per side, rounds interleaved.

use std::time::Duration;

use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{
    DriverOptions, DriverPaths, HostFilePolicy, Instance, QemuDriver, QemuInstance,
    ScreenshotOptions,
};
use vgashot_qemu_process::{Confinement, QemuUser};

use crate::driver_latency::{definition, wait_for_screen};
use crate::report::{Row, Section};
use crate::stats::Samples;
use crate::{ROUNDS, Result, WARMUP, timed};

/// Starts measured per side: each boots QEMU, so fewer than screenshots.
const START_ROUNDS: usize = 20;
/// Starts per side before measuring (the page cache, the binary's probe).
const START_WARMUP: usize = 2;
/// The screen both VMs show.
const SCREEN: Fixture = Fixture::bars(1024, 768);

/// One side: a driver and its VM.
struct Side {
    _dir: tempfile::TempDir,
    vm: std::sync::Arc<QemuInstance>,
}

impl Side {
    async fn new(confinement: Confinement) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images)?;
        let driver = QemuDriver::open_with(
            DriverPaths {
                state_dir: dir.path().join("state"),
                runtime_dir: dir.path().join("run"),
            },
            DriverOptions {
                host_files: HostFilePolicy {
                    image_dirs: vec![images.clone()],
                    ..HostFilePolicy::default()
                },
                confinement,
                ..DriverOptions::default()
            },
        )
        .await?;
        let vm = driver
            .create(definition("confinement", Some(SCREEN), &images)?)
            .await?;
        Ok(Self { _dir: dir, vm })
    }

    /// Starts the VM, recording how long `start()` took past the warm-up rounds.
    async fn start(&self, samples: &mut Samples, round: usize) -> Result {
        timed(samples, round, async { Ok(self.vm.start().await?) }).await
    }
}

pub async fn measure() -> Result<Section> {
    let user = QemuUser::ensure("vgashot-qemu")?;
    let who = user
        .as_ref()
        .map_or("the daemon's own user (not root here)".to_owned(), |user| {
            format!("the system user `{}`", user.name)
        });
    let confined = Side::new(Confinement::confined(user)).await?;
    let unconfined = Side::new(Confinement::default()).await?;
    let mut section = Section::new(
        "Confinement: what running QEMU confined costs",
        format!(
            "The qemu driver with QEMU confined (as {who}, in its seccomp sandbox: `-sandbox \
             on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny`) against \
             QEMU unconfined (as root, no sandbox), same run, rounds interleaved; both get their \
             disk as descriptors. Start: `start()` of a stopped VM until QMP answers (QEMU's \
             version and seccomp support are probed once per binary, before the first start). \
             Screenshot: `console_screenshot` of a 1024x768 screen (PPM through a memfd, our \
             PNG). Goal: ratios close to 1."
        ),
    );

    let (mut confined_starts, mut unconfined_starts) = (Samples::default(), Samples::default());
    for round in 0..START_WARMUP + START_ROUNDS {
        // `timed` records rounds from WARMUP on.
        let round = round + WARMUP - START_WARMUP;
        for (side, samples) in [
            (&unconfined, &mut unconfined_starts),
            (&confined, &mut confined_starts),
        ] {
            side.start(samples, round).await?;
            side.vm.stop(true, Duration::ZERO).await?;
        }
    }
    section.push(Row::new(
        "VM start, unconfined (baseline)".into(),
        &unconfined_starts,
        None,
    ));
    section.push(Row::new(
        format!("VM start, confined ({who})"),
        &confined_starts,
        Some(&unconfined_starts),
    ));

    for side in [&unconfined, &confined] {
        side.vm.start().await?;
        wait_for_screen(&side.vm, Some(SCREEN), (1024, 768)).await?;
    }
    let options = ScreenshotOptions::default();
    let (mut confined_shots, mut unconfined_shots) = (Samples::default(), Samples::default());
    for round in 0..WARMUP + ROUNDS {
        timed(&mut unconfined_shots, round, async {
            Ok(unconfined.vm.console_screenshot(&options).await?)
        })
        .await?;
        timed(&mut confined_shots, round, async {
            Ok(confined.vm.console_screenshot(&options).await?)
        })
        .await?;
    }
    section.push(Row::new(
        "1024x768 screenshot, unconfined (baseline)".into(),
        &unconfined_shots,
        None,
    ));
    section.push(Row::new(
        "1024x768 screenshot, confined".into(),
        &confined_shots,
        Some(&unconfined_shots),
    ));
    for side in [&unconfined, &confined] {
        side.vm.stop(true, Duration::ZERO).await?;
    }
    Ok(section)
}
