//! Guards for descriptors passed to QEMU, so QEMU accumulates nothing.
//!
//! A descriptor passed with `getfd` stays open in QEMU until `closefd`; one added with `add-fd`
//! stays until `remove-fd`. Each guard here undoes its pass: explicitly with `release().await`,
//! which reports errors, or on drop, which spawns the undo on the current tokio runtime (drop
//! cannot wait). Each `add-fd` guard owns a fresh fd set and removes the whole set, because QEMU
//! keeps an fd set listed in `query-fdsets` after its last descriptor is removed one by one.
//!
//! A guard holds a clone of the connection, so it keeps the connection open while it lives.
//!
//! Every pass is undone even when the caller's future is dropped midway (cancelled, or timed out
//! by the caller): the `getfd` guard is armed before the round trip (we chose the name, so its
//! `closefd` can follow at once), and `add-fd`, whose set number only QEMU's reply tells, runs in a
//! task of its own ([`register_detached`]) that removes the set when nobody waits for it any more.

use std::os::fd::{AsFd, BorrowedFd};

use tokio::sync::oneshot;

use crate::client::Qmp;
use crate::commands::AddFdInfo;
use crate::error::{Error, Result};

/// Runs `undo` on the current runtime, if there is one; without one the process is exiting
/// and QEMU closes what this connection passed when the socket closes.
pub(crate) fn spawn_undo<F>(undo: F)
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

/// Runs `register` (a round trip that makes QEMU hold something of ours) in a task of its own, so
/// that it completes even when the caller stops waiting, and returns what it registered. When the
/// caller is gone by then, what was registered goes to `orphaned`, which undoes it or keeps it
/// for reuse. `None` when the task could not finish (the runtime is shutting down).
pub(crate) async fn register_detached<T, R, O>(register: R, orphaned: O) -> Option<Result<T>>
where
    T: Send + 'static,
    R: Future<Output = Result<T>> + Send + 'static,
    O: FnOnce(T) + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    tokio::spawn(async move {
        if let Err(Ok(registered)) = sender.send(register.await) {
            orphaned(registered);
        }
    });
    receiver.await.ok()
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
        // Armed before the round trip: if this future is dropped midway, the guard's `closefd`
        // reaches QEMU after the `getfd` (commands run in order), or fails harmlessly when the
        // `getfd` was never sent.
        let mut guard = PassedFd {
            qmp: self.clone(),
            name: Some(name.to_owned()),
        };
        match self.getfd(name, fd).await {
            Ok(()) => Ok(guard),
            // QEMU refused: it holds nothing under the name.
            Err(error @ Error::Command { .. }) => {
                guard.name = None;
                Err(error)
            }
            // Timed out or disconnected: QEMU may still take the descriptor; the guard closes it.
            Err(error) => Err(error),
        }
    }

    /// Adds `fd` to a new fd set (`add-fd`); the guard removes the set again.
    pub async fn add_fd_guarded(
        &self,
        fd: BorrowedFd<'_>,
        opaque: Option<&str>,
    ) -> Result<FdSetEntry> {
        let owned = fd
            .try_clone_to_owned()
            .map_err(|source| Error::PassDescriptor {
                operation: "duplicate it",
                source,
            })?;
        let (qmp, opaque) = (self.clone(), opaque.map(str::to_owned));
        let register = async move {
            qmp.add_fd(owned.as_fd(), None, opaque.as_deref())
                .await
                .map(|info| FdSetEntry {
                    qmp,
                    info,
                    released: false,
                })
        };
        // An entry nobody waits for is dropped, and its drop removes the set.
        register_detached(register, drop)
            .await
            .unwrap_or_else(|| Err(Error::runtime_stopping()))
    }
}
