//! The qemu driver's state transitions against real QEMU (boot-sector fixtures): a start, a stop
//! through the driver with the last screen captured before QEMU ends, and QEMU killed from
//! outside, which is a crash with no screen and leaves no process behind; a VM without a display
//! stops with no screen either.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::Harness;
use tokio::sync::broadcast;
use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{Instance, InstanceStatus, Transition, TransitionKind};
use vgashot_screens::{FrameSource, ScreenId};

/// How long a transition may take to arrive on a loaded 2-core machine: a stop that escalates
/// to `quit` takes about a second, a capture some hundred milliseconds; far below a hang.
const TRANSITION_DEADLINE: Duration = Duration::from_secs(30);

/// The next transition on `transitions`, within [`TRANSITION_DEADLINE`].
async fn next(transitions: &mut broadcast::Receiver<Transition>) -> Transition {
    tokio::time::timeout(TRANSITION_DEADLINE, transitions.recv())
        .await
        .expect("no transition in time")
        .expect("the transitions channel works")
}

#[tokio::test]
async fn a_stop_publishes_the_last_screen_captured_before_qemu_ended() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    let mut transitions = harness.driver.transitions();
    let vm = harness
        .driver
        .create(harness.fixture_definition("bars", fixture, &[]))
        .await
        .unwrap();
    vm.start().await.unwrap();
    let started = next(&mut transitions).await;
    assert_eq!(
        (
            started.project.as_str(),
            started.name.as_str(),
            started.kind
        ),
        ("default", "bars", TransitionKind::Started)
    );
    assert_eq!(started.status, InstanceStatus::Running);
    assert_eq!(started.reason, "started on request");
    assert!(started.final_frame.is_none());

    // The bars are on the screen before the stop.
    let expected = fixture.expected_rgb().unwrap();
    let since = Instant::now();
    while vm.frame(&ScreenId::default()).await.unwrap().frame.rgb() != expected.as_slice() {
        assert!(
            since.elapsed() < TRANSITION_DEADLINE,
            "the bars never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = vm.state().pid.unwrap();
    let before_stop = std::time::SystemTime::now();
    vm.stop(true, Duration::ZERO).await.unwrap();
    let stopped = next(&mut transitions).await;
    assert_eq!(stopped.kind, TransitionKind::Stopped);
    assert_eq!(stopped.status, InstanceStatus::Stopped);
    assert_eq!(stopped.reason, "stopped on request");
    assert!(stopped.at >= before_stop);
    let last = stopped.final_frame.expect("the stop kept the last screen");
    assert_eq!((last.frame.width(), last.frame.height()), (640, 480));
    assert_eq!(last.frame.rgb(), expected.as_slice());
    assert!(last.captured_at >= before_stop && last.captured_at <= stopped.at);
    assert!(support::exited(pid), "QEMU is gone");
    assert!(transitions.try_recv().is_err(), "one transition per change");
}

#[tokio::test]
async fn qemu_killed_from_outside_is_a_crash_without_a_screen() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let mut transitions = harness.driver.transitions();
    let vm = harness.started("victim", &[]).await;
    assert_eq!(next(&mut transitions).await.kind, TransitionKind::Started);
    let pid = vm.state().pid.unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let crashed = next(&mut transitions).await;
    assert_eq!(crashed.name, "victim");
    assert_eq!(crashed.kind, TransitionKind::Crashed);
    assert_eq!(crashed.status, InstanceStatus::Stopped);
    assert_eq!(
        crashed.reason,
        format!(
            "QEMU (pid {pid}) exited without shutting down (killed from outside, or crashed; its \
             exit status is unknown: it is not the daemon's child)"
        )
    );
    assert!(crashed.final_frame.is_none(), "a dead QEMU shows nothing");
    // The state says the same, and nothing is left of the process.
    let state = vm.state();
    assert_eq!(state.status, InstanceStatus::Stopped);
    assert_eq!(state.reason.as_deref(), Some(crashed.reason.as_str()));
    assert_eq!(state.pid, None);
    assert!(support::exited(pid));
}

#[tokio::test]
async fn a_vm_without_a_screen_stops_without_a_last_screen() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let mut transitions = harness.driver.transitions();
    let vm = harness.started("blind", &[("vgashot.vga", "none")]).await;
    assert_eq!(next(&mut transitions).await.kind, TransitionKind::Started);
    vm.stop(true, Duration::ZERO).await.unwrap();
    let stopped = next(&mut transitions).await;
    assert_eq!(
        (stopped.kind, stopped.reason.as_str()),
        (TransitionKind::Stopped, "stopped on request")
    );
    assert!(stopped.final_frame.is_none(), "no screen, nothing captured");
}
