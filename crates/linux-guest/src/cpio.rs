//! A writer of the `newc` cpio archives that the kernel unpacks as its initramfs.
//!
//! How an archive is laid out (the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`):
//! 1. Each entry is a 110-byte ASCII header, `070701` and thirteen 8-digit hexadecimal fields
//!    (inode, mode, uid, gid, link count, mtime, data size, device and rdev numbers, name size,
//!    checksum), then the NUL-terminated name, padded to a multiple of 4 bytes.
//! 2. The data follows, padded to a multiple of 4 bytes as well.
//! 3. An entry named `TRAILER!!!` ends the archive.
//!
//! Every entry is owned by root with mtime 0, so the same inputs give the same bytes. Device
//! nodes are just headers: writing one needs no privilege.

/// File type bits of `st_mode`.
const DIRECTORY: u32 = 0o040000;
const REGULAR: u32 = 0o100000;
const CHARACTER_DEVICE: u32 = 0o020000;

/// A newc archive being built in memory.
#[derive(Debug, Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (its parents must have been added first).
    pub fn directory(&mut self, path: &str, permissions: u32) {
        self.entry(path, DIRECTORY | permissions, 2, (0, 0), &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        self.entry(path, REGULAR | permissions, 1, (0, 0), data);
    }

    /// Adds a character device node with its major and minor numbers.
    pub fn character_device(&mut self, path: &str, permissions: u32, device: (u32, u32)) {
        self.entry(path, CHARACTER_DEVICE | permissions, 1, device, &[]);
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, links: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let size = u32::try_from(data.len()).expect("an initramfs file under 4 GiB");
        let name_size = u32::try_from(path.len() + 1).expect("a short path");
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            links,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name_size,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_headers_with_the_trailer_last() {
        let mut archive = Archive::new();
        archive.directory("dev", 0o755);
        archive.character_device("dev/console", 0o600, (5, 1));
        archive.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        // The first header: inode 1, a directory 0755, two links, name "dev" (4 bytes with NUL).
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001000041ed0000000000000000000000020000000000000000\
             0000000000000000000000000000000000000004\
             00000000"
        );
        assert_eq!(&bytes[110..114], b"dev\0");
        // The device node carries its numbers in rdev.
        let console = &bytes[116..226];
        assert_eq!(&console[78..94], b"0000000500000001");
        // The file's data follows its padded name.
        let init = bytes
            .windows(10)
            .position(|window| window == b"#!/bin/sh\n")
            .unwrap();
        assert_eq!(init % 4, 0);
        let trailer = bytes.len() - 124;
        assert_eq!(&bytes[trailer + 110..trailer + 121], b"TRAILER!!!\0");
    }
}
