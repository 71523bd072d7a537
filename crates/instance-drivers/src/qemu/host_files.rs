//! Which host files a VM may be given, and opening them for QEMU without QEMU resolving a path.
//!
//! A client names host files (a disk's `source`, `vgashot.boot.kernel`, `vgashot.boot.initrd`);
//! the daemon, not QEMU, opens them, and hands QEMU the descriptors. How a path is checked and
//! opened, by [`HostFilePolicy::open`]:
//! 1. It must be absolute and plain (no `.` or `..` components, no empty ones), inside one of
//!    the configured image directories ([`HostFilePolicy::image_dirs`]) and outside the daemon's
//!    own directories ([`HostFilePolicy::private_dirs`]: its keys, trust store, sockets).
//! 2. It is walked from `/` one component at a time with `openat(O_PATH | O_NOFOLLOW)`: a
//!    symbolic link anywhere in it is refused, so the lexical checks of step 1 hold for the
//!    file actually reached, and a link swapped in later is refused the next time.
//! 3. The last component is opened with `O_PATH` too and `fstat`ed before anything reads it:
//!    only a regular file (or a block device, when the daemon allows devices) is accepted, so a
//!    FIFO, a socket or a character device is never opened for reading, and `open(2)` can never
//!    block on one.
//! 4. Only then is that very inode opened for I/O, through `/proc/self/fd/N` of the `O_PATH`
//!    descriptor (which names the inode itself, resolving nothing), with `O_NONBLOCK |
//!    O_CLOEXEC`, and checked again to be the same file. The descriptor keeps `O_CLOEXEC` until the launcher hands it to QEMU.
//!
//! Every step is blocking file-system work: callers run it off the async workers.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

/// Where images live when the daemon is not told otherwise: a directory only an administrator
/// creates, so nothing on the host is exposed until someone decides which directory is.
pub const DEFAULT_IMAGE_DIR: &str = "/srv/vgashot/images";

/// Which host files VMs may be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFilePolicy {
    /// Directories whose files (at any depth) may be disks, kernels and initrds.
    pub image_dirs: Vec<PathBuf>,
    /// Directories whose files may never be given to a VM, even inside an image directory: the
    /// daemon's state (keys, trust store, definitions) and run-time files.
    pub private_dirs: Vec<PathBuf>,
    /// Whether block devices may be disks (regular files always may).
    pub allow_block_devices: bool,
}

impl Default for HostFilePolicy {
    fn default() -> Self {
        Self {
            image_dirs: vec![PathBuf::from(DEFAULT_IMAGE_DIR)],
            private_dirs: Vec::new(),
            allow_block_devices: false,
        }
    }
}

