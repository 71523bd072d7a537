//! Deletes, restarts and stops that race, against real QEMU: a handle kept across a delete
//! starts nothing, an ephemeral restart keeps the instance, a forced stop pre-empts a clean one,
//! and an interrupted delete is finished by the next open.

mod support;

use std::time::{Duration, Instant};

use support::Harness;
use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{DriverError, Instance, InstanceStatus, QemuDriver};

#[tokio::test]
async fn a_handle_kept_across_a_delete_cannot_start_or_update_it() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness
        .driver
        .create(harness.definition("v1", &[]))
        .await
        .unwrap();
    harness.driver.delete("default", "v1").await.unwrap();
    assert!(matches!(vm.start().await, Err(DriverError::NotFound)));
    assert!(matches!(
        vm.update(harness.definition("v1", &[])).await,
        Err(DriverError::NotFound)
    ));
    assert_eq!(vm.state().pid, None);
    assert!(!vm.runtime_dir().exists());
    // The name is free for a new instance, with an empty run-time directory.
    let again = harness
        .driver
        .create(harness.definition("v1", &[]))
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(again.runtime_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn an_ephemeral_restart_keeps_the_instance() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let mut definition = harness.definition("e1", &[]);
    definition.ephemeral = true;
    let vm = harness.driver.create(definition).await.unwrap();
    vm.start().await.unwrap();
    let first = vm.state().pid.unwrap();
    vm.restart(true, Duration::ZERO).await.unwrap();
    let state = vm.state();
    assert_eq!(state.status, InstanceStatus::Running);
    assert_ne!(state.pid, Some(first));
    assert!(harness.driver.get("default", "e1").is_ok());
    vm.stop(true, Duration::ZERO).await.unwrap();
    assert!(matches!(
        harness.driver.get("default", "e1"),
        Err(DriverError::NotFound)
    ));
    assert!(matches!(vm.start().await, Err(DriverError::NotFound)));
}

#[tokio::test]
async fn a_forced_stop_pre_empts_a_clean_one_and_interrupts_a_restart() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    // The fixture ignores the ACPI power button.
    let vm = harness
        .driver
        .create(harness.fixture_definition("v1", Fixture::Mode13, &[]))
        .await
        .unwrap();
    for restart in [false, true] {
        vm.start().await.unwrap();
        let clean = {
            let vm = vm.clone();
            tokio::spawn(async move {
                let forever = Duration::from_secs(100_000);
                if restart {
                    vm.restart(false, forever).await
                } else {
                    vm.stop(false, forever).await
                }
            })
        };
        // On this single-threaded runtime the spawned stop runs at the first yield until it
        // waits for QEMU's answer, by which time it holds the life-cycle lock.
        tokio::task::yield_now().await;
        let started = Instant::now();
        vm.stop(true, Duration::ZERO).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "the forced stop took {took:?}"
        );
        let outcome = clean.await.unwrap();
        if restart {
            assert!(
                matches!(outcome, Err(DriverError::RestartInterrupted)),
                "{outcome:?}"
            );
        } else {
            outcome.unwrap();
        }
        assert_eq!(vm.state().status, InstanceStatus::Stopped);
    }
}

#[tokio::test]
async fn an_interrupted_delete_is_finished_by_the_next_open() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let vm = harness
        .driver
        .create(harness.definition("v1", &[]))
        .await
        .unwrap();
    let log = vm.runtime_dir().join("console.log");
    std::fs::write(&log, "the old guest's secrets").unwrap();
    drop(vm);
    harness.driver.detach().await;
    // The state a crash right after the delete's first step leaves.
    let instances = harness.paths.state_dir.join("instances/default");
    std::fs::rename(instances.join("v1.json"), instances.join("v1.deleted")).unwrap();

    let driver = QemuDriver::open(harness.paths.clone()).await.unwrap();
    assert!(matches!(
        driver.get("default", "v1"),
        Err(DriverError::NotFound)
    ));
    assert!(!log.exists());
    assert!(!instances.join("v1.deleted").exists());
    let again = driver.create(harness.definition("v1", &[])).await.unwrap();
    assert!(again.console_log().await.unwrap().is_empty());
}
