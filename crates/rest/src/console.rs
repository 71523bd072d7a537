//! The websockets of an interactive console, as `incus console NAME` uses them.
//!
//! The wire (lxc/incus `cmd/incusd/instance_console.go`, `client/incus_instances.go`
//! `ConsoleInstance`), and what we do at each step:
//! 1. `POST /1.0/instances/NAME/console` with `{"type": "console", "width", "height", "force"}`
//!    opens a session on the instance's serial console (the driver's bound applies) and answers
//!    202 with a `websocket` operation whose metadata is `{"fds": {"0": SECRET, "control":
//!    SECRET}}`: two random secrets of 32 bytes, hex.
//! 2. The client connects `GET /1.0/operations/ID/websocket?secret=SECRET` for `control`, then
//!    for `0` (the data). Each secret connects once, only for the caller that made the
//!    operation; a wrong secret or another caller is a 403, as upstream's. When both are not connected within
//!    [`CONNECT_TIMEOUT`], the operation fails and the session ends, so an operation nobody
//!    connects holds nothing for long.
//! 3. The data websocket carries binary messages both ways: what the guest writes, in chunks of
//!    at most [`vgashot_instance_drivers::serial::OUTPUT_CHUNK`] bytes, and what the client
//!    types, which reaches the guest only while this session is the typist (see
//!    [`vgashot_instance_drivers::serial`]); a watcher is told once, in its output, that it
//!    watches. A text message is upstream's end-of-stream barrier and is ignored. The control
//!    websocket carries JSON commands (`window-resize`, which a serial line has no use for, so
//!    it is read and ignored).
//! 4. Every message a client sends, on either websocket, is at most
//!    [`crate::events::MAX_INCOMING_MESSAGE`] bytes; a larger one closes that session with
//!    `1009 Message Too Big`. A client that does not read its output falls behind and its
//!    session is closed (`1013`), never the guest slowed.
//! 5. The session ends when the client closes the control websocket (`incus console` does on
//!    ctrl+a q) or the data websocket, or when the VM stops; both websockets are then closed and
//!    the operation succeeds.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WebSocketError, Message};
use vgashot_instance_drivers::serial::{SerialOutput, SerialSession};

use crate::auth::trust::Caller;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::events::{self, WRITE_TIMEOUT};
use crate::operations::WebsocketOperation;

/// How long the client has to connect both websockets after the operation was made: the
/// `incus` client connects them at once, and a session waiting for its client counts against
/// the instance's bound on sessions.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session that watches reads once, before the guest's output.
pub const WATCHER_NOTICE: &str = "\r\n[vgashot: another session types on this console; you watch. --force takes the keyboard]\r\n";

/// The metadata key of the control websocket's secret (upstream's `api.SecretNameControl`).
const CONTROL: &str = "control";

/// The metadata key of the data websocket's secret: its file descriptor number upstream.
const DATA: &str = "0";

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// One websocket waiting for its client.
struct Pending {
    secret: String,
    socket: Mutex<Option<oneshot::Sender<Socket>>>,
}

/// The two websockets of one console operation, for [`WebsocketOperation::connect`].
pub struct ConsoleWebsockets {
    caller: Caller,
    data: Pending,
    control: Pending,
}

/// The receiving ends of a console's websockets, for [`serve`].
pub struct Connections {
    data: oneshot::Receiver<Socket>,
    control: oneshot::Receiver<Socket>,
}

impl ConsoleWebsockets {
    /// New secrets for a console opened by `caller`, the operation's metadata that names them,
    /// and where the connected websockets arrive.
    pub fn new(caller: Caller) -> Result<(Self, serde_json::Value, Connections), ApiError> {
        let (data_sender, data) = oneshot::channel();
        let (control_sender, control) = oneshot::channel();
        let websockets = Self {
            caller,
            data: Pending {
                secret: secret()?,
                socket: Mutex::new(Some(data_sender)),
            },
            control: Pending {
                secret: secret()?,
                socket: Mutex::new(Some(control_sender)),
            },
        };
        let metadata = serde_json::json!({"fds": {
            DATA: websockets.data.secret,
            CONTROL: websockets.control.secret,
        }});
        Ok((websockets, metadata, Connections { data, control }))
    }
}

