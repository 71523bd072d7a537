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
//!    device) is skipped; everything else is refused with what to use instead. Each disk
//!    source is opened to fail early when it is missing, and its format is sniffed from its
//!    first bytes, never taken from its name. A qcow2 header that points at another host file
//!    (backing file, external data file) is refused: a guest can write such a header into its
//!    own raw disk, and opening it would hand the guest that file.
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

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::definition::{DeviceConfig, InstanceDefinition, InstanceType};

/// The QOM id of the display device: what `screendump`'s `device` argument names.
pub const DISPLAY_DEVICE_ID: &str = "video0";
/// The chardev id of the serial console ring buffer (read with QMP `ringbuf-read`).
pub const CONSOLE_CHARDEV_ID: &str = "console";

/// vCPUs when `limits.cpu` is not set (Incus's VM default).
const DEFAULT_VCPUS: u32 = 1;
/// The most vCPUs `limits.cpu` accepts.
const MAX_VCPUS: u32 = 64;
/// Memory when `limits.memory` is not set (Incus's VM default).
const DEFAULT_MEMORY_BYTES: u64 = GIB;
/// Less than this and SeaBIOS plus any guest kernel has no room.
const MIN_MEMORY_BYTES: u64 = 32 * MIB;
/// The most heads `vgashot.vga.heads` accepts: virtio-gpu's limit (QEMU refuses more).
pub const MAX_HEADS: u32 = 16;
/// One mebibyte, QEMU's `-m` unit.
const MIB: u64 = 1 << 20;
/// One gibibyte.
const GIB: u64 = 1 << 30;
/// The first bytes of a qcow2 image.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// How much of a disk is read: a qcow2 version 3 header up to its incompatible-feature bits.
const SNIFF_BYTES: u64 = 80;
/// The qcow2 incompatible-feature bit for an external data file.
const QCOW2_EXTERNAL_DATA_FILE: u64 = 1 << 2;

/// The config keys this driver knows.
const KNOWN_KEYS: &[&str] = &[
    keys::CPU,
    keys::MEMORY,
    keys::VGA,
    keys::VGA_HEADS,
    keys::KERNEL,
    keys::INITRD,
    keys::CMDLINE,
    keys::NETWORK,
    keys::SCREENSHOT_MIN_INTERVAL,
];
/// Namespaces whose keys are stored but mean nothing to the driver.
const FREE_FORM_PREFIXES: &[&str] = &["user.", "image.", "volatile."];
/// The keys a disk device may have (`pool` only to refuse it with a clear error).
const DISK_KEYS: &[&str] = &[
    "type",
    "source",
    "path",
    "readonly",
    "boot.priority",
    "pool",
];

/// Config key names, shared by the parser and its errors.
mod keys {
    pub(super) const CPU: &str = "limits.cpu";
    pub(super) const MEMORY: &str = "limits.memory";
    pub(super) const VGA: &str = "vgashot.vga";
    pub(super) const VGA_HEADS: &str = "vgashot.vga.heads";
    pub(super) const KERNEL: &str = "vgashot.boot.kernel";
    pub(super) const INITRD: &str = "vgashot.boot.initrd";
    pub(super) const CMDLINE: &str = "vgashot.boot.cmdline";
    pub(super) const NETWORK: &str = "vgashot.network";
    pub(super) const SCREENSHOT_MIN_INTERVAL: &str = "console.screenshot.min_interval";
}

/// The shortest time between two screen captures of one VM when `console.screenshot.min_interval`
/// is not set: viewers asking more often share the last capture.
pub const DEFAULT_SCREENSHOT_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// The longest `console.screenshot.min_interval` accepted: a screen older than this is no
/// longer "live".
pub const MAX_SCREENSHOT_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The instance's `console.screenshot.min_interval` (a duration such as `250ms`, `1s`, `0` to
/// capture on every request), or its default.
pub fn screenshot_min_interval(definition: &InstanceDefinition) -> Result<Duration, ConfigError> {
    let Some(value) = definition.config.get(keys::SCREENSHOT_MIN_INTERVAL) else {
        return Ok(DEFAULT_SCREENSHOT_MIN_INTERVAL);
    };
    let invalid = |reason| ConfigError::InvalidValue {
        key: keys::SCREENSHOT_MIN_INTERVAL,
        value: value.clone(),
        reason,
    };
    let interval = if value.trim() == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(value.trim())
            .map_err(|_| invalid("is not a duration such as \"250ms\", \"1s\" or \"0\""))?
    };
    if interval > MAX_SCREENSHOT_MIN_INTERVAL {
        return Err(invalid("is longer than the 60s allowed"));
    }
    Ok(interval)
}

