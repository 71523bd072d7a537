//! The serial console log.
//!
//! How it works:
//! 1. QEMU's serial port writes into a ring buffer chardev (`-chardev ringbuf`), so a chatty guest
//!    can never fill the host's disk and QEMU never blocks on us.
//! 2. We drain the ring over QMP (`ringbuf-read`, base64 so binary output survives) into
//!    `console.log` in the instance's runtime directory: when the log is asked for, periodically
//!    while the VM runs (so little is lost when it dies), and before a requested stop.
//! 3. The file keeps the newest [`LOG_KEEP_BYTES`]: once it grows past twice that, it is rewritten
//!    (atomically) with its tail, so the log is bounded too. It outlives the VM, as Incus's does.
//! 4. While an interactive session bridges the serial port ([`super::serial`]), the port is
//!    not a ring buffer: the bridge writes what it reads into the file ([`ConsoleLog::record`])
//!    and the drains leave the port alone.
//! 5. The file is private (mode 0600, in the private run-time directory): the guest's console
//!    may print secrets. Only the daemon writes it; QEMU never opens it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use serde::{Deserialize, Serialize};
use vgashot_qmp::Qmp;

use crate::error::{DriverError, Result};
use crate::qemu::cmdline::CONSOLE_CHARDEV_ID;

/// The size of QEMU's ring buffer (a power of two, as QEMU requires).
pub const RING_BYTES: u32 = 1 << 20;
/// How much of the log the file keeps.
pub const LOG_KEEP_BYTES: u64 = 1 << 20;
/// Mode of the log file.
const LOG_MODE: u32 = 0o600;
/// How much one `ringbuf-read` asks for.
const READ_CHUNK: u32 = 64 * 1024;

#[derive(Serialize)]
struct RingbufRead<'a> {
    device: &'a str,
    size: u32,
    format: &'a str,
}

/// One instance's console log file, and the serialisation of its drains.
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
    /// Whether an interactive session bridges the serial port (no ring to drain then).
    bridged: AtomicBool,
}

impl ConsoleLog {
    /// The log at `path` (created on the first drain).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: tokio::sync::Mutex::new(()),
            bridged: AtomicBool::new(false),
        }
    }

    /// Records whether a session bridges the serial port, so the drains know there is no ring.
    pub fn set_bridged(&self, bridged: bool) {
        self.bridged.store(bridged, Ordering::SeqCst);
    }

    /// Appends output the bridge read from the serial port.
    pub async fn record(&self, chunk: &[u8]) -> Result<()> {
        let _drain = self.lock.lock().await;
        self.append(chunk)
    }

    /// Moves what QEMU's ring holds into the file (nothing while the port is bridged).
    pub async fn drain(&self, qmp: &Qmp) -> Result<()> {
        let _drain = self.lock.lock().await;
        if self.bridged.load(Ordering::SeqCst) {
            return Ok(());
        }
        loop {
            let chunk = read_ring(qmp).await?;
            if chunk.is_empty() {
                return Ok(());
            }
            self.append(&chunk)?;
        }
    }

    /// The whole log, oldest first (empty when nothing was logged).
    pub async fn read(&self) -> Result<Vec<u8>> {
        let _drain = self.lock.lock().await;
        match std::fs::read(&self.path) {
            Ok(log) => Ok(log),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(self.io_error("read", source)),
        }
    }

    /// Empties the log: what QEMU's ring holds (when `qmp` is given) and the file.
    pub async fn clear(&self, qmp: Option<&Qmp>) -> Result<()> {
        let _drain = self.lock.lock().await;
        if let Some(qmp) = qmp.filter(|_| !self.bridged.load(Ordering::SeqCst)) {
            while !read_ring(qmp).await?.is_empty() {}
        }
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(self.io_error("clear", error))
            }
            _ => Ok(()),
        }
    }

    fn append(&self, chunk: &[u8]) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .open(&self.path)
            .map_err(|source| self.io_error("open", source))?;
        file.write_all(chunk)
            .map_err(|source| self.io_error("append to", source))?;
        let length = file
            .metadata()
            .map_err(|source| self.io_error("measure", source))?
            .len();
        if length > 2 * LOG_KEEP_BYTES {
            self.keep_tail()?;
        }
        Ok(())
    }

    /// Rewrites the file with its newest [`LOG_KEEP_BYTES`], through a temporary file and a
    /// rename so a crash leaves either the old or the new log.
    fn keep_tail(&self) -> Result<()> {
        let log = std::fs::read(&self.path).map_err(|source| self.io_error("read", source))?;
        let keep = usize::try_from(LOG_KEEP_BYTES).unwrap_or(usize::MAX);
        let tail = &log[log.len().saturating_sub(keep)..];
        let temporary = self.path.with_extension("log.tmp");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(LOG_MODE)
            .open(&temporary)
            .and_then(|mut file| file.write_all(tail))
            .map_err(|source| self.io_error("write", source))?;
        std::fs::rename(&temporary, &self.path).map_err(|source| self.io_error("replace", source))
    }

    fn io_error(&self, operation: &'static str, source: std::io::Error) -> DriverError {
        DriverError::Io {
            operation,
            path: self.path.clone(),
            source,
        }
    }
}

/// Reads (and so removes) up to [`READ_CHUNK`] bytes from QEMU's ring.
async fn read_ring(qmp: &Qmp) -> Result<Vec<u8>> {
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Base64Text(String);

    let arguments = RingbufRead {
        device: CONSOLE_CHARDEV_ID,
        size: READ_CHUNK,
        format: "base64",
    };
    let timeout = qmp.config().command_timeout;
    let text: Base64Text = qmp
        .execute_typed("ringbuf-read", Some(&arguments), timeout)
        .await
        .map_err(|source| DriverError::Qmp {
            operation: "read the console ring buffer",
            source,
        })?;
    base64::engine::general_purpose::STANDARD
        .decode(text.0)
        .map_err(DriverError::ConsoleEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_log_keeps_its_newest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = ConsoleLog::new(dir.path().join("console.log"));
        assert!(log.read().await.unwrap().is_empty());
        let keep = LOG_KEEP_BYTES as usize;
        log.append(&vec![b'a'; keep]).unwrap();
        log.append(&vec![b'b'; keep]).unwrap();
        assert_eq!(log.read().await.unwrap().len(), 2 * keep);
        log.append(b"c").unwrap();
        let kept = log.read().await.unwrap();
        assert_eq!(kept.len(), keep);
        assert!(kept.ends_with(b"bc"));
        assert!(kept.starts_with(b"b"));
        log.clear(None).await.unwrap();
        assert!(log.read().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_log_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let log = ConsoleLog::new(path.clone());
        let mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        log.append(b"secret").unwrap();
        assert_eq!(mode(), 0o600);
        // Rewritten with its tail, it stays private.
        log.append(&vec![b'a'; 2 * LOG_KEEP_BYTES as usize])
            .unwrap();
        assert_eq!(mode(), 0o600);
    }
}
