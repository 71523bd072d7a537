//! Serving the API on a Unix socket, as incusd does on `$INCUS_DIR/unix.socket`, and on TCP with
//! TLS when asked ([`crate::auth::tls`]).
//!
//! How connections are served:
//! 1. One accept loop takes connections from both listeners. An `accept` that fails makes its
//!    listener rest, longer after each failure in a row ([`AcceptBackoff`]), instead of spinning
//!    while descriptors are out.
//! 2. Each connection takes a slot: a TCP one of [`MAX_TCP_CONNECTIONS`], at most
//!    [`MAX_CONNECTIONS_PER_ADDRESS`] per client address ([`limits::client_key`]), a Unix one of
//!    [`MAX_UNIX_CONNECTIONS`]. A connection over a cap is answered, not served: see
//!    [`refuse`]. The slot is held for as long as the stream lives, upgraded or not.
//! 3. A Unix client is trusted ([`Caller::Unix`]). A TCP client does its TLS handshake in its
//!    connection's own task, bounded by [`HANDSHAKE_TIMEOUT`]; then each of its requests is
//!    decided from the certificate it presented and the trust store's latest reading
//!    ([`crate::auth::trust::ConnectionTrust`]), and the connection is cut, whatever runs on
//!    it, once its certificate stops being trusted.
//! 4. Each connection runs on hyper's HTTP/1 with upgrades (for `/1.0/events`), with the time
//!    bounds of [`crate::connection`]: [`HEADER_TIMEOUT`] for a request head (which is also the
//!    idle bound of a kept-alive connection), and a bound on writes that stall.
//! 5. On shutdown both listeners stop accepting, each connection closes after its current
//!    request, and long-lived ones (event streams) are cut after a grace period.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::tls::HttpsListener;
use crate::auth::trust::{Caller, SharedTrust};
use crate::connection::{AcceptBackoff, Cutoff, GuardedIo, HEADER_TIMEOUT};
use crate::context::Context;
use crate::error::ApiError;
use crate::limits::{self, LimitError, Quota, Refused};
use crate::router;

/// Errors of setting up the listener.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process serves the socket already.
    #[error("{} is served by another daemon", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// The socket could not be created or given its mode.
    #[error("cannot listen on {}", path.display())]
    Listen {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The permissions of the socket: owner and group may talk to the daemon, others not (incusd
/// uses 0660 with its admin group).
const SOCKET_MODE: u32 = 0o660;
/// Mode of the private directory the socket is bound in before it gets its final name.
const BIND_DIR_MODE: u32 = 0o700;

/// Binds the Unix socket at `path`, replacing a stale socket file left by a daemon that died,
/// but never one that a live daemon still answers on.
///
/// The socket is never reachable with wider permissions than [`SOCKET_MODE`], even for an
/// instant:
/// 1. bind(2) creates the socket file with the process's umask, which may be wide (0022 gives
///    0755), and changing the umask is process-wide, racing with every other thread that
///    creates files. So the socket is bound inside a new directory `.b<pid>` beside `path`,
///    made with mode 0700 by mkdir(2) itself (a umask only removes bits), where nobody else can
///    reach it whatever its own mode;
/// 2. it gets its final mode there, by name, in that directory nobody else can enter or change;
/// 3. rename(2) gives it its final name in one step (replacing a stale socket atomically), with
///    the mode it already has; the empty directory goes.
///
/// The directory's name is as long as `unix.socket`'s and the socket's inside is one byte, so
/// the temporary path is never longer than the final one (a `sockaddr_un` holds 107 bytes).
pub async fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let listen_error = |source| ServeError::Listen {
        path: path.to_owned(),
        source,
    };
    if path.exists() && tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ServeError::InUse {
            path: path.to_owned(),
        });
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".b{}", std::process::id()));
    // A leftover of a daemon with this pid that died between the steps.
    match std::fs::remove_dir_all(&private) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(listen_error(error)),
        _ => {}
    }
    std::fs::DirBuilder::new()
        .mode(BIND_DIR_MODE)
        .create(&private)
        .map_err(listen_error)?;
    let bound = bind_privately(&private.join("s"), path);
    // The directory is empty after the rename; after a failure it may hold the socket.
    let _ = std::fs::remove_dir_all(&private);
    bound.map_err(listen_error)
}

