//! The qcow2 probe: what a disk image's first bytes say about its format.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::ConfigError;

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

/// The first bytes of a qcow2 image.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// How much of a disk is read: a qcow2 version 3 header up to its incompatible-feature bits.
const SNIFF_BYTES: usize = 80;
/// The qcow2 incompatible-feature bit for an external data file.
const QCOW2_EXTERNAL_DATA_FILE: u64 = 1 << 2;

/// Reads the start of the disk image `file` (opened from `path`): qcow2 by its magic, raw
/// otherwise. A qcow2 image that refers to another host file is refused (see the module
/// documentation of `cmdline`). Only called when a disk's format is decided (at create, or when
/// the device is added or changed), and on images already recorded as qcow2, whose header the
/// guest cannot write: never on a raw disk's guest-written content at start.
pub(crate) fn sniff_format(
    device: &str,
    path: &Path,
    file: &File,
) -> Result<DiskFormat, ConfigError> {
    let mut header = [0; SNIFF_BYTES];
    let mut filled = 0;
    while filled < SNIFF_BYTES {
        match file.read_at(&mut header[filled..], filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ConfigError::DiskSource {
                    device: device.to_owned(),
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    let header = &header[..filled];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::cmdline::testing::*;

    #[test]
    fn formats_are_sniffed_from_contents() {
        let images = Images::new();
        let sniff = |name: &str, bytes: &[u8]| {
            let path = images.write(name, bytes);
            sniff_format("d1", Path::new(&path), &File::open(&path).unwrap())
        };
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
}
