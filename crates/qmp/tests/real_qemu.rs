//! The client against a real QEMU.

mod support;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use vgashot_qmp::{
    ConnectionLost, Error, ErrorClass, RunState, ScreendumpFormat, ScreenshotRequest,
};

#[tokio::test]
async fn greeting_and_version_agree() {
    let Some(vm) = support::boot().await else {
        return;
    };
    let greeting = vm.qmp.greeting().clone();
    assert!(greeting.version.qemu.major >= 7, "{:?}", greeting.version);
    assert_eq!(vm.qmp.query_version().await.unwrap(), greeting.version);
}

#[tokio::test]
async fn a_hundred_concurrent_calls_each_get_their_own_reply() {
    let Some(vm) = support::boot().await else {
        return;
    };
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..100 {
        let qmp = vm.qmp.clone();
        calls.spawn(async move {
            // Two different commands interleaved: a reply routed to the wrong caller would
            // not decode as the type that caller expects.
            if index % 2 == 0 {
                let status = qmp.query_status().await.unwrap();
                assert!(status.running);
                assert_eq!(status.status, RunState::Running);
            } else {
                let version = qmp.query_version().await.unwrap();
                assert_eq!(&version, &qmp.greeting().version);
            }
        });
    }
    let mut answered = 0;
    while let Some(call) = calls.join_next().await {
        call.unwrap();
        answered += 1;
    }
    assert_eq!(answered, 100);
}

