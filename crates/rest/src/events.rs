//! `GET /1.0/events`: Incus's event stream, over a websocket.
//!
//! The Go client (lxc/incus `client/incus.go`, `queryOperation`) opens this websocket *before*
//! it sends any request that answers with an operation, and `client/operations.go` then waits
//! for an `operation` event whose metadata carries the operation with a final `status_code`
//! (>= 200). Without this endpoint `incus start` cannot finish waiting. Events are JSON text
//! frames in upstream's [`Event`] shape (`shared/api/event.go`); the server sends a `keepalive`
//! ping every 10 s and drops a listener that misses three pongs or cannot keep up
//! (`internal/server/events/connections.go`).
//!
//! [`EventHub`] fans events out through a bounded broadcast channel, so a publisher never
//! waits for a listener: a listener that falls behind by the channel's capacity is closed.
//! At most [`MAX_LISTENERS`] listen at once (a 503 envelope beyond), and a listener's own
//! messages, which upstream reads and ignores, may be at most [`MAX_INCOMING_MESSAGE`] bytes:
//! a larger one closes that websocket with `1009 Message Too Big`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WebSocketError, Message, Utf8Bytes};
use utoipa::ToSchema;

use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::limits::{LimitError, Quota, Slot};
use vgashot_stdext::now_rfc3339 as timestamp;

use crate::model::Operation;
use crate::request::DEFAULT_PROJECT;
use crate::screen_interest::{InterestGuard, ScreenInterest};
use crate::urls::{instance_url, with_project};

/// How many events a listener may fall behind before it is dropped.
pub const DEFAULT_CAPACITY: usize = 1024;

/// The most event listeners at once: each holds a connection, a task and buffers. The `incus`
/// client holds one while a command runs, the web page one per tab, so 128 serve a crowd, and a
/// client cannot take more than this many descriptors and tasks through the websocket.
pub const MAX_LISTENERS: usize = 128;

/// The largest message, and frame, a listener may send: upstream ignores what listeners send
/// (a client sends only control frames, whose payload is 125 bytes at most), so 4 KiB is ample,
/// and tungstenite then never buffers more than that (its default is 64 MiB).
pub const MAX_INCOMING_MESSAGE: usize = 4096;

/// The websocket settings of a listener: [`MAX_INCOMING_MESSAGE`], and a read buffer no larger
/// (tungstenite's default allocates 128 KiB per socket up front).
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(MAX_INCOMING_MESSAGE)
        .max_message_size(Some(MAX_INCOMING_MESSAGE))
        .max_frame_size(Some(MAX_INCOMING_MESSAGE))
}

/// Upstream pings every listener this often, and so do we: it finds dead peers.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// A listener with more unanswered pings than this is gone (upstream's bound).
const MAX_PENDING_PONGS: u32 = 2;

/// How long one frame may take to leave, as upstream's write deadline: a peer that stops
/// reading must not hold its task forever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing listener waits for the peer's close frame before it drops the socket.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster member name of a standalone server, as upstream stamps its events.
const LOCATION: &str = "none";

/// What can be wrong with an events request.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The `type` parameter names a type upstream does not have (upstream's wording).
    #[error("{0:?} isn't a supported event type")]
    UnsupportedType(String),
    /// Both `project` and `all-projects` were given (upstream's wording).
    #[error("Cannot specify a project when requesting all projects")]
    ProjectWithAllProjects,
    /// The request is not a websocket handshake; the text is the one upstream's websocket
    /// library (gorilla) gives.
    #[error("websocket: {0}")]
    NotWebsocket(&'static str),
}

impl From<EventsError> for ApiError {
    fn from(error: EventsError) -> Self {
        // Each of these is the caller's mistake: a 400 in the error envelope.
        ApiError::BadRequest(error.to_string())
    }
}

/// The kinds of events, as the `type` field and the `type` query parameter name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// Daemon log records (`logging`).
    #[serde(rename = "logging")]
    Logging,
    /// Operation state changes (`operation`): what clients wait on.
    #[serde(rename = "operation")]
    Operation,
    /// Changes to objects (`lifecycle`): `instance-started` and the like.
    #[serde(rename = "lifecycle")]
    Lifecycle,
    /// Network ACL logs (`network-acl`). We publish none, but upstream accepts the type and
    /// includes it in the default set, so asking for it must not be an error.
    #[serde(rename = "network-acl")]
    NetworkAcl,
    /// A running VM's screen changed (`screen`, ours: `instance_console_screen_events`): its
    /// new `ETag` and size, at most one per instance per
    /// second (`screen_events::PERIOD`). Screens are followed for it only while a listener
    /// of the type (or of every type) is connected.
    #[serde(rename = "screen")]
    Screen,
}

