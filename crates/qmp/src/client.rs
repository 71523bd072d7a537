//! The connection: handshake, a writer shared by all callers, a reader task that routes replies by
//! id and fans events out, and per-command timeouts.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use vgashot_stdext::MutexExt;

use crate::capture_pool::CapturePool;
use crate::error::{ConnectionLost, Error, ProtocolError, Result};
use crate::message::{self, Event, Greeting, Incoming};
use crate::{Config, fdpass};

/// What a waiting caller receives: QEMU's result, or its error object.
type Reply = Result<Value>;

/// The routing table between the reader task and the callers.
struct Routes {
    /// Callers waiting for the reply with this id.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Set once the connection is gone; later calls fail with it at once.
    lost: Option<Arc<ConnectionLost>>,
}

/// State shared with the reader task. The task holds only this, not [`Inner`], so that dropping
/// the last [`Qmp`] handle stops the task.
struct Shared {
    routes: Mutex<Routes>,
    events: broadcast::Sender<Event>,
    /// Tells [`Qmp::closed`] waiters why the connection is gone, once it is.
    closed: watch::Sender<Option<Arc<ConnectionLost>>>,
    /// The next command id; ids below it were issued by us, so a late reply to one of them (after
    /// a timeout or a cancelled call) is expected and dropped, while any other id is a violation.
    next_id: AtomicU64,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // A panic while holding this lock leaves the map consistent (every operation on it is a
        // single insert or remove), so a poisoned lock is safe to keep using.
        self.routes.lock_unpoisoned()
    }

    /// Marks the connection lost and fails every waiting caller with the reason.
    fn fail_all(&self, reason: ConnectionLost) {
        let mut routes = self.routes();
        let reason = routes.lost.get_or_insert_with(|| Arc::new(reason)).clone();
        for (_, waiter) in routes.pending.drain() {
            let _ = waiter.send(Err(Error::Disconnected(reason.clone())));
        }
        self.closed.send_replace(Some(reason));
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// Writes are whole lines; the lock is held for one write, never across a round trip.
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Held across the whole round trip of a command that carries descriptors; see
    /// [`Qmp::execute_with_fd`].
    fd_lane: tokio::sync::Mutex<()>,
    greeting: Greeting,
    config: Config,
    reader: JoinHandle<()>,
    pub(crate) captures: CapturePool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A QMP connection to one QEMU, shared by any number of tasks.
///
/// Cloning is cheap and every clone talks over the same socket. Commands from different tasks are
/// in flight at the same time; each caller gets its own reply. The connection closes when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Qmp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("qemu", &self.inner.greeting.version.qemu)
            .finish_non_exhaustive()
    }
}

/// Cancels a pending call's route when its future is dropped or times out, so the routing table
/// holds only callers that are still waiting.
struct RouteGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        self.shared.routes().pending.remove(&self.id);
    }
}

