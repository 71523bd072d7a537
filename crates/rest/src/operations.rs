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
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::events::EventHub;

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

/// The kind of an operation, as Incus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationClass {
    /// Background work that ends by itself (`task`).
    Task,
    /// Work driven through websockets the client connects to (`websocket`): exec, console.
    Websocket,
    /// A token the client redeems later (`token`).
    Token,
}

/// The states an operation of ours goes through. Upstream also has `Pending` (105) before
/// `Running` and `Cancelling` (104); we start work at once and cannot cancel it, so neither
/// is ever shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OperationStatus {
    /// The work is under way (103).
    Running,
    /// The work ended well (200).
    Success,
    /// The work failed; `err` says why (400).
    Failure,
    /// The work was cancelled (401).
    Cancelled,
}

impl OperationStatus {
    /// Incus's numeric status code, sent beside the name as `status_code`.
    pub fn code(self) -> u16 {
        match self {
            Self::Running => 103,
            Self::Success => 200,
            Self::Failure => 400,
            Self::Cancelled => 401,
        }
    }

    /// Whether the operation has ended. Clients test `status_code >= 200`, as this does.
    pub fn is_final(self) -> bool {
        self.code() >= 200
    }

    /// The lower-case name that keys `GET /1.0/operations` (`running`, `success`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An operation as Incus sends it: fields in upstream's order and with its names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// The operation's UUID.
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: OperationClass,
    /// What the work is, e.g. `Creating instance`.
    pub description: String,
    /// When it was created, RFC 3339 with nanoseconds.
    pub created_at: String,
    /// When it last changed, RFC 3339 with nanoseconds.
    pub updated_at: String,
    /// The state's name (`Running`, `Success`, ...).
    pub status: OperationStatus,
    /// The state's code (103, 200, 400, 401).
    pub status_code: u16,
    /// The objects the work touches, by kind: `{"instances": ["/1.0/instances/v1"]}`.
    pub resources: BTreeMap<String, Vec<String>>,
    /// The work's result; `null` until there is one. Upstream clients expect an object here.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Whether `DELETE /1.0/operations/{id}` can cancel it (never, for ours).
    pub may_cancel: bool,
    /// Why the work failed; empty otherwise.
    pub err: String,
    /// The cluster member that runs it: `none` on a standalone server.
    pub location: String,
}

impl Operation {
    /// The operation's URL, the `operation` of the async envelope and the `Location` header.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }
}

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
            metadata: None,
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
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    if project.is_empty() || project == "default" {
        return resources;
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("project", project)
        .finish();
    resources
        .into_iter()
        .map(|(kind, urls)| {
            let urls = urls
                .into_iter()
                .map(|url| {
                    if url.contains('?') {
                        url
                    } else {
                        format!("{url}?{query}")
                    }
                })
                .collect();
            (kind, urls)
        })
        .collect()
}

