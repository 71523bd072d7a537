//! Values of config keys, parsed in Incus's syntax (`limits.memory: 512MiB`).

use std::path::PathBuf;

use super::ConfigError;
use super::keys;
use crate::definition::InstanceDefinition;
use crate::qemu::host_files::HostFilePolicy;

/// vCPUs when `limits.cpu` is not set (Incus's VM default).
pub(super) const DEFAULT_VCPUS: u32 = 1;
/// The most vCPUs `limits.cpu` accepts.
pub(super) const MAX_VCPUS: u32 = 64;
/// Memory when `limits.memory` is not set (Incus's VM default).
pub(super) const DEFAULT_MEMORY_BYTES: u64 = GIB;
/// Less than this and SeaBIOS plus any guest kernel has no room.
pub(super) const MIN_MEMORY_BYTES: u64 = 32 * MIB;
/// The most heads `vgashot.vga.heads` accepts: virtio-gpu's limit (QEMU refuses more).
pub const MAX_HEADS: u32 = 16;
/// One mebibyte, QEMU's `-m` unit.
pub(crate) const MIB: u64 = 1 << 20;
/// One gibibyte.
pub(super) const GIB: u64 = 1 << 30;

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

/// Guest networking (config key `vgashot.network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// No network card (`none`, the default).
    None,
    /// A virtio-net card behind QEMU's user-mode NAT (`user`): outbound access, no inbound.
    User,
}

/// `limits.cpu`: a number of vCPUs; Incus's pinning forms (`0-3`, `1,2`) are refused.
pub(super) fn parse_vcpus(value: &str) -> Result<u32, ConfigError> {
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
pub(super) fn parse_memory(value: &str) -> Result<u64, ConfigError> {
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
    let bytes = parse_size(value).ok_or_else(|| {
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

/// A size in Incus's syntax: bytes, or a number followed by one of [`MEMORY_UNITS`].
pub(super) fn parse_size(value: &str) -> Option<u64> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits);
    MEMORY_UNITS
        .iter()
        .find(|(unit, _)| *unit == suffix)
        .zip(number.parse::<u64>().ok())
        .and_then(|((_, multiplier), number)| number.checked_mul(*multiplier))
}

/// `vgashot.vga`.
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

pub(super) fn parse_vga(value: &str) -> Result<VgaModel, ConfigError> {
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
pub(super) fn parse_heads(value: &str) -> Result<u32, ConfigError> {
    parse_in_range(value, 1..=MAX_HEADS).ok_or_else(|| ConfigError::InvalidValue {
        key: keys::VGA_HEADS,
        value: value.to_owned(),
        reason: "is not a number of heads from 1 to 16",
    })
}

/// `vgashot.network`.
pub(super) fn parse_network(value: &str) -> Result<NetworkMode, ConfigError> {
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

/// `vgashot.boot.kernel` and `vgashot.boot.initrd`: an absolute path of a file `policy` allows.
pub(super) fn boot_file(
    key: &'static str,
    value: &str,
    policy: &HostFilePolicy,
) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(ConfigError::InvalidValue {
            key,
            value: value.to_owned(),
            reason: "is not an absolute path",
        });
    }
    policy
        .check(&path)
        .map_err(|source| ConfigError::HostFile {
            what: format!("Invalid value for config key {key:?}"),
            source,
        })?;
    Ok(path)
}

/// A decimal number within `range`; `None` for anything else (signs, spaces, overflow).
pub(super) fn parse_in_range(value: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    value
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| value.parse().ok())
        .flatten()
        .filter(|number| range.contains(number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::cmdline::testing::*;

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
    fn vga_and_heads() {
        let display = |config: &[(&str, &str)]| {
            let plan = plan(config).unwrap();
            let args = strings(plan.qemu_args("v1", 4096, &descriptors(&plan)));
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
                    "VGA,id=video0".into(),
                    "-vnc".into(),
                    "none".into()
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
                    "virtio-vga,id=video0,max_outputs=1".into(),
                    "-vnc".into(),
                    "none".into()
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
            strings(user.qemu_args("v1", 4096, &descriptors(&user)))
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
}
