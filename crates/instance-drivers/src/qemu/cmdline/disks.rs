//! Disk devices: validated, with their formats, in Incus's boot order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::parse::parse_in_range;
use super::qcow2::sniff_format;
use crate::definition::DeviceConfig;

/// The keys a disk device may have (`pool` only to refuse it with a clear error).
const DISK_KEYS: &[&str] = &[
    "type",
    "source",
    "path",
    "readonly",
    "boot.priority",
    "pool",
];

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
    devices: &BTreeMap<String, DeviceConfig>,
) -> Result<Vec<DiskPlan>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::qemu::cmdline::MachinePlan;
    use crate::qemu::cmdline::testing::*;

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
}
