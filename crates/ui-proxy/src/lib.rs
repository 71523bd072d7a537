//! `vgashot ui`: the daemon's web page for whoever may use its local Unix socket, served on a
//! loopback port, without TLS or a client certificate (upstream's `incus webui`).
//!
//! How a browser gets the page:
//! 1. [`UiProxy::bind`] listens on a loopback address only (a free port of `127.0.0.1` unless
//!    told otherwise) and makes a one-time token and a session secret ([`access`]); the caller
//!    prints [`UiProxy::url`], the page's address with the token, and opens it in a browser.
//!    The proxy reaches the daemon with the rights of the user who runs it, so it serves exactly
//!    who may use the socket.
//! 2. Each connection takes one of [`MAX_CONNECTIONS`] slots; one over the cap gets the
//!    daemon's own `503` envelope ([`vgashot_rest::server::refuse`], at most
//!    [`REFUSAL_SLOTS`] at once, each within [`REFUSAL_TIMEOUT`]). A connection has the
//!    daemon's time bounds ([`vgashot_rest::connection`]): [`HEADER_TIMEOUT`] for each request
//!    head (also the idle bound of a kept-alive connection), a bound on writes that stall, and
//!    an accept loop that rests when `accept` fails.
//! 3. Each request is judged before anything is forwarded ([`access::Access::judge`]): its
//!    `Host` must be this proxy's own address (no DNS rebinding), a browser request on behalf of
//!    another site is refused by the daemon's same-origin check, the token is exchanged once for
//!    a session cookie by a redirect, and a request without that cookie gets a `403`; every
//!    refusal is an Incus error envelope.
//! 4. What passes goes to the daemon's socket ([`forward`]), streamed both ways, websockets
//!    included, so the page works as it does over TLS.
//! 5. When `shutdown` resolves the proxy stops accepting and drops every connection.

pub mod access;
pub mod forward;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use vgashot_rest::connection::{AcceptBackoff, GuardedIo, HEADER_TIMEOUT};
use vgashot_rest::envelope::ApiResponse;
use vgashot_rest::limits::{LimitError, Quota};
use vgashot_rest::server::{REFUSAL_SLOTS, REFUSAL_TIMEOUT, refuse};

use crate::access::{Access, RandomError, TOKEN_PARAMETER, Verdict};
use crate::forward::{ProxyBody, forward};

/// The most connections served at once. The proxy serves one person's browser: at most 6
/// connections per host for requests, plus one for each websocket and each live view's MJPEG
/// stream; 64 leave ample room, while a runaway local client cannot take the daemon's Unix
/// socket connections (each request in flight holds one there) or this process's descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// Errors of starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum UiProxyError {
    /// The address is not a loopback address: the page would be served, in plain HTTP, to the
    /// network.
    #[error(
        "{address} is not a loopback address; `vgashot ui` serves only this machine \
         (use `vgashot daemon --listen` with TLS for others)"
    )]
    NotLoopback {
        /// The address asked for.
        address: SocketAddr,
    },
    /// The address could not be listened on.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No token could be made.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// The proxy, bound and ready to serve.
#[derive(Debug)]
pub struct UiProxy {
    listener: TcpListener,
    address: SocketAddr,
    access: Arc<Access>,
    token: String,
    socket: PathBuf,
}

impl UiProxy {
    /// Listens on `address` (port 0 picks a free one) for the daemon on the Unix socket
    /// `socket`, with a new token (step 1).
    pub async fn bind(address: SocketAddr, socket: PathBuf) -> Result<Self, UiProxyError> {
        if !address.ip().is_loopback() {
            return Err(UiProxyError::NotLoopback { address });
        }
        let listen = |source| UiProxyError::Listen { address, source };
        let listener = TcpListener::bind(address).await.map_err(listen)?;
        let address = listener.local_addr().map_err(listen)?;
        let (access, token) = Access::new(address)?;
        Ok(Self {
            listener,
            address,
            access: Arc::new(access),
            token,
            socket,
        })
    }

    /// The address the proxy listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The page's address with the one-time token: `http://127.0.0.1:PORT/ui/?token=...`.
    pub fn url(&self) -> String {
        format!(
            "http://{}/ui/?{TOKEN_PARAMETER}={}",
            self.address, self.token
        )
    }

    /// Serves until `shutdown` resolves (steps 2 to 5).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let slots = Quota::new(MAX_CONNECTIONS, MAX_CONNECTIONS);
        let refusals = Quota::new(REFUSAL_SLOTS, REFUSAL_SLOTS);
        let mut backoff = AcceptBackoff::default();
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = async {
                    backoff.rested().await;
                    self.listener.accept().await
                } => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    let rest = backoff.failed();
                    tracing::warn!(%error, ?rest, "accept failed; resting");
                    continue;
                }
            };
            backoff.succeeded();
            let _ = stream.set_nodelay(true);
            match slots.try_acquire(()) {
                Ok(slot) => {
                    let (stream, _, _) = GuardedIo::new(stream, Box::new(slot));
                    let (access, socket) = (self.access.clone(), self.socket.clone());
                    connections.spawn(serve_connection(stream, access, socket));
                }
                Err(refused) => {
                    let Ok(slot) = refusals.try_acquire(()) else {
                        continue;
                    };
                    let error = LimitError::Connections {
                        limit: refused.limit(),
                    };
                    connections.spawn(async move {
                        let _slot = slot;
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse(stream, error)).await;
                    });
                }
            }
        }
        connections.shutdown().await;
    }
}

/// Serves the requests of one browser connection.
async fn serve_connection(stream: GuardedIo<TcpStream>, access: Arc<Access>, socket: PathBuf) {
    let service = service_fn(move |request| {
        let (access, socket) = (access.clone(), socket.clone());
        async move { Ok::<_, Infallible>(handle(&access, &socket, request).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "a browser connection ended with an error");
    }
}

/// Judges one request, then forwards it or answers it.
async fn handle(
    access: &Access,
    socket: &std::path::Path,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let verdict = access.judge(request.uri(), request.headers());
    let answer = match verdict {
        Ok(Verdict::Forward) => forward(socket, request).await,
        Ok(Verdict::Redirect(response)) => Ok(own(response)),
        Err(error) => Err(error),
    };
    answer.unwrap_or_else(|error| {
        tracing::debug!(%error, "request refused");
        own(error.into_response())
    })
}

/// One of the proxy's own answers, in the body type of forwarded ones.
fn own(response: ApiResponse) -> Response<ProxyBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}
