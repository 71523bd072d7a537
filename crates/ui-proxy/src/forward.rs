//! Forwarding a request that passed [`crate::access`] to the daemon's Unix socket.
//!
//! How one request is forwarded ([`forward`]):
//! 1. The browser's cookies are removed (the daemon has no use for them, and the session's
//!    value stays in this process); every other header goes as sent, `Host` and `Origin`
//!    included, so the daemon's own same-origin check sees what the browser said.
//! 2. A connection of its own to the socket, opened within [`CONNECT_TIMEOUT`]: the browser's
//!    requests on one connection are sequential anyway, and a local connection costs little.
//! 3. The daemon's response comes back as it arrives, streamed: an MJPEG stream or an operation
//!    wait takes as long as it takes, bounded on the browser's side by the write-stall bound of
//!    [`vgashot_rest::connection`], and ended when the browser goes (which drops the daemon's
//!    connection).
//! 4. A websocket (the page's `/1.0/events`, a console's data and control sockets): when the
//!    daemon answers `101 Switching Protocols`, both upgraded connections are joined and bytes
//!    are copied both ways until either side closes; the browser's side keeps its connection
//!    slot and its bounds for as long.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{COOKIE, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use vgashot_rest::ApiError;

/// The body of every answer of the proxy: the daemon's, streamed, or one of the proxy's own.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// How long connecting to the daemon's socket may take: a live daemon accepts at once, so this
/// only turns a daemon that hangs into a clear 502.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards `request` to the daemon on `socket` and returns its answer (steps 1 to 4).
pub async fn forward(
    socket: &Path,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ApiError> {
    let unreachable =
        |source: Box<dyn std::error::Error + Send + Sync>| ApiError::DaemonUnreachable {
            socket: socket.display().to_string(),
            source,
        };
    request.headers_mut().remove(COOKIE);
    let browser_side = request
        .headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(&mut request));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(socket))
        .await
        .map_err(|elapsed| unreachable(elapsed.into()))?
        .map_err(|error| unreachable(error.into()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| unreachable(error.into()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "the daemon's connection ended with an error");
        }
    });
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|error| unreachable(error.into()))?;
    if let Some(browser_side) = browser_side {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let daemon_side = hyper::upgrade::on(&mut response);
            tokio::spawn(join(browser_side, daemon_side));
        }
    }
    Ok(response.map(BodyExt::boxed_unsync))
}

/// Step 4: copies bytes both ways between the upgraded connections until either ends.
async fn join(browser_side: OnUpgrade, daemon_side: OnUpgrade) {
    let (Ok(browser), Ok(daemon)) = tokio::join!(browser_side, daemon_side) else {
        tracing::debug!("a websocket upgrade did not complete");
        return;
    };
    let (mut browser, mut daemon) = (TokioIo::new(browser), TokioIo::new(daemon));
    if let Err(error) = tokio::io::copy_bidirectional(&mut browser, &mut daemon).await {
        tracing::debug!(%error, "a forwarded websocket ended with an error");
    }
}