impl Qmp {
    /// Connects to QEMU's QMP socket at `path`, reads the greeting and leaves capability
    /// negotiation mode, all within [`Config::handshake_timeout`].
    pub async fn connect(path: impl AsRef<Path>, config: Config) -> Result<Self> {
        let path = path.as_ref();
        let handshake = async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|source| Error::Connect {
                    path: path.to_owned(),
                    source,
                })?;
            Self::handshake(stream, config).await
        };
        tokio::time::timeout(config.handshake_timeout, handshake)
            .await
            .map_err(|_| Error::HandshakeTimeout {
                after: config.handshake_timeout,
            })?
    }

    /// Runs the handshake on an already connected stream (the caller bounds its time).
    async fn handshake(stream: UnixStream, config: Config) -> Result<Self> {
        let handshake_error = |error: Error| Error::Handshake(Box::new(error));
        let (read_half, mut write_half) = stream.into_split();
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        let mut line = Vec::new();

        let lost = |reason: ConnectionLost| handshake_error(Error::Disconnected(Arc::new(reason)));
        let greeting = match read_message(&mut reader, &mut line, config.max_line_bytes).await {
            Ok(Incoming::Greeting(greeting)) => greeting,
            Ok(_) => {
                return Err(handshake_error(Error::Protocol(
                    ProtocolError::ExpectedGreeting {
                        snippet: message::snippet(&line),
                    },
                )));
            }
            Err(ConnectionLost::Protocol(error)) => {
                return Err(handshake_error(Error::Protocol(error)));
            }
            Err(reason) => return Err(lost(reason)),
        };

        let negotiate = message::encode_command::<Value>("qmp_capabilities", None, 0)
            .expect("a command without arguments always encodes");
        write_half
            .write_all(&negotiate)
            .await
            .map_err(|error| lost(ConnectionLost::Write(error)))?;
        // Events may come before the reply; they are from before anyone could subscribe.
        loop {
            match read_message(&mut reader, &mut line, config.max_line_bytes).await {
                Ok(Incoming::Return { .. }) => break,
                Ok(Incoming::Error { error, .. }) => {
                    return Err(handshake_error(Error::Command {
                        command: "qmp_capabilities".into(),
                        source: error,
                    }));
                }
                Ok(Incoming::Event(_)) => continue,
                Ok(Incoming::Greeting(_)) => {
                    return Err(handshake_error(Error::Protocol(
                        ProtocolError::Unrecognized {
                            snippet: message::snippet(&line),
                        },
                    )));
                }
                Err(ConnectionLost::Protocol(error)) => {
                    return Err(handshake_error(Error::Protocol(error)));
                }
                Err(reason) => return Err(lost(reason)),
            }
        }

        let (events, _) = broadcast::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes {
                pending: HashMap::new(),
                lost: None,
            }),
            events,
            closed: watch::Sender::new(None),
            next_id: AtomicU64::new(1),
        });
        let reader = tokio::spawn(read_loop(reader, shared.clone(), config.max_line_bytes));
        tracing::debug!(qemu = %greeting.version.qemu, "QMP connected");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer: tokio::sync::Mutex::new(write_half),
                fd_lane: tokio::sync::Mutex::new(()),
                greeting,
                config,
                reader,
                captures: CapturePool::default(),
            }),
        })
    }

    /// The greeting QEMU sent, with its version and capabilities.
    pub fn greeting(&self) -> &Greeting {
        &self.inner.greeting
    }

    /// The configuration this connection was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Subscribes to QEMU's events from now on.
    ///
    /// Each subscriber has its own bounded queue ([`Config::event_capacity`]); one that falls
    /// behind loses the oldest events (and is told so by `RecvError::Lagged`) instead of slowing
    /// the reader down, so replies are never held up by a slow event consumer.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.shared.events.subscribe()
    }

    /// Why the connection is gone, or `None` while it works.
    pub fn lost(&self) -> Option<Arc<ConnectionLost>> {
        self.inner.shared.routes().lost.clone()
    }

    /// Waits until the connection is gone and returns why: QEMU exited or closed the socket,
    /// or the peer broke the protocol. A supervisor awaits this to notice a VM's end.
    pub async fn closed(&self) -> Arc<ConnectionLost> {
        let mut closed = self.inner.shared.closed.subscribe();
        let reason = closed
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in `Shared`, which `self` keeps alive");
        reason.clone().expect("waited for Some")
    }

    pub(crate) fn captures(&self) -> &CapturePool {
        &self.inner.captures
    }

    /// Executes `command` with `arguments` and returns QEMU's raw result, bounded by
    /// [`Config::command_timeout`].
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(qmp: vgashot_qmp::Qmp) -> vgashot_qmp::Result<()> {
    /// let kvm = qmp.execute("query-kvm", None).await?;
    /// println!("KVM enabled: {}", kvm["enabled"]);
    /// # Ok(()) }
    /// ```
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.call(
            command,
            arguments.as_ref(),
            &[],
            self.inner.config.command_timeout,
        )
        .await
    }

    /// Executes `command` with typed arguments and decodes a typed result.
    pub async fn execute_typed<A, R>(
        &self,
        command: &str,
        arguments: Option<&A>,
        timeout: Duration,
    ) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let value = self.call(command, arguments, &[], timeout).await?;
        serde_json::from_value(value).map_err(|source| Error::Decode {
            command: command.into(),
            source,
        })
    }

    /// Executes a command that carries a file descriptor (`getfd`, `add-fd`), sending the
    /// descriptor with SCM_RIGHTS in the same write as the command.
    ///
    /// QEMU keeps the descriptors received with a read on the monitor and hands them to the next
    /// command that asks for one. If two descriptor-carrying commands were in flight at once, one
    /// could take the other's descriptor; so these commands go one at a time (the fd lane), while
    /// all other commands stay concurrent.
    pub async fn execute_with_fd<A, R>(
        &self,
        command: &str,
        arguments: &A,
        fd: BorrowedFd<'_>,
    ) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let _lane = self.inner.fd_lane.lock().await;
        let value = self
            .call(
                command,
                Some(arguments),
                &[fd.as_raw_fd()],
                self.inner.config.command_timeout,
            )
            .await?;
        serde_json::from_value(value).map_err(|source| Error::Decode {
            command: command.into(),
            source,
        })
    }

    /// Sends one command and waits for its reply.
    async fn call<A: Serialize + ?Sized>(
        &self,
        command: &str,
        arguments: Option<&A>,
        fds: &[RawFd],
        timeout: Duration,
    ) -> Result<Value> {
        let shared = &*self.inner.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let line =
            message::encode_command(command, arguments, id).map_err(|source| Error::Encode {
                command: command.into(),
                source,
            })?;

        let (sender, receiver) = oneshot::channel();
        {
            let mut routes = shared.routes();
            if let Some(reason) = &routes.lost {
                return Err(Error::Disconnected(reason.clone()));
            }
            routes.pending.insert(id, sender);
        }
        let _route = RouteGuard { shared, id };

        let exchange = async {
            self.send(&line, fds).await?;
            receiver.await.unwrap_or_else(|_| {
                // The reader dropped our route without answering: the connection is gone.
                Err(Error::Disconnected(
                    self.lost().unwrap_or_else(|| Arc::new(ConnectionLost::Eof)),
                ))
            })
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                command: command.into(),
                after: timeout,
            })?;
        reply.map_err(|error| match error {
            Error::Command { source, .. } => Error::Command {
                command: command.into(),
                source,
            },
            other => other,
        })
    }

    /// Writes one whole line, with `fds` attached to its first byte.
    async fn send(&self, line: &[u8], fds: &[RawFd]) -> Result<()> {
        let mut writer = self.inner.writer.lock().await;
        let written = if fds.is_empty() {
            0
        } else {
            match fdpass::send_with_fds(writer.as_ref(), line, fds).await {
                Ok(written) => written,
                Err(error) => return Err(self.write_failed(error)),
            }
        };
        if let Err(error) = writer.write_all(&line[written..]).await {
            return Err(self.write_failed(error));
        }
        Ok(())
    }

    /// A failed write may have sent part of a line, so the stream can no longer be trusted.
    fn write_failed(&self, error: io::Error) -> Error {
        self.inner.shared.fail_all(ConnectionLost::Write(error));
        Error::Disconnected(self.lost().expect("fail_all records the reason"))
    }
}

