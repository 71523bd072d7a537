//! The QEMU arguments of a [`MachinePlan`], after the launcher's fixed prefix.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::MachinePlan;
use super::parse::{MIB, NetworkMode, VgaModel};

/// The QOM id of the display device: what `screendump`'s `device` argument names.
pub const DISPLAY_DEVICE_ID: &str = "video0";
/// The chardev id of the serial console ring buffer (read with QMP `ringbuf-read`).
pub const CONSOLE_CHARDEV_ID: &str = "console";

impl MachinePlan {
    /// The arguments after the launcher's prefix, for an instance called `name` whose serial
    /// console is kept in a ring buffer of `console_ring_bytes`.
    ///
    /// # Panics
    ///
    /// If `console_ring_bytes` is not a power of two, which QEMU's ringbuf chardev requires.
    pub fn qemu_args(&self, name: &str, console_ring_bytes: u32) -> Vec<OsString> {
        assert!(
            console_ring_bytes.is_power_of_two(),
            "the console ring buffer size {console_ring_bytes} is not a power of two"
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
        push(
            "-chardev",
            format!("ringbuf,id={CONSOLE_CHARDEV_ID},size={console_ring_bytes}").into(),
        );
        push("-serial", format!("chardev:{CONSOLE_CHARDEV_ID}").into());
        for disk in &self.disks {
            let id = format!("disk-{}", disk.device);
            let mut drive = OsString::from("file=");
            drive.push(escape_commas(disk.source.as_os_str()));
            drive.push(format!(",format={},if=none,id={id}", disk.format.as_str()));
            if disk.readonly {
                drive.push(",readonly=on");
            }
            push("-drive", drive);
            let mut device = format!("virtio-blk-pci,drive={id}");
            if let Some(index) = disk.boot_index {
                device.push_str(&format!(",bootindex={index}"));
            }
            push("-device", device.into());
        }
        // -kernel, -initrd and -append take their value verbatim: no option syntax to escape.
        if let Some(kernel) = &self.kernel {
            push("-kernel", kernel.into());
        }
        if let Some(initrd) = &self.initrd {
            push("-initrd", initrd.into());
        }
        if let Some(cmdline) = &self.kernel_cmdline {
            push("-append", cmdline.into());
        }
        let nic = match self.network {
            NetworkMode::None => "none",
            NetworkMode::User => "user,model=virtio-net-pci",
        };
        push("-nic", nic.into());
        args
    }
}

/// `value` with every comma doubled: QEMU's escape inside a `key=value,...` option list.
fn escape_commas(value: &OsStr) -> OsString {
    let mut escaped = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        escaped.push(byte);
        if byte == b',' {
            escaped.push(b',');
        }
    }
    OsString::from_vec(escaped)
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
            strings(plan.qemu_args("v1", 65536)),
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
                "-chardev",
                "ringbuf,id=console,size=65536",
                "-serial",
                "chardev:console",
                "-nic",
                "none",
            ]
        );
    }

    #[test]
    fn memory_is_rounded_down_to_whole_mebibytes() {
        let plan = plan(&[("limits.memory", "1GB")]).unwrap();
        let args = strings(plan.qemu_args("v1", 4096));
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
        let plan = MachinePlan::from_definition(&vm(
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
        ))
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
            strings(plan.qemu_args("v1", 1 << 20)),
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
                "-chardev".into(),
                "ringbuf,id=console,size=1048576".into(),
                "-serial".into(),
                "chardev:console".into(),
                "-drive".into(),
                format!("file={data},format=qcow2,if=none,id=disk-data,readonly=on"),
                "-device".into(),
                "virtio-blk-pci,drive=disk-data".into(),
                "-drive".into(),
                format!("file={root},format=raw,if=none,id=disk-root"),
                "-device".into(),
                "virtio-blk-pci,drive=disk-root,bootindex=0".into(),
                "-nic".into(),
                "user,model=virtio-net-pci".into(),
            ]
        );
    }

    #[test]
    fn commas_are_doubled_in_option_lists() {
        let images = Images::new();
        let root = images.raw("a,b,,c.img");
        let plan = MachinePlan::from_definition(&vm(
            &[],
            &[(
                "root",
                &[("type", "disk"), ("path", "/"), ("source", &root)],
            )],
        ))
        .unwrap();
        let args = strings(plan.qemu_args("v1,process=evil", 4096));
        let dir = images.0.path().to_str().unwrap().replace(',', ",,");
        assert_eq!(args[1], "v1,,process=evil");
        assert!(
            args.contains(&format!(
                "file={dir}/a,,b,,,,c.img,format=raw,if=none,id=disk-root"
            )),
            "{args:?}"
        );
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn the_console_ring_must_be_a_power_of_two() {
        plan(&[]).unwrap().qemu_args("v1", 1000);
    }
}