/// How a file is opened for QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// Why a host file cannot be given to a VM.
#[derive(Debug, thiserror::Error)]
pub enum HostFileError {
    /// Not an absolute path, or one with `.`, `..` or empty components.
    #[error("{} is not a plain absolute path (no \".\" or \"..\" components)", path.display())]
    NotPlain {
        /// The path.
        path: PathBuf,
    },
    /// Outside every image directory.
    #[error(
        "{} is not inside an image directory ({}); start the daemon with --image-dir DIR \
         (or VGASHOT_IMAGE_DIRS=DIR:DIR) to allow another directory",
        path.display(), list(dirs)
    )]
    NotAllowed {
        /// The path.
        path: PathBuf,
        /// The image directories.
        dirs: Vec<PathBuf>,
    },
    /// Inside one of the daemon's own directories.
    #[error("{} is inside the daemon's own directory {}, which VMs may not use", path.display(), dir.display())]
    Private {
        /// The path.
        path: PathBuf,
        /// The directory.
        dir: PathBuf,
    },
    /// A symbolic link on the way.
    #[error("{} is a symbolic link, which vgashot does not follow; name the file itself", link.display())]
    Symlink {
        /// The link (the path up to it).
        link: PathBuf,
    },
    /// A component on the way that is not a directory.
    #[error("{} is not a directory", component.display())]
    NotADirectory {
        /// The path up to that component.
        component: PathBuf,
    },
    /// Something other than a regular file (or an allowed block device).
    #[error("{} is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is, with its article: `"a FIFO"`, `"a socket"`, ...
        kind: &'static str,
    },
    /// A block device where the daemon does not allow devices.
    #[error(
        "{} is a block device; start the daemon with --allow-block-devices to use devices as disks",
        path.display()
    )]
    BlockDevice {
        /// The path.
        path: PathBuf,
    },
    /// The file changed between the check and the open.
    #[error("{} changed while it was being opened", path.display())]
    Changed {
        /// The path.
        path: PathBuf,
    },
    /// The file system refused.
    #[error("cannot open {}", path.display())]
    Io {
        /// The path (up to where it failed).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `dirs` as `a, b`.
fn list(dirs: &[PathBuf]) -> String {
    let names: Vec<_> = dirs.iter().map(|dir| dir.display().to_string()).collect();
    names.join(", ")
}

impl HostFilePolicy {
    /// Opens `path` for QEMU with `access`, if the policy allows it (see the module
    /// documentation). Blocking.
    pub fn open(&self, path: &Path, access: Access) -> Result<File, HostFileError> {
        let pinned = self.pin(path)?;
        let mut flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        flags |= match access {
            Access::ReadOnly => OFlag::O_RDONLY,
            Access::ReadWrite => OFlag::O_RDWR,
        };
        let magic = format!("/proc/self/fd/{}", pinned.fd.as_raw_fd());
        // The magic link names the pinned inode itself: nothing is resolved again.
        let opened = nix::fcntl::open(magic.as_str(), flags & !OFlag::O_NOFOLLOW, Mode::empty())
            .map_err(|errno| io_error(path, errno))?;
        let again = fstat(&opened).map_err(|errno| io_error(path, errno))?;
        if (again.st_dev, again.st_ino) != (pinned.stat.st_dev, pinned.stat.st_ino) {
            return Err(HostFileError::Changed {
                path: path.to_owned(),
            });
        }
        Ok(File::from(opened))
    }

    /// Checks `path` as [`HostFilePolicy::open`] would, without opening it for I/O. Blocking.
    pub fn check(&self, path: &Path) -> Result<(), HostFileError> {
        self.pin(path).map(drop)
    }

    /// Steps 1-3: the path checked, walked and its file pinned by an `O_PATH` descriptor.
    fn pin(&self, path: &Path) -> Result<Pinned, HostFileError> {
        let plain = path.is_absolute()
            && path
                .components()
                .skip(1)
                .all(|component| matches!(component, Component::Normal(_)))
            && !path.as_os_str().as_encoded_bytes().ends_with(b"/");
        if !plain {
            return Err(HostFileError::NotPlain {
                path: path.to_owned(),
            });
        }
        if let Some(dir) = self.private_dirs.iter().find(|dir| path.starts_with(dir)) {
            return Err(HostFileError::Private {
                path: path.to_owned(),
                dir: dir.clone(),
            });
        }
        if !self.image_dirs.iter().any(|dir| path.starts_with(dir)) {
            return Err(HostFileError::NotAllowed {
                path: path.to_owned(),
                dirs: self.image_dirs.clone(),
            });
        }
        let pinned = walk(path)?;
        let kind = SFlag::from_bits_truncate(pinned.stat.st_mode) & SFlag::S_IFMT;
        match kind {
            SFlag::S_IFREG => Ok(pinned),
            SFlag::S_IFBLK if self.allow_block_devices => Ok(pinned),
            SFlag::S_IFBLK => Err(HostFileError::BlockDevice {
                path: path.to_owned(),
            }),
            other => Err(HostFileError::NotAFile {
                path: path.to_owned(),
                kind: kind_name(other),
            }),
        }
    }
}

/// A file held by an `O_PATH` descriptor, with what `fstat` said of it.
struct Pinned {
    fd: OwnedFd,
    stat: FileStat,
}

/// Walks an absolute, plain `path` from `/` without following any symbolic link.
fn walk(path: &Path) -> Result<Pinned, HostFileError> {
    let walk_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut current = nix::fcntl::open("/", walk_flags | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|errno| io_error(Path::new("/"), errno))?;
    let mut reached = PathBuf::from("/");
    let mut components = path.components().skip(1).peekable();
    while let Some(component) = components.next() {
        reached.push(component);
        let next = openat(&current, component.as_os_str(), walk_flags, Mode::empty())
            .map_err(|errno| io_error(&reached, errno))?;
        let stat = fstat(&next).map_err(|errno| io_error(&reached, errno))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            return Err(HostFileError::Symlink { link: reached });
        }
        if components.peek().is_none() {
            return Ok(Pinned { fd: next, stat });
        }
        if kind != SFlag::S_IFDIR {
            return Err(HostFileError::NotADirectory { component: reached });
        }
        current = next;
    }
    // `pin` only walks paths with at least one component after `/`.
    Err(HostFileError::NotPlain {
        path: path.to_owned(),
    })
}