/// Reads lines from QEMU until the connection ends, routing replies and broadcasting events.
async fn read_loop(mut reader: BufReader<OwnedReadHalf>, shared: Arc<Shared>, max_line: usize) {
    let mut line = Vec::new();
    let reason = loop {
        let message = match read_message(&mut reader, &mut line, max_line).await {
            Ok(message) => message,
            Err(reason) => break reason,
        };
        let (id, reply) = match message {
            Incoming::Event(event) => {
                tracing::trace!(event = %event.name, "QMP event");
                // No receiver is not an error: nobody subscribed yet.
                let _ = shared.events.send(event);
                continue;
            }
            Incoming::Greeting(_) => {
                break ConnectionLost::Protocol(ProtocolError::Unrecognized {
                    snippet: message::snippet(&line),
                });
            }
            Incoming::Return { id, value } => (id, Ok(value)),
            Incoming::Error { id, error } => (
                id,
                Err(Error::Command {
                    command: String::new(),
                    source: error,
                }),
            ),
        };
        let Some(id) = id else {
            break ConnectionLost::Protocol(ProtocolError::MissingId {
                snippet: message::snippet(&line),
            });
        };
        let issued = id
            .as_u64()
            .filter(|&id| id < shared.next_id.load(Ordering::Relaxed));
        let Some(id) = issued else {
            break ConnectionLost::Protocol(ProtocolError::UnexpectedId { id: id.to_string() });
        };
        let waiter = shared.routes().pending.remove(&id);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(reply);
            }
            None => tracing::debug!(id, "dropping the late reply to an abandoned QMP command"),
        }
    };
    tracing::debug!(%reason, "QMP connection lost");
    shared.fail_all(reason);
}

/// Reads and parses the next non-empty line into `line`.
async fn read_message(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max_line: usize,
) -> Result<Incoming, ConnectionLost> {
    loop {
        read_line(reader, line, max_line).await?;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        return message::parse(text).map_err(ConnectionLost::Protocol);
    }
}

/// Reads one line into `line` (without the newline), of any length up to `max_line` bytes.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max_line: usize,
) -> Result<(), ConnectionLost> {
    line.clear();
    loop {
        let available = reader.fill_buf().await.map_err(ConnectionLost::Read)?;
        if available.is_empty() {
            return Err(ConnectionLost::Eof);
        }
        let (chunk, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&available[..end], end + 1),
            None => (available, available.len()),
        };
        if line.len() + chunk.len() > max_line {
            return Err(ConnectionLost::Protocol(ProtocolError::LineTooLong {
                limit: max_line,
            }));
        }
        line.extend_from_slice(chunk);
        let found_newline = done > chunk.len();
        reader.consume(done);
        if found_newline {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max_line: usize) -> Vec<Result<Vec<u8>, ConnectionLost>> {
        let mut reader = BufReader::with_capacity(16, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, max_line).await {
                Ok(()) => out.push(Ok(line.clone())),
                Err(ConnectionLost::Eof) => return out,
                Err(error) => {
                    out.push(Err(error));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn lines_span_buffer_refills() {
        let long = vec![b'a'; 100];
        let mut input = long.clone();
        input.extend_from_slice(b"\nshort\n\n");
        let lines: Vec<_> = lines_of(&input, 1000)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(lines, [long, b"short".to_vec(), Vec::new()]);
    }

    #[tokio::test]
    async fn overlong_lines_are_an_error_not_an_allocation() {
        let input = vec![b'a'; 100];
        let out = lines_of(&input, 50).await;
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0],
            Err(ConnectionLost::Protocol(ProtocolError::LineTooLong {
                limit: 50
            }))
        ));
    }
}