/// The units `limits.memory` accepts, as Incus parses them: powers of 10 and of 2.
const MEMORY_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Why a definition cannot run, in Incus's wording where Incus has one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The definition is a container.
    #[error("Containers are not supported: vgashot runs virtual machines only")]
    Container,
    /// A config key this driver does not know.
    #[error("Unknown configuration key: {0}")]
    UnknownKey(String),
    /// A value that does not parse or is out of range.
    #[error("Invalid value for config key {key:?}: {value:?} {reason}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong, as the end of a sentence that starts with the value.
        reason: &'static str,
    },
    /// A value in a form Incus accepts but vgashot does not implement.
    #[error("Invalid value for config key {key:?}: {what} ({value:?}) is not supported; {instead}")]
    Unsupported {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// The feature the value asks for.
        what: &'static str,
        /// What to write instead.
        instead: &'static str,
    },
    /// A key that only makes sense together with another setting.
    #[error("Config key {key:?} requires {requirement}")]
    Requires {
        /// The key that is set.
        key: &'static str,
        /// What else must be set.
        requirement: &'static str,
    },
    /// A boot file (kernel, initrd) that cannot be used.
    #[error("Invalid value for config key {key:?}: cannot use {}", path.display())]
    BootFile {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A device without a `type`.
    #[error("Device {device:?} has no \"type\"")]
    MissingDeviceType {
        /// The device.
        device: String,
    },
    /// A `nic` device: networking is one config key here, not a device.
    #[error(
        "Device {device:?}: network devices are not supported; remove it and set \
         vgashot.network=user for user-mode networking"
    )]
    NicDevice {
        /// The device.
        device: String,
    },
    /// A device type other than `disk`, `nic` and `none`.
    #[error(
        "Device {device:?} has type {kind:?}, which is not supported (only \"disk\" and \"none\")"
    )]
    UnsupportedDevice {
        /// The device.
        device: String,
        /// Its type.
        kind: String,
    },
    /// A disk device name that cannot be part of a QEMU id.
    #[error(
        "Invalid device name {device:?}: use 1-64 ASCII letters, digits, \"-\", \"_\" and \".\""
    )]
    InvalidDeviceName {
        /// The device.
        device: String,
    },
    /// A disk device key that vgashot does not know.
    #[error("Invalid device option {key:?} on disk device {device:?}")]
    UnknownDeviceKey {
        /// The device.
        device: String,
        /// The key.
        key: String,
    },
    /// A disk device value that does not parse.
    #[error("Invalid value for option {key:?} of disk device {device:?}: {value:?} {reason}")]
    InvalidDeviceValue {
        /// The device.
        device: String,
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong, as the end of a sentence that starts with the value.
        reason: &'static str,
    },
    /// A disk from an Incus storage pool.
    #[error(
        "Disk device {device:?}: storage pools are not supported; remove \"pool\" and set \
         \"source\" to the absolute path of an image file"
    )]
    StoragePool {
        /// The device.
        device: String,
    },
    /// A disk without a `source`.
    #[error(
        "Disk device {device:?} has no \"source\": set it to the absolute path of an image file"
    )]
    MissingSource {
        /// The device.
        device: String,
    },
    /// A disk source that cannot be opened or read.
    #[error("Disk device {device:?}: cannot read {}", path.display())]
    DiskSource {
        /// The device.
        device: String,
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A qcow2 image that refers to another host file, which a guest could have forged.
    #[error(
        "Disk device {device:?}: {} is a qcow2 image with {what}, which vgashot does not open",
        path.display()
    )]
    UnsafeQcow2 {
        /// The device.
        device: String,
        /// The source.
        path: PathBuf,
        /// What it refers to: `"a backing file"` or `"an external data file"`.
        what: &'static str,
    },
    /// More than one disk with `path: /`.
    #[error("Devices {first:?} and {second:?} are both root disks (path \"/\"); only one may be")]
    MultipleRootDisks {
        /// The first root disk, by name.
        first: String,
        /// The second.
        second: String,
    },
}

/// The display adapter (config key `vgashot.vga`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgaModel {
    /// QEMU's standard VGA with Bochs VBE extensions (`std`, the default): one head, works with
    /// every firmware and guest.
    Std,
    /// virtio-vga (`virtio`): VGA-compatible at boot, up to 16 heads with a virtio-gpu driver.
    Virtio,
    /// No display device (`none`): nothing to take screenshots of.
    None,
}

/// The format of a disk image, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// Anything that is not qcow2, as the guest sees it byte for byte.
    Raw,
    /// A qcow2 image (it starts with `QFI\xfb`).
    Qcow2,
}