/// Steps 1 to 3 of [`bind_unix`]: binds at `temporary`, in a private directory, gives the socket
/// its mode, then its final name.
fn bind_privately(temporary: &Path, path: &Path) -> io::Result<UnixListener> {
    let listener = UnixListener::bind(temporary)?;
    std::fs::set_permissions(temporary, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    std::fs::rename(temporary, path)?;
    Ok(listener)
}

/// How long a TCP client may take over its TLS handshake before it is dropped, so a client that
/// connects and says nothing holds nothing for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most TCP connections served at once: each costs a descriptor, a task and TLS state
/// (tens of KiB), and a few hundred serve many viewers (a browser opens at most 6 per server).
pub const MAX_TCP_CONNECTIONS: usize = 512;

/// The most TCP connections one client address (an IPv4 address, an IPv6 /64) may hold: a
/// browser opens 6, the `incus` client a few, so 64 leave room for a dozen people behind one
/// NAT, while one client cannot take more than an eighth of [`MAX_TCP_CONNECTIONS`].
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// The most Unix socket connections served at once. The socket is trusted (its mode decides who
/// connects), so this only keeps a runaway local client from taking every descriptor.
pub const MAX_UNIX_CONNECTIONS: usize = 512;

/// How many connections over a cap are answered at once ([`refuse`]); beyond these, a
/// connection over a cap is closed at once. Small: answering costs a TLS handshake each.
pub const REFUSAL_SLOTS: usize = 16;

/// How long answering a connection over a cap may take, handshake included.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The caps of step 2, and the answers to connections over them.
struct Admission {
    tcp: Quota<IpAddr>,
    unix: Quota<()>,
    refusals: Quota<()>,
}

impl Admission {
    fn new() -> Self {
        Self {
            tcp: Quota::new(MAX_CONNECTIONS_PER_ADDRESS, MAX_TCP_CONNECTIONS),
            unix: Quota::new(MAX_UNIX_CONNECTIONS, MAX_UNIX_CONNECTIONS),
            refusals: Quota::new(REFUSAL_SLOTS, REFUSAL_SLOTS),
        }
    }

    /// Serves a Unix connection in a task of `connections`, or refuses it over the cap.
    fn unix(
        &self,
        stream: UnixStream,
        context: &Arc<Context>,
        closing: watch::Receiver<bool>,
        connections: &mut JoinSet<()>,
    ) {
        match self.unix.try_acquire(()) {
            Ok(slot) => {
                let (stream, _, _) = GuardedIo::new(stream, Box::new(slot));
                let caller = || Caller::Unix;
                connections.spawn(serve_connection(stream, caller, context.clone(), closing));
            }
            Err(refused) => {
                let error = LimitError::Connections {
                    limit: refused.limit(),
                };
                self.refuse_soon(refuse(stream, error), connections);
            }
        }
    }

    /// Serves a TCP connection from `peer` in a task of `connections`, or refuses it over a cap.
    fn tcp(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        https: &HttpsListener,
        context: &Arc<Context>,
        closing: watch::Receiver<bool>,
        connections: &mut JoinSet<()>,
    ) {
        let _ = stream.set_nodelay(true);
        match self.tcp.try_acquire(limits::client_key(peer.ip())) {
            Ok(slot) => {
                let (stream, cutoff, gone) = GuardedIo::new(stream, Box::new(slot));
                let client = TlsClient {
                    stream,
                    peer,
                    cutoff,
                    gone,
                };
                connections.spawn(serve_tls(
                    client,
                    https.acceptor.clone(),
                    https.trust.clone(),
                    context.clone(),
                    closing,
                ));
            }
            Err(refused) => {
                tracing::debug!(%peer, ?refused, "TCP connection over a cap");
                let error = match refused {
                    Refused::Total(limit) => LimitError::Connections { limit },
                    Refused::PerKey(limit) => LimitError::ConnectionsFromAddress { limit },
                };
                let acceptor = https.acceptor.clone();
                let answer = async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        refuse(stream, error).await;
                    }
                };
                self.refuse_soon(answer, connections);
            }
        }
    }

    /// Runs `answer` (which owns a connection over a cap) in a task of `connections` with a
    /// refusal slot, within [`REFUSAL_TIMEOUT`]; with every slot taken, drops it, which closes
    /// the connection unanswered.
    fn refuse_soon(
        &self,
        answer: impl Future<Output = ()> + Send + 'static,
        connections: &mut JoinSet<()>,
    ) {
        if let Ok(slot) = self.refusals.try_acquire(()) {
            connections.spawn(async move {
                let _slot = slot;
                let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
            });
        }
    }
}

/// What the accept loop woke up for.
enum Wakeup {
    /// A Unix connection, or a failed accept.
    Unix(io::Result<UnixStream>),
    /// A TCP connection with its peer, or a failed accept.
    Tcp(io::Result<(TcpStream, SocketAddr)>),
    /// A connection ended.
    Reaped,
    /// The server is stopping.
    Shutdown,
}

