//! The capture files of one connection: memfds registered in QEMU with `add-fd`, kept for reuse
//! by [`crate::screenshot`].
//!
//! The pool is a module of its own that knows nothing of the connection, so that the client can
//! own one per connection while the screenshot code, which drives the connection, builds on both
//! (neither imports the other's module back).

use std::fs::File;
use std::sync::{Mutex, MutexGuard};

use vgashot_stdext::MutexExt;

/// How many registered capture files a connection keeps for reuse.
pub const MAX_IDLE_CAPTURE_FILES: usize = 4;

/// A memfd registered in QEMU with `add-fd`: QEMU holds a descriptor of it in an fd set of its
/// own until `remove-fd`.
#[derive(Debug)]
pub(crate) struct CaptureFile {
    /// Our end of the file.
    pub(crate) memfd: File,
    /// The fd set QEMU filed it in; removing the set closes QEMU's descriptor.
    pub(crate) fdset_id: u64,
    /// QEMU's own number for the descriptor, reachable there as `/proc/self/fd/N`.
    pub(crate) qemu_fd: i64,
}

/// The idle capture files of one connection, at most [`MAX_IDLE_CAPTURE_FILES`].
#[derive(Debug, Default)]
pub(crate) struct CapturePool {
    idle: Mutex<Vec<CaptureFile>>,
}

impl CapturePool {
    fn idle(&self) -> MutexGuard<'_, Vec<CaptureFile>> {
        // Every operation on the list is a single push, pop or take, so a poisoned lock is
        // consistent.
        self.idle.lock_unpoisoned()
    }

    /// An idle file, if there is one.
    pub(crate) fn take(&self) -> Option<CaptureFile> {
        self.idle().pop()
    }

    /// Keeps `file` for reuse, or hands it back when the pool is full (the caller then removes
    /// it from QEMU).
    pub(crate) fn put(&self, file: CaptureFile) -> Option<CaptureFile> {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_CAPTURE_FILES {
            idle.push(file);
            None
        } else {
            Some(file)
        }
    }

    /// Every idle file, leaving the pool empty.
    pub(crate) fn drain(&self) -> Vec<CaptureFile> {
        std::mem::take(&mut *self.idle())
    }
}