impl DiskFormat {
    /// The name QEMU's `format=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

/// Guest networking (config key `vgashot.network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// No network card (`none`, the default).
    None,
    /// A virtio-net card behind QEMU's user-mode NAT (`user`): outbound access, no inbound.
    User,
}

/// One disk, as QEMU will attach it (a virtio-blk-pci device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    /// The Incus device name; QEMU's drive id is `disk-<device>`.
    pub device: String,
    /// The image file (absolute).
    pub source: PathBuf,
    /// Its format, sniffed.
    pub format: DiskFormat,
    /// Whether the guest may only read it.
    pub readonly: bool,
    /// Its place in the firmware's boot order (0 first), if it has one.
    pub boot_index: Option<u32>,
}

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
    /// Reads the first bytes of each disk source, to sniff its format and to fail here, with
    /// the device named, rather than in QEMU's startup log when a file is missing.
    pub fn from_definition(definition: &InstanceDefinition) -> Result<MachinePlan, ConfigError> {
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
            .map(|value| boot_file(keys::KERNEL, value))
            .transpose()?;
        let initrd = get(keys::INITRD)
            .map(|value| boot_file(keys::INITRD, value))
            .transpose()?;
        let kernel_cmdline = get(keys::CMDLINE).map(str::to_owned);
        screenshot_min_interval(definition)?;
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
            disks: plan_disks(&definition.devices)?,
            kernel,
            initrd,
            kernel_cmdline,
            network: get(keys::NETWORK).map_or(Ok(NetworkMode::None), parse_network)?,
        })
    }

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

/// Whether the driver accepts a config key.
fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.contains(&key)
        || FREE_FORM_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

/// `limits.cpu`: a number of vCPUs; Incus's pinning forms (`0-3`, `1,2`) are refused.
fn parse_vcpus(value: &str) -> Result<u32, ConfigError> {
    if value.contains(['-', ',']) {
        return Err(ConfigError::Unsupported {
            key: keys::CPU,
            value: value.to_owned(),
            what: "CPU pinning",
            instead: "give a number of vCPUs, such as \"2\"",
        });
    }
    parse_in_range(value, 1..=MAX_VCPUS).ok_or_else(|| ConfigError::InvalidValue {
        key: keys::CPU,
        value: value.to_owned(),
        reason: "is not a number of vCPUs from 1 to 64",
    })
}

/// `limits.memory`: bytes, or a number with one of [`MEMORY_UNITS`]; at least 32 MiB.
fn parse_memory(value: &str) -> Result<u64, ConfigError> {
    let invalid = |reason| ConfigError::InvalidValue {
        key: keys::MEMORY,
        value: value.to_owned(),
        reason,
    };
    if value.ends_with('%') {
        return Err(ConfigError::Unsupported {
            key: keys::MEMORY,
            value: value.to_owned(),
            what: "memory as a share of the host's",
            instead: "give a size, such as \"1GiB\"",
        });
    }
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits);
    let bytes = MEMORY_UNITS
        .iter()
        .find(|(unit, _)| *unit == suffix)
        .zip(number.parse::<u64>().ok())
        .and_then(|((_, multiplier), number)| number.checked_mul(*multiplier))
        .ok_or_else(|| {
            invalid(
                "is not a size: give bytes, or a number followed by kB, MB, GB, TB, KiB, MiB, \
                 GiB or TiB",
            )
        })?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(invalid("is less than the minimum of 32MiB"));
    }
    Ok(bytes)
}

/// The display adapter of `definition` and how many heads `screendump` can address (0 without
/// a display), read from the config alone (no file is opened), as the instance starts with it.
pub fn display_plan(definition: &InstanceDefinition) -> Result<(VgaModel, u32), ConfigError> {
    let get = |key| definition.config.get(key).map(String::as_str);
    let vga = get(keys::VGA).map_or(Ok(VgaModel::Std), parse_vga)?;
    let heads = match (vga, get(keys::VGA_HEADS)) {
        (VgaModel::Virtio, Some(heads)) => parse_heads(heads)?,
        (_, Some(_)) => {
            return Err(ConfigError::Requires {
                key: keys::VGA_HEADS,
                requirement: "\"vgashot.vga\" set to \"virtio\"",
            });
        }
        (VgaModel::None, None) => 0,
        (VgaModel::Std | VgaModel::Virtio, None) => 1,
    };
    Ok((vga, heads))
}

/// `vgashot.vga`.
fn parse_vga(value: &str) -> Result<VgaModel, ConfigError> {
    match value {
        "std" => Ok(VgaModel::Std),
        "virtio" => Ok(VgaModel::Virtio),
        "none" => Ok(VgaModel::None),
        _ => Err(ConfigError::InvalidValue {
            key: keys::VGA,
            value: value.to_owned(),
            reason: "is not one of \"std\", \"virtio\" and \"none\"",
        }),
    }
}

