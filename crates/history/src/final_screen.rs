//! The last screen before a VM stopped, pinned as evidence.
//!
//! 1. Where QEMU still lived, the driver captured the screen before ending it: that frame is
//!    recorded pinned, with why the VM stopped.
//! 2. Where no frame could be taken (QEMU died), the latest recorded screen is recorded again,
//!    pinned, at the time of the crash, with the reason `crash`: the history says what the
//!    screen showed last, and retention keeps it.

use std::time::SystemTime;

use rusqlite::params;
use vgashot_screens::TimedFrame;

use crate::error::{HistoryError, Result};
use crate::shot::{InstanceRef, Reason, to_micros};
use crate::store::{History, NewShot};

/// Why a VM stopped, for its pinned final screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalReason {
    /// Stopped through the API.
    Stop,
    /// The guest shut down.
    Shutdown,
    /// The guest panicked.
    Panic,
    /// QEMU died.
    Crash,
}

impl From<FinalReason> for Reason {
    fn from(reason: FinalReason) -> Self {
        match reason {
            FinalReason::Stop => Self::Stop,
            FinalReason::Shutdown => Self::Shutdown,
            FinalReason::Panic => Self::Panic,
            FinalReason::Crash => Self::Crash,
        }
    }
}

impl History {
    /// Records the final screen of `instance`, pinned, with `reason`, and returns its id:
    /// `frame` when the driver could capture one, else (QEMU gone) the latest recorded screen
    /// again at this moment ([`HistoryError::NothingRecorded`] when there is none).
    pub fn record_final(
        &self,
        instance: &InstanceRef,
        reason: FinalReason,
        frame: Option<&TimedFrame>,
    ) -> Result<i64> {
        if let Some(timed) = frame {
            return self.record(
                instance,
                NewShot {
                    frame: &timed.frame,
                    hash: timed.frame.pixel_hash(),
                    taken_at: timed.captured_at,
                    reason: reason.into(),
                    pinned: true,
                    note: "",
                },
            );
        }
        let latest = self
            .latest(&instance.identity)?
            .ok_or(HistoryError::NothingRecorded)?;
        let connection = self.connection();
        connection.execute(
            "INSERT INTO shots (instance, frame, taken_at, reason, pinned, note) \
             SELECT instance, frame, ?2, ?3, 1, '' FROM shots WHERE id = ?1",
            params![
                latest.id,
                to_micros(SystemTime::now().max(latest.taken_at)),
                Reason::from(reason).as_str()
            ],
        )?;
        Ok(connection.last_insert_rowid())
    }
}
