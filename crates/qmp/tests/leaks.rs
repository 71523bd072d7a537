//! After many screenshots neither we nor QEMU hold more descriptors or fd sets than before.
//!
//! This is its own test binary so no other test opens descriptors in this process meanwhile.

mod support;

use vgashot_qmp::screenshot::MAX_IDLE_CAPTURE_FILES;
use vgashot_qmp::{ScreendumpFormat, ScreenshotRequest};

#[tokio::test]
async fn two_hundred_screenshots_leak_nothing() {
    let Some(vm) = support::boot().await else {
        return;
    };
    support::first_frame(&vm.qmp).await;
    vm.qmp.release_capture_files().await.unwrap();

    let ours_before = vgashot_qemu_process::testing::open_descriptors("self");
    let qemu_before = vgashot_qemu_process::testing::open_descriptors(vm.process.pid());
    let fdsets_before = vm.qmp.query_fdsets().await.unwrap();

    let request = |index: usize| ScreenshotRequest {
        format: if index % 2 == 0 {
            ScreendumpFormat::Ppm
        } else {
            ScreendumpFormat::Png
        },
        ..Default::default()
    };
    // 100 one after the other, then 100 in bursts of 10 at once, which need more capture files
    // than the pool keeps.
    for index in 0..100 {
        vm.qmp.screenshot(&request(index)).await.unwrap();
    }
    for burst in 0..10 {
        let mut shots = tokio::task::JoinSet::new();
        for index in 0..10 {
            let qmp = vm.qmp.clone();
            let request = request(burst + index);
            shots.spawn(async move { qmp.screenshot(&request).await });
        }
        for shot in shots.join_all().await {
            assert!(!shot.unwrap().is_empty());
        }
        // Bounded while running: at most the pool plus what is in flight.
        let in_qemu = vgashot_qemu_process::testing::open_descriptors(vm.process.pid());
        assert!(
            in_qemu <= qemu_before + MAX_IDLE_CAPTURE_FILES + 10,
            "QEMU holds {in_qemu} descriptors, {qemu_before} before"
        );
    }

    vm.qmp.release_capture_files().await.unwrap();
    // Surplus capture files are removed in the background: wait (bounded) until that is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while vm.qmp.query_fdsets().await.unwrap() != fdsets_before
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(vm.qmp.query_fdsets().await.unwrap(), fdsets_before);
    assert_eq!(
        vgashot_qemu_process::testing::open_descriptors(vm.process.pid()),
        qemu_before
    );
    assert_eq!(
        vgashot_qemu_process::testing::open_descriptors("self"),
        ours_before
    );
}