/// `vgashot.vga.heads`: virtio-vga's `max_outputs`.
fn parse_heads(value: &str) -> Result<u32, ConfigError> {
    parse_in_range(value, 1..=MAX_HEADS).ok_or_else(|| ConfigError::InvalidValue {
        key: keys::VGA_HEADS,
        value: value.to_owned(),
        reason: "is not a number of heads from 1 to 16",
    })
}

/// `vgashot.network`.
fn parse_network(value: &str) -> Result<NetworkMode, ConfigError> {
    match value {
        "none" => Ok(NetworkMode::None),
        "user" => Ok(NetworkMode::User),
        _ => Err(ConfigError::InvalidValue {
            key: keys::NETWORK,
            value: value.to_owned(),
            reason: "is not one of \"none\" and \"user\"",
        }),
    }
}

/// `vgashot.boot.kernel` and `vgashot.boot.initrd`: an absolute path of an existing file.
fn boot_file(key: &'static str, value: &str) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(ConfigError::InvalidValue {
            key,
            value: value.to_owned(),
            reason: "is not an absolute path",
        });
    }
    match path.metadata() {
        Ok(metadata) if metadata.is_file() => Ok(path),
        Ok(_) => Err(ConfigError::InvalidValue {
            key,
            value: value.to_owned(),
            reason: "is not a regular file",
        }),
        Err(source) => Err(ConfigError::BootFile { key, path, source }),
    }
}

/// A decimal number within `range`; `None` for anything else (signs, spaces, overflow).
fn parse_in_range(value: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    value
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| value.parse().ok())
        .flatten()
        .filter(|number| range.contains(number))
}

/// The disks of the definition, with boot indexes; other device types are skipped or refused.
fn plan_disks(devices: &BTreeMap<String, DeviceConfig>) -> Result<Vec<DiskPlan>, ConfigError> {
    let mut disks = Vec::new();
    // (position in `disks`, boot priority) of the disks that take part in the boot order.
    let mut bootable = Vec::new();
    let mut root: Option<&str> = None;
    for (device, config) in devices {
        match config.get("type").map(String::as_str) {
            Some("disk") => {}
            Some("none") => continue,
            Some("nic") => {
                return Err(ConfigError::NicDevice {
                    device: device.clone(),
                });
            }
            Some(kind) => {
                return Err(ConfigError::UnsupportedDevice {
                    device: device.clone(),
                    kind: kind.to_owned(),
                });
            }
            None => {
                return Err(ConfigError::MissingDeviceType {
                    device: device.clone(),
                });
            }
        }
        let disk = DiskSpec::parse(device, config)?;
        let earlier_root = if disk.root {
            root.replace(device)
        } else {
            None
        };
        if let Some(first) = earlier_root {
            return Err(ConfigError::MultipleRootDisks {
                first: first.to_owned(),
                second: device.clone(),
            });
        }
        // As Incus: a root disk without a priority outranks disks without one.
        if let Some(priority) = disk.priority.or(disk.root.then_some(1)) {
            bootable.push((disks.len(), priority));
        }
        disks.push(disk.plan);
    }
    // Stable: equal priorities keep device-name order.
    bootable.sort_by_key(|&(_, priority)| std::cmp::Reverse(priority));
    for (boot_index, (position, _)) in (0..).zip(bootable) {
        disks[position].boot_index = Some(boot_index);
    }
    Ok(disks)
}

/// A disk device, parsed, before boot indexes are assigned.
struct DiskSpec {
    /// The plan, without a boot index yet.
    plan: DiskPlan,
    /// Whether it is the root disk (`path: /`).
    root: bool,
    /// Its `boot.priority`, if set.
    priority: Option<u32>,
}

