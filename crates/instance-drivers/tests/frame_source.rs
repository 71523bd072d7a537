//! A VM as the screens engine's frame source: the pixels QEMU shows, the plain PNG the driver
//! used to encode, byte for byte, and screens that cannot exist refused before any capture.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Harness;
use vgashot_fixtures::Fixture;
use vgashot_framebuffer::PngCompression;
use vgashot_instance_drivers::Instance;
use vgashot_screens::{
    FrameSource, InstanceKey, RenderLimits, ScreenId, Screens, ScreensError, Variant,
};

#[tokio::test]
async fn a_vm_yields_frames_and_the_engine_encodes_them() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    let vm = harness
        .driver
        .create(harness.fixture_definition("frames", fixture, &[]))
        .await
        .unwrap();
    vm.start().await.unwrap();
    let source: Arc<dyn FrameSource> = vm.clone();
    let screens = Screens::new(RenderLimits::default());
    let key = InstanceKey {
        project: "default".into(),
        name: "frames".into(),
    };
    let primary = ScreenId::default();

    let expected = fixture.expected_rgb().unwrap();
    let started = Instant::now();
    let capture = loop {
        let answer = screens
            .capture(&key, &source, &primary, Duration::ZERO)
            .await
            .unwrap();
        if answer.capture.frame().rgb() == expected.as_slice() {
            break answer.capture;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bars never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(screens.encodings(), 0, "capturing encodes nothing");
    let png = capture.render(&Variant::plain()).await.unwrap();
    assert_eq!(
        png,
        capture.frame().encode_png(PngCompression::Fastest).unwrap()
    );
    assert_eq!(screens.encodings(), 1);

    // Std VGA has one head: head 1 is refused without asking QEMU.
    let head_one = ScreenId {
        device: Some("video0".into()),
        head: Some(1),
    };
    let refused = screens
        .capture(&key, &source, &head_one, Duration::ZERO)
        .await;
    assert!(
        matches!(refused, Err(ScreensError::HeadNotFound { head: 1, .. })),
        "{refused:?}"
    );

    vm.stop(true, Duration::ZERO).await.unwrap();
    let stopped = screens
        .capture(&key, &source, &primary, Duration::ZERO)
        .await;
    assert!(
        matches!(stopped, Err(ScreensError::NotRunning)),
        "{stopped:?}"
    );
}
