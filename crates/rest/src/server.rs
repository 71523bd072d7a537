//! Serving the API on a Unix socket, as incusd does on `$INCUS_DIR/unix.socket`, and on TCP with
//! TLS when asked ([`crate::tls`]).
//!
//! How connections are served:
//! 1. One accept loop takes connections from both listeners.
//! 2. A Unix client is trusted ([`Caller::Unix`]). A TCP client does its TLS handshake in its
//!    connection's own task, bounded by a timeout; then the certificate it presented decides,
//!    once, who it is ([`crate::trust::TrustStore::caller`]).
//! 3. Each connection runs on hyper's HTTP/1 with upgrades (for `/1.0/events`), and every request
//!    reaches the router with the connection's caller.
//! 4. On shutdown both listeners stop accepting, each connection closes after its current
//!    request, and long-lived ones (event streams) are cut after a grace period.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::convert::Infallible;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::context::Context;
use crate::router;
use crate::tls::HttpsListener;
use crate::trust::{Caller, TrustStore};

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

/// Serves requests on the Unix socket `unix`, and on `https` when given, until `shutdown`
/// resolves, then lets the requests in flight finish: each connection is told to close after
/// its current request, and long-lived ones (event streams) are cut after a grace period.
///
/// A Unix client is [`Caller::Unix`]; a TLS client is decided from the certificate it presented,
/// once, after its handshake (which runs in the connection's own task, not in the accept loop).
pub async fn serve(
    unix: UnixListener,
    https: Option<HttpsListener>,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, _) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = unix.accept() => match accepted {
                Ok((stream, _)) => Connection::Unix(stream),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            accepted = accept_tcp(https.as_ref()) => match accepted {
                Ok((stream, peer)) => Connection::Tcp(stream, peer),
                Err(error) => {
                    tracing::warn!(%error, "accept failed on the TLS listener");
                    continue;
                }
            },
            () = &mut shutdown => break,
            // Reap finished connections as we go, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let context = context.clone();
        let closing = closing.subscribe();
        match accepted {
            Connection::Tcp(stream, peer) => {
                if let Some(https) = &https {
                    let (acceptor, trust) = (https.acceptor.clone(), https.trust.clone());
                    connections.spawn(serve_tls(stream, peer, acceptor, trust, context, closing));
                }
            }
            Connection::Unix(stream) => {
                connections.spawn(serve_connection(stream, Caller::Unix, context, closing));
            }
        }
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

/// A connection just accepted.
enum Connection {
    /// On the Unix socket.
    Unix(UnixStream),
    /// On the TLS listener, before its handshake.
    Tcp(TcpStream, SocketAddr),
}

/// The next TCP connection, or never when there is no TLS listener.
async fn accept_tcp(https: Option<&HttpsListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match https {
        Some(https) => https.listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Completes the TLS handshake of a TCP client, decides who it is from the certificate it
/// presented, and serves its requests.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    trust: TrustStore,
    context: Arc<Context>,
    closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
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
    let caller = tokio::task::spawn_blocking(move || trust.caller(presented.as_deref()))
        .await
        .unwrap_or(Caller::Untrusted);
    tracing::debug!(%peer, ?caller, "TLS client");
    serve_connection(stream, caller, context, closing).await;
}

/// Serves the requests of one connection, all as `caller`, until it ends or the server closes.
async fn serve_connection<S>(
    stream: S,
    caller: Caller,
    context: Arc<Context>,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = Arc::new(caller);
    let service = service_fn(move |request| {
        let context = context.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(router::handle(&context, &caller, request).await) }
    });
    let connection = http1::Builder::new()
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
