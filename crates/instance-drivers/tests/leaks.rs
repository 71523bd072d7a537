//! 200 screenshots leak no descriptors, in this process or in QEMU. Its own test binary, so no
//! other test opens descriptors meanwhile.

mod support;

use std::time::Duration;

use support::Harness;
use vgashot_instance_drivers::{Instance, PngEncoder, ScreenshotOptions};
use vgashot_qmp::screenshot::MAX_IDLE_CAPTURE_FILES;

#[tokio::test]
async fn two_hundred_screenshots_leak_no_descriptors() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness.started("v1", &[]).await;
    let qemu = vm.state().pid.unwrap();

    let burst = |count: usize, encoder: PngEncoder| {
        let mut shots = tokio::task::JoinSet::new();
        for _ in 0..count {
            let vm = vm.clone();
            shots.spawn(async move {
                let options = ScreenshotOptions {
                    encoder,
                    ..Default::default()
                };
                vm.console_screenshot(&options)
                    .await
                    .map(|shot| shot.png.len())
            });
        }
        shots.join_all()
    };
    // Warm up: fill the connection's pool of capture files, which it keeps by design.
    for shot in burst(MAX_IDLE_CAPTURE_FILES, PngEncoder::Vgashot).await {
        shot.unwrap();
    }
    let ours_before = vgashot_qemu_process::testing::open_descriptors("self");
    let qemu_before = vgashot_qemu_process::testing::open_descriptors(qemu);

    for round in 0..20 {
        let encoder = if round % 2 == 0 {
            PngEncoder::Vgashot
        } else {
            PngEncoder::Qemu
        };
        // Bursts wider than the pool: the surplus files are made and removed again.
        for shot in burst(10, encoder).await {
            assert!(shot.unwrap() > 0);
        }
    }
    // Surplus files are removed from QEMU in the background, and our end of each closes once
    // QEMU has answered: wait (bounded) until both are done.
    let settled = || {
        vgashot_qemu_process::testing::open_descriptors(qemu) == qemu_before
            && vgashot_qemu_process::testing::open_descriptors("self") == ours_before
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !settled() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        vgashot_qemu_process::testing::open_descriptors(qemu),
        qemu_before,
        "QEMU's descriptors"
    );
    assert_eq!(
        vgashot_qemu_process::testing::open_descriptors("self"),
        ours_before,
        "our descriptors"
    );
    vm.stop(true, Duration::ZERO).await.unwrap();
}