impl EventType {
    /// Every type, upstream's in its order, then ours: what a listener gets when it names none,
    /// as upstream (`incus monitor --type=screen` asks for every type and filters itself).
    pub const ALL: [Self; 5] = [
        Self::Logging,
        Self::Operation,
        Self::Lifecycle,
        Self::NetworkAcl,
        Self::Screen,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logging => "logging",
            Self::Operation => "operation",
            Self::Lifecycle => "lifecycle",
            Self::NetworkAcl => "network-acl",
            Self::Screen => "screen",
        }
    }

    /// Parses the `type` query parameter as upstream does: comma-separated names, every type
    /// when it is absent or empty, and a 400 naming the first unknown entry (an empty entry,
    /// as in `operation,`, is unknown too).
    pub fn parse_list(value: Option<&str>) -> Result<Vec<Self>, ApiError> {
        match value {
            None | Some("") => Ok(Self::ALL.to_vec()),
            Some(value) => value
                .split(',')
                .map(|entry| entry.parse().map_err(ApiError::from))
                .collect(),
        }
    }
}

impl FromStr for EventType {
    type Err = EventsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| EventsError::UnsupportedType(name.to_owned()))
    }
}

/// One event, as upstream sends it in a text frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// `operation`, `lifecycle`, `logging`, `network-acl` or `screen`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened, RFC 3339 with nanoseconds.
    pub timestamp: String,
    /// The operation, the lifecycle record, the log record or the screen change.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The cluster member it comes from: `none` on a standalone server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// The project it belongs to; empty (and left out) for server-wide events such as logs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
}

impl Event {
    /// An event of now, from this server.
    pub fn new(kind: EventType, metadata: serde_json::Value, project: &str) -> Self {
        Self {
            kind,
            timestamp: timestamp(),
            metadata,
            location: LOCATION.to_owned(),
            project: project.to_owned(),
        }
    }
}

/// Who asked for the change a lifecycle event reports, as upstream records it. On the Unix
/// socket upstream sends the peer's user name, protocol `unix` and address `@`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Requestor {
    /// The user name (`root`), or `uid=N` when the uid has no name.
    pub username: String,
    /// `unix`, `tls`, ...
    pub protocol: String,
    /// The peer address without port; `@` on the Unix socket.
    pub address: String,
}

impl Requestor {
    /// A requestor on the Unix socket, as upstream shapes it.
    pub fn unix(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            protocol: "unix".to_owned(),
            address: "@".to_owned(),
        }
    }
}

/// The lifecycle actions we publish, named as upstream (`shared/api/event_lifecycle.go`) where
/// upstream has the action.
pub mod action {
    /// An instance was created.
    pub const INSTANCE_CREATED: &str = "instance-created";
    /// An instance was started.
    pub const INSTANCE_STARTED: &str = "instance-started";
    /// An instance was stopped (forcibly, or it went away).
    pub const INSTANCE_STOPPED: &str = "instance-stopped";
    /// An instance was shut down cleanly.
    pub const INSTANCE_SHUTDOWN: &str = "instance-shutdown";
    /// An instance was restarted.
    pub const INSTANCE_RESTARTED: &str = "instance-restarted";
    /// An instance was paused (frozen).
    pub const INSTANCE_PAUSED: &str = "instance-paused";
    /// An instance was resumed.
    pub const INSTANCE_RESUMED: &str = "instance-resumed";
    /// An instance's configuration was changed.
    pub const INSTANCE_UPDATED: &str = "instance-updated";
    /// An instance was renamed (`context.old_name` says from what).
    pub const INSTANCE_RENAMED: &str = "instance-renamed";
    /// An instance was deleted.
    pub const INSTANCE_DELETED: &str = "instance-deleted";
    /// An instance's console (log or screenshot) was read.
    pub const INSTANCE_CONSOLE_RETRIEVED: &str = "instance-console-retrieved";
    /// An instance's guest kernel panicked (ours: `instance_lifecycle_reasons`).
    pub const INSTANCE_PANICKED: &str = "instance-panicked";
    /// An instance's QEMU ended without shutting down, or could not be ended (ours:
    /// `instance_lifecycle_reasons`).
    pub const INSTANCE_CRASHED: &str = "instance-crashed";
}

