//! Serving the API on a Unix socket, as incusd does on `$INCUS_DIR/unix.socket`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::convert::Infallible;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::context::Context;
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

/// Binds the Unix socket at `path`, replacing a stale socket file left by a daemon that died,
/// but never one that a live daemon still answers on.
pub async fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let listen_error = |source| ServeError::Listen {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServeError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(listen_error)?;
    }
    let listener = UnixListener::bind(path).map_err(listen_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(listen_error)?;
    Ok(listener)
}

/// Serves requests on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish: each connection is told to close after its current request, and long-lived ones
/// (event streams) are cut after a grace period.
pub async fn serve(
    listener: UnixListener,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, _) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
            // Reap finished connections as we go, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let context = context.clone();
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let context = context.clone();
                async move { Ok::<_, Infallible>(router::handle(&context, request).await) }
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
        });
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

/// Resolves once the server is closing (or its signal is gone).
async fn wait_closing(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|&closing| closing).await;
}
