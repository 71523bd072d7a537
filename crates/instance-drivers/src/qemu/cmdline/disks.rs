//! Disk devices: validated, with their formats, in Incus's boot order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::parse::parse_in_range;
pub use super::qcow2::DiskFormat;
use super::qcow2::sniff_format;
use super::{ConfigError, MachinePlan};
use crate::definition::{DeviceConfig, InstanceDefinition};
use crate::qemu::host_files::{Access, HostFilePolicy};

/// The keys a disk device may have (`pool` only to refuse it with a clear error).
const DISK_KEYS: &[&str] = &[
    "type",
    "source",
    "path",
    "readonly",
    "boot.priority",
    "pool",
];

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

/// The disks of the definition, with boot indexes; other device types are skipped or refused.
pub(super) fn plan_disks(
    definition: &InstanceDefinition,
    policy: &HostFilePolicy,
) -> Result<Vec<DiskPlan>, ConfigError> {
    let devices = &definition.devices;
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
        let recorded = definition.config.get(&format_key(device));
        let disk = DiskSpec::parse(device, config, recorded.map(String::as_str), policy)?;
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
    /// Validates a `disk` device, checks its source against `policy` and decides its format
    /// (`recorded`, else from the source's header).
    fn parse(
        device: &str,
        config: &DeviceConfig,
        recorded: Option<&str>,
        policy: &HostFilePolicy,
    ) -> Result<Self, ConfigError> {
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
        let format = decide_format(device, &source, recorded, policy)?;
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

/// A disk's format: the one recorded when it was decided, else its source's header (the source
/// checked against `policy` either way). A raw disk's content is never read here once its format
/// is recorded, since the guest writes it; a recorded qcow2 image's header is checked again, as
/// the guest cannot write that.
fn decide_format(
    device: &str,
    source: &Path,
    recorded: Option<&str>,
    policy: &HostFilePolicy,
) -> Result<DiskFormat, ConfigError> {
    let refused = |error| ConfigError::HostFile {
        what: format!("Disk device {device:?}"),
        source: error,
    };
    let sniff = || {
        let file = policy.open(source, Access::ReadOnly).map_err(refused)?;
        sniff_format(device, source, &file)
    };
    match recorded {
        Some("raw") => {
            policy.check(source).map_err(refused)?;
            Ok(DiskFormat::Raw)
        }
        Some("qcow2") => match sniff()? {
            DiskFormat::Qcow2 => Ok(DiskFormat::Qcow2),
            DiskFormat::Raw => Err(ConfigError::FormatChanged {
                device: device.to_owned(),
                path: source.to_owned(),
            }),
        },
        Some(other) => Err(ConfigError::InvalidFormat {
            device: device.to_owned(),
            value: other.to_owned(),
        }),
        None => sniff(),
    }
}

/// The config key that records the format of the disk `device`, in Incus's namespace for
/// internal state.
pub fn format_key(device: &str) -> String {
    format!("volatile.{device}.format")
}

/// Whether `key` records the format of some device.
fn is_format_key(key: &str) -> bool {
    key.starts_with("volatile.") && key.ends_with(".format")
}

impl MachinePlan {
    /// Records each disk's format in `definition` (`volatile.<device>.format`) and forgets the
    /// records of devices that are no longer disks; returns whether anything changed.
    pub fn record_formats(&self, definition: &mut InstanceDefinition) -> bool {
        let recorded: BTreeMap<String, String> = self
            .disks
            .iter()
            .map(|disk| (format_key(&disk.device), disk.format.as_str().to_owned()))
            .collect();
        let before = definition.config.clone();
        definition
            .config
            .retain(|key, _| !is_format_key(key) || recorded.contains_key(key));
        definition.config.extend(recorded);
        definition.config != before
    }
}

/// Before `new` replaces `old`: a disk whose source did not change keeps the format recorded in
/// `old` when `new` leaves the record out (so an update never probes a disk the guest has
/// written again), and a record that `new` merely echoes from `old` for a disk whose source
/// changed is forgotten, so that disk's format is decided anew. A record `new` sets to another
/// value is the client's decision and stays.
pub fn carry_formats(old: &InstanceDefinition, new: &mut InstanceDefinition) {
    let source = |definition: &InstanceDefinition, device: &str| {
        definition
            .devices
            .get(device)
            .and_then(|config| config.get("source"))
            .cloned()
    };
    let devices: Vec<String> = new.devices.keys().cloned().collect();
    for device in devices {
        let key = format_key(&device);
        let Some(old_format) = old.config.get(&key) else {
            continue;
        };
        let unchanged =
            source(old, &device).is_some() && source(old, &device) == source(new, &device);
        match new.config.get(&key) {
            None if unchanged => {
                new.config.insert(key, old_format.clone());
            }
            Some(echoed) if !unchanged && echoed == old_format => {
                new.config.remove(&key);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::qemu::cmdline::MachinePlan;
    use crate::qemu::cmdline::testing::*;
    use crate::qemu::host_files::HostFileError;

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
        let plan = MachinePlan::from_definition(
            &vm(&[], &[("a", &a), ("b", &b), ("c", &c), ("root", &root)]),
            &policy(),
        )
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
            MachinePlan::from_definition(&vm(&[], devices), &policy()).unwrap_err()
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
            ConfigError::HostFile { source: HostFileError::Io { source, .. }, .. }
                if source.kind() == io::ErrorKind::NotFound
        ));
        assert_eq!(
            error.to_string(),
            format!("Disk device \"d1\": cannot open {missing}")
        );
        assert!(matches!(
            try_disk(&[("type", "disk"), ("source", &directory)]),
            ConfigError::HostFile {
                source: HostFileError::NotAFile { .. },
                ..
            }
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
            MachinePlan::from_definition(
                &vm(&[], &[("x y", &[("type", "none"), ("odd", "1")])]),
                &policy()
            )
            .is_ok()
        );
    }

    /// A definition with one disk `root` of `source` and `config`.
    fn one_disk(source: &str, config: &[(&str, &str)]) -> InstanceDefinition {
        vm(
            config,
            &[(
                "root",
                &[("type", "disk"), ("path", "/"), ("source", source)],
            )],
        )
    }

    #[test]
    fn a_recorded_format_is_never_probed_again_for_raw_disks() {
        let images = Images::new();
        let forged = images.write("forged.img", b"QFI\xfb\0\0\0\x03");
        let sniffed = MachinePlan::from_definition(&one_disk(&forged, &[]), &policy()).unwrap();
        assert_eq!(sniffed.disks[0].format, DiskFormat::Qcow2);
        // Recorded raw (at create), then the guest wrote a qcow2 header: still raw.
        let raw = one_disk(&forged, &[("volatile.root.format", "raw")]);
        let plan = MachinePlan::from_definition(&raw, &policy()).unwrap();
        assert_eq!(plan.disks[0].format, DiskFormat::Raw);

        let plain = images.raw("plain.img");
        let error = MachinePlan::from_definition(
            &one_disk(&plain, &[("volatile.root.format", "qcow2")]),
            &policy(),
        )
        .unwrap_err();
        assert!(
            matches!(error, ConfigError::FormatChanged { .. }),
            "{error:?}"
        );
        let error = MachinePlan::from_definition(
            &one_disk(&plain, &[("volatile.root.format", "vmdk")]),
            &policy(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Invalid value for config key \"volatile.root.format\": \"vmdk\" is not \"raw\" or \
             \"qcow2\""
        );
    }

    #[test]
    fn formats_are_recorded_and_carried_across_updates() {
        let images = Images::new();
        let (first, second) = (images.raw("a.img"), images.raw("b.img"));
        let mut definition = one_disk(&first, &[("volatile.gone.format", "raw")]);
        let plan = MachinePlan::from_definition(&definition, &policy()).unwrap();
        assert!(plan.record_formats(&mut definition));
        assert!(!plan.record_formats(&mut definition));
        assert_eq!(
            definition.config.get("volatile.root.format").unwrap(),
            "raw"
        );
        assert!(!definition.config.contains_key("volatile.gone.format"));

        // An update that leaves the record out keeps it while the source is the same.
        let mut update = one_disk(&first, &[]);
        carry_formats(&definition, &mut update);
        assert_eq!(update.config.get("volatile.root.format").unwrap(), "raw");
        // A new source with the old record merely echoed is decided anew.
        let mut moved = one_disk(&second, &[("volatile.root.format", "raw")]);
        carry_formats(&definition, &mut moved);
        assert!(!moved.config.contains_key("volatile.root.format"));
        // A value the client chose stays.
        let mut chosen = one_disk(&first, &[("volatile.root.format", "qcow2")]);
        carry_formats(&definition, &mut chosen);
        assert_eq!(chosen.config.get("volatile.root.format").unwrap(), "qcow2");
    }
}