/// Serves requests on the Unix socket `unix`, and on `https` when given, until `shutdown`
/// resolves, then lets the requests in flight finish: each connection is told to close after
/// its current request, and long-lived ones (event streams) are cut after a grace period.
pub async fn serve(
    unix: UnixListener,
    https: Option<HttpsListener>,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, _) = watch::channel(false);
    let mut connections = JoinSet::new();
    let admission = Admission::new();
    let (mut unix_backoff, mut tcp_backoff) = (AcceptBackoff::default(), AcceptBackoff::default());
    // Open TLS connections follow the trust store's latest reading.
    let refresher = https
        .as_ref()
        .map(|https| tokio::spawn(https.trust.clone().keep_fresh()));
    tokio::pin!(shutdown);
    loop {
        let wakeup = tokio::select! {
            accepted = async {
                unix_backoff.rested().await;
                unix.accept().await.map(|(stream, _)| stream)
            } => Wakeup::Unix(accepted),
            accepted = accept_tcp(https.as_ref(), &tcp_backoff) => Wakeup::Tcp(accepted),
            () = &mut shutdown => Wakeup::Shutdown,
            // Reap finished connections as we go, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => Wakeup::Reaped,
        };
        let closing = closing.subscribe();
        match wakeup {
            Wakeup::Shutdown => break,
            Wakeup::Reaped => {}
            Wakeup::Unix(Err(error)) => {
                let rest = unix_backoff.failed();
                tracing::warn!(%error, ?rest, "accept failed on the Unix socket; resting");
            }
            Wakeup::Tcp(Err(error)) => {
                let rest = tcp_backoff.failed();
                tracing::warn!(%error, ?rest, "accept failed on the TLS listener; resting");
            }
            Wakeup::Unix(Ok(stream)) => {
                unix_backoff.succeeded();
                admission.unix(stream, &context, closing, &mut connections);
            }
            Wakeup::Tcp(Ok((stream, peer))) => {
                tcp_backoff.succeeded();
                if let Some(https) = &https {
                    admission.tcp(stream, peer, https, &context, closing, &mut connections);
                }
            }
        }
    }
    if let Some(refresher) = refresher {
        refresher.abort();
    }
    closing.send_replace(true);
    let grace = Duration::from_secs(5);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!("connections still open after {grace:?}; closing them");
        connections.shutdown().await;
    }
}

/// The next TCP connection, once the listener has rested, or never when there is no TLS
/// listener.
async fn accept_tcp(
    https: Option<&HttpsListener>,
    backoff: &AcceptBackoff,
) -> io::Result<(TcpStream, SocketAddr)> {
    let Some(listener) = https.map(|https| &https.listener) else {
        return std::future::pending().await;
    };
    backoff.rested().await;
    TcpListener::accept(listener).await
}

/// Answers every request of a connection over a cap with `error` in Incus's error envelope
/// (a 503 when the server is full, a 429 when the client's address holds its share), then
/// closes it; the caller bounds the whole by [`REFUSAL_TIMEOUT`].
///
/// Why answer rather than close at once: a client that is simply one too many (a browser with
/// many tabs behind a NAT) then reads why, in the same envelope as any other error, instead of
/// a reset that looks like a network fault. What it costs is bounded: at most
/// [`REFUSAL_SLOTS`] such answers at once, each within [`REFUSAL_TIMEOUT`], handshake included;
/// over that, a connection over a cap is closed at once, unread.
pub async fn refuse<S>(stream: S, error: LimitError)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |_request| async move {
        Ok::<_, Infallible>(ApiError::Limit(error).into_response())
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A TCP connection admitted, before its handshake.
struct TlsClient {
    stream: GuardedIo<TcpStream>,
    peer: SocketAddr,
    /// Cuts the connection, upgraded or not.
    cutoff: Arc<Cutoff>,
    /// Resolves once the stream is dropped.
    gone: tokio::sync::oneshot::Receiver<()>,
}

/// Completes the TLS handshake of a TCP client and serves its requests, each decided from the
/// certificate it presented; cuts the connection once that certificate stops being trusted.
async fn serve_tls(
    client: TlsClient,
    acceptor: TlsAcceptor,
    trust: SharedTrust,
    context: Arc<Context>,
    closing: watch::Receiver<bool>,
) {
    let TlsClient {
        stream,
        peer,
        cutoff,
        gone,
    } = client;
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.as_ref().to_vec());
    // The store is a directory of files: read it off the async threads.
    let Ok(trust) =
        tokio::task::spawn_blocking(move || trust.connection(presented.as_deref())).await
    else {
        return;
    };
    tracing::debug!(%peer, caller = ?trust.caller(), "TLS client");
    // Outlives this function when the connection is upgraded (the events websocket).
    let lost = trust.clone().lost();
    tokio::spawn(async move {
        tokio::select! {
            () = lost => {
                tracing::info!(%peer, "certificate no longer trusted; closing its connection");
                cutoff.cut();
            }
            _ = gone => {}
        }
    });
    serve_connection(stream, move || trust.caller(), context, closing).await;
}

/// Serves the requests of one connection until it ends or the server closes; `caller` decides
/// who sends each request.
async fn serve_connection<S, F>(
    stream: S,
    caller: F,
    context: Arc<Context>,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Caller + Send + Sync + 'static,
{
    let service = service_fn(move |request| {
        let context = context.clone();
        let caller = caller();
        async move { Ok::<_, Infallible>(router::handle(&context, &caller, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        _ = wait_closing(&mut closing) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Resolves once the server is closing (or its signal is gone).
async fn wait_closing(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|&closing| closing).await;
}
