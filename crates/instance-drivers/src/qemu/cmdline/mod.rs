//! From an instance definition to the QEMU arguments that run it.
//!
//! How a machine is planned:
//! 1. [`MachinePlan::from_definition`] refuses containers, then checks every config key against
//!    the keys this driver knows: anything else is [`ConfigError::UnknownKey`], as in Incus, so a
//!    typo is never silently ignored. Only the free-form namespaces `user.*`, `image.*` and
//!    `volatile.*` are stored without meaning here.
//! 2. Values are parsed in Incus's syntax (`limits.memory: 512MiB`); forms Incus accepts but
//!    vgashot does not implement (CPU pinning, memory percentages) get
//!    [`ConfigError::Unsupported`] rather than a misreading. Missing keys take Incus's VM
//!    defaults: 1 vCPU, 1 GiB.
//! 3. Devices: `disk` devices become [`DiskPlan`]s; `none` (Incus's way to mask a profile's
//!    device) is skipped; everything else is refused with what to use instead. Every host file
//!    (disk sources, kernel, initrd) is checked against the daemon's [`HostFilePolicy`] (image
//!    directories, no symbolic links, regular files only), to fail here with the device named.
//!    A disk's format is decided once, from its first bytes (never its name), when the disk is
//!    created or changed, and recorded as `volatile.<device>.format`
//!    ([`MachinePlan::record_formats`]); later plans take the record and never read a raw
//!    disk's content again, since the guest writes it: a guest that writes a qcow2 header into
//!    its raw disk still gets it raw. A qcow2 header that points at another host file (backing
//!    file, external data file) is refused.
//! 4. Boot order follows Incus: the root disk (`path: /`) and disks with `boot.priority` get
//!    boot indexes, higher priority first (the root disk counts as priority 1 unless set), ties
//!    in device-name order; other disks get none, so the firmware tries them last.
//!
//! How it is rendered, by [`MachinePlan::qemu_args`]: everything after the launcher's fixed
//! prefix (see `vgashot_qemu_process::Launch`), with fixed ids that the rest of the driver
//! addresses: [`DISPLAY_DEVICE_ID`] for `screendump`, [`CONSOLE_CHARDEV_ID`] for `ringbuf-read`,
//! and `disk-<device>` for each disk. In values that QEMU parses as `key=value,...` lists
//! (`-name`, `-drive`) every comma of a name or path is doubled, so a path such as
//! `/images/a,b.img` stays one path and cannot inject options.
//!
//! Where each concern lives: `keys` (the keys known), `parse` (values), `disks` (disk
//! devices and boot order), `qcow2` (the format probe), `args` (the rendering), `error`
//! ([`ConfigError`]), `interval` (`console.screenshot.min_interval`, a policy of the REST
//! layer's screen cache) and `history` (`console.history.*`, the history recorder's), both
//! validated here with the other keys.

mod args;
mod disks;
mod error;
mod history;
mod interval;
pub(crate) mod keys;
mod parse;
mod qcow2;
#[cfg(test)]
mod testing;

use std::path::PathBuf;

pub use args::{CONSOLE_CHARDEV_ID, DISPLAY_DEVICE_ID, Descriptors, DiskDescriptors};
pub use disks::{DiskFormat, DiskPlan, carry_formats, format_key};
pub use error::ConfigError;
pub use history::{
    DEFAULT_HISTORY_INTERVAL, DEFAULT_HISTORY_RETENTION, DEFAULT_HISTORY_SIZE, HistorySettings,
    MIN_HISTORY_INTERVAL, history_settings,
};
pub use interval::{
    DEFAULT_SCREENSHOT_MIN_INTERVAL, MAX_SCREENSHOT_MIN_INTERVAL, screenshot_min_interval,
};
pub use parse::{MAX_HEADS, NetworkMode, VgaModel, display_plan};
pub(crate) use qcow2::sniff_format;

use crate::definition::{InstanceDefinition, InstanceType};
use crate::qemu::host_files::HostFilePolicy;
use disks::plan_disks;
use keys::is_known_key;
use parse::{
    DEFAULT_MEMORY_BYTES, DEFAULT_VCPUS, boot_file, parse_memory, parse_network, parse_vcpus,
};

/// Everything QEMU needs to know about an instance, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePlan {
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest memory as configured; QEMU gets it rounded down to whole MiB.
    pub memory_bytes: u64,
    /// The display adapter.
    pub vga: VgaModel,
    /// How many heads `screendump` can address: 1 for std VGA, the configured count for
    /// virtio, 0 without a display.
    pub heads: u32,
    /// The disks, by device name.
    pub disks: Vec<DiskPlan>,
    /// A kernel to boot directly instead of from a disk.
    pub kernel: Option<PathBuf>,
    /// The initrd for [`MachinePlan::kernel`].
    pub initrd: Option<PathBuf>,
    /// The command line for [`MachinePlan::kernel`].
    pub kernel_cmdline: Option<String>,
    /// Guest networking.
    pub network: NetworkMode,
}

