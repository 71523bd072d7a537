//! The qemu driver's life cycle against real QEMU.

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Harness, wait_for_status};
use vgashot_instance_drivers::{
    DriverError, Instance, InstanceStatus, InstanceType, QemuDriver, ScreenshotOptions,
};

const STOP_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn create_start_freeze_stop_delete() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness
        .driver
        .create(harness.definition("v1", &[("limits.cpu", "1")]))
        .await
        .unwrap();
    assert_eq!(vm.state().status, InstanceStatus::Stopped);
    assert_eq!(vm.state().pid, None);

    vm.start().await.unwrap();
    let state = vm.state();
    assert_eq!(state.status, InstanceStatus::Running);
    let pid = state.pid.expect("a running VM has a pid");
    assert!(matches!(vm.start().await, Err(DriverError::AlreadyRunning)));
    assert!(matches!(
        harness.driver.delete("default", "v1").await,
        Err(DriverError::Running)
    ));

    vm.freeze().await.unwrap();
    assert_eq!(vm.state().status, InstanceStatus::Frozen);
    // A frozen VM still has a screen.
    vm.console_screenshot(&ScreenshotOptions::default())
        .await
        .unwrap();
    vm.unfreeze().await.unwrap();
    assert_eq!(vm.state().status, InstanceStatus::Running);
    assert!(matches!(vm.unfreeze().await, Err(DriverError::NotFrozen)));

    // No OS answers the ACPI button here, so this escalates to `quit`.
    vm.stop(false, STOP_TIMEOUT).await.unwrap();
    let state = vm.state();
    assert_eq!(state.status, InstanceStatus::Stopped);
    assert_eq!(state.reason.as_deref(), Some("stopped on request"));
    assert!(support::exited(pid), "QEMU is gone");
    assert!(matches!(
        vm.stop(true, STOP_TIMEOUT).await,
        Err(DriverError::AlreadyStopped)
    ));
    assert!(matches!(
        vm.console_screenshot(&ScreenshotOptions::default()).await,
        Err(DriverError::NotRunning)
    ));

    harness.driver.delete("default", "v1").await.unwrap();
    assert!(matches!(
        harness.driver.get("default", "v1"),
        Err(DriverError::NotFound)
    ));
    assert!(!vm.runtime_dir().exists());
}

#[tokio::test]
async fn definitions_are_validated_before_they_are_stored() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let mut container = harness.definition("c1", &[]);
    container.instance_type = InstanceType::Container;
    assert!(matches!(
        harness.driver.create(container).await,
        Err(DriverError::UnsupportedType(InstanceType::Container))
    ));
    assert!(matches!(
        harness.driver.create(harness.definition("-bad", &[])).await,
        Err(DriverError::InvalidName(_))
    ));
    assert!(matches!(
        harness
            .driver
            .create(harness.definition("v1", &[("limits.memory", "lots")]))
            .await,
        Err(DriverError::Config(_))
    ));
    harness
        .driver
        .create(harness.definition("v1", &[]))
        .await
        .unwrap();
    assert!(matches!(
        harness.driver.create(harness.definition("v1", &[])).await,
        Err(DriverError::AlreadyExists { .. })
    ));
    assert_eq!(harness.driver.list("default").len(), 1);
    assert!(harness.driver.list("other").is_empty());
}

#[tokio::test]
async fn a_vm_killed_from_outside_becomes_stopped_with_a_reason() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness.started("v1", &[]).await;
    let pid = vm.state().pid.unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for_status(&*vm, InstanceStatus::Stopped).await;
    let state = vm.state();
    assert_eq!(state.pid, None);
    assert!(
        state
            .reason
            .as_deref()
            .unwrap()
            .contains("killed from outside"),
        "{state:?}"
    );

    // SIGTERM is a clean shutdown by the host, which QEMU reports.
    vm.start().await.unwrap();
    let pid = vm.state().pid.unwrap();
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for_status(&*vm, InstanceStatus::Stopped).await;
    assert_eq!(
        vm.state().reason.as_deref(),
        Some("QEMU was stopped by a signal on the host")
    );
}

#[tokio::test]
async fn a_new_driver_reattaches_to_running_vms() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness.started("v1", &[]).await;
    let pid = vm.state().pid.unwrap();
    harness
        .driver
        .create(harness.definition("v2", &[]))
        .await
        .unwrap();

    // The daemon goes away (as on SIGTERM): VMs keep running.
    harness.driver.detach().await;
    drop(vm);
    assert!(!support::exited(pid), "the VM outlives the driver");

    let driver = QemuDriver::open_with(harness.paths.clone(), support::options(&harness.dir))
        .await
        .unwrap();
    let vm = driver.get("default", "v1").unwrap();
    let state = vm.state();
    assert_eq!(state.status, InstanceStatus::Running);
    assert_eq!(state.pid, Some(pid));
    vm.console_screenshot(&ScreenshotOptions::default())
        .await
        .unwrap();
    assert_eq!(
        driver.get("default", "v2").unwrap().state().status,
        InstanceStatus::Stopped
    );
    vm.stop(true, STOP_TIMEOUT).await.unwrap();
    assert_eq!(vm.state().status, InstanceStatus::Stopped);
}

#[tokio::test]
async fn a_stale_pid_file_is_not_a_running_vm() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness
        .driver
        .create(harness.definition("v1", &[]))
        .await
        .unwrap();
    std::fs::create_dir_all(vm.runtime_dir()).unwrap();
    // A live process, but not a QEMU serving this VM's socket (as after a reboot reused the pid).
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(
        vm.runtime_dir().join(vgashot_qemu_process::PID_FILE),
        other.id().to_string(),
    )
    .unwrap();
    drop(vm);
    harness.driver.detach().await;
    let driver = QemuDriver::open_with(harness.paths.clone(), support::options(&harness.dir))
        .await
        .unwrap();
    let state = driver.get("default", "v1").unwrap().state();
    assert_eq!(state.status, InstanceStatus::Stopped);
    assert_eq!(state.pid, None);
    other.kill().unwrap();
    other.wait().unwrap();
}

#[tokio::test]
async fn ephemeral_instances_are_deleted_when_they_stop() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let mut definition = harness.definition("e1", &[]);
    definition.ephemeral = true;
    let vm = harness.driver.create(definition).await.unwrap();
    vm.start().await.unwrap();
    vm.stop(true, STOP_TIMEOUT).await.unwrap();
    assert!(matches!(
        harness.driver.get("default", "e1"),
        Err(DriverError::NotFound)
    ));
}

#[tokio::test]
async fn the_console_log_keeps_what_the_guest_printed() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness
        .driver
        .create(harness.fixture_definition("v1", vgashot_fixtures::Fixture::Mode13, &[]))
        .await
        .unwrap();
    assert!(vm.console_log().await.unwrap().is_empty());
    vm.start().await.unwrap();
    let greeting = vgashot_fixtures::SERIAL_GREETING.as_bytes();
    let started = std::time::Instant::now();
    while !vm.console_log().await.unwrap().ends_with(greeting) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the guest printed nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vm.stop(true, STOP_TIMEOUT).await.unwrap();
    // The log outlives the VM, and is drained once only.
    assert_eq!(vm.console_log().await.unwrap(), greeting);
    vm.clear_console_log().await.unwrap();
    assert!(vm.console_log().await.unwrap().is_empty());
}
