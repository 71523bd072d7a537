//! A single screenshot of a mirrored screen through the daemon's REST API against QEMU's own
//! PNG `screendump` of the same picture, on a still screen and on a changing one.
//!
//! How it measures:
//! 1. Starts the release daemon with two VMs, `still` (`Fixture::bars(1024, 768)`) and
//!    `changing` (`Fixture::Counter`, a new picture 18.2 times a second), both with
//!    `console.screenshot.min_interval: "0"` (every request may capture) and the history
//!    recorder off; and, through the qemu driver in this process, two VMs showing the same
//!    fixtures, for the baseline (the daemon holds its VMs' QMP sockets).
//! 2. Each daemon VM's primary screen is asked for until it is served from its mirror
//!    (`vgashot_screenshot_frames_total{source="mirror"}`).
//! 3. Rounds, interleaved: QEMU's PNG `screendump` of the driver's VM (QEMU encodes with
//!    libpng; the baseline), then a plain PNG through REST on the screendump path
//!    (`&device=video0&head=0`), then the mirrored primary screen; each timed on its own, on
//!    a keep-alive connection. On the changing screen the rounds are [`CHANGE_GAP`] apart, so
//!    the counter has moved before each request.
//! 4. How the mirrored requests were served comes from the deltas of
//!    `vgashot_screenshot_unchanged_total` (the last capture, neither copied nor hashed) and
//!    `vgashot_screenshot_frames_total{source="mirror"}` (a new copy of the mirror's picture,
//!    hashed and encoded), so the rows say whether the screen changed between rounds.
//! 5. The driver's VMs are stopped at the end; a guard kills their QEMUs on every exit path,
//!    as [`Daemon`]'s does the daemon's.

use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{
    Driver as _, Instance, PngEncoder, QemuInstance, ScreenshotOptions,
};

use crate::daemon::{Connection, Daemon, PNG_MAGIC, create_vm, metric, png_size};
use crate::driver_latency::{definition, open_driver, wait_for_screen};
use crate::report::{Row, Section};
use crate::stats::Samples;
use crate::{Result, WARMUP, timed};

/// Measured rounds per row.
const ROUNDS: usize = 100;
/// The pause between rounds on the changing screen: longer than the counter's 55 ms.
const CHANGE_GAP: Duration = Duration::from_millis(60);
/// Every request may capture; the history recorder asks for nothing.
const CONFIG: [(&str, &str); 2] = [
    ("console.screenshot.min_interval", "0"),
    ("console.history.enabled", "false"),
];
/// The screens: a name, the daemon VM's name, its fixture, and whether rounds wait for a change.
const SCREENS: [(&str, &str, Fixture, bool); 2] = [
    ("1024x768 still", "still", Fixture::bars(1024, 768), false),
    ("640x400 changing", "changing", Fixture::Counter, true),
];

/// The driver's VMs' directory; dropping it kills every QEMU whose pid file lies under it.
struct DriverVms(TempDir);

impl Drop for DriverVms {
    fn drop(&mut self) {
        vgashot_qemu_process::testing::kill_detached_under(&self.0.path().join("run"));
    }
}