/// A lifecycle record, the metadata of a `lifecycle` event, in upstream's shape: `context`,
/// `requestor`, `name` and `project` are left out when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lifecycle {
    /// What happened, e.g. `instance-started` (see [`action`]).
    pub action: String,
    /// The object's URL, e.g. `/1.0/instances/v1` (with `?project=NAME` outside `default`).
    pub source: String,
    /// Details of the action, e.g. `{"type": "virtual-machine", "storage-pool": "default",
    /// "location": "none"}` for `instance-created`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub context: BTreeMap<String, serde_json::Value>,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestor: Option<Requestor>,
    /// The object's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The object's project.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
}

impl Lifecycle {
    /// A lifecycle record for instance `name` of `project`, as upstream builds it.
    pub fn instance(action: &str, name: &str, project: &str) -> Self {
        Self {
            action: action.to_owned(),
            source: with_project(&instance_url(name), project),
            context: BTreeMap::new(),
            requestor: None,
            name: name.to_owned(),
            project: project.to_owned(),
        }
    }

    /// The same record with `requestor`.
    pub fn with_requestor(mut self, requestor: Requestor) -> Self {
        self.requestor = Some(requestor);
        self
    }

    /// The same record with one more `context` entry.
    pub fn with_context(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.context.insert(key.to_owned(), value.into());
        self
    }
}

/// An event as it travels through the hub: serialised once, filtered by kind and project.
#[derive(Debug)]
pub(crate) struct Published {
    kind: EventType,
    project: String,
    text: Utf8Bytes,
}

impl Published {
    /// The event's JSON text.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        self.text.as_str()
    }
}

/// The event hub: cheap to clone, every clone publishes to the same listeners.
#[derive(Clone, Debug)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    sender: broadcast::Sender<Arc<Published>>,
    /// Set once by [`EventHub::close`]; every listener ends when it is.
    closed: watch::Sender<bool>,
    /// The listeners' slots, [`MAX_LISTENERS`] at most.
    listeners: Quota<()>,
    /// Who listens for `screen` events, per project.
    screen_interest: ScreenInterest,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// A hub with the default capacity ([`DEFAULT_CAPACITY`]).
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A hub whose listeners may fall `capacity` events behind before they are dropped.
    pub fn with_capacity(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            inner: Arc::new(HubInner {
                sender,
                closed: watch::Sender::new(false),
                listeners: Quota::new(MAX_LISTENERS, MAX_LISTENERS),
                screen_interest: ScreenInterest::default(),
            }),
        }
    }

    /// Sends `event` to every listener that wants its type and project. Never waits.
    pub fn publish(&self, event: Event) {
        let text = match serde_json::to_string(&event) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, "cannot serialise an event");
                return;
            }
        };
        let published = Published {
            kind: event.kind,
            project: event.project,
            text: Utf8Bytes::from(text),
        };
        // An error only means that nobody listens.
        let _ = self.inner.sender.send(Arc::new(published));
    }

    /// Publishes the state of `operation`, which belongs to `project`.
    pub fn publish_operation(&self, operation: &Operation, project: &str) {
        match serde_json::to_value(operation) {
            Ok(metadata) => self.publish(Event::new(EventType::Operation, metadata, project)),
            Err(error) => tracing::warn!(%error, "cannot serialise an operation"),
        }
    }

    /// Publishes lifecycle `action` (see [`action`]) on the object at `source` (e.g.
    /// `/1.0/instances/v1`) of `project`, shaped as upstream: the name is the URL's last
    /// segment, and the source gets `?project=NAME` outside the default project. For a
    /// requestor or context, build a [`Lifecycle`] and use [`EventHub::publish_lifecycle_record`].
    pub fn publish_lifecycle(&self, action: &str, source: &str, project: &str) {
        let path = source.split('?').next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        let lifecycle = Lifecycle {
            action: action.to_owned(),
            source: with_project(source, project),
            context: BTreeMap::new(),
            requestor: None,
            name: name.to_owned(),
            project: project.to_owned(),
        };
        self.publish_lifecycle_record(project, &lifecycle);
    }

    /// Publishes a whole lifecycle record in `project` (upstream's `SendLifecycle`).
    pub fn publish_lifecycle_record(&self, project: &str, lifecycle: &Lifecycle) {
        match serde_json::to_value(lifecycle) {
            Ok(metadata) => self.publish(Event::new(EventType::Lifecycle, metadata, project)),
            Err(error) => tracing::warn!(%error, "cannot serialise a lifecycle event"),
        }
    }

    /// Publishes a log record (`{"message", "level", "context"}`), which belongs to no project.
    pub fn publish_logging(&self, level: &str, message: &str, context: BTreeMap<String, String>) {
        let metadata = serde_json::json!({"message": message, "level": level, "context": context});
        self.publish(Event::new(EventType::Logging, metadata, ""));
    }

    /// How many listeners are connected (or about to be: subscribed, not yet upgraded).
    pub fn listener_count(&self) -> usize {
        self.inner.sender.receiver_count()
    }

    /// Who listens for `screen` events: the screen events supervisor follows screens only
    /// while somebody does.
    pub fn screen_interest(&self) -> &ScreenInterest {
        &self.inner.screen_interest
    }

    /// Ends every listener, now and later (for shutdown, while clones of the hub still exist).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// A raw subscription, for tests of what publishers send.
    #[cfg(test)]
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.inner.sender.subscribe()
    }
}