impl MachinePlan {
    /// Validates the definition's config and devices and plans the machine.
    ///
    /// Checks each host file against `policy` and reads the first bytes of each disk source whose
    /// format is not recorded yet (blocking: call it off the async workers), to fail here, with
    /// the device named, rather than in QEMU's startup log when a file is missing.
    pub fn from_definition(
        definition: &InstanceDefinition,
        policy: &HostFilePolicy,
    ) -> Result<MachinePlan, ConfigError> {
        if definition.instance_type != InstanceType::VirtualMachine {
            return Err(ConfigError::Container);
        }
        let config = &definition.config;
        if let Some(key) = config.keys().find(|key| !is_known_key(key)) {
            return Err(ConfigError::UnknownKey(key.clone()));
        }
        let get = |key| config.get(key).map(String::as_str);

        let (vga, heads) = display_plan(definition)?;
        let kernel = get(keys::KERNEL)
            .map(|value| boot_file(keys::KERNEL, value, policy))
            .transpose()?;
        let initrd = get(keys::INITRD)
            .map(|value| boot_file(keys::INITRD, value, policy))
            .transpose()?;
        let kernel_cmdline = get(keys::CMDLINE).map(str::to_owned);
        screenshot_min_interval(definition)?;
        history_settings(definition)?;
        let needs_kernel = [keys::INITRD, keys::CMDLINE]
            .into_iter()
            .find(|key| config.contains_key(*key));
        if let (None, Some(key)) = (&kernel, needs_kernel) {
            return Err(ConfigError::Requires {
                key,
                requirement: "\"vgashot.boot.kernel\"",
            });
        }

        Ok(MachinePlan {
            vcpus: get(keys::CPU).map_or(Ok(DEFAULT_VCPUS), parse_vcpus)?,
            memory_bytes: get(keys::MEMORY).map_or(Ok(DEFAULT_MEMORY_BYTES), parse_memory)?,
            vga,
            heads,
            disks: plan_disks(definition, policy)?,
            kernel,
            initrd,
            kernel_cmdline,
            network: get(keys::NETWORK).map_or(Ok(NetworkMode::None), parse_network)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;

    use super::*;
    use crate::qemu::cmdline::testing::*;
    use crate::qemu::host_files::HostFileError;

    #[test]
    fn containers_are_refused() {
        let mut container = vm(&[], &[]);
        container.instance_type = InstanceType::Container;
        assert!(matches!(
            MachinePlan::from_definition(&container, &policy()),
            Err(ConfigError::Container)
        ));
    }

    #[test]
    fn direct_kernel_boot() {
        let images = Images::new();
        let kernel = images.write("vmlinuz", b"kernel");
        let initrd = images.write("initrd", b"initrd");
        let booted = plan(&[
            ("vgashot.boot.kernel", &kernel),
            ("vgashot.boot.initrd", &initrd),
            ("vgashot.boot.cmdline", "console=ttyS0,115200 quiet"),
        ])
        .unwrap();
        assert_eq!(booted.kernel.as_deref(), Some(Path::new(&kernel)));
        assert_eq!(booted.initrd.as_deref(), Some(Path::new(&initrd)));
        let args = strings(booted.qemu_args("v1", 4096, &descriptors(&booted)));
        let start = args.iter().position(|arg| arg == "-kernel").unwrap();
        assert_eq!(
            args[start..start + 6],
            [
                "-kernel",
                "/proc/self/fd/30",
                "-initrd",
                "/proc/self/fd/31",
                "-append",
                "console=ttyS0,115200 quiet"
            ]
        );

        let error = plan(&[("vgashot.boot.kernel", "vmlinuz")]).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::InvalidValue {
                key: "vgashot.boot.kernel",
                reason: "is not an absolute path",
                ..
            }
        ));
        let missing = format!("{kernel}.missing");
        let error = plan(&[("vgashot.boot.kernel", &missing)]).unwrap_err();
        assert!(matches!(
            &error,
            ConfigError::HostFile { source: HostFileError::Io { source, .. }, .. }
                if source.kind() == io::ErrorKind::NotFound
        ));
        assert_eq!(
            error.to_string(),
            format!("Invalid value for config key \"vgashot.boot.kernel\": cannot open {missing}")
        );
        let directory = images.0.path().to_str().unwrap();
        assert!(matches!(
            plan(&[
                ("vgashot.boot.kernel", kernel.as_str()),
                ("vgashot.boot.initrd", directory)
            ]),
            Err(ConfigError::HostFile {
                source: HostFileError::NotAFile {
                    kind: "a directory",
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            plan(&[
                ("vgashot.boot.kernel", &kernel),
                ("vgashot.boot.initrd", &missing)
            ]),
            Err(ConfigError::HostFile { what, .. })
                if what == "Invalid value for config key \"vgashot.boot.initrd\""
        ));
        for key in ["vgashot.boot.initrd", "vgashot.boot.cmdline"] {
            let error = plan(&[(key, &initrd)]).unwrap_err();
            assert!(
                matches!(error, ConfigError::Requires { key: k, .. } if k == key),
                "{error:?}"
            );
        }
    }
}
