//! Handing a plan's host files to QEMU as descriptors, so QEMU resolves no host path.
//!
//! 1. [`OpenedFiles::open`] opens every host file of a plan through the daemon's
//!    [`HostFilePolicy`] (blocking: run it off the async workers): each disk once read-only and,
//!    unless the disk is read-only, once read-write (QEMU's block layer asks an fdset for both),
//!    the kernel and initrd read-only. A qcow2 disk's header is checked again on the very
//!    descriptor QEMU gets, so no file swapped in since the plan was made slips through.
//! 2. [`OpenedFiles::hand_to`] moves the descriptors into the [`Launch`], which gives each the
//!    number QEMU will see it at; those numbers are what [`MachinePlan::qemu_args`] renders.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;

use vgashot_qemu_process::Launch;

use crate::qemu::cmdline::{
    ConfigError, Descriptors, DiskDescriptors, DiskFormat, MachinePlan, keys, sniff_format,
};
use crate::qemu::host_files::{Access, HostFileError, HostFilePolicy};

/// A plan's host files, open.
#[derive(Debug)]
pub(crate) struct OpenedFiles {
    /// Per disk of the plan, in order: read-write (unless read-only), then read-only, and
    /// whether they are of a block device.
    disks: Vec<(Vec<File>, bool)>,
    kernel: Option<File>,
    initrd: Option<File>,
}

impl OpenedFiles {
    /// Opens the host files of `plan` as `policy` allows. Blocking.
    pub(crate) fn open(plan: &MachinePlan, policy: &HostFilePolicy) -> Result<Self, ConfigError> {
        let mut disks = Vec::with_capacity(plan.disks.len());
        for disk in &plan.disks {
            let refused = |source: HostFileError| ConfigError::HostFile {
                what: format!("Disk device {:?}", disk.device),
                source,
            };
            let read_only = policy
                .open(&disk.source, Access::ReadOnly)
                .map_err(refused)?;
            if disk.format == DiskFormat::Qcow2 {
                sniff_format(&disk.device, &disk.source, &read_only)?;
            }
            let mut fds = Vec::with_capacity(2);
            if !disk.readonly {
                fds.push(
                    policy
                        .open(&disk.source, Access::ReadWrite)
                        .map_err(refused)?,
                );
            }
            let block_device = read_only
                .metadata()
                .map_err(|source| ConfigError::DiskSource {
                    device: disk.device.clone(),
                    path: disk.source.clone(),
                    source,
                })?
                .file_type()
                .is_block_device();
            fds.push(read_only);
            disks.push((fds, block_device));
        }
        let boot_file = |key: &'static str, path: &Option<std::path::PathBuf>| {
            path.as_ref()
                .map(|path| {
                    policy
                        .open(path, Access::ReadOnly)
                        .map_err(|source| ConfigError::HostFile {
                            what: format!("Invalid value for config key {key:?}"),
                            source,
                        })
                })
                .transpose()
        };
        Ok(Self {
            disks,
            kernel: boot_file(keys::KERNEL, &plan.kernel)?,
            initrd: boot_file(keys::INITRD, &plan.initrd)?,
        })
    }

    /// Moves the descriptors into `launch`; returns the numbers QEMU will see them at.
    pub(crate) fn hand_to(self, launch: &mut Launch) -> Descriptors {
        let mut inherit = |file: File| launch.inherit(file.into());
        Descriptors {
            disks: self
                .disks
                .into_iter()
                .map(|(fds, block_device)| DiskDescriptors {
                    fds: fds.into_iter().map(&mut inherit).collect(),
                    block_device,
                })
                .collect(),
            kernel: self.kernel.map(&mut inherit),
            initrd: self.initrd.map(&mut inherit),
        }
    }
}