/// Which events one listener gets.
struct Filter {
    types: Vec<EventType>,
    /// `None`: every project.
    project: Option<String>,
}

impl Filter {
    /// Upstream's rule: an event without a project goes to everyone, one with a project only
    /// to listeners of that project or of all projects.
    fn accepts(&self, event: &Published) -> bool {
        self.types.contains(&event.kind)
            && match &self.project {
                None => true,
                Some(project) => event.project.is_empty() || event.project == *project,
            }
    }
}

/// `GET /1.0/events`: upgrades the request to a websocket and streams matching events to it.
///
/// `types` comes from [`EventType::parse_list`] (an empty list means every type); `project`
/// defaults to `default`; `all_projects` takes events of every project and excludes a
/// `project`. A request that is not a websocket handshake gets a 400 in the error envelope.
/// The listener subscribes before the `101 Switching Protocols` leaves, so every event
/// published after the client sees the upgrade reaches it (the client relies on that: it
/// subscribes first, then sends the request that starts an operation). The connection must be
/// served with hyper's `with_upgrades()`.
///
/// The listener runs in its own task, which ends when the client closes or goes away, when it
/// falls behind, or when the hub is closed or dropped.
pub async fn events_websocket<B>(
    hub: &EventHub,
    request: http::Request<B>,
    types: Vec<EventType>,
    project: Option<String>,
    all_projects: bool,
) -> Result<ApiResponse, ApiError> {
    let project = project.filter(|project| !project.is_empty());
    if all_projects && project.is_some() {
        return Err(EventsError::ProjectWithAllProjects.into());
    }
    let accept = handshake_accept(request.headers())?;
    let slot = hub
        .inner
        .listeners
        .try_acquire(())
        .map_err(|_| LimitError::EventListeners {
            limit: MAX_LISTENERS,
        })?;
    let filter = Filter {
        types: if types.is_empty() {
            EventType::ALL.to_vec()
        } else {
            types
        },
        project: if all_projects {
            None
        } else {
            Some(project.unwrap_or_else(|| DEFAULT_PROJECT.to_owned()))
        },
    };
    let interest = filter
        .types
        .contains(&EventType::Screen)
        .then(|| hub.inner.screen_interest.register(filter.project.clone()));
    let listener = Listener {
        events: hub.inner.sender.subscribe(),
        closed: hub.inner.closed.subscribe(),
        filter,
        _slot: slot,
        _interest: interest,
    };
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(websocket_config()),
                )
                .await;
                listener.serve(socket).await;
            }
            Err(error) => tracing::debug!(%error, "events connection was not upgraded"),
        }
    });
    Ok(switching_protocols(&accept))
}

/// The `101 Switching Protocols` answer to a websocket handshake, with its accept key.
pub(crate) fn switching_protocols(accept: &str) -> ApiResponse {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, accept)
        .body(envelope::full(Bytes::new()))
        .expect("handshake headers are valid")
}

