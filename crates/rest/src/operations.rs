//! Incus operations: the background work behind every asynchronous (202) answer.
//!
//! A handler that starts slow work (creating, starting, stopping an instance) calls
//! [`Operations::start`] and answers `envelope::accepted(operation.url(), operation)`. The
//! `incus` client then follows the operation on the events websocket (see [`crate::events`]),
//! and falls back to `GET /1.0/operations/{id}` and `/wait` for the state it missed. So every
//! state change is published as an `operation` event, and a finished operation stays readable
//! for a while after it ends: the client's `Refresh` right after it subscribes must not get a
//! 404 for an operation that finished quickly.
//!
//! Upstream's shapes are in lxc/incus `shared/api/operation.go` (the wire struct),
//! `internal/server/operations/operations.go` (the life cycle, the 5 s retention) and
//! `cmd/incusd/operations.go` (the handlers).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;
use vgashot_stdext::{MutexExt, now_rfc3339 as timestamp};

use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::events::EventHub;
pub use crate::model::{Operation, OperationClass, OperationStatus};
use crate::urls;

/// How long a finished operation stays readable. Upstream keeps 5 s; clients that poll slowly
/// (or `incus operation show` typed by hand) are served better by a minute.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(60);

/// How many finished operations are kept at most, so a burst of requests cannot grow memory
/// without bound while they wait out their retention.
pub const DEFAULT_MAX_FINISHED: usize = 1024;

/// The cluster member name of a standalone server, as upstream reports it.
const LOCATION: &str = "none";

/// What an upstream `/wait` answers when its timeout passes before the operation ends: the
/// text of Go's `context.DeadlineExceeded`.
const WAIT_TIMEOUT_MESSAGE: &str = "context deadline exceeded";

/// The registry of operations: cheap to clone, every clone sees the same operations.
#[derive(Clone)]
pub struct Operations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Operations")
            .field("count", &self.inner.lock().len())
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

struct Inner {
    hub: EventHub,
    entries: Mutex<HashMap<String, Entry>>,
    retention: Duration,
    max_finished: usize,
    next_sequence: AtomicU64,
}

struct Entry {
    /// The project the operation belongs to, for listing and for its events.
    project: String,
    /// The current state; waiters subscribe to it.
    state: watch::Sender<Operation>,
    /// Creation order, so listings are stable (upstream's order is a Go map's: random).
    sequence: u64,
    /// When it ended, to evict the oldest finished first.
    finished_at: Option<Instant>,
    /// What connects the websockets of a `websocket` operation, while it runs.
    websockets: Option<Arc<dyn WebsocketOperation>>,
}

/// The websockets of a `websocket` operation (a console), which clients connect with
/// `GET /1.0/operations/{id}/websocket?secret=SECRET`.
pub trait WebsocketOperation: Send + Sync {
    /// Answers one connection of `caller`: the upgrade of `request` for the websocket `secret`
    /// names.
    fn connect(
        &self,
        caller: &crate::auth::trust::Caller,
        secret: &str,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<ApiResponse, ApiError>;
}

impl Operations {
    /// A registry that publishes through `hub`, with the default retention.
    pub fn new(hub: EventHub) -> Self {
        Self::with_retention(hub, DEFAULT_RETENTION, DEFAULT_MAX_FINISHED)
    }

