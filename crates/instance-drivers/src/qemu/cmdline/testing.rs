//! What the tests of the planner share: image files and definitions.

use std::ffi::OsString;

use super::{ConfigError, Descriptors, DiskDescriptors, MachinePlan};
use crate::definition::{InstanceDefinition, InstanceType};
use crate::qemu::host_files::HostFilePolicy;

/// A directory with image files for disk devices.
pub(crate) struct Images(pub(crate) tempfile::TempDir);

impl Images {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    /// Writes `bytes` as the file `name` and returns its path.
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// A raw image of one zeroed sector.
    pub(crate) fn raw(&self, name: &str) -> String {
        self.write(name, &[0; 512])
    }
}

pub(crate) fn vm(
    config: &[(&str, &str)],
    devices: &[(&str, &[(&str, &str)])],
) -> InstanceDefinition {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|&(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    };
    InstanceDefinition {
        name: "v1".into(),
        project: "default".into(),
        instance_type: InstanceType::VirtualMachine,
        description: String::new(),
        config: map(config),
        devices: devices
            .iter()
            .map(|&(name, config)| (name.to_owned(), map(config)))
            .collect(),
        profiles: Vec::new(),
        ephemeral: false,
        created_at: "2026-11-29T18:00:00Z".into(),
        last_used_at: String::new(),
    }
}

pub(crate) fn plan(config: &[(&str, &str)]) -> Result<MachinePlan, ConfigError> {
    MachinePlan::from_definition(&vm(config, &[]), &policy())
}

pub(crate) fn strings(args: Vec<OsString>) -> Vec<String> {
    args.into_iter()
        .map(|arg| arg.into_string().unwrap())
        .collect()
}

/// A policy that allows every file under `/` (the tests' images live in temporary directories).
pub(crate) fn policy() -> HostFilePolicy {
    HostFilePolicy {
        image_dirs: vec!["/".into()],
        ..HostFilePolicy::default()
    }
}

/// Descriptor numbers for `plan`'s host files: disk `i` gets `10 + 2i` (read-write, unless
/// read-only) and `11 + 2i` (read-only); the kernel 30, the initrd 31.
pub(crate) fn descriptors(plan: &MachinePlan) -> Descriptors {
    Descriptors {
        disks: (0..)
            .zip(&plan.disks)
            .map(|(index, disk)| {
                let (read_write, read_only) = (10 + 2 * index, 11 + 2 * index);
                let fds = if disk.readonly {
                    vec![read_only]
                } else {
                    vec![read_write, read_only]
                };
                DiskDescriptors {
                    fds,
                    block_device: false,
                }
            })
            .collect(),
        kernel: plan.kernel.as_ref().map(|_| 30),
        initrd: plan.initrd.as_ref().map(|_| 31),
    }
}