/// Checks the handshake headers in gorilla's order and with its words (upstream answers with
/// them), and returns the `Sec-WebSocket-Accept` value.
pub(crate) fn handshake_accept(headers: &HeaderMap) -> Result<String, EventsError> {
    if !has_token(headers, CONNECTION, "upgrade") {
        return Err(EventsError::NotWebsocket(
            "the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
        ));
    }
    if !has_token(headers, UPGRADE, "websocket") {
        return Err(EventsError::NotWebsocket(
            "the client is not using the websocket protocol: 'websocket' token not found in 'Upgrade' header",
        ));
    }
    if !has_token(headers, SEC_WEBSOCKET_VERSION, "13") {
        return Err(EventsError::NotWebsocket(
            "unsupported version: 13 not found in 'Sec-Websocket-Version' header",
        ));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| !key.is_empty())
        .ok_or(EventsError::NotWebsocket(
            "not a websocket handshake: 'Sec-WebSocket-Key' header is missing or blank",
        ))?;
    Ok(derive_accept_key(key))
}

/// Whether a comma-separated header holds `token`, case-insensitively, in any of its lines.
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|entry| entry.trim().eq_ignore_ascii_case(token))
}

/// One connected listener: its subscriptions and what it wants.
struct Listener {
    events: broadcast::Receiver<Arc<Published>>,
    closed: watch::Receiver<bool>,
    filter: Filter,
    /// Its place among [`MAX_LISTENERS`], given back when the listener ends.
    _slot: Slot<()>,
    /// Its interest in `screen` events, if it asked for them, given up when it ends.
    _interest: Option<InterestGuard>,
}

/// Why a listener ends, and what it tells the peer.
enum End {
    /// The peer closed or went away: nothing more to say.
    PeerGone,
    /// We close, with this frame.
    Close(CloseCode, &'static str),
}

impl Listener {
    /// Forwards events until one side ends; then closes the websocket and returns, dropping
    /// the subscription (so [`EventHub::listener_count`] goes down).
    async fn serve<S>(self, mut socket: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Self {
            mut events,
            mut closed,
            filter,
            _slot,
            _interest,
        } = self;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending_pongs = 0u32;
        let end = loop {
            tokio::select! {
                incoming = socket.next() => match incoming {
                    // Tungstenite answers pings and the peer's close by itself when read.
                    Some(Ok(Message::Pong(_))) => pending_pongs = 0,
                    // Upstream reads and ignores what a plain client sends.
                    Some(Ok(_)) => {}
                    Some(Err(WebSocketError::Capacity(_))) => {
                        break End::Close(CloseCode::Size, "Message too big");
                    }
                    None | Some(Err(_)) => break End::PeerGone,
                },
                received = events.recv() => match received {
                    Ok(event) => {
                        if !filter.accepts(&event) {
                            continue;
                        }
                        let frame = Message::Text(event.text.clone());
                        match tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break End::PeerGone,
                            Err(_) => break End::Close(CloseCode::Again, "Event listener too slow"),
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "dropping an event listener that fell behind");
                        break End::Close(CloseCode::Again, "Event listener too slow");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        break End::Close(CloseCode::Away, "Server shutting down");
                    }
                },
                // An error means the hub is gone, which ends the listener as well.
                _ = async { closed.wait_for(|closed| *closed).await.map(|_| ()) } => {
                    break End::Close(CloseCode::Away, "Server shutting down");
                }
                _ = ping.tick() => {
                    if pending_pongs > MAX_PENDING_PONGS {
                        break End::PeerGone;
                    }
                    let ping = Message::Ping(Bytes::from_static(b"keepalive"));
                    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(ping)).await {
                        Ok(Ok(())) => pending_pongs += 1,
                        _ => break End::PeerGone,
                    }
                }
            }
        };
        // Unsubscribe first: the close handshake below may take a while.
        drop(events);
        if let End::Close(code, reason) = end {
            close(&mut socket, code, reason).await;
        }
    }
}

/// Closes `socket` with a close frame and reads until the peer's answer ends the stream, for
/// at most [`CLOSE_TIMEOUT`].
pub(crate) async fn close<S>(socket: &mut WebSocketStream<S>, code: CloseCode, reason: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if socket.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