#[tokio::test]
async fn screenshots_through_a_descriptor_are_valid_ppm_and_png() {
    let Some(vm) = support::boot().await else {
        return;
    };
    let ppm_frame = support::first_frame(&vm.qmp).await;
    assert!(support::distinct_colours(&ppm_frame) >= 2);

    let png = vm
        .qmp
        .screenshot(&ScreenshotRequest {
            format: ScreendumpFormat::Png,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let png_frame = vgashot_framebuffer::Frame::from_png(&png).unwrap();
    assert_eq!(
        (png_frame.width(), png_frame.height()),
        support::TEXT_CONSOLE
    );
    // The same screen in both formats, but for the blinking cursor.
    let differing = ppm_frame
        .rgb()
        .chunks_exact(3)
        .zip(png_frame.rgb().chunks_exact(3))
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing < ppm_frame.rgb().len() / 3 / 100,
        "{differing} pixels differ"
    );
}

#[tokio::test]
async fn qemus_own_errors_arrive_typed() {
    let Some(vm) = support::boot().await else {
        return;
    };
    support::first_frame(&vm.qmp).await;

    let missing_device = vm
        .qmp
        .screenshot(&ScreenshotRequest {
            device: Some("no-such-gpu".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let error = missing_device.qmp_error().expect("QEMU's own error");
    assert_eq!(error.class, ErrorClass::DeviceNotFound);
    assert_eq!(error.desc, "Device 'no-such-gpu' not found");

    let head_alone = vm
        .qmp
        .screenshot(&ScreenshotRequest {
            head: Some(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let error = head_alone.qmp_error().expect("QEMU's own error");
    assert_eq!(error.class, ErrorClass::GenericError);
    assert_eq!(
        error.desc,
        "'head' must be specified together with 'device'"
    );

    let bad_format = vm
        .qmp
        .execute(
            "screendump",
            Some(json!({"filename": "/dev/null", "format": "jpeg"})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        bad_format.qmp_error().unwrap().desc,
        "Parameter 'format' does not accept value 'jpeg'"
    );
    assert!(
        bad_format.to_string().contains("screendump"),
        "the error names the command: {bad_format}"
    );

    let unknown = vm.qmp.execute("no-such-command", None).await.unwrap_err();
    assert_eq!(
        unknown.qmp_error().unwrap().class,
        ErrorClass::CommandNotFound
    );

    // The connection is still fine after all of that.
    assert!(vm.qmp.query_status().await.unwrap().running);
}

#[tokio::test]
async fn events_reach_subscribers() {
    let Some(vm) = support::boot().await else {
        return;
    };
    let mut events = vm.qmp.events();
    vm.qmp.stop().await.unwrap();
    assert_eq!(
        vm.qmp.query_status().await.unwrap().status,
        RunState::Paused
    );
    vm.qmp.cont().await.unwrap();
    let mut names = Vec::new();
    while names.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("events arrive")
            .unwrap();
        names.push(event.name);
    }
    assert_eq!(names, ["STOP", "RESUME"]);
}

#[tokio::test]
async fn killing_qemu_fails_pending_and_later_calls_at_once() {
    let Some(mut vm) = support::boot().await else {
        return;
    };
    let pid = Pid::from_raw(vm.process.pid() as i32);
    // A frozen QEMU reads nothing, so this call is surely still waiting when QEMU dies.
    kill(pid, Signal::SIGSTOP).unwrap();
    let qmp = vm.qmp.clone();
    let pending = tokio::spawn(async move { qmp.query_status().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished());

    let killed = Instant::now();
    vm.process.kill().await.unwrap();
    let error = pending.await.unwrap().unwrap_err();
    let waited = killed.elapsed();
    // Well before the 5 s command timeout: it failed because QEMU went, not because it timed out.
    assert!(
        waited < Duration::from_secs(2),
        "the pending call took {waited:?} to fail"
    );
    let Error::Disconnected(reason) = &error else {
        panic!("expected Disconnected, got {error:?}");
    };
    assert!(
        matches!(**reason, ConnectionLost::Eof | ConnectionLost::Read(_)),
        "{reason:?}"
    );

    let reason = tokio::time::timeout(Duration::from_secs(1), vm.qmp.closed())
        .await
        .expect("closed() resolves once the connection is lost");
    assert!(Arc::ptr_eq(&reason, reason_of(&error)));

    let later = Instant::now();
    assert!(vm.qmp.query_version().await.unwrap_err().is_disconnected());
    assert!(
        later.elapsed() < Duration::from_secs(1),
        "a later call waited"
    );
}

fn reason_of(error: &Error) -> &Arc<ConnectionLost> {
    match error {
        Error::Disconnected(reason) => reason,
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[tokio::test]
async fn named_descriptors_are_closed_by_their_guard() {
    let Some(vm) = support::boot().await else {
        return;
    };
    let (read_end, _write_end) = nix::unistd::pipe().unwrap();

    let passed = vm.qmp.pass_fd("probe", read_end.as_fd()).await.unwrap();
    assert_eq!(passed.name(), "probe");
    passed.release().await.unwrap();
    let again = vm.qmp.closefd("probe").await.unwrap_err();
    assert_eq!(
        again.qmp_error().unwrap().desc,
        "File descriptor named 'probe' not found"
    );

    // Dropping the guard closes it too, in the background.
    drop(vm.qmp.pass_fd("dropped", read_end.as_fd()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_drop = vm.qmp.closefd("dropped").await.unwrap_err();
    assert_eq!(
        after_drop.qmp_error().unwrap().desc,
        "File descriptor named 'dropped' not found"
    );
}

#[tokio::test]
async fn fdset_entries_are_removed_by_their_guard() {
    let Some(vm) = support::boot().await else {
        return;
    };
    let (read_end, _write_end) = nix::unistd::pipe().unwrap();
    let entry = vm
        .qmp
        .add_fd_guarded(read_end.as_fd(), Some("probe"))
        .await
        .unwrap();
    let info = entry.info();
    let sets = vm.qmp.query_fdsets().await.unwrap();
    let set = sets
        .iter()
        .find(|set| set.fdset_id == info.fdset_id)
        .expect("the new fd set is listed");
    assert_eq!(set.fds.len(), 1);
    assert_eq!(set.fds[0].fd, info.fd);
    assert_eq!(set.fds[0].opaque.as_deref(), Some("probe"));
    assert_eq!(entry.proc_path(), format!("/proc/self/fd/{}", info.fd));

    entry.release().await.unwrap();
    let sets = vm.qmp.query_fdsets().await.unwrap();
    assert!(
        sets.iter().all(|set| set.fdset_id != info.fdset_id),
        "{sets:?}"
    );
}

#[tokio::test]
async fn quit_ends_qemu() {
    let Some(mut vm) = support::boot().await else {
        return;
    };
    vm.qmp.quit().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), vm.process.wait())
        .await
        .expect("QEMU exits")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(vm.qmp.query_status().await.unwrap_err().is_disconnected());
}
