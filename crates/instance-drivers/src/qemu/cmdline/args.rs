//! The QEMU arguments of a [`MachinePlan`], after the launcher's fixed prefix.
//!
//! QEMU is given no host path: each disk is an fdset of inherited descriptors
//! (`-add-fd fd=N,set=S` and `-drive file=/dev/fdset/S`; one read-write and one read-only
//! descriptor, since QEMU's block layer opens both, or the read-only one alone for a read-only
//! disk), and the kernel and initrd are `/proc/self/fd/N` of an inherited descriptor: QEMU's
//! kernel loader opens its files with plain `open(2)`, which knows nothing of fdsets, and
//! `-add-fd` closes the number it was given, so those two stay outside any fdset.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;

use vgashot_qemu_process::escape_commas;

use super::MachinePlan;
use super::parse::{MIB, NetworkMode, VgaModel};

/// The QOM id of the display device: what `screendump`'s `device` argument names.
pub const DISPLAY_DEVICE_ID: &str = "video0";
/// The chardev id of the serial console ring buffer (read with QMP `ringbuf-read`).
pub const CONSOLE_CHARDEV_ID: &str = "console";

/// The descriptors QEMU inherits for a plan's host files, by the numbers QEMU sees them at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptors {
    /// For each of [`MachinePlan::disks`], in order: its descriptors.
    pub disks: Vec<DiskDescriptors>,
    /// The kernel's, when the plan has one.
    pub kernel: Option<RawFd>,
    /// The initrd's, when the plan has one.
    pub initrd: Option<RawFd>,
}

/// One disk's descriptors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskDescriptors {
    /// Read-write (unless the disk is read-only), then read-only.
    pub fds: Vec<RawFd>,
    /// Whether they are of a block device, which QEMU opens with its `host_device` driver
    /// (its `file` driver takes regular files only).
    pub block_device: bool,
}

