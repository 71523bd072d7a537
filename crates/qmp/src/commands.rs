//! Typed bindings for the QMP commands vgashot uses. Anything else goes through
//! [`Qmp::execute`].

use std::os::fd::BorrowedFd;

use serde::{Deserialize, Serialize};

use crate::client::Qmp;
use crate::error::{Error, Result};
use crate::message::VersionInfo;

/// The VM's run state (`RunState` in the QAPI schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // The names are QEMU's; see qapi/run-state.json.
pub enum RunState {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
    /// A state newer than this client.
    #[serde(other)]
    Unknown,
}

/// The answer to `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// Whether the vCPUs are running.
    pub running: bool,
    /// The detailed run state.
    pub status: RunState,
}

/// Image formats `screendump` can write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreendumpFormat {
    /// Binary PPM (P6): raw RGB, the cheapest for QEMU to write. The only format before QEMU 7.1.
    #[default]
    Ppm,
    /// PNG, encoded by QEMU with libpng (QEMU 7.1 and later).
    Png,
}

/// Arguments of `screendump`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Screendump {
    /// Where QEMU writes the image, opened by QEMU itself.
    pub filename: String,
    /// The display device (its QOM id); the primary console when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The head of a multi-head device; QEMU requires `device` with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u32>,
    /// The image format. Left out when `None`, which QEMU older than 7.1 requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<ScreendumpFormat>,
}

/// The answer to `add-fd`: where QEMU filed the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct AddFdInfo {
    /// The fd set, usable as `/dev/fdset/N`.
    #[serde(rename = "fdset-id")]
    pub fdset_id: u64,
    /// The descriptor's number inside QEMU, usable as `/proc/self/fd/N` there.
    pub fd: i64,
}

/// One descriptor of an fd set, from `query-fdsets`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FdsetFdInfo {
    /// The descriptor's number inside QEMU.
    pub fd: i64,
    /// The caller's note, if one was given to `add-fd`.
    pub opaque: Option<String>,
}

/// One fd set, from `query-fdsets`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FdsetInfo {
    /// The set's id.
    #[serde(rename = "fdset-id")]
    pub fdset_id: u64,
    /// The descriptors in it that are not removed.
    pub fds: Vec<FdsetFdInfo>,
}

#[derive(Serialize)]
struct FdName<'a> {
    fdname: &'a str,
}

#[derive(Serialize)]
struct AddFd<'a> {
    #[serde(rename = "fdset-id", skip_serializing_if = "Option::is_none")]
    fdset_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opaque: Option<&'a str>,
}

#[derive(Serialize)]
struct RemoveFd {
    #[serde(rename = "fdset-id")]
    fdset_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<i64>,
}

/// An empty result (`{}`), which QEMU returns for commands that only act.
#[derive(Deserialize)]
struct Empty {}

impl Qmp {
    async fn act<A: Serialize + ?Sized>(&self, command: &str, arguments: Option<&A>) -> Result<()> {
        let timeout = self.config().command_timeout;
        self.execute_typed::<A, Empty>(command, arguments, timeout)
            .await?;
        Ok(())
    }

    /// `query-version`: QEMU's version.
    pub async fn query_version(&self) -> Result<VersionInfo> {
        let timeout = self.config().command_timeout;
        self.execute_typed::<(), _>("query-version", None, timeout)
            .await
    }

    /// `query-status`: whether the VM runs, and its run state.
    pub async fn query_status(&self) -> Result<StatusInfo> {
        let timeout = self.config().command_timeout;
        self.execute_typed::<(), _>("query-status", None, timeout)
            .await
    }

    /// `screendump`: QEMU writes the console's image to `arguments.filename`. Bounded by
    /// [`crate::Config::screendump_timeout`].
    ///
    /// QEMU opens the file itself; to keep it away from host paths use [`Qmp::screenshot`],
    /// which hands it a descriptor instead.
    pub async fn screendump(&self, arguments: &Screendump) -> Result<()> {
        let timeout = self.config().screendump_timeout;
        self.execute_typed::<_, Empty>("screendump", Some(arguments), timeout)
            .await?;
        Ok(())
    }

