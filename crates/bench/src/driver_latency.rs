//! The qemu driver's `console_screenshot` (PPM through a memfd, PNG encoded by us, off QEMU's main
//! loop) against QEMU's own PNG screendump, same VM, same run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{
    DriverOptions, DriverPaths, HostFilePolicy, Instance, InstanceDefinition, InstanceType,
    PngEncoder, QemuDriver, QemuInstance, ScreenshotOptions,
};

use crate::report::{Row, Section};
use crate::stats::Samples;
use crate::{Result, WARMUP, timed};

/// Measured rounds per row (a 1080p PNG from QEMU takes tens of milliseconds).
const ROUNDS: usize = 100;

/// A screen to measure: a name, and the fixture that draws it (`None`: SeaBIOS's text console).
const SCREENS: [(&str, Option<Fixture>, (u32, u32)); 3] = [
    ("720x400 text", None, (720, 400)),
    (
        "1024x768 graphics",
        Some(Fixture::bars(1024, 768)),
        (1024, 768),
    ),
    (
        "1920x1080 graphics",
        Some(Fixture::bars(1920, 1080)),
        (1920, 1080),
    ),
];

pub async fn measure() -> Result<Section> {
    let dir = tempfile::tempdir()?;
    let driver = open_driver(dir.path()).await?;
    let mut section = Section::new(
        "Driver screenshots: our PNG against QEMU's",
        "`console_screenshot` of the qemu driver, end to end (QMP, decode, encode): QEMU writes a \
         PPM into a memfd and we encode the PNG (zlib-rs level 2, adaptive filtering) on a blocking \
         thread, against QEMU encoding the PNG itself with libpng, which holds QEMU's main loop \
         (and the guest) while it compresses. Goal: ratio ≤ 0.5. The sizes are of the PNG files.",
    );
    for (index, (name, fixture, size)) in SCREENS.into_iter().enumerate() {
        let vm = driver
            .create(definition(&format!("bench{index}"), fixture, dir.path())?)
            .await?;
        vm.start().await?;
        let outcome = match wait_for_screen(&vm, fixture, size).await {
            Ok(()) => measure_screen(&vm, name, &mut section).await,
            Err(error) => Err(error),
        };
        vm.stop(true, Duration::ZERO).await?;
        outcome?;
    }
    Ok(section)
}

async fn measure_screen(vm: &QemuInstance, name: &str, section: &mut Section) -> Result {
    let ours = ScreenshotOptions::default();
    let qemus = ScreenshotOptions {
        encoder: PngEncoder::Qemu,
        ..Default::default()
    };
    let mut native = Samples::default();
    let mut vgashot = Samples::default();
    let (mut native_bytes, mut vgashot_bytes) = (0, 0);
    for round in 0..WARMUP + ROUNDS {
        native_bytes = timed(&mut native, round, async {
            Ok(vm.console_screenshot(&qemus).await?)
        })
        .await?
        .png
        .len();
        vgashot_bytes = timed(&mut vgashot, round, async {
            Ok(vm.console_screenshot(&ours).await?)
        })
        .await?
        .png
        .len();
    }
    section.push(Row::new(
        format!("{name}: QEMU's PNG ({} KB)", native_bytes / 1000),
        &native,
        None,
    ));
    section.push(Row::new(
        format!(
            "{name}: vgashot PPM + our PNG ({} KB)",
            vgashot_bytes / 1000
        ),
        &vgashot,
        Some(&native),
    ));
    Ok(())
}

/// The qemu driver over `dir`, with its images allowed from `dir`.
pub(crate) async fn open_driver(dir: &Path) -> Result<QemuDriver> {
    Ok(QemuDriver::open_with(
        DriverPaths {
            state_dir: dir.join("state"),
            runtime_dir: dir.join("run"),
        },
        DriverOptions {
            host_files: HostFilePolicy {
                image_dirs: vec![dir.to_owned()],
                ..HostFilePolicy::default()
            },
            ..DriverOptions::default()
        },
    )
    .await?)
}

pub(crate) fn definition(
    name: &str,
    fixture: Option<Fixture>,
    dir: &Path,
) -> Result<InstanceDefinition> {
    let mut devices = BTreeMap::new();
    if let Some(fixture) = fixture {
        let image = fixture.write_image(dir)?;
        devices.insert(
            "root".to_owned(),
            BTreeMap::from([
                ("type".to_owned(), "disk".to_owned()),
                ("path".to_owned(), "/".to_owned()),
                ("source".to_owned(), image.display().to_string()),
            ]),
        );
    }
    Ok(InstanceDefinition {
        name: name.into(),
        project: "default".into(),
        instance_type: InstanceType::VirtualMachine,
        description: "benchmark".into(),
        config: BTreeMap::from([("limits.memory".to_owned(), "64MiB".to_owned())]),
        devices,
        profiles: Vec::new(),
        ephemeral: false,
        created_at: String::new(),
        last_used_at: String::new(),
    })
}

/// Waits until the guest shows its screen: `size` (QEMU shows a 640x480 placeholder before),
/// and the fixture's whole picture when there is one.
pub(crate) async fn wait_for_screen(
    vm: &QemuInstance,
    fixture: Option<Fixture>,
    size: (u32, u32),
) -> Result {
    let expected = fixture.and_then(|fixture| fixture.expected_rgb());
    let started = Instant::now();
    loop {
        let shot = vm.console_screenshot(&ScreenshotOptions::default()).await?;
        let drawn = match (&expected, &shot.frame) {
            (Some(expected), Some(frame)) => frame.rgb() == expected.as_slice(),
            _ => true,
        };
        if (shot.width, shot.height) == size && drawn {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("the VM never showed a {}x{} screen", size.0, size.1).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