impl MachinePlan {
    /// The arguments after the launcher's prefix, for an instance called `name` whose serial
    /// console is kept in a ring buffer of `console_ring_bytes`, with its host files in
    /// `descriptors`.
    ///
    /// # Panics
    ///
    /// If `console_ring_bytes` is not a power of two, which QEMU's ringbuf chardev requires, or
    /// `descriptors` does not match the plan (a disk, the kernel or the initrd without one).
    pub fn qemu_args(
        &self,
        name: &str,
        console_ring_bytes: u32,
        descriptors: &Descriptors,
    ) -> Vec<OsString> {
        assert!(
            console_ring_bytes.is_power_of_two(),
            "the console ring buffer size {console_ring_bytes} is not a power of two"
        );
        assert_eq!(
            (
                descriptors.disks.len(),
                descriptors.kernel.is_some(),
                descriptors.initrd.is_some()
            ),
            (
                self.disks.len(),
                self.kernel.is_some(),
                self.initrd.is_some()
            ),
            "descriptors that do not match the plan"
        );
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |option: &str, value: OsString| {
            args.push(option.into());
            args.push(value);
        };
        push("-name", escape_commas(OsStr::new(name)));
        push("-machine", "pc".into());
        push("-smp", self.vcpus.to_string().into());
        push("-m", format!("{}M", self.memory_bytes / MIB).into());
        push("-vga", "none".into());
        match self.vga {
            VgaModel::Std => push("-device", format!("VGA,id={DISPLAY_DEVICE_ID}").into()),
            VgaModel::Virtio => push(
                "-device",
                format!(
                    "virtio-vga,id={DISPLAY_DEVICE_ID},max_outputs={}",
                    self.heads
                )
                .into(),
            ),
            VgaModel::None => {}
        }
        if self.vga != VgaModel::None {
            // QEMU's VNC server, listening nowhere: the mirror passes it a socket of its own.
            push("-vnc", "none".into());
        }
        push(
            "-chardev",
            format!("ringbuf,id={CONSOLE_CHARDEV_ID},size={console_ring_bytes}").into(),
        );
        push("-serial", format!("chardev:{CONSOLE_CHARDEV_ID}").into());
        for ((disk, given), fdset) in self.disks.iter().zip(&descriptors.disks).zip(1..) {
            for fd in &given.fds {
                push("-add-fd", format!("fd={fd},set={fdset}").into());
            }
            let id = format!("disk-{}", disk.device);
            let mut drive = format!("file=/dev/fdset/{fdset},");
            if given.block_device {
                drive.push_str("file.driver=host_device,");
            }
            drive.push_str(&format!("format={},if=none,id={id}", disk.format.as_str()));
            if disk.readonly {
                drive.push_str(",readonly=on");
            }
            push("-drive", drive.into());
            let mut device = format!("virtio-blk-pci,drive={id}");
            if let Some(index) = disk.boot_index {
                device.push_str(&format!(",bootindex={index}"));
            }
            push("-device", device.into());
        }
        if let Some(fd) = descriptors.kernel {
            push("-kernel", format!("/proc/self/fd/{fd}").into());
        }
        if let Some(fd) = descriptors.initrd {
            push("-initrd", format!("/proc/self/fd/{fd}").into());
        }
        // -append takes its value verbatim: no option syntax to escape.
        if let Some(cmdline) = &self.kernel_cmdline {
            push("-append", cmdline.into());
        }
        // The last screen must be the last: a guest that panics tells QEMU through pvpanic
        // (the ISA device, which Linux's pvpanic driver finds through ACPI) and QEMU pauses it
        // instead of ending it, and a guest that powers off leaves QEMU running, stopped; the
        // driver captures the screen, then ends QEMU itself. `shutdown=pause` is `-no-shutdown`
        // in `-action`'s words; `quit` and SIGTERM still end QEMU.
        push("-device", "pvpanic".into());
        push("-action", "panic=pause".into());
        push("-action", "shutdown=pause".into());
        let nic = match self.network {
            NetworkMode::None => "none",
            NetworkMode::User => "user,model=virtio-net-pci",
        };
        push("-nic", nic.into());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::cmdline::testing::*;
    use crate::qemu::cmdline::{DiskFormat, DiskPlan};

    #[test]
    fn defaults_are_incus_vm_defaults() {
        let plan = plan(&[]).unwrap();
        assert_eq!(
            plan,
            MachinePlan {
                vcpus: 1,
                memory_bytes: 1 << 30,
                vga: VgaModel::Std,
                heads: 1,
                disks: Vec::new(),
                kernel: None,
                initrd: None,
                kernel_cmdline: None,
                network: NetworkMode::None,
            }
        );
        assert_eq!(
            strings(plan.qemu_args("v1", 65536, &descriptors(&plan))),
            [
                "-name",
                "v1",
                "-machine",
                "pc",
                "-smp",
                "1",
                "-m",
                "1024M",
                "-vga",
                "none",
                "-device",
                "VGA,id=video0",
                "-vnc",
                "none",
                "-chardev",
                "ringbuf,id=console,size=65536",
                "-serial",
                "chardev:console",
                "-device",
                "pvpanic",
                "-action",
                "panic=pause",
                "-action",
                "shutdown=pause",
                "-nic",
                "none",
            ]
        );
    }

    #[test]
    fn memory_is_rounded_down_to_whole_mebibytes() {
        let plan = plan(&[("limits.memory", "1GB")]).unwrap();
        let args = strings(plan.qemu_args("v1", 4096, &descriptors(&plan)));
        // 1e9 bytes are 953.67 MiB.
        assert!(
            args.windows(2).any(|pair| pair == ["-m", "953M"]),
            "{args:?}"
        );
    }

    #[test]
    fn a_full_plan_renders_exactly() {
        let images = Images::new();
        let root = images.raw("root.img");
        let data = images.write("data.qcow2", b"QFI\xfb\0\0\0\x03");
        let plan = MachinePlan::from_definition(
            &vm(
                &[
                    ("limits.cpu", "4"),
                    ("limits.memory", "2GiB"),
                    ("vgashot.vga", "virtio"),
                    ("vgashot.vga.heads", "2"),
                    ("vgashot.network", "user"),
                    ("user.owner", "ci"),
                ],
                &[
                    (
                        "root",
                        &[("type", "disk"), ("path", "/"), ("source", &root)],
                    ),
                    (
                        "data",
                        &[("type", "disk"), ("source", &data), ("readonly", "true")],
                    ),
                    ("eth0", &[("type", "none")]),
                ],
            ),
            &policy(),
        )
        .unwrap();
        assert_eq!(
            plan.disks,
            [
                DiskPlan {
                    device: "data".into(),
                    source: data.clone().into(),
                    format: DiskFormat::Qcow2,
                    readonly: true,
                    boot_index: None,
                },
                DiskPlan {
                    device: "root".into(),
                    source: root.clone().into(),
                    format: DiskFormat::Raw,
                    readonly: false,
                    boot_index: Some(0),
                },
            ]
        );
        assert_eq!(
            strings(plan.qemu_args("v1", 1 << 20, &descriptors(&plan))),
            [
                "-name".to_owned(),
                "v1".into(),
                "-machine".into(),
                "pc".into(),
                "-smp".into(),
                "4".into(),
                "-m".into(),
                "2048M".into(),
                "-vga".into(),
                "none".into(),
                "-device".into(),
                "virtio-vga,id=video0,max_outputs=2".into(),
                "-vnc".into(),
                "none".into(),
                "-chardev".into(),
                "ringbuf,id=console,size=1048576".into(),
                "-serial".into(),
                "chardev:console".into(),
                "-add-fd".into(),
                "fd=11,set=1".into(),
                "-drive".into(),
                "file=/dev/fdset/1,format=qcow2,if=none,id=disk-data,readonly=on".into(),
                "-device".into(),
                "virtio-blk-pci,drive=disk-data".into(),
                "-add-fd".into(),
                "fd=12,set=2".into(),
                "-add-fd".into(),
                "fd=13,set=2".into(),
                "-drive".into(),
                "file=/dev/fdset/2,format=raw,if=none,id=disk-root".into(),
                "-device".into(),
                "virtio-blk-pci,drive=disk-root,bootindex=0".into(),
                "-device".into(),
                "pvpanic".into(),
                "-action".into(),
                "panic=pause".into(),
                "-action".into(),
                "shutdown=pause".into(),
                "-nic".into(),
                "user,model=virtio-net-pci".into(),
            ]
        );
    }

    #[test]
    fn commas_are_doubled_in_names_and_qemu_sees_no_host_path() {
        let images = Images::new();
        let root = images.raw("a,b,,c.img");
        let plan = MachinePlan::from_definition(
            &vm(
                &[],
                &[(
                    "root",
                    &[("type", "disk"), ("path", "/"), ("source", &root)],
                )],
            ),
            &policy(),
        )
        .unwrap();
        let args = strings(plan.qemu_args("v1,process=evil", 4096, &descriptors(&plan)));
        assert_eq!(args[1], "v1,,process=evil");
        assert!(
            args.contains(&"file=/dev/fdset/1,format=raw,if=none,id=disk-root".to_owned()),
            "{args:?}"
        );
        let dir = images.0.path().to_str().unwrap();
        assert!(!args.iter().any(|arg| arg.contains(dir)), "{args:?}");
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn the_console_ring_must_be_a_power_of_two() {
        let plan = plan(&[]).unwrap();
        plan.qemu_args("v1", 1000, &descriptors(&plan));
    }
}