/// 32 random bytes, hex, as upstream's `RandomHexString(32)`.
fn secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("no randomness for a console secret".into()))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

impl WebsocketOperation for ConsoleWebsockets {
    fn connect(
        &self,
        caller: &Caller,
        secret: &str,
        request: hyper::Request<Incoming>,
    ) -> Result<ApiResponse, ApiError> {
        // Upstream answers a 403 too, to anyone but the operation's requestor.
        if *caller != self.caller {
            return Err(ApiError::Forbidden);
        }
        let pending = [&self.data, &self.control]
            .into_iter()
            .find(|pending| same_secret(secret, &pending.secret))
            .ok_or(ApiError::Forbidden)?;
        let accept = events::handshake_accept(request.headers())?;
        let sender = pending
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| ApiError::BadRequest("This websocket is already connected".into()))?;
        let upgrade = hyper::upgrade::on(request);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(events::websocket_config()),
                    )
                    .await;
                    // The operation may have ended meanwhile; the socket then just closes.
                    let _ = sender.send(socket);
                }
                Err(error) => tracing::debug!(%error, "console connection was not upgraded"),
            }
        });
        Ok(events::switching_protocols(&accept))
    }
}

/// Why a session ends, and what its websockets are told.
enum End {
    /// The client detached or went away.
    Detached,
    /// We close, with this code and reason.
    Close(CloseCode, &'static str),
}

/// Steps 2 to 5: waits for both websockets, then carries the console until it ends.
pub async fn serve(mut session: SerialSession, connections: Connections) -> Result<(), String> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        Some((
            connections.data.await.ok()?,
            connections.control.await.ok()?,
        ))
    })
    .await;
    let (mut data, mut control) = match connected {
        Ok(Some(sockets)) => sockets,
        Ok(None) => return Err("The console's websockets could not be connected".to_owned()),
        Err(_) => {
            return Err(format!(
                "The console's websockets were not connected within {} s",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    };
    let mut end = if session.may_type() {
        None
    } else {
        send(&mut data, Bytes::from_static(WATCHER_NOTICE.as_bytes())).await
    };
    while end.is_none() {
        end = tokio::select! {
            incoming = data.next() => match incoming {
                Some(Ok(Message::Binary(typed))) => {
                    // A watcher's input, or one beyond what the guest has read, is dropped, as
                    // a serial line drops what overruns it.
                    session.send(typed);
                    None
                }
                Some(Err(WebSocketError::Capacity(_))) => {
                    Some(End::Close(CloseCode::Size, "Message too big"))
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => Some(End::Detached),
                Some(Ok(_)) => None,
            },
            incoming = control.next() => match incoming {
                Some(Err(WebSocketError::Capacity(_))) => {
                    Some(End::Close(CloseCode::Size, "Message too big"))
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => Some(End::Detached),
                Some(Ok(_)) => None,
            },
            output = session.recv() => match output {
                SerialOutput::Data(bytes) => send(&mut data, bytes).await,
                SerialOutput::Lagged => Some(End::Close(CloseCode::Again, "Console reader too slow")),
                SerialOutput::Ended => Some(End::Close(CloseCode::Normal, "The console ended")),
            },
        };
    }
    // Leave the console before the close handshakes, which may take a while.
    drop(session);
    let (code, reason) = match end {
        Some(End::Close(code, reason)) => (code, reason),
        _ => (CloseCode::Normal, "Detached from the console"),
    };
    tokio::join!(
        events::close(&mut data, code, reason),
        events::close(&mut control, code, reason)
    );
    Ok(())
}

/// Sends output to the data websocket; `Some` when the session must end.
async fn send(data: &mut Socket, bytes: Bytes) -> Option<End> {
    match tokio::time::timeout(WRITE_TIMEOUT, data.send(Message::Binary(bytes))).await {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(End::Detached),
        Err(_) => Some(End::Close(CloseCode::Again, "Console reader too slow")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hex_and_compared_whole() {
        let (one, two) = (secret().unwrap(), secret().unwrap());
        assert_eq!(one.len(), 64);
        assert!(one.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(one, two);
        assert!(same_secret(&one, &one.clone()));
        assert!(!same_secret(&one, &two));
        assert!(!same_secret(&one, &one[..63]));
        assert!(!same_secret("", &one));
    }
}
