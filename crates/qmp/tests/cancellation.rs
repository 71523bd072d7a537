//! A capture or a descriptor pass whose future is dropped midway (a client that went away, a
//! caller's timeout) leaves nothing behind: neither we nor QEMU hold more descriptors or fd sets
//! than before.
//!
//! Its own test binary, so no other test opens descriptors in this process meanwhile.

mod support;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::memfd::{MFdFlags, memfd_create};
use vgashot_qemu_process::testing::open_descriptors;
use vgashot_qmp::{Qmp, ScreendumpFormat, ScreenshotRequest};

/// Drops `future` after `after`, or lets it finish; returns whether it was cut short.
async fn cut_after<F: Future>(after: Duration, future: F) -> bool {
    tokio::time::timeout(after, future).await.is_err()
}

/// Waits (bounded) until QEMU's fd sets are `expected` again. Undoing runs in the background,
/// and a registration that finished for a caller already gone puts its file into the pool, so
/// the pool is emptied at each look.
async fn wait_for_fdsets(qmp: &Qmp, expected: &[vgashot_qmp::FdsetInfo]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        qmp.release_capture_files().await.unwrap();
        let now = qmp.query_fdsets().await.unwrap();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} fd sets in QEMU, {} before; the first: {:?}",
            now.len(),
            expected.len(),
            now.first()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `pid` holds `expected` descriptors.
async fn wait_for_descriptors(pid: String, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = open_descriptors(&pid);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pid} holds {now} descriptors, {expected} before"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancelled_captures_and_passes_leave_nothing_behind() {
    let Some(vm) = support::boot().await else {
        return;
    };
    support::first_frame(&vm.qmp).await;
    vm.qmp.release_capture_files().await.unwrap();
    let ours_before = open_descriptors("self");
    let qemu_before = open_descriptors(vm.process.pid());
    let fdsets_before = vm.qmp.query_fdsets().await.unwrap();

    // Captures cut at every point of their life: before `add-fd` is answered, during the
    // `screendump`, while the image is read. A 720x400 capture takes a few milliseconds.
    let mut cut = 0;
    for step in 0..80u64 {
        let request = ScreenshotRequest {
            format: if step % 2 == 0 {
                ScreendumpFormat::Ppm
            } else {
                ScreendumpFormat::Png
            },
            ..Default::default()
        };
        let after = Duration::from_micros(step * 100);
        if step % 4 == 0 {
            // Bursts, so new files are registered (the pool holds only four) and cut too.
            let mut burst = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let (qmp, request) = (vm.qmp.clone(), request.clone());
                burst.spawn(async move { cut_after(after, qmp.screenshot(&request)).await });
            }
            cut += burst
                .join_all()
                .await
                .into_iter()
                .filter(|&was| was)
                .count();
        } else if cut_after(after, vm.qmp.screenshot(&request)).await {
            cut += 1;
        }
    }
    assert!(cut > 0, "no capture was cut short, so nothing was tested");

    // Descriptor passes cut midway, or finished and then dropped.
    let memfd = memfd_create(c"vgashot-test", MFdFlags::MFD_CLOEXEC).unwrap();
    let mut passes_cut = 0;
    for step in 0..40u64 {
        let after = Duration::from_micros(step * 50);
        let name = format!("cancel-{step}");
        if cut_after(after, vm.qmp.pass_fd(&name, memfd.as_fd())).await {
            passes_cut += 1;
        }
        if cut_after(after, vm.qmp.add_fd_guarded(memfd.as_fd(), None)).await {
            passes_cut += 1;
        }
    }
    assert!(
        passes_cut > 0,
        "no pass was cut short, so nothing was tested"
    );

    wait_for_fdsets(&vm.qmp, &fdsets_before).await;
    wait_for_descriptors(vm.process.pid().to_string(), qemu_before).await;
    drop(memfd);
    wait_for_descriptors("self".to_owned(), ours_before).await;

    // And the connection still works.
    let ppm = vm
        .qmp
        .screenshot(&ScreenshotRequest::default())
        .await
        .unwrap();
    assert!(ppm.starts_with(b"P6"));
}
