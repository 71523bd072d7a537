//! Why a definition cannot run: [`ConfigError`], in Incus's wording where Incus has one.

use std::io;
use std::path::PathBuf;

use crate::qemu::host_files::HostFileError;

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
    /// A host file (disk source, kernel, initrd) that the daemon's policy refuses or that
    /// cannot be opened.
    #[error("{what}: {source}")]
    HostFile {
        /// Whose file: `Disk device "root"` or `Invalid value for config key "..."`.
        what: String,
        /// Why.
        #[source]
        source: HostFileError,
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
    /// A recorded disk format (`volatile.<device>.format`) that is not one vgashot opens.
    #[error(
        "Invalid value for config key \"volatile.{device}.format\": {value:?} is not \"raw\" or \"qcow2\""
    )]
    InvalidFormat {
        /// The device.
        device: String,
        /// The value as given.
        value: String,
    },
    /// A disk recorded as qcow2 whose source no longer starts with a qcow2 header.
    #[error(
        "Disk device {device:?}: {} was recorded as qcow2 but no longer is one; set \
         \"volatile.{device}.format\" to \"raw\" to give it to the guest raw",
        path.display()
    )]
    FormatChanged {
        /// The device.
        device: String,
        /// The source.
        path: PathBuf,
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
