//! An async client for the QEMU Machine Protocol (QMP), built for taking screenshots of VMs
//! without ever letting QEMU open a host path.
//!
//! How a connection works:
//! 1. [`Qmp::connect`] opens QEMU's QMP Unix socket, reads the greeting (QEMU's version and
//!    capabilities) and sends `qmp_capabilities` to leave negotiation mode. The whole handshake
//!    is bounded by [`Config::handshake_timeout`].
//! 2. A reader task owns the read half of the socket. It parses each line
//!    ([`message::parse`]; lines may be of any length up to [`Config::max_line_bytes`]), routes
//!    each reply to the caller waiting for its id, and broadcasts events ([`Qmp::events`]) to
//!    every subscriber without ever waiting for one.
//! 3. Callers on any number of tasks send commands concurrently ([`Qmp::execute`] and the typed
//!    bindings). Each command gets a fresh id; the write lock is held for one write only, never for
//!    a round trip, so a slow `screendump` does not hold up a `query-status`.
//! 4. Every call has a timeout ([`Config::command_timeout`], and [`Config::screendump_timeout`]
//!    for screendumps). A timed-out call returns [`Error::Timeout`]; its late reply is dropped.
//! 5. When the socket closes or the peer breaks the protocol, the reader fails every pending call
//!    with [`Error::Disconnected`] (carrying why), and every later call fails the same way at once.
//! 6. Descriptors travel with SCM_RIGHTS in the same write as `getfd` or `add-fd`; the guards in
//!    [`fds`] undo each pass. [`Qmp::screenshot`] builds on that: QEMU writes the image into a
//!    memfd we own (see [`screenshot`] for why `/proc/self/fd/N`).
//!
//! # Examples
//! ```no_run
//! use vgashot_qmp::{Config, Qmp, ScreenshotRequest};
//!
//! # async fn run() -> vgashot_qmp::Result<()> {
//! let qmp = Qmp::connect("/run/vm/qmp.sock", Config::default()).await?;
//! println!("QEMU {}", qmp.greeting().version.qemu);
//! let ppm = qmp.screenshot(&ScreenshotRequest::default()).await?;
//! assert!(ppm.starts_with(b"P6"));
//! # Ok(()) }
//! ```

use std::time::Duration;

mod capture_pool;
mod client;
mod commands;
mod error;
mod fdpass;
pub mod fds;
pub mod message;
pub mod screenshot;

pub use client::Qmp;
pub use commands::{
    AddFdInfo, FdsetFdInfo, FdsetInfo, RunState, Screendump, ScreendumpFormat, StatusInfo,
};
pub use error::{ConnectionLost, Error, ErrorClass, ProtocolError, QmpError, Result};
pub use message::{Event, Greeting, QemuVersion, VersionInfo};
pub use screenshot::ScreenshotRequest;

/// Timeouts and bounds of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Bound on connecting, reading the greeting and negotiating capabilities.
    pub handshake_timeout: Duration,
    /// Bound on every command but `screendump`.
    pub command_timeout: Duration,
    /// Bound on `screendump`, which waits for QEMU to render and write the image (upstream Incus
    /// uses 10 s too).
    pub screendump_timeout: Duration,
    /// Longest line accepted from QEMU. Replies can be large (`query-qmp-schema` is over 100 KiB),
    /// but a peer that never sends a newline must not exhaust memory.
    pub max_line_bytes: usize,
    /// Events queued per subscriber before the oldest are dropped for it.
    pub event_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // QEMU greets once its main loop runs, which on a loaded host (or nested KVM) can
            // take seconds after the socket appears; only a hung QEMU takes longer.
            handshake_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5),
            screendump_timeout: Duration::from_secs(10),
            max_line_bytes: 16 * 1024 * 1024,
            event_capacity: 256,
        }
    }
}
