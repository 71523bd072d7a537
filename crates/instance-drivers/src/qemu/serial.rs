//! The interactive serial console of a QEMU VM, bridged on demand.
//!
//! How the guest's serial port reaches the sessions, with QEMU opening no host path:
//! 1. QEMU starts with its serial port on the ring buffer of the console log
//!    ([`super::console`]), and nothing changes while nobody is attached.
//! 2. The first session makes a `socketpair`, hands one end to QEMU over QMP (`getfd`, by
//!    SCM_RIGHTS), moves what the ring holds into the log, and swaps the serial port's chardev
//!    for a socket on that descriptor (`chardev-change` to `{"type": "socket", "addr": {"type":
//!    "fd"}}`, which QEMU 7.2 accepts for `isa-serial`). The log is marked as bridged, so its
//!    periodic drains leave the port alone.
//! 3. A bridge task reads our end: every chunk goes to the console log and to every session
//!    ([`crate::serial`]); what the typist types is written to it. Reading and writing are
//!    separate, so a guest that reads nothing cannot stop its output from being read.
//! 4. When the last session ends, the task swaps the port back to a fresh ring buffer
//!    (`chardev-change` to `ringbuf`) and the log drains as before. If QEMU ends first, the
//!    socket closes and the task ends the sessions.
//! 5. A daemon that stopped while a bridge ran leaves the port on a closed socket; when a
//!    restarted daemon re-attaches, [`SerialConsole::restore_ring`] sees it in `query-chardev`
//!    and puts a ring buffer back.
//!
//! Attaching and detaching are serialised by one lock per VM, and a bridge that was replaced
//! meanwhile by a newer one leaves the port to it.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vgashot_qmp::Qmp;

use crate::error::{DriverError, Result};
use crate::qemu::cmdline::CONSOLE_CHARDEV_ID;
use crate::qemu::console::{ConsoleLog, RING_BYTES};
use crate::serial::{BridgeEnds, MAX_CONSOLE_SESSIONS, OUTPUT_CHUNK, SerialHub, SerialSession};

/// What `query-chardev` calls a ring buffer chardev.
const RINGBUF_FILENAME: &str = "ringbuf";

/// Names given to the descriptors passed with `getfd`, unique per daemon.
static NEXT_FD_NAME: AtomicU64 = AtomicU64::new(0);

/// One VM's serial console: its sessions, and the bridge while they are open.
#[derive(Debug)]
pub struct SerialConsole {
    hub: Arc<SerialHub>,
    log: Arc<ConsoleLog>,
    setup: Arc<tokio::sync::Mutex<()>>,
}

impl SerialConsole {
    /// The console of a VM whose log is `log`.
    pub fn new(log: Arc<ConsoleLog>) -> Self {
        Self {
            hub: SerialHub::new(),
            log,
            setup: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Opens a session on the running VM reached by `qmp`, bridging its serial port first when
    /// no session is open.
    pub async fn open(&self, qmp: &Qmp, force: bool) -> Result<SerialSession> {
        // Refuse before any QMP work when the console is full.
        if self.hub.is_full() {
            return Err(DriverError::ConsoleSessions {
                limit: MAX_CONSOLE_SESSIONS,
            });
        }
        let setup = Arc::clone(&self.setup).lock_owned().await;
        if let Some(session) = self.hub.join(force)? {
            return Ok(session);
        }
        let stream = self.bridge_port(qmp).await?;
        let (ends, session) = self.hub.bridge_and_join(force);
        self.log.set_bridged(true);
        drop(setup);
        tokio::spawn(run_bridge(
            stream,
            ends,
            qmp.clone(),
            Arc::clone(&self.hub),
            Arc::clone(&self.log),
            Arc::clone(&self.setup),
        ));
        Ok(session)
    }

    /// Steps 2: a socket pair, one end in QEMU as the serial port's chardev.
    async fn bridge_port(&self, qmp: &Qmp) -> Result<UnixStream> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|source| io_error("make a socket pair for", source))?;
        let name = format!("serial{}", NEXT_FD_NAME.fetch_add(1, Ordering::Relaxed));
        qmp.getfd(&name, theirs.as_fd())
            .await
            .map_err(|source| qmp_error("take the serial console's socket", source))?;
        drop(theirs);
        if let Err(error) = self.log.drain(qmp).await {
            tracing::debug!(%error, "could not drain the console before bridging it");
        }
        let backend = json!({
            "type": "socket",
            "data": {"addr": {"type": "fd", "data": {"str": name}}, "server": false},
        });
        if let Err(source) = change_chardev(qmp, backend).await {
            let _ = qmp.closefd(&name).await;
            return Err(source);
        }
        ours.set_nonblocking(true)
            .map_err(|source| io_error("configure", source))?;
        UnixStream::from_std(ours).map_err(|source| io_error("register", source))
    }

