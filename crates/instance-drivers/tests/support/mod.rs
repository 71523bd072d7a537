//! A driver over temporary directories, with real QEMU, that kills every VM it started when the
//! test ends (even by a panic), so no test leaves an orphaned QEMU.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use vgashot_fixtures::Fixture;

use vgashot_instance_drivers::{
    DriverOptions, DriverPaths, HostFilePolicy, Instance, InstanceDefinition, InstanceStatus,
    InstanceType, QemuDriver, QemuInstance,
};

/// The memory every test VM gets: plenty for a boot sector, small for CI.
pub const MEMORY: &str = "64MiB";

pub struct Harness {
    pub dir: TempDir,
    pub paths: DriverPaths,
    pub driver: QemuDriver,
}

impl Harness {
    /// A fresh driver, or `None` when QEMU is missing and the test may be skipped.
    pub async fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        vgashot_qemu_process::Launch::for_tests(dir.path())?;
        let paths = DriverPaths {
            state_dir: dir.path().join("state"),
            runtime_dir: dir.path().join("run"),
        };
        let driver = QemuDriver::open_with(paths.clone(), options(&dir))
            .await
            .unwrap();
        Some(Self { dir, paths, driver })
    }

    /// A VM definition with small limits and `extra` config.
    pub fn definition(&self, name: &str, extra: &[(&str, &str)]) -> InstanceDefinition {
        let mut config = BTreeMap::from([("limits.memory".to_owned(), MEMORY.to_owned())]);
        config.extend(
            extra
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        InstanceDefinition {
            name: name.into(),
            project: "default".into(),
            instance_type: InstanceType::VirtualMachine,
            description: String::new(),
            config,
            devices: BTreeMap::new(),
            profiles: Vec::new(),
            ephemeral: false,
            created_at: "2026-11-29T00:00:00Z".into(),
            last_used_at: String::new(),
        }
    }

    /// Creates and starts a VM with `extra` config.
    pub async fn started(&self, name: &str, extra: &[(&str, &str)]) -> Arc<QemuInstance> {
        let vm = self
            .driver
            .create(self.definition(name, extra))
            .await
            .unwrap();
        vm.start().await.unwrap();
        vm
    }

    /// A VM definition that boots `fixture` from its root disk.
    pub fn fixture_definition(
        &self,
        name: &str,
        fixture: Fixture,
        extra: &[(&str, &str)],
    ) -> InstanceDefinition {
        let images = self.dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        let image = fixture.write_image(&images).unwrap();
        let mut definition = self.definition(name, extra);
        definition.devices.insert(
            "root".into(),
            BTreeMap::from([
                ("type".to_owned(), "disk".to_owned()),
                ("path".to_owned(), "/".to_owned()),
                ("source".to_owned(), image.display().to_string()),
            ]),
        );
        definition
    }
}

/// The driver's options in tests: images from `dir/images`.
pub fn options(dir: &TempDir) -> DriverOptions {
    DriverOptions {
        host_files: HostFilePolicy {
            image_dirs: vec![dir.path().join("images")],
            ..HostFilePolicy::default()
        },
        ..DriverOptions::default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        vgashot_qemu_process::testing::kill_detached_under(&self.paths.runtime_dir);
    }
}

/// Waits until `instance` has `status`.
pub async fn wait_for_status(instance: &dyn Instance, status: InstanceStatus) {
    let started = Instant::now();
    while instance.state().status != status {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} never became {status:?}: {:?}",
            instance.name(),
            instance.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` has exited: no such process, or a zombie that whoever adopted the detached
/// QEMU has not reaped yet.
pub fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}
