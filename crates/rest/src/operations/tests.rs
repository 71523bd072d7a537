//! The operations registry: lifecycle, waits, retention, and the Incus wire shapes.

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
    let operations = Operations::with_retention(EventHub::default(), Duration::from_secs(60), 100);
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
    let operations = Operations::with_retention(EventHub::default(), Duration::from_secs(3600), 2);
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