impl DiskSpec {
    /// Validates a `disk` device and reads its source's header.
    fn parse(device: &str, config: &DeviceConfig) -> Result<Self, ConfigError> {
        let valid_name = (1..=64).contains(&device.len())
            && device
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if !valid_name {
            return Err(ConfigError::InvalidDeviceName {
                device: device.to_owned(),
            });
        }
        if let Some(key) = config.keys().find(|key| !DISK_KEYS.contains(&key.as_str())) {
            return Err(ConfigError::UnknownDeviceKey {
                device: device.to_owned(),
                key: key.clone(),
            });
        }
        if config.contains_key("pool") {
            return Err(ConfigError::StoragePool {
                device: device.to_owned(),
            });
        }
        let invalid = |key, value: &str, reason| ConfigError::InvalidDeviceValue {
            device: device.to_owned(),
            key,
            value: value.to_owned(),
            reason,
        };
        let source = config
            .get("source")
            .ok_or_else(|| ConfigError::MissingSource {
                device: device.to_owned(),
            })?;
        if !Path::new(source).is_absolute() {
            return Err(invalid("source", source, "is not an absolute path"));
        }
        let source = PathBuf::from(source);
        let readonly = match config.get("readonly").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(invalid("readonly", other, "is not \"true\" or \"false\"")),
        };
        let priority = config
            .get("boot.priority")
            .map(|value| {
                parse_in_range(value, 0..=u32::MAX).ok_or_else(|| {
                    invalid(
                        "boot.priority",
                        value,
                        "is not a whole number from 0 to 4294967295",
                    )
                })
            })
            .transpose()?;
        let format = sniff_format(device, &source)?;
        Ok(Self {
            plan: DiskPlan {
                device: device.to_owned(),
                source,
                format,
                readonly,
                boot_index: None,
            },
            root: config.get("path").is_some_and(|path| path == "/"),
            priority,
        })
    }
}