/// Now, as Incus writes times: RFC 3339 in UTC with nanoseconds.
pub(crate) fn timestamp() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
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
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    fn instance_resources(name: &str) -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(
            "instances".to_owned(),
            vec![format!("/1.0/instances/{name}")],
        )])
    }

    /// The keys of a JSON object in the order they were written. (`serde_json::Value` sorts
    /// them, since the workspace does not enable `preserve_order`.)
    pub(crate) fn top_level_keys(json: &str) -> Vec<String> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = Vec<String>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(keys)
            }
        }
        let mut deserializer = serde_json::Deserializer::from_str(json);
        serde::Deserializer::deserialize_map(&mut deserializer, Keys).unwrap()
    }

    async fn body_of(response: ApiResponse) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Receives the next operation event's metadata from a hub subscription.
    async fn next_operation_event(
        events: &mut tokio::sync::broadcast::Receiver<Arc<crate::events::Published>>,
    ) -> serde_json::Value {
        let published = events.recv().await.unwrap();
        let event: serde_json::Value = serde_json::from_str(published.text()).unwrap();
        assert_eq!(event["type"], "operation");
        assert_eq!(event["project"], "default");
        assert_eq!(event["location"], "none");
        event["metadata"].clone()
    }

    #[tokio::test]
    async fn wire_shape_is_incus() {
        let operations = Operations::new(EventHub::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let operation = operations.start(
            "Creating instance",
            OperationClass::Task,
            instance_resources("v1"),
            "default",
            async move {
                let _ = released.await;
                Ok(None)
            },
        );
        let value = serde_json::to_value(&operation).unwrap();
        let text = serde_json::to_string(&operation).unwrap();
        assert_eq!(
            top_level_keys(&text),
            [
                "id",
                "class",
                "description",
                "created_at",
                "updated_at",
                "status",
                "status_code",
                "resources",
                "metadata",
                "may_cancel",
                "err",
                "location"
            ]
        );
        assert_eq!(value["class"], "task");
        assert_eq!(value["status"], "Running");
        assert_eq!(value["status_code"], 103);
        assert_eq!(
            value["resources"],
            json!({"instances": ["/1.0/instances/v1"]})
        );
        assert_eq!(value["metadata"], json!(null));
        assert_eq!(value["may_cancel"], false);
        assert_eq!(value["err"], "");
        assert_eq!(value["location"], "none");
        let created = value["created_at"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(created).is_ok(), "{created}");
        assert_eq!(created.len(), "2026-11-25T03:06:29.912394528Z".len());
        assert_eq!(operation.url(), format!("/1.0/operations/{}", operation.id));

        let response = envelope::accepted(operation.url(), &operation);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body = body_of(response).await;
        assert_eq!(body["metadata"]["id"], operation.id.as_str());
        release.send(()).unwrap();
    }

    #[tokio::test]
    async fn lifecycle_publishes_running_then_success() {
        let hub = EventHub::new();
        let mut events = hub.subscribe();
        let operations = Operations::new(hub);
        assert_eq!(operations.hub().listener_count(), 1);
        let operation = operations.start(
            "Starting instance",
            OperationClass::Task,
            instance_resources("v1"),
            "default",
            async { Ok(Some(json!({"answer": 42}))) },
        );
        let running = next_operation_event(&mut events).await;
        assert_eq!(running["id"], operation.id.as_str());
        assert_eq!(running["status"], "Running");
        assert_eq!(running["status_code"], 103);
        let done = next_operation_event(&mut events).await;
        assert_eq!(done["id"], operation.id.as_str());
        assert_eq!(done["status"], "Success");
        assert_eq!(done["status_code"], 200);
        assert_eq!(done["metadata"], json!({"answer": 42}));

        let stored = operations.get(&operation.id).unwrap();
        assert_eq!(stored.status, OperationStatus::Success);
        assert_eq!(stored.metadata, Some(json!({"answer": 42})));
    }

    #[tokio::test]
    async fn failure_carries_err_and_wait_answers_as_incus() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        let operations = Operations::new(hub);
        let operation = operations.start(
            "Creating instance",
            OperationClass::Task,
            BTreeMap::new(),
            "default",
            async { Err("Failed creating instance record: no room".to_owned()) },
        );
        let _running = next_operation_event(&mut events).await;
        let failed = next_operation_event(&mut events).await;
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["status_code"], 400);
        assert_eq!(failed["err"], "Failed creating instance record: no room");
        assert_eq!(failed["resources"], json!({}));

        // The shape of upstream's answer in the oracle: 200, an error envelope, 500 inside.
        let response = wait_operation(&operations, &operation.id, None)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            body_of(response).await,
            json!({"type": "error", "status": "", "status_code": 0, "operation": "",
                "error_code": 500, "error": "Failed creating instance record: no room",
                "metadata": null})
        );
        // GET still shows the operation itself, with its error.
        let body = body_of(get_operation(&operations, &operation.id).await.unwrap()).await;
        assert_eq!(
            body["metadata"]["err"],
            "Failed creating instance record: no room"
        );
    }

    #[tokio::test]
    async fn a_panicking_work_fails_instead_of_hanging() {
        let operations = Operations::new(EventHub::default());
        let operation = operations.start(
            "Starting instance",
            OperationClass::Task,
            BTreeMap::new(),
            "default",
            async { panic!("boom") },
        );
        let done = operations.wait(&operation.id, None).await.unwrap();
        assert_eq!(done.status, OperationStatus::Failure);
        assert_eq!(done.err, "Operation panicked");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_with_timeout_returns_running_then_success() {
        let operations = Operations::new(EventHub::default());
        let operation = operations.start(
            "Stopping instance",
            OperationClass::Task,
            instance_resources("v1"),
            "default",
            async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(None)
            },
        );
        let early = operations
            .wait(&operation.id, Some(Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(early.status, OperationStatus::Running);
        let response = wait_operation(&operations, &operation.id, Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_of(response).await;
        assert_eq!(body["type"], "error");
        assert_eq!(body["error_code"], 500);
        assert_eq!(body["error"], "context deadline exceeded");

        let done = operations.wait(&operation.id, None).await.unwrap();
        assert_eq!(done.status, OperationStatus::Success);
        assert_eq!(done.status_code, 200);
        let response = wait_operation(&operations, &operation.id, Some(Duration::ZERO))
            .await
            .unwrap();
        let body = body_of(response).await;
        assert_eq!(body["type"], "sync");
        assert_eq!(body["metadata"]["status"], "Success");
    }

    #[tokio::test(start_paused = true)]
    async fn finished_operations_are_forgotten_after_the_retention() {
        let operations =
            Operations::with_retention(EventHub::default(), Duration::from_secs(60), 100);
        let operation = operations.start(
            "Starting instance",
            OperationClass::Task,
            BTreeMap::new(),
            "default",
            async { Ok(None) },
        );
        operations.wait(&operation.id, None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(operations.get(&operation.id).is_some());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(operations.get(&operation.id).is_none());
        assert!(operations.list(None).is_empty());
        assert!(matches!(
            get_operation(&operations, &operation.id).await,
            Err(ApiError::OperationNotFound)
        ));
        assert!(matches!(
            wait_operation(&operations, &operation.id, None).await,
            Err(ApiError::OperationNotFound)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn only_so_many_finished_operations_are_kept() {
        let operations =
            Operations::with_retention(EventHub::default(), Duration::from_secs(3600), 2);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let operation = operations.start(
                "Starting instance",
                OperationClass::Task,
                BTreeMap::new(),
                "default",
                async { Ok(None) },
            );
            operations.wait(&operation.id, None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            ids.push(operation.id);
        }
        assert!(operations.get(&ids[0]).is_none());
        assert!(operations.get(&ids[1]).is_some());
        assert!(operations.get(&ids[2]).is_some());
    }

    #[tokio::test]
    async fn listing_shapes() {
        let operations = Operations::new(EventHub::default());
        let empty = body_of(
            get_operations(&operations, None, false, false)
                .await
                .unwrap(),
        )
        .await;
        // The oracle: no operations is an empty object, not empty lists.
        assert_eq!(empty["metadata"], json!({}));

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let running = operations.start(
            "Starting instance",
            OperationClass::Task,
            instance_resources("v1"),
            "default",
            async move {
                let _ = released.await;
                Ok(None)
            },
        );
        let done = operations.start(
            "Creating instance",
            OperationClass::Task,
            instance_resources("v2"),
            "default",
            async { Ok(None) },
        );
        operations.wait(&done.id, None).await.unwrap();
        let other = operations.start(
            "Creating instance",
            OperationClass::Task,
            instance_resources("v3"),
            "other",
            async { Err("nope".to_owned()) },
        );
        operations.wait(&other.id, None).await.unwrap();
        assert_eq!(
            operations.get(&other.id).unwrap().resources,
            BTreeMap::from([(
                "instances".to_owned(),
                vec!["/1.0/instances/v3?project=other".to_owned()]
            )])
        );

        let urls = body_of(
            get_operations(&operations, None, false, false)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            urls["metadata"],
            json!({"running": [running.url()], "success": [done.url()]})
        );
        let full = body_of(
            get_operations(&operations, Some("default"), false, true)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(full["metadata"]["running"][0]["id"], running.id.as_str());
        assert_eq!(full["metadata"]["success"][0]["status_code"], 200);
        let all = body_of(
            get_operations(&operations, None, true, false)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            all["metadata"],
            json!({"failure": [other.url()], "running": [running.url()],
                "success": [done.url()]})
        );
        let mine = body_of(
            get_operations(&operations, Some("other"), false, false)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(mine["metadata"], json!({"failure": [other.url()]}));
        let error = get_operations(&operations, Some("other"), true, false)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Cannot specify a project when requesting all projects"
        );
        release.send(()).unwrap();
    }

    #[test]
    fn wait_timeouts_parse_as_incus() {
        let parse = |raw| {
            crate::request::Query::parse(raw)
                .typed::<crate::api::operations::WaitQuery>()
                .map(|query| query.timeout)
        };
        assert_eq!(parse(None).unwrap(), None);
        assert_eq!(parse(Some("timeout=-1")).unwrap(), None);
        assert_eq!(
            parse(Some("timeout=30")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse(Some("timeout=0")).unwrap(), Some(Duration::ZERO));
        let soon = parse(Some("timeout=soon")).unwrap_err();
        assert!(matches!(soon, ApiError::BadRequest(_)));
        assert_eq!(soon.to_string(), "Invalid timeout \"soon\"");
    }
}