    /// Step 5: puts a ring buffer back under the serial port when an earlier daemon left it on
    /// a socket.
    pub async fn restore_ring(&self, qmp: &Qmp) {
        #[derive(Deserialize)]
        struct ChardevInfo {
            label: String,
            filename: String,
        }
        let chardevs: Vec<ChardevInfo> = match qmp
            .execute_typed::<(), _>("query-chardev", None, qmp.config().command_timeout)
            .await
        {
            Ok(chardevs) => chardevs,
            Err(error) => {
                tracing::debug!(%error, "could not list the chardevs");
                return;
            }
        };
        let on_socket = chardevs.iter().any(|chardev| {
            chardev.label == CONSOLE_CHARDEV_ID && chardev.filename != RINGBUF_FILENAME
        });
        if on_socket && let Err(error) = change_chardev(qmp, ring_backend()).await {
            tracing::warn!(%error, "could not give the serial console back to its log");
        }
    }
}

/// The chardev backend of the console log.
fn ring_backend() -> serde_json::Value {
    json!({"type": "ringbuf", "data": {"size": RING_BYTES}})
}

/// `chardev-change` of the serial port's chardev to `backend`.
async fn change_chardev(qmp: &Qmp, backend: serde_json::Value) -> Result<()> {
    let arguments = json!({"id": CONSOLE_CHARDEV_ID, "backend": backend});
    qmp.execute("chardev-change", Some(arguments))
        .await
        .map(|_| ())
        .map_err(|source| qmp_error("switch the serial console", source))
}

/// Steps 3 and 4: serves the sessions until the last leaves or QEMU closes the socket.
async fn run_bridge(
    stream: UnixStream,
    ends: BridgeEnds,
    qmp: Qmp,
    hub: Arc<SerialHub>,
    log: Arc<ConsoleLog>,
    setup: Arc<tokio::sync::Mutex<()>>,
) {
    let BridgeEnds {
        output,
        mut input,
        stop,
        generation,
    } = ends;
    let (mut reader, mut writer) = stream.into_split();
    let read = async {
        let mut buffer = vec![0; OUTPUT_CHUNK];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(length) => {
                    let chunk = Bytes::copy_from_slice(&buffer[..length]);
                    if let Err(error) = log.record(&chunk).await {
                        tracing::debug!(%error, "could not log serial output");
                    }
                    // No session listening is fine: the last one may be leaving.
                    let _ = output.send(chunk);
                }
            }
        }
    };
    let write = async {
        while let Some(typed) = input.recv().await {
            if writer.write_all(&typed).await.is_err() {
                break;
            }
        }
        // Keep reading the guest's output after a failed write; end with the reader.
        std::future::pending::<()>().await;
    };
    let stopped = tokio::select! {
        () = read => false,
        () = write => false,
        _ = stop => true,
    };
    let _setup = setup.lock().await;
    hub.bridge_ended(generation);
    if hub.is_bridged() {
        // A newer bridge owns the port now.
        return;
    }
    if stopped && let Err(error) = change_chardev(&qmp, ring_backend()).await {
        tracing::debug!(%error, "could not give the serial console back to its log");
    }
    log.set_bridged(false);
}

fn qmp_error(operation: &'static str, source: vgashot_qmp::Error) -> DriverError {
    DriverError::Qmp { operation, source }
}

fn io_error(operation: &'static str, source: std::io::Error) -> DriverError {
    DriverError::Io {
        operation,
        path: "serial console socket".into(),
        source,
    }
}
