//! One daemon per directory: an exclusive `flock(2)` on `<dir>/daemon.lock`, held for the
//! daemon's life.
//!
//! How it works:
//! 1. [`DirectoryLock::acquire`] creates the directory if missing (mode 0700, as the store
//!    does) and opens `daemon.lock` in it, then asks for an exclusive lock without waiting. It
//!    is the first thing a daemon does, before the store removes a temporary file or a socket is
//!    bound, so a second daemon on the same directory touches nothing but this file.
//! 2. When the lock is taken, the daemon that holds it wrote its pid into the file: the error
//!    names it ([`DriverError::DirectoryInUse`]).
//! 3. The lock lives as long as the [`DirectoryLock`] value; the kernel drops it when the
//!    process ends in any way (even SIGKILL), so a crash never leaves a stale lock to clean up.
//!    The descriptor is close-on-exec (Rust opens every file so), so QEMU, which outlives the
//!    daemon, never inherits it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{DriverError, Result};

/// The lock file's name in the daemon's directory.
pub const LOCK_FILE: &str = "daemon.lock";
/// Mode of the directory when the lock creates it.
const DIR_MODE: u32 = 0o700;
/// Mode of the lock file: it holds a pid, no secret, but nobody else has business with it.
const FILE_MODE: u32 = 0o600;

/// The exclusive right of this process to a daemon directory, until dropped.
#[derive(Debug)]
pub struct DirectoryLock {
    _locked: Flock<File>,
    path: PathBuf,
}

impl DirectoryLock {
    /// Takes the lock of `dir`, or fails at once with [`DriverError::DirectoryInUse`] when
    /// another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let io_error = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| DriverError::Io {
                operation,
                path,
                source,
            }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io_error("create", dir))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok());
                return Err(DriverError::DirectoryInUse {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err((_, errno)) => return Err(io_error("lock", &path)(errno.into())),
        };
        let pid = format!("{}\n", std::process::id());
        locked
            .set_len(0)
            .and_then(|()| locked.rewind())
            .and_then(|()| locked.write_all(pid.as_bytes()))
            .map_err(io_error("write", &path))?;
        Ok(Self {
            _locked: locked,
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_the_same_directory_is_refused_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("vgashot");
        let first = DirectoryLock::acquire(&dir).unwrap();
        assert_eq!(first.path(), dir.join(LOCK_FILE));
        // flock(2) locks belong to open files: a second open conflicts even in this process.
        let error = DirectoryLock::acquire(&dir).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "another vgashot daemon (pid {}) is using {}",
                std::process::id(),
                dir.display()
            )
        );
        drop(first);
        let again = DirectoryLock::acquire(&dir).unwrap();
        drop(again);
    }
}