fn io_error(path: &Path, errno: Errno) -> HostFileError {
    HostFileError::Io {
        path: path.to_owned(),
        source: errno.into(),
    }
}

/// A file type in words, with its article.
fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "a special file",
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use super::*;

    /// A policy allowing one temporary image directory, with a private directory inside it.
    struct Fixture {
        dir: tempfile::TempDir,
        policy: HostFilePolicy,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let images = dir.path().join("images");
            std::fs::create_dir_all(images.join("private")).unwrap();
            let policy = HostFilePolicy {
                image_dirs: vec![images.clone()],
                private_dirs: vec![images.join("private")],
                allow_block_devices: false,
            };
            Self { dir, policy }
        }

        fn images(&self) -> PathBuf {
            self.policy.image_dirs[0].clone()
        }

        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.images().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    #[test]
    fn a_regular_file_in_an_image_directory_opens_read_write_and_read_only() {
        let fixture = Fixture::new();
        let path = fixture.file("disk.img", b"sector");
        let mut file = fixture.policy.open(&path, Access::ReadWrite).unwrap();
        file.write_all(b"S").unwrap();
        let mut read = String::new();
        fixture
            .policy
            .open(&path, Access::ReadOnly)
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "Sector");
        assert!(
            fixture
                .policy
                .open(&path, Access::ReadOnly)
                .unwrap()
                .write_all(b"x")
                .is_err()
        );
        // The descriptor is close-on-exec until the launcher hands it over.
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & nix::fcntl::FdFlag::FD_CLOEXEC.bits(), 0);
        let nested = fixture.images().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("deep.img"), b"").unwrap();
        fixture.policy.check(&nested.join("deep.img")).unwrap();
    }

    #[test]
    fn paths_outside_the_image_directories_are_refused_with_the_way_to_allow_them() {
        let fixture = Fixture::new();
        let error = fixture.policy.check(Path::new("/etc/shadow")).unwrap_err();
        assert!(
            matches!(error, HostFileError::NotAllowed { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "/etc/shadow is not inside an image directory ({}); start the daemon with \
                 --image-dir DIR (or VGASHOT_IMAGE_DIRS=DIR:DIR) to allow another directory",
                fixture.images().display()
            )
        );
        let sibling = fixture.dir.path().join("images2/disk.img");
        assert!(matches!(
            fixture.policy.check(&sibling),
            Err(HostFileError::NotAllowed { .. })
        ));
        let private = fixture.file("private/server.key", b"key");
        assert!(matches!(
            fixture.policy.check(&private),
            Err(HostFileError::Private { .. })
        ));
        for path in ["disk.img", "/x/../etc/shadow"] {
            assert!(matches!(
                fixture.policy.check(Path::new(path)),
                Err(HostFileError::NotPlain { .. })
            ));
        }
        let dotted = PathBuf::from(format!("{}/../../etc/shadow", fixture.images().display()));
        assert!(matches!(
            fixture.policy.check(&dotted),
            Err(HostFileError::NotPlain { .. })
        ));
        assert!(matches!(
            fixture.policy.check(&fixture.images().join("missing.img")),
            Err(HostFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn symbolic_links_are_refused_in_every_component() {
        let fixture = Fixture::new();
        let target = fixture.file("real.img", b"");
        let link = fixture.images().join("link.img");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = fixture.policy.check(&link).unwrap_err();
        assert!(
            matches!(&error, HostFileError::Symlink { link: l } if *l == link),
            "{error:?}"
        );
        std::fs::create_dir(fixture.images().join("real")).unwrap();
        std::fs::write(fixture.images().join("real/disk.img"), b"").unwrap();
        std::os::unix::fs::symlink("real", fixture.images().join("dir")).unwrap();
        let error = fixture
            .policy
            .check(&fixture.images().join("dir/disk.img"))
            .unwrap_err();
        assert!(
            matches!(&error, HostFileError::Symlink { link } if link.ends_with("images/dir")),
            "{error:?}"
        );
        // A link to a directory outside cannot smuggle a file in either.
        std::os::unix::fs::symlink("/etc", fixture.images().join("etc")).unwrap();
        assert!(matches!(
            fixture.policy.check(&fixture.images().join("etc/shadow")),
            Err(HostFileError::Symlink { .. })
        ));
    }

    #[test]
    fn fifos_sockets_and_devices_are_refused_without_blocking() {
        let fixture = Fixture::new();
        let fifo = fixture.images().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::S_IRWXU).unwrap();
        let started = Instant::now();
        let error = fixture.policy.open(&fifo, Access::ReadWrite).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            error.to_string(),
            format!("{} is a FIFO, not a regular file", fifo.display())
        );
        let socket = fixture.images().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert!(matches!(
            fixture.policy.check(&socket),
            Err(HostFileError::NotAFile {
                kind: "a socket",
                ..
            })
        ));
        assert!(matches!(
            fixture.policy.check(fixture.dir.path()),
            Err(HostFileError::NotAllowed { .. })
        ));
        let dev = HostFilePolicy {
            image_dirs: vec!["/dev".into()],
            ..HostFilePolicy::default()
        };
        assert!(matches!(
            dev.check(Path::new("/dev/null")),
            Err(HostFileError::NotAFile {
                kind: "a character device",
                ..
            })
        ));
        let directory = fixture.images().join("a");
        std::fs::create_dir(&directory).unwrap();
        assert!(matches!(
            fixture.policy.check(&directory),
            Err(HostFileError::NotAFile {
                kind: "a directory",
                ..
            })
        ));
        let file = fixture.file("file", b"");
        assert!(matches!(
            fixture.policy.check(&file.join("below")),
            Err(HostFileError::NotADirectory { .. })
        ));
    }

    #[test]
    fn block_devices_only_where_allowed() {
        // A block device node of the loop driver, made in the test directory (root only).
        let fixture = Fixture::new();
        let node = fixture.images().join("loop");
        let made = nix::sys::stat::mknod(
            &node,
            SFlag::S_IFBLK,
            Mode::S_IRUSR | Mode::S_IWUSR,
            nix::sys::stat::makedev(7, 0),
        );
        if made.is_err() {
            eprintln!("skipped: cannot make a block device node here");
            return;
        }
        let error = fixture.policy.check(&node).unwrap_err();
        assert!(
            matches!(error, HostFileError::BlockDevice { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("--allow-block-devices"));
        let allowing = HostFilePolicy {
            allow_block_devices: true,
            ..fixture.policy.clone()
        };
        allowing.check(&node).unwrap();
    }
}
