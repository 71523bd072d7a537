//! Guards for descriptors passed to QEMU, so QEMU accumulates nothing.
//!
//! A descriptor passed with `getfd` stays open in QEMU until `closefd`; one added with `add-fd`
//! stays until `remove-fd`. Each guard here undoes its pass: explicitly with `release().await`,
//! which reports errors, or on drop, which spawns the undo on the current tokio runtime (drop
//! cannot wait). Each `add-fd` guard owns a fresh fd set and removes the whole set, because QEMU
//! keeps an fd set listed in `query-fdsets` after its last descriptor is removed one by one.
//!
//! A guard holds a clone of the connection, so it keeps the connection open while it lives.

use std::os::fd::BorrowedFd;

use crate::client::Qmp;
use crate::commands::AddFdInfo;
use crate::error::Result;

/// Runs `undo` on the current runtime, if there is one; without one the process is exiting
/// and QEMU closes what this connection passed when the socket closes.
fn spawn_undo<F>(undo: F)
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(error) = undo.await {
                tracing::debug!(%error, "could not undo a descriptor pass");
            }
        });
    }
}

/// A descriptor QEMU holds under a name (`getfd`); `closefd` when released or dropped.
#[derive(Debug)]
#[must_use = "dropping the guard closes the descriptor in QEMU at once"]
pub struct PassedFd {
    qmp: Qmp,
    name: Option<String>,
}

impl PassedFd {
    /// The name QEMU knows the descriptor by, for commands that take an `fdname`.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// Closes the descriptor in QEMU and reports whether that worked.
    pub async fn release(mut self) -> Result<()> {
        match self.name.take() {
            Some(name) => self.qmp.closefd(&name).await,
            None => Ok(()),
        }
    }
}

impl Drop for PassedFd {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let qmp = self.qmp.clone();
            spawn_undo(async move { qmp.closefd(&name).await });
        }
    }
}

/// A descriptor in an fd set of its own (`add-fd`); the set is removed when released or dropped.
#[derive(Debug)]
#[must_use = "dropping the guard removes the descriptor from QEMU at once"]
pub struct FdSetEntry {
    qmp: Qmp,
    info: AddFdInfo,
    released: bool,
}

impl FdSetEntry {
    /// Where QEMU filed the descriptor.
    pub fn info(&self) -> AddFdInfo {
        self.info
    }

    /// `/proc/self/fd/N`: a path QEMU can open to reach the descriptor by its own number.
    ///
    /// Opening it makes a new open file description (own offset, `O_TRUNC` applies) on the same
    /// file, so each open starts at offset 0.
    pub fn proc_path(&self) -> String {
        format!("/proc/self/fd/{}", self.info.fd)
    }

    /// `/dev/fdset/N`: the fd-set path QEMU resolves by duplicating the descriptor (which then
    /// shares its offset and must have the access mode QEMU asks for).
    pub fn fdset_path(&self) -> String {
        format!("/dev/fdset/{}", self.info.fdset_id)
    }

    /// Removes the fd set from QEMU and reports whether that worked.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.qmp.remove_fd(self.info.fdset_id, None).await
    }
}

impl Drop for FdSetEntry {
    fn drop(&mut self) {
        if !self.released {
            let qmp = self.qmp.clone();
            let fdset_id = self.info.fdset_id;
            spawn_undo(async move { qmp.remove_fd(fdset_id, None).await });
        }
    }
}

impl Qmp {
    /// Passes `fd` to QEMU under `name` (`getfd`); the guard closes it again.
    pub async fn pass_fd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<PassedFd> {
        self.getfd(name, fd).await?;
        Ok(PassedFd {
            qmp: self.clone(),
            name: Some(name.to_owned()),
        })
    }

    /// Adds `fd` to a new fd set (`add-fd`); the guard removes the set again.
    pub async fn add_fd_guarded(
        &self,
        fd: BorrowedFd<'_>,
        opaque: Option<&str>,
    ) -> Result<FdSetEntry> {
        let info = self.add_fd(fd, None, opaque).await?;
        Ok(FdSetEntry {
            qmp: self.clone(),
            info,
            released: false,
        })
    }
}