    /// A registry that keeps a finished operation for `retention`, and at most `max_finished`
    /// finished operations (the oldest is forgotten first).
    pub fn with_retention(hub: EventHub, retention: Duration, max_finished: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                hub,
                entries: Mutex::new(HashMap::new()),
                retention,
                max_finished,
                next_sequence: AtomicU64::new(0),
            }),
        }
    }

    /// Starts `work` in the background as a new operation of `project` and returns it, running.
    ///
    /// The work's `Ok(metadata)` makes it a `Success` with that metadata; `Err(message)` a
    /// `Failure` with `err` set to the message; a panic a `Failure` too, so waiters never hang.
    /// A `Running` event is published before this returns, then one with the final state.
    /// Resource URLs get `?project=NAME` outside the default project, as upstream renders them.
    ///
    /// # Panics
    /// Outside a tokio runtime, because the work is spawned on it.
    pub fn start<F>(
        &self,
        description: impl Into<String>,
        class: OperationClass,
        resources: BTreeMap<String, Vec<String>>,
        project: &str,
        work: F,
    ) -> Operation
    where
        F: Future<Output = Result<Option<serde_json::Value>, String>> + Send + 'static,
    {
        self.start_with(description, class, resources, project, None, work)
    }

    /// Starts a `websocket` operation, as [`Self::start`], whose `metadata` (the websockets'
    /// secrets) is shown from the start and whose websockets `websockets` connects while it
    /// runs.
    pub fn start_websocket<F>(
        &self,
        description: impl Into<String>,
        resources: BTreeMap<String, Vec<String>>,
        project: &str,
        websockets: (serde_json::Value, Arc<dyn WebsocketOperation>),
        work: F,
    ) -> Operation
    where
        F: Future<Output = Result<Option<serde_json::Value>, String>> + Send + 'static,
    {
        let class = OperationClass::Websocket;
        self.start_with(
            description,
            class,
            resources,
            project,
            Some(websockets),
            work,
        )
    }

    /// The websockets of the running operation `id`: `Ok(None)` for an operation without any,
    /// [`ApiError::OperationNotFound`] when there is no such operation.
    pub fn websockets(&self, id: &str) -> Result<Option<Arc<dyn WebsocketOperation>>, ApiError> {
        let entries = self.inner.lock();
        let entry = entries.get(id).ok_or(ApiError::OperationNotFound)?;
        Ok(entry.websockets.clone())
    }

    fn start_with<F>(
        &self,
        description: impl Into<String>,
        class: OperationClass,
        resources: BTreeMap<String, Vec<String>>,
        project: &str,
        websockets: Option<(serde_json::Value, Arc<dyn WebsocketOperation>)>,
        work: F,
    ) -> Operation
    where
        F: Future<Output = Result<Option<serde_json::Value>, String>> + Send + 'static,
    {
        let (metadata, websockets) = websockets.unzip();
        let now = timestamp();
        let operation = Operation {
            id: uuid::Uuid::new_v4().to_string(),
            class,
            description: description.into(),
            created_at: now.clone(),
            updated_at: now,
            status: OperationStatus::Running,
            status_code: OperationStatus::Running.code(),
            resources: with_project(resources, project),
            metadata,
            may_cancel: false,
            err: String::new(),
            location: LOCATION.to_owned(),
        };
        {
            let sequence = self.inner.next_sequence.fetch_add(1, Ordering::Relaxed);
            self.inner.lock().insert(
                operation.id.clone(),
                Entry {
                    project: project.to_owned(),
                    state: watch::Sender::new(operation.clone()),
                    sequence,
                    finished_at: None,
                    websockets,
                },
            );
        }
        // Published before the work is spawned, so the final event can never overtake it.
        self.inner.hub.publish_operation(&operation, project);

        let inner = Arc::clone(&self.inner);
        let id = operation.id.clone();
        tokio::spawn(async move {
            // The work runs in its own task so that a panic in it becomes a failure here.
            let outcome = match tokio::spawn(work).await {
                Ok(outcome) => outcome,
                Err(error) if error.is_panic() => Err("Operation panicked".to_owned()),
                Err(_) => Err("Operation aborted".to_owned()),
            };
            inner.finish(&id, outcome);
            // Only a weak handle waits out the retention: a dropped registry is not kept alive.
            let retention = inner.retention;
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            drop(inner);
            tokio::time::sleep(retention).await;
            if let Some(inner) = weak.upgrade() {
                inner.lock().remove(&id);
            }
        });
        operation
    }

    /// The hub this registry publishes to: the one the events endpoint must serve, or
    /// clients never see their operations end.
    pub fn hub(&self) -> &EventHub {
        &self.inner.hub
    }

    /// The operation's current state, or `None` when it never existed or was forgotten.
    pub fn get(&self, id: &str) -> Option<Operation> {
        self.inner
            .lock()
            .get(id)
            .map(|entry| entry.state.borrow().clone())
    }

    /// The operations visible from `project` (`None`: every project), oldest first.
    ///
    /// As upstream, an operation without a project is visible from every project.
    pub fn list(&self, project: Option<&str>) -> Vec<Operation> {
        let entries = self.inner.lock();
        let mut visible: Vec<_> = entries
            .values()
            .filter(|entry| match project {
                None => true,
                Some(project) => entry.project.is_empty() || entry.project == project,
            })
            .map(|entry| (entry.sequence, entry.state.borrow().clone()))
            .collect();
        visible.sort_by_key(|(sequence, _)| *sequence);
        visible
            .into_iter()
            .map(|(_, operation)| operation)
            .collect()
    }

    /// Waits until the operation ends or `timeout` passes (`None`: no limit), then returns its
    /// state at that moment: still `Running` after a timeout. `None` when it does not exist.
    pub async fn wait(&self, id: &str, timeout: Option<Duration>) -> Option<Operation> {
        let mut state = self.inner.lock().get(id)?.state.subscribe();
        let finished = async {
            // An error means the operation was forgotten meanwhile: its last state stands.
            let _ = state
                .wait_for(|operation| operation.status.is_final())
                .await;
        };
        match timeout {
            None => finished.await,
            Some(timeout) => {
                let _ = tokio::time::timeout(timeout, finished).await;
            }
        }
        let operation = state.borrow().clone();
        Some(operation)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // No code panics while holding the lock, and the map stays consistent if one did.
        self.entries.lock_unpoisoned()
    }

    /// Records the work's outcome, publishes it and evicts the oldest finished operations
    /// beyond the bound.
    fn finish(&self, id: &str, outcome: Result<Option<serde_json::Value>, String>) {
        let (operation, project) = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(id) else {
                return;
            };
            entry.state.send_modify(|operation| {
                match outcome {
                    Ok(metadata) => {
                        operation.status = OperationStatus::Success;
                        operation.metadata = metadata;
                    }
                    Err(message) => {
                        operation.status = OperationStatus::Failure;
                        operation.err = message;
                    }
                }
                operation.status_code = operation.status.code();
                operation.updated_at = timestamp();
            });
            entry.finished_at = Some(Instant::now());
            entry.websockets = None;
            let finished = (entry.state.borrow().clone(), entry.project.clone());
            evict_oldest_finished(&mut entries, self.max_finished);
            finished
        };
        self.hub.publish_operation(&operation, &project);
    }
}

