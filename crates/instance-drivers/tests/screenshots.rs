//! Screenshots of VMs that draw known pictures, checked pixel by pixel.

mod support;

use std::time::{Duration, Instant};

use support::Harness;
use vgashot_fixtures::Fixture;
use vgashot_framebuffer::Frame;
use vgashot_instance_drivers::{
    DriverError, Instance, PngEncoder, QemuInstance, Screenshot, ScreenshotOptions,
};

/// Polls screenshots until the fixture's picture is complete on screen (the boot sector draws
/// it after SeaBIOS), then returns that screenshot.
async fn wait_for_picture(
    vm: &QemuInstance,
    fixture: Fixture,
    options: &ScreenshotOptions,
) -> Screenshot {
    let expected = fixture.expected_rgb().unwrap();
    let started = Instant::now();
    loop {
        let shot = vm.console_screenshot(options).await.unwrap();
        if Frame::from_png(&shot.png).unwrap().rgb() == expected.as_slice() {
            return shot;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{fixture} never appeared; last screenshot {}x{}",
            shot.width,
            shot.height
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check_fixture(harness: &Harness, name: &str, fixture: Fixture) {
    let vm = harness
        .driver
        .create(harness.fixture_definition(name, fixture, &[]))
        .await
        .unwrap();
    vm.start().await.unwrap();
    let (width, height) = fixture.expected_size();

    // Our path: QEMU writes a PPM, we encode; the frame is handed back too.
    let ours = wait_for_picture(&vm, fixture, &ScreenshotOptions::default()).await;
    assert_eq!((ours.width, ours.height), (width, height));
    let frame = ours.frame.as_ref().expect("the PPM path keeps the pixels");
    assert_eq!(frame.rgb(), fixture.expected_rgb().unwrap().as_slice());
    for (x, y) in [
        (0, 0),
        (width - 1, 0),
        (width / 2, height / 2),
        (width - 1, height - 1),
    ] {
        assert_eq!(
            Some(frame.pixel(x, y)),
            fixture.expected_pixel(x, y),
            "({x}, {y})"
        );
    }

    // QEMU's own PNG: the same pixels.
    let native = vm
        .console_screenshot(&ScreenshotOptions {
            encoder: PngEncoder::Qemu,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(native.frame.is_none());
    assert_eq!((native.width, native.height), (width, height));
    assert_eq!(Frame::from_png(&native.png).unwrap(), *frame);

    vm.stop(true, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn graphics_modes_match_their_pattern_in_both_encoders() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    check_fixture(&harness, "bars1024", Fixture::bars(1024, 768)).await;
    check_fixture(&harness, "bars1080", Fixture::bars(1920, 1080)).await;
    check_fixture(&harness, "mode13", Fixture::Mode13).await;
}

#[tokio::test]
async fn display_devices_and_heads_are_checked() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness.started("std", &[]).await;

    let named = vm
        .console_screenshot(&ScreenshotOptions {
            device: Some("video0".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(named.width > 0 && named.height > 0);

    let missing = vm
        .console_screenshot(&ScreenshotOptions {
            device: Some("nope".into()),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(missing, Err(DriverError::DisplayNotFound { ref device }) if device == "nope"),
        "{missing:?}"
    );
    let no_head = vm
        .console_screenshot(&ScreenshotOptions {
            device: Some("video0".into()),
            head: Some(1),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(no_head, Err(DriverError::HeadNotFound { head: 1, .. })),
        "{no_head:?}"
    );
    let head_alone = vm
        .console_screenshot(&ScreenshotOptions {
            head: Some(0),
            ..Default::default()
        })
        .await;
    assert!(matches!(head_alone, Err(DriverError::HeadWithoutDevice)));
    vm.stop(true, Duration::ZERO).await.unwrap();

    let headless = harness
        .started("headless", &[("vgashot.vga", "none")])
        .await;
    let none = headless
        .console_screenshot(&ScreenshotOptions::default())
        .await;
    assert!(matches!(none, Err(DriverError::NoDisplay)), "{none:?}");
    headless.stop(true, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn virtio_vga_heads_are_separate_screens() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    // The guest draws the bars through the VGA-compatible head 0 and never configures head 1.
    let fixture = Fixture::bars(640, 480);
    let vm = harness
        .driver
        .create(harness.fixture_definition(
            "virtio",
            fixture,
            &[("vgashot.vga", "virtio"), ("vgashot.vga.heads", "2")],
        ))
        .await
        .unwrap();
    vm.start().await.unwrap();
    let head = |head| ScreenshotOptions {
        device: Some("video0".into()),
        head: Some(head),
        ..Default::default()
    };
    let first = wait_for_picture(&vm, fixture, &head(0)).await;
    let second = vm.console_screenshot(&head(1)).await.unwrap();
    let second = Frame::from_png(&second.png).unwrap();
    assert_ne!(
        second.rgb(),
        Frame::from_png(&first.png).unwrap().rgb(),
        "head 1, which the guest never set up, shows head 0's picture"
    );
    let beyond = vm
        .console_screenshot(&ScreenshotOptions {
            device: Some("video0".into()),
            head: Some(2),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(beyond, Err(DriverError::HeadNotFound { head: 2, .. })),
        "{beyond:?}"
    );
    vm.stop(true, Duration::ZERO).await.unwrap();
}
