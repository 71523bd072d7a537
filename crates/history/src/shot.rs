//! What the history holds: screenshots (rows), why each was taken, and whose they are.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{HistoryError, Result};

/// Why a screenshot was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The screen changed (the recorder).
    Change,
    /// The last screen before a stop through the API.
    Stop,
    /// The last screen before the guest shut down.
    Shutdown,
    /// The screen of a guest panic.
    Panic,
    /// The last screen recorded before QEMU died.
    Crash,
    /// Taken by a client (`POST .../screenshots`).
    Manual,
}

impl Reason {
    /// Every reason, in the order the API documents them.
    pub const ALL: [Reason; 6] = [
        Self::Change,
        Self::Stop,
        Self::Shutdown,
        Self::Panic,
        Self::Crash,
        Self::Manual,
    ];

    /// Its name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Change => "change",
            Self::Stop => "stop",
            Self::Shutdown => "shutdown",
            Self::Panic => "panic",
            Self::Crash => "crash",
            Self::Manual => "manual",
        }
    }

    /// The reason named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    pub(crate) fn from_column(name: String) -> Result<Self> {
        Self::parse(&name).ok_or(HistoryError::Corrupt {
            what: "reason",
            value: name,
        })
    }
}

/// Whose history: an instance's project and name as shown, and its identity, which stays the
/// same when it is renamed or restarted and differs for an instance deleted and made again
/// under the same name (the daemon uses its project and creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    /// The project.
    pub project: String,
    /// The name now.
    pub name: String,
    /// What stays the same over its life.
    pub identity: String,
}

/// A screenshot of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shot {
    /// Its id, never reused within a database.
    pub id: i64,
    /// When the screen showed it.
    pub taken_at: SystemTime,
    /// Why it was recorded.
    pub reason: Reason,
    /// The screen's width.
    pub width: u32,
    /// The screen's height.
    pub height: u32,
    /// The pixel hash, 32 hex digits (the live console's `ETag` of the same pixels, unquoted).
    pub hash: String,
    /// Kept by retention.
    pub pinned: bool,
    /// Free text.
    pub note: String,
    /// The stored image's size in bytes (shared with every shot of the same pixels).
    pub stored_bytes: u64,
}

/// A time as stored: microseconds since the Unix epoch (times before it are the epoch).
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A stored time back as a `SystemTime`.
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or_default())
}