/// Forgets the oldest finished operations while more than `max_finished` are kept.
fn evict_oldest_finished(entries: &mut HashMap<String, Entry>, max_finished: usize) {
    let mut finished: Vec<_> = entries
        .iter()
        .filter_map(|(id, entry)| entry.finished_at.map(|at| (at, entry.sequence, id.clone())))
        .collect();
    if finished.len() <= max_finished {
        return;
    }
    finished.sort();
    let excess = finished.len() - max_finished;
    for (_, _, id) in finished.into_iter().take(excess) {
        entries.remove(&id);
    }
}

/// Upstream renders each resource URL with `?project=NAME` outside the default project.
fn with_project(
    resources: BTreeMap<String, Vec<String>>,
    project: &str,
) -> BTreeMap<String, Vec<String>> {
    resources
        .into_iter()
        .map(|(kind, found)| {
            let found = found
                .iter()
                .map(|url| urls::with_project(url, project))
                .collect();
            (kind, found)
        })
        .collect()
}

/// Reads `/wait`'s `timeout` query value: seconds, where any negative number (upstream's
/// `-1`) means no limit, as no value at all does.
pub fn wait_timeout<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let value = <String as serde::Deserialize>::deserialize(deserializer)?;
    let seconds: i64 = value
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("Invalid timeout {value:?}")))?;
    Ok(u64::try_from(seconds).ok().map(Duration::from_secs))
}

/// `GET /1.0/operations`: the operations of `project` (default `default`) or of every
/// project, grouped by lower-case status. Without recursion each group lists URLs, with
/// recursion (`recursion=1`) whole operations; an empty group is left out, so no operations
/// at all is `{}`.
pub async fn get_operations(
    operations: &Operations,
    project: Option<&str>,
    all_projects: bool,
    recursion: bool,
) -> Result<ApiResponse, ApiError> {
    let project = project.filter(|project| !project.is_empty());
    if all_projects && project.is_some() {
        return Err(ApiError::BadRequest(
            "Cannot specify a project when requesting all projects".to_owned(),
        ));
    }
    let scope = if all_projects {
        None
    } else {
        Some(project.unwrap_or("default"))
    };
    let listed = operations.list(scope);
    if recursion {
        let mut groups: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
        for operation in listed {
            groups
                .entry(operation.status.key())
                .or_default()
                .push(operation);
        }
        Ok(envelope::sync(groups))
    } else {
        let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for operation in listed {
            groups
                .entry(operation.status.key())
                .or_default()
                .push(operation.url());
        }
        Ok(envelope::sync(groups))
    }
}

/// `GET /1.0/operations/{id}`: the operation, or 404 `Operation not found`.
pub async fn get_operation(operations: &Operations, id: &str) -> Result<ApiResponse, ApiError> {
    let operation = operations.get(id).ok_or(ApiError::OperationNotFound)?;
    Ok(envelope::sync(operation))
}

/// `GET /1.0/operations/{id}/wait?timeout=N`: waits for the end of the operation (see
/// [`wait_timeout`]) and answers it in the sync envelope.
///
/// As upstream 6.0.4 (whose handler has already sent `200 OK` when it starts waiting), a
/// failed operation and a timeout answer HTTP 200 with an *error* envelope (`error_code` 500,
/// `error` the operation's `err` or `context deadline exceeded`): the Go client turns that into
/// an error, where a sync envelope of a still running operation would read as success.
pub async fn wait_operation(
    operations: &Operations,
    id: &str,
    timeout: Option<Duration>,
) -> Result<ApiResponse, ApiError> {
    let operation = operations
        .wait(id, timeout)
        .await
        .ok_or(ApiError::OperationNotFound)?;
    Ok(match operation.status {
        OperationStatus::Running => in_band_error(WAIT_TIMEOUT_MESSAGE.to_owned()),
        OperationStatus::Failure => in_band_error(operation.err),
        OperationStatus::Success | OperationStatus::Cancelled => envelope::sync(operation),
    })
}

/// An error envelope with `error_code` 500 sent with HTTP status 200, as upstream's `/wait`.
fn in_band_error(message: String) -> ApiResponse {
    let mut response = envelope::error(StatusCode::INTERNAL_SERVER_ERROR, message);
    *response.status_mut() = StatusCode::OK;
    response
}

#[cfg(test)]
pub(crate) mod tests;