/// Reads the start of a disk image: qcow2 by its magic, raw otherwise. A qcow2 image that
/// refers to another host file is refused (see the module documentation).
fn sniff_format(device: &str, path: &Path) -> Result<DiskFormat, ConfigError> {
    let mut header = Vec::new();
    File::open(path)
        .and_then(|file| file.take(SNIFF_BYTES).read_to_end(&mut header))
        .map_err(|source| ConfigError::DiskSource {
            device: device.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    if !header.starts_with(QCOW2_MAGIC) {
        return Ok(DiskFormat::Raw);
    }
    // Big-endian header fields: version at 4, backing file offset at 8, and (version 3)
    // incompatible features at 72. A field beyond a truncated header reads as 0.
    let field = |offset: usize| {
        header.get(offset..offset + 8).map_or(0, |bytes| {
            u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
        })
    };
    let version = field(0) & 0xffff_ffff; // The low half of bytes 0..8: after the magic.
    let what = if field(8) != 0 {
        Some("a backing file")
    } else if version >= 3 && field(72) & QCOW2_EXTERNAL_DATA_FILE != 0 {
        Some("an external data file")
    } else {
        None
    };
    match what {
        Some(what) => Err(ConfigError::UnsafeQcow2 {
            device: device.to_owned(),
            path: path.to_owned(),
            what,
        }),
        None => Ok(DiskFormat::Qcow2),
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

    /// A directory with image files for disk devices.
    struct Images(tempfile::TempDir);

    impl Images {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }

        /// Writes `bytes` as the file `name` and returns its path.
        fn write(&self, name: &str, bytes: &[u8]) -> String {
            let path = self.0.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path.to_str().unwrap().to_owned()
        }

        /// A raw image of one zeroed sector.
        fn raw(&self, name: &str) -> String {
            self.write(name, &[0; 512])
        }
    }

    fn vm(config: &[(&str, &str)], devices: &[(&str, &[(&str, &str)])]) -> InstanceDefinition {
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

    fn plan(config: &[(&str, &str)]) -> Result<MachinePlan, ConfigError> {
        MachinePlan::from_definition(&vm(config, &[]))
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

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
    fn containers_are_refused() {
        let mut container = vm(&[], &[]);
        container.instance_type = InstanceType::Container;
        assert!(matches!(
            MachinePlan::from_definition(&container),
            Err(ConfigError::Container)
        ));
    }

    #[test]
    fn unknown_keys_are_refused_in_incus_words() {
        for key in [
            "limits.cpus",
            "boot.autostart",
            "security.secureboot",
            "console.screenshot.max_interval",
            "vgashot.vga.head",
            "users.x",
        ] {
            let error = plan(&[(key, "1")]).unwrap_err();
            assert!(
                matches!(&error, ConfigError::UnknownKey(k) if k == key),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                format!("Unknown configuration key: {key}")
            );
        }
        for key in ["user.anything", "image.os", "volatile.uuid"] {
            assert!(plan(&[(key, "x")]).is_ok(), "{key}");
        }
    }

    #[test]
    fn screenshot_min_interval() {
        for (value, expected) in [("0", 0), ("250ms", 250), ("1s", 1000), ("60s", 60_000)] {
            let definition = vm(&[("console.screenshot.min_interval", value)], &[]);
            assert_eq!(
                super::screenshot_min_interval(&definition).unwrap(),
                Duration::from_millis(expected),
                "{value}"
            );
        }
        assert_eq!(
            super::screenshot_min_interval(&vm(&[], &[])).unwrap(),
            DEFAULT_SCREENSHOT_MIN_INTERVAL
        );
        for bad in ["soon", "-1s", "61s", ""] {
            assert!(
                plan(&[("console.screenshot.min_interval", bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_cpu() {
        for (value, vcpus) in [("1", 1), ("4", 4), ("64", 64)] {
            assert_eq!(plan(&[("limits.cpu", value)]).unwrap().vcpus, vcpus);
        }
        for value in ["0", "65", "+2", " 2", "2.5", "two", "", "99999999999"] {
            let error = plan(&[("limits.cpu", value)]).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::InvalidValue {
                        key: "limits.cpu",
                        ..
                    }
                ),
                "{value:?}: {error:?}"
            );
        }
        for value in ["0-3", "1,2", "-1"] {
            let error = plan(&[("limits.cpu", value)]).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Unsupported {
                        key: "limits.cpu",
                        ..
                    }
                ),
                "{value:?}: {error:?}"
            );
        }
        assert_eq!(
            plan(&[("limits.cpu", "0-3")]).unwrap_err().to_string(),
            "Invalid value for config key \"limits.cpu\": CPU pinning (\"0-3\") is not \
             supported; give a number of vCPUs, such as \"2\""
        );
        assert_eq!(
            plan(&[("limits.cpu", "0")]).unwrap_err().to_string(),
            "Invalid value for config key \"limits.cpu\": \"0\" is not a number of vCPUs from 1 \
             to 64"
        );
    }

    #[test]
    fn limits_memory_units() {
        let table: &[(&str, u64)] = &[
            ("33554432", 32 << 20),
            ("33554432B", 32 << 20),
            ("512MiB", 512 << 20),
            ("1GiB", 1 << 30),
            ("2GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("40000KiB", 40_000 << 10),
            ("100MB", 100_000_000),
            ("1GB", 1_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("50000kB", 50_000_000),
        ];
        for &(value, bytes) in table {
            assert_eq!(
                plan(&[("limits.memory", value)]).unwrap().memory_bytes,
                bytes,
                "{value}"
            );
        }
        for value in [
            "",
            "GiB",
            "1 GiB",
            "1gib",
            "1G",
            "1M",
            "1KB",
            "1.5GiB",
            "-1GiB",
            "+1GiB",
            "1PiB",
            "99999999999999999999",
            "20000000TiB",
        ] {
            let error = plan(&[("limits.memory", value)]).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::InvalidValue { key: "limits.memory", reason, .. }
                        if reason.starts_with("is not a size")
                ),
                "{value:?}: {error:?}"
            );
        }
        for value in ["31MiB", "33554431", "0"] {
            let error = plan(&[("limits.memory", value)]).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "Invalid value for config key \"limits.memory\": {value:?} is less than \
                     the minimum of 32MiB"
                )
            );
        }
        let error = plan(&[("limits.memory", "50%")]).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Unsupported {
                key: "limits.memory",
                ..
            }
        ));
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
    fn vga_and_heads() {
        let display = |config: &[(&str, &str)]| {
            let plan = plan(config).unwrap();
            let args = strings(plan.qemu_args("v1", 4096));
            let start = args.iter().position(|arg| arg == "-vga").unwrap();
            let end = args.iter().position(|arg| arg == "-chardev").unwrap();
            (plan.vga, plan.heads, args[start..end].to_vec())
        };
        assert_eq!(
            display(&[("vgashot.vga", "std")]),
            (
                VgaModel::Std,
                1,
                vec![
                    "-vga".into(),
                    "none".into(),
                    "-device".into(),
                    "VGA,id=video0".into()
                ]
            )
        );
        assert_eq!(
            display(&[("vgashot.vga", "virtio")]),
            (
                VgaModel::Virtio,
                1,
                vec![
                    "-vga".into(),
                    "none".into(),
                    "-device".into(),
                    "virtio-vga,id=video0,max_outputs=1".into()
                ]
            )
        );
        assert_eq!(
            display(&[("vgashot.vga", "virtio"), ("vgashot.vga.heads", "16")]).2[3],
            "virtio-vga,id=video0,max_outputs=16"
        );
        assert_eq!(
            display(&[("vgashot.vga", "none")]),
            (VgaModel::None, 0, vec!["-vga".to_owned(), "none".into()])
        );
        for value in ["cirrus", "STD", ""] {
            assert!(matches!(
                plan(&[("vgashot.vga", value)]),
                Err(ConfigError::InvalidValue {
                    key: "vgashot.vga",
                    ..
                })
            ));
        }
        // max_outputs=0 crashes QEMU 7.2; 17 is refused by it.
        for value in ["0", "17", "x"] {
            assert!(matches!(
                plan(&[("vgashot.vga", "virtio"), ("vgashot.vga.heads", value)]),
                Err(ConfigError::InvalidValue {
                    key: "vgashot.vga.heads",
                    ..
                })
            ));
        }
        for vga in [None, Some("std"), Some("none")] {
            let mut config = vec![("vgashot.vga.heads", "2")];
            config.extend(vga.map(|vga| ("vgashot.vga", vga)));
            let error = plan(&config).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Requires {
                        key: "vgashot.vga.heads",
                        ..
                    }
                ),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                "Config key \"vgashot.vga.heads\" requires \"vgashot.vga\" set to \"virtio\""
            );
        }
    }

    #[test]
    fn network() {
        assert_eq!(
            plan(&[("vgashot.network", "none")]).unwrap().network,
            NetworkMode::None
        );
        let user = plan(&[("vgashot.network", "user")]).unwrap();
        assert_eq!(user.network, NetworkMode::User);
        assert!(
            strings(user.qemu_args("v1", 4096))
                .ends_with(&["-nic".to_owned(), "user,model=virtio-net-pci".into()])
        );
        assert!(matches!(
            plan(&[("vgashot.network", "bridged")]),
            Err(ConfigError::InvalidValue {
                key: "vgashot.network",
                ..
            })
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
        let args = strings(booted.qemu_args("v1", 4096));
        let start = args.iter().position(|arg| arg == "-kernel").unwrap();
        assert_eq!(
            args[start..start + 6],
            [
                "-kernel",
                &kernel,
                "-initrd",
                &initrd,
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
            ConfigError::BootFile { key: "vgashot.boot.kernel", source, .. }
                if source.kind() == io::ErrorKind::NotFound
        ));
        assert_eq!(
            error.to_string(),
            format!("Invalid value for config key \"vgashot.boot.kernel\": cannot use {missing}")
        );
        let directory = images.0.path().to_str().unwrap();
        assert!(matches!(
            plan(&[
                ("vgashot.boot.kernel", kernel.as_str()),
                ("vgashot.boot.initrd", directory)
            ]),
            Err(ConfigError::InvalidValue {
                key: "vgashot.boot.initrd",
                reason: "is not a regular file",
                ..
            })
        ));
        assert!(matches!(
            plan(&[
                ("vgashot.boot.kernel", &kernel),
                ("vgashot.boot.initrd", &missing)
            ]),
            Err(ConfigError::BootFile {
                key: "vgashot.boot.initrd",
                ..
            })
        ));
        for key in ["vgashot.boot.initrd", "vgashot.boot.cmdline"] {
            let error = plan(&[(key, &initrd)]).unwrap_err();
            assert!(
                matches!(error, ConfigError::Requires { key: k, .. } if k == key),
                "{error:?}"
            );
        }
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
    fn boot_order_follows_incus_priorities() {
        let images = Images::new();
        let source = images.raw("disk.img");
        let disk = |extra: &[(&'static str, &'static str)]| {
            let mut config = vec![("type", "disk"), ("source", source.as_str())];
            config.extend_from_slice(extra);
            config
        };
        let (a, b, c, root) = (
            disk(&[("boot.priority", "5")]),
            disk(&[]),
            disk(&[("boot.priority", "0")]),
            disk(&[("path", "/")]),
        );
        let plan = MachinePlan::from_definition(&vm(
            &[],
            &[("a", &a), ("b", &b), ("c", &c), ("root", &root)],
        ))
        .unwrap();
        let order: Vec<_> = plan
            .disks
            .iter()
            .map(|disk| (disk.device.as_str(), disk.boot_index))
            .collect();
        assert_eq!(
            order,
            [
                ("a", Some(0)),
                ("b", None),
                ("c", Some(2)),
                ("root", Some(1))
            ]
        );
    }

    #[test]
    fn device_errors() {
        let images = Images::new();
        let source = images.raw("disk.img");
        let missing = format!("{source}.missing");
        let directory = images.0.path().to_str().unwrap().to_owned();
        let disk_with = |pairs: &[(&'static str, &'static str)]| {
            let mut config = vec![("type", "disk"), ("source", source.as_str())];
            config.extend_from_slice(pairs);
            config
        };
        let try_devices = |devices: &[(&str, &[(&str, &str)])]| {
            MachinePlan::from_definition(&vm(&[], devices)).unwrap_err()
        };
        let try_disk = |config: &[(&str, &str)]| try_devices(&[("d1", config)]);

        let error = try_disk(&[("type", "nic"), ("network", "incusbr0")]);
        assert!(matches!(&error, ConfigError::NicDevice { device } if device == "d1"));
        assert!(
            error.to_string().contains("vgashot.network=user"),
            "{error}"
        );
        let error = try_disk(&[("type", "gpu")]);
        assert!(matches!(&error, ConfigError::UnsupportedDevice { kind, .. } if kind == "gpu"));
        assert!(error.to_string().contains("\"gpu\""));
        assert!(matches!(
            try_disk(&[("source", &source)]),
            ConfigError::MissingDeviceType { .. }
        ));
        let error = try_disk(&[("type", "disk"), ("path", "/"), ("pool", "default")]);
        assert!(matches!(error, ConfigError::StoragePool { .. }));
        assert!(
            error
                .to_string()
                .contains("storage pools are not supported")
        );
        assert!(matches!(
            try_disk(&[("type", "disk"), ("path", "/")]),
            ConfigError::MissingSource { .. }
        ));
        let error = try_disk(&disk_with(&[("size", "10GiB")]));
        assert!(matches!(&error, ConfigError::UnknownDeviceKey { key, .. } if key == "size"));
        assert_eq!(
            error.to_string(),
            "Invalid device option \"size\" on disk device \"d1\""
        );
        assert!(matches!(
            try_disk(&[("type", "disk"), ("source", "disk.img")]),
            ConfigError::InvalidDeviceValue { key: "source", .. }
        ));
        let error = try_disk(&[("type", "disk"), ("source", &missing)]);
        assert!(matches!(
            &error,
            ConfigError::DiskSource { source, .. } if source.kind() == io::ErrorKind::NotFound
        ));
        assert!(matches!(
            try_disk(&[("type", "disk"), ("source", &directory)]),
            ConfigError::DiskSource { .. }
        ));
        for value in ["yes", "on", "1", "True", ""] {
            assert!(matches!(
                try_disk(&disk_with(&[("readonly", value)])),
                ConfigError::InvalidDeviceValue {
                    key: "readonly",
                    ..
                }
            ));
        }
        for value in ["-1", "high", "4294967296", ""] {
            assert!(matches!(
                try_disk(&disk_with(&[("boot.priority", value)])),
                ConfigError::InvalidDeviceValue {
                    key: "boot.priority",
                    ..
                }
            ));
        }
        let root = disk_with(&[("path", "/")]);
        let error = try_devices(&[("a", &root), ("b", &root)]);
        assert!(matches!(
            &error,
            ConfigError::MultipleRootDisks { first, second } if first == "a" && second == "b"
        ));
        for name in ["", "a b", "a,b", "é", &"x".repeat(65)] {
            let error = try_devices(&[(name, &disk_with(&[]))]);
            assert!(
                matches!(error, ConfigError::InvalidDeviceName { .. }),
                "{name:?}"
            );
        }
        // A masked device is ignored whatever it holds.
        assert!(
            MachinePlan::from_definition(&vm(&[], &[("x y", &[("type", "none"), ("odd", "1")])]))
                .is_ok()
        );
    }

    #[test]
    fn formats_are_sniffed_from_contents() {
        let images = Images::new();
        let sniff =
            |name: &str, bytes: &[u8]| sniff_format("d1", Path::new(&images.write(name, bytes)));
        let mut v3 = b"QFI\xfb\0\0\0\x03".to_vec();
        v3.resize(104, 0);
        assert_eq!(sniff("disk.qcow2", b"").unwrap(), DiskFormat::Raw);
        assert_eq!(sniff("disk.qcow2", b"QFI").unwrap(), DiskFormat::Raw);
        assert_eq!(sniff("disk.qcow2", &[0; 4096]).unwrap(), DiskFormat::Raw);
        assert_eq!(sniff("disk.raw", b"QFI\xfb").unwrap(), DiskFormat::Qcow2);
        assert_eq!(sniff("disk.img", &v3).unwrap(), DiskFormat::Qcow2);

        let mut backing = v3.clone();
        backing[15] = 0x68; // backing_file_offset = 0x68
        let error = sniff("forged.img", &backing).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::UnsafeQcow2 {
                what: "a backing file",
                ..
            }
        ));
        let mut data_file = v3.clone();
        data_file[79] = 0x04; // incompatible_features: external data file
        let error = sniff("forged.img", &data_file).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::UnsafeQcow2 {
                what: "an external data file",
                ..
            }
        ));
        // Version 2 headers end before the feature bits; whatever lies there is cluster data.
        data_file[7] = 2;
        assert_eq!(sniff("v2.img", &data_file).unwrap(), DiskFormat::Qcow2);
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn the_console_ring_must_be_a_power_of_two() {
        plan(&[]).unwrap().qemu_args("v1", 1000);
    }
}