/// The section, and the version of the QEMU it ran (for a report of the mirror's sections alone).
pub async fn measure() -> Result<(String, Section)> {
    let daemon = Daemon::start().await?;
    let socket = daemon.socket();
    let vms = DriverVms(tempfile::tempdir()?);
    let driver = open_driver(vms.0.path()).await?;
    let mut section = Section::new(
        "A single screenshot of a mirrored screen",
        "One plain PNG through REST (`GET /1.0/instances/VM/console?type=vga` on a keep-alive \
         Unix-socket connection, `console.screenshot.min_interval: \"0\"`, so each request may \
         capture) of a screen the mirror serves, against QEMU's own PNG `screendump` (QEMU \
         encodes with libpng) of the same picture on a twin VM driven by the qemu driver (the \
         daemon holds its VMs' QMP sockets), and the same screen through REST on the screendump \
         path (`&device=video0&head=0`, today's engine). Rounds interleaved; on the changing \
         screen (the counter, 18.2 changes a second) they are 60 ms apart, so each request \
         finds a new picture. How the mirrored requests were served is counted from the \
         metrics: unchanged (the last capture, its PNG already made) or a new frame (the \
         mirror's picture copied, hashed and encoded). Goal: mirrored ≤ 0.15 of QEMU's PNG.",
    );
    for (index, (name, vm_name, fixture, changing)) in SCREENS.into_iter().enumerate() {
        create_vm(&daemon, vm_name, Some(fixture), &CONFIG).await?;
        let twin = driver
            .create(definition(
                &format!("twin{index}"),
                Some(fixture),
                vms.0.path(),
            )?)
            .await?;
        twin.start().await?;
        let outcome = match wait_for_screen(&twin, Some(fixture), fixture.expected_size()).await {
            Ok(()) => {
                measure_screen(
                    &socket,
                    &twin,
                    (name, vm_name, fixture),
                    changing,
                    &mut section,
                )
                .await
            }
            Err(error) => Err(error),
        };
        twin.stop(true, Duration::ZERO).await?;
        outcome?;
    }
    Ok((driver.version().unwrap_or_default(), section))
}

/// Steps 2 to 4 for one screen.
async fn measure_screen(
    socket: &Path,
    twin: &QemuInstance,
    (name, vm, fixture): (&str, &str, Fixture),
    changing: bool,
    section: &mut Section,
) -> Result {
    let mirrored = format!("/1.0/instances/{vm}/console?type=vga");
    let dumped = format!("{mirrored}&device=video0&head=0");
    let label = format!("name=\"{vm}\"");
    let mirror_labels = [label.as_str(), "source=\"mirror\""];
    let mirror_frames = || metric(socket, "vgashot_screenshot_frames_total", &mirror_labels);
    let mut connection = Connection::open(socket).await?;
    let started = std::time::Instant::now();
    loop {
        let size = png_size(&get_png(&mut connection, &mirrored).await?);
        if mirror_frames().await? > 0 && size == Some(fixture.expected_size()) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{vm}'s screen was never served from its mirror").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let qemus = ScreenshotOptions {
        encoder: PngEncoder::Qemu,
        ..Default::default()
    };
    let (mut native, mut through_dump, mut through_mirror) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut unchanged, mut new_frames) = (0, 0);
    for round in 0..WARMUP + ROUNDS {
        if changing {
            tokio::time::sleep(CHANGE_GAP).await;
        }
        timed(&mut native, round, async {
            Ok(twin.console_screenshot(&qemus).await?)
        })
        .await?;
        timed(&mut through_dump, round, get_png(&mut connection, &dumped)).await?;
        let counts_before = (
            metric(socket, "vgashot_screenshot_unchanged_total", &[&label]).await?,
            mirror_frames().await?,
        );
        timed(
            &mut through_mirror,
            round,
            get_png(&mut connection, &mirrored),
        )
        .await?;
        if round >= WARMUP {
            unchanged += metric(socket, "vgashot_screenshot_unchanged_total", &[&label]).await?
                - counts_before.0;
            new_frames += mirror_frames().await? - counts_before.1;
        }
    }
    section.push(Row::new(
        format!("{name}: QEMU's PNG screendump (baseline)"),
        &native,
        None,
    ));
    section.push(Row::new(
        format!("{name}: REST, screendump path"),
        &through_dump,
        Some(&native),
    ));
    section.push(Row::new(
        format!("{name}: REST, mirrored ({unchanged} unchanged, {new_frames} new frames)"),
        &through_mirror,
        Some(&native),
    ));
    Ok(())
}

/// `GET path` on `connection`: a 200 with a PNG, or an error.
async fn get_png(connection: &mut Connection, path: &str) -> Result<Vec<u8>> {
    let reply = connection.exchange("GET", path, None).await?;
    if reply.status != 200 || !reply.body.starts_with(PNG_MAGIC) {
        return Err(format!("{path} answered {}", reply.status).into());
    }
    Ok(reply.body)
}
