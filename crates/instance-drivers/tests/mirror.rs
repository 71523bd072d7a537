//! The VNC mirror of a VM's primary screen against real QEMU: the same pixels as a screendump,
//! resolution changes followed, no capture at all while a followed screen stays still, a
//! changing screen followed, and a restarted VM mirrored afresh.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Harness;
use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{Instance, QemuInstance};
use vgashot_screens::{FrameSource, InstanceKey, RenderLimits, ScreenId, Screens, Served};

const INTERVAL: Duration = Duration::from_millis(50);

fn key(name: &str) -> InstanceKey {
    InstanceKey {
        project: "default".into(),
        name: name.into(),
    }
}

/// The screendump path of the same console: device `video0`, head 0, which the mirror does not
/// serve.
fn by_screendump() -> ScreenId {
    ScreenId {
        device: Some("video0".into()),
        head: Some(0),
    }
}

/// Counter `family` of `name` (with `labels` after the name's), from the engine's metrics.
fn metric(screens: &Screens, family: &str, name: &str, labels: &str) -> u64 {
    let prefix = format!("{family}{{project=\"default\",name=\"{name}\"{labels}}} ");
    screens
        .render_metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

fn mirrored(screens: &Screens, name: &str) -> u64 {
    metric(
        screens,
        "vgashot_screenshot_frames_total",
        name,
        ",source=\"mirror\"",
    )
}

async fn started(harness: &Harness, name: &str, fixture: Fixture) -> Arc<QemuInstance> {
    let vm = harness
        .driver
        .create(harness.fixture_definition(name, fixture, &[]))
        .await
        .unwrap();
    vm.start().await.unwrap();
    vm
}

#[tokio::test]
async fn a_followed_screen_is_mirrored_byte_for_byte_and_a_still_one_costs_nothing() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let fixture = Fixture::bars(1024, 768);
    let vm = started(&harness, "mirror", fixture).await;
    let source: Arc<dyn FrameSource> = vm.clone();
    let screens = Screens::new(RenderLimits::default());
    let primary = ScreenId::default();
    let mut follower = screens
        .follow(&key("mirror"), &source, &primary, INTERVAL)
        .unwrap();
    assert!(follower.pushed(), "QEMU's VNC server pushes changes");

    // Through SeaBIOS's text mode to the bars' 1024x768: every size followed.
    let expected = fixture.expected_rgb().unwrap();
    let started = Instant::now();
    let mut sizes = Vec::new();
    let bars = loop {
        let answer = tokio::time::timeout(Duration::from_secs(60), follower.changed())
            .await
            .expect("the screen changes until the bars show")
            .unwrap();
        let frame = answer.capture.frame();
        let size = (frame.width(), frame.height());
        if sizes.last() != Some(&size) {
            sizes.push(size);
        }
        if frame.rgb() == expected.as_slice() && mirrored(&screens, "mirror") > 0 {
            break answer.capture;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{sizes:?}");
    };
    assert_eq!(sizes.last(), Some(&(1024, 768)), "{sizes:?}");
    assert!(
        sizes.len() >= 2,
        "a resolution change was followed: {sizes:?}"
    );

    // The mirror's bytes are the screendump's.
    let dumped = screens
        .capture(&key("mirror"), &source, &by_screendump(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dumped.capture.frame().rgb(), bars.frame().rgb());
    assert_eq!(dumped.capture.hash(), bars.hash());

    // A still, followed screen: no capture at all, screendump or mirror, for 3 s.
    let captures =
        |screens: &Screens| metric(screens, "vgashot_screenshot_captures_total", "mirror", "");
    let before = captures(&screens);
    let quiet = tokio::time::timeout(Duration::from_secs(3), follower.changed()).await;
    assert!(quiet.is_err(), "a still screen yielded a frame");
    assert_eq!(captures(&screens), before);

    // A screenshot of the still primary screen is the mirror's picture with the same ETag, and
    // costs no capture: the mirror's version has not moved since the follower's last one, so
    // the engine neither copies nor hashes the pixels again, however often it is asked.
    for _ in 0..3 {
        let shot = screens
            .capture(&key("mirror"), &source, &primary, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(shot.served, Served::Unchanged);
        assert_eq!(shot.capture.hash(), dumped.capture.hash());
        assert!(Arc::ptr_eq(shot.capture.frame(), bars.frame()));
    }
    assert_eq!(captures(&screens), before);
    vm.stop(true, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn a_changing_screen_is_followed_and_a_restarted_vm_is_mirrored_afresh() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = started(&harness, "counter", Fixture::Counter).await;
    let source: Arc<dyn FrameSource> = vm.clone();
    let screens = Screens::new(RenderLimits::default());
    let took = twenty_changes(&screens, &source).await;
    assert!(
        mirrored(&screens, "counter") > 0,
        "the counter was mirrored"
    );
    assert!(took < Duration::from_secs(60));

    vm.stop(true, Duration::ZERO).await.unwrap();
    vm.start().await.unwrap();
    let before = mirrored(&screens, "counter");
    twenty_changes(&screens, &source).await;
    assert!(
        mirrored(&screens, "counter") > before,
        "the restarted VM got a session of its own"
    );
    vm.stop(true, Duration::ZERO).await.unwrap();
}

/// How long a follower of the counter's screen takes to see 20 changes.
async fn twenty_changes(screens: &Screens, source: &Arc<dyn FrameSource>) -> Duration {
    let mut follower = screens
        .follow(&key("counter"), source, &ScreenId::default(), INTERVAL)
        .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(60), follower.changed())
            .await
            .expect("the counter changes")
            .unwrap();
    }
    started.elapsed()
}