    /// `stop`: pauses the vCPUs.
    pub async fn stop(&self) -> Result<()> {
        self.act::<()>("stop", None).await
    }

    /// `cont`: resumes the vCPUs.
    pub async fn cont(&self) -> Result<()> {
        self.act::<()>("cont", None).await
    }

    /// `system_powerdown`: presses the ACPI power button; the guest decides what to do.
    pub async fn system_powerdown(&self) -> Result<()> {
        self.act::<()>("system_powerdown", None).await
    }

    /// `quit`: QEMU exits at once.
    ///
    /// QEMU may close the socket before its reply is read; that counts as success, since exiting
    /// is what was asked.
    pub async fn quit(&self) -> Result<()> {
        match self.act::<()>("quit", None).await {
            Err(Error::Disconnected(_)) | Ok(()) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `getfd`: passes `fd` to QEMU under `name`. Prefer [`Qmp::pass_fd`], which closes it again.
    pub async fn getfd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.execute_with_fd::<_, Empty>("getfd", &FdName { fdname: name }, fd)
            .await?;
        Ok(())
    }

    /// `closefd`: closes the descriptor QEMU holds under `name`.
    pub async fn closefd(&self, name: &str) -> Result<()> {
        self.act("closefd", Some(&FdName { fdname: name })).await
    }

    /// `add-fd`: passes `fd` into an fd set (a new one when `fdset_id` is `None`). Prefer
    /// [`Qmp::add_fd_guarded`], which removes it again.
    pub async fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<u64>,
        opaque: Option<&str>,
    ) -> Result<AddFdInfo> {
        self.execute_with_fd("add-fd", &AddFd { fdset_id, opaque }, fd)
            .await
    }

    /// `remove-fd`: removes one descriptor of a set, or the whole set when `fd` is `None`.
    ///
    /// QEMU closes a removed descriptor once nothing it opened from the set is still open.
    pub async fn remove_fd(&self, fdset_id: u64, fd: Option<i64>) -> Result<()> {
        self.act("remove-fd", Some(&RemoveFd { fdset_id, fd }))
            .await
    }

    /// `query-fdsets`: the fd sets QEMU holds.
    pub async fn query_fdsets(&self) -> Result<Vec<FdsetInfo>> {
        let timeout = self.config().command_timeout;
        self.execute_typed::<(), _>("query-fdsets", None, timeout)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn screendump_leaves_out_what_is_not_set() {
        let bare = Screendump {
            filename: "/dev/fdset/1".into(),
            device: None,
            head: None,
            format: None,
        };
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({"filename": "/dev/fdset/1"})
        );
        let full = Screendump {
            filename: "/proc/self/fd/9".into(),
            device: Some("video0".into()),
            head: Some(1),
            format: Some(ScreendumpFormat::Png),
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({"filename": "/proc/self/fd/9", "device": "video0", "head": 1, "format": "png"})
        );
    }

    #[test]
    fn run_states_decode_with_a_fallback() {
        let status: StatusInfo = serde_json::from_value(
            json!({"running": false, "status": "guest-panicked", "singlestep": false}),
        )
        .unwrap();
        assert_eq!(status.status, RunState::GuestPanicked);
        let status: StatusInfo =
            serde_json::from_value(json!({"running": false, "status": "from-the-future"})).unwrap();
        assert_eq!(status.status, RunState::Unknown);
    }

    #[test]
    fn fd_arguments_use_qemus_names() {
        assert_eq!(
            serde_json::to_value(AddFd {
                fdset_id: None,
                opaque: Some("screendump")
            })
            .unwrap(),
            json!({"opaque": "screendump"})
        );
        assert_eq!(
            serde_json::to_value(RemoveFd {
                fdset_id: 3,
                fd: None
            })
            .unwrap(),
            json!({"fdset-id": 3})
        );
    }
}
