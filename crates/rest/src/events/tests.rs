//! The event hub and the websocket of `/1.0/events`, served over in-process connections.

use std::collections::BTreeMap;
use std::convert::Infallible;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_tungstenite::client_async;

use super::*;
use crate::operations::{OperationClass, Operations};

/// Serves one HTTP/1 connection whose every request is `GET /1.0/events` with these
/// parameters, and returns the client's end.
fn serve(hub: &EventHub, types: Vec<EventType>, project: Option<&str>) -> UnixStream {
    let (server, client) = UnixStream::pair().unwrap();
    let hub = hub.clone();
    let project = project.map(str::to_owned);
    tokio::spawn(async move {
        let service = service_fn(move |request| {
            let hub = hub.clone();
            let types = types.clone();
            let project = project.clone();
            async move {
                let response = events_websocket(&hub, request, types, project, false)
                    .await
                    .unwrap_or_else(ApiError::into_response);
                Ok::<_, Infallible>(response)
            }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .with_upgrades()
            .await;
    });
    client
}

async fn connect(
    hub: &EventHub,
    types: Vec<EventType>,
    project: Option<&str>,
) -> WebSocketStream<UnixStream> {
    let stream = serve(hub, types, project);
    let (socket, response) = client_async("ws://localhost/1.0/events", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

async fn next_json(socket: &mut WebSocketStream<UnixStream>) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an event in time")
            .expect("the stream is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

async fn wait_for_listeners(hub: &EventHub, count: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while hub.listener_count() != count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} listeners, expected {count}", hub.listener_count()));
}

#[test]
fn event_wire_shape_is_incus() {
    let lifecycle = Lifecycle::instance(action::INSTANCE_STARTED, "v1", "default")
        .with_requestor(Requestor::unix("root"));
    let event = Event::new(
        EventType::Lifecycle,
        serde_json::to_value(&lifecycle).unwrap(),
        "default",
    );
    let text = serde_json::to_string(&event).unwrap();
    assert_eq!(
        crate::operations::tests::top_level_keys(&text),
        ["type", "timestamp", "metadata", "location", "project"]
    );
    let value = serde_json::to_value(&event).unwrap();
    assert_eq!(value["type"], "lifecycle");
    assert_eq!(value["location"], "none");
    assert_eq!(value["project"], "default");
    assert!(humantime::parse_rfc3339(value["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        value["metadata"],
        json!({"action": "instance-started", "source": "/1.0/instances/v1",
            "requestor": {"username": "root", "protocol": "unix", "address": "@"},
            "name": "v1", "project": "default"})
    );
    let created = Lifecycle::instance(action::INSTANCE_CREATED, "v1", "other")
        .with_context("type", "virtual-machine");
    assert_eq!(
        serde_json::to_value(&created).unwrap(),
        json!({"action": "instance-created", "source": "/1.0/instances/v1?project=other",
            "context": {"type": "virtual-machine"}, "name": "v1", "project": "other"})
    );
    let hub = EventHub::new();
    let mut events = hub.subscribe();
    hub.publish_lifecycle(action::INSTANCE_DELETED, "/1.0/instances/v1", "other");
    let published = events.try_recv().unwrap();
    let value: serde_json::Value = serde_json::from_str(published.text()).unwrap();
    assert_eq!(value["project"], "other");
    assert_eq!(
        value["metadata"],
        json!({"action": "instance-deleted", "source": "/1.0/instances/v1?project=other",
            "name": "v1", "project": "other"})
    );
    let log = Event::new(EventType::Logging, json!({}), "");
    assert!(serde_json::to_value(&log).unwrap().get("project").is_none());
}

#[test]
fn type_lists_parse_as_incus() {
    assert_eq!(EventType::parse_list(None).unwrap(), EventType::ALL);
    assert_eq!(EventType::parse_list(Some("")).unwrap(), EventType::ALL);
    assert_eq!(
        EventType::parse_list(Some("operation,lifecycle")).unwrap(),
        [EventType::Operation, EventType::Lifecycle]
    );
    let error = EventType::parse_list(Some("operation,bogus")).unwrap_err();
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error.to_string(), "\"bogus\" isn't a supported event type");
    let error = EventType::parse_list(Some("operation,")).unwrap_err();
    assert_eq!(error.to_string(), "\"\" isn't a supported event type");
}

#[tokio::test]
async fn operation_events_reach_a_websocket_listener() {
    let hub = EventHub::default();
    let mut socket = connect(&hub, vec![EventType::Operation], None).await;
    assert_eq!(hub.listener_count(), 1);

    // Neither a lifecycle event nor another project's operation reaches this listener.
    hub.publish_lifecycle(action::INSTANCE_STARTED, "/1.0/instances/v1", "default");
    let operations = Operations::new(hub.clone());
    let elsewhere = operations.start(
        "Starting instance",
        OperationClass::Task,
        BTreeMap::new(),
        "other",
        async { Ok(None) },
    );
    operations.wait(&elsewhere.id, None).await.unwrap();

    let operation = operations.start(
        "Starting instance",
        OperationClass::Task,
        BTreeMap::from([("instances".to_owned(), vec!["/1.0/instances/v1".to_owned()])]),
        "default",
        async { Ok(None) },
    );
    let running = next_json(&mut socket).await;
    assert_eq!(running["type"], "operation");
    assert_eq!(running["location"], "none");
    assert_eq!(running["project"], "default");
    assert_eq!(running["metadata"]["id"], operation.id.as_str());
    assert_eq!(running["metadata"]["status"], "Running");
    assert_eq!(
        running["metadata"]["resources"],
        json!({"instances": ["/1.0/instances/v1"]})
    );
    let done = next_json(&mut socket).await;
    assert_eq!(done["metadata"]["id"], operation.id.as_str());
    assert_eq!(done["metadata"]["status_code"], 200);

    socket.close(None).await.unwrap();
    // The server answers the close; the stream then ends without error.
    while let Some(message) = socket.next().await {
        message.unwrap();
    }
    wait_for_listeners(&hub, 0).await;
}

#[tokio::test]
async fn lifecycle_events_and_pings() {
    let hub = EventHub::default();
    let mut socket = connect(&hub, EventType::ALL.to_vec(), Some("default")).await;
    socket
        .send(Message::Ping(Bytes::from_static(b"hello")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"hello")));

    hub.publish_lifecycle(action::INSTANCE_STOPPED, "/1.0/instances/v1", "default");
    let event = next_json(&mut socket).await;
    assert_eq!(event["type"], "lifecycle");
    assert_eq!(
        event["metadata"],
        json!({"action": "instance-stopped", "source": "/1.0/instances/v1",
            "name": "v1", "project": "default"})
    );
    hub.publish_lifecycle_record(
        "default",
        &Lifecycle::instance(action::INSTANCE_CREATED, "v2", "default")
            .with_requestor(Requestor::unix("root")),
    );
    let event = next_json(&mut socket).await;
    assert_eq!(event["metadata"]["requestor"]["address"], "@");
    hub.publish_logging("info", "hello", BTreeMap::new());
    let event = next_json(&mut socket).await;
    assert_eq!(event["type"], "logging");
    assert_eq!(
        event["metadata"],
        json!({"message": "hello", "level": "info", "context": {}})
    );
}

#[tokio::test]
async fn the_listener_ends_when_the_client_goes_away() {
    let hub = EventHub::default();
    let socket = connect(&hub, EventType::ALL.to_vec(), None).await;
    wait_for_listeners(&hub, 1).await;
    drop(socket);
    wait_for_listeners(&hub, 0).await;
    // Publishing to nobody is fine.
    hub.publish_logging("info", "nobody listens", BTreeMap::new());
}

#[tokio::test]
async fn closing_the_hub_closes_listeners() {
    let hub = EventHub::default();
    let mut socket = connect(&hub, EventType::ALL.to_vec(), None).await;
    hub.close();
    let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Close(Some(frame)) = message else {
        panic!("expected a close frame, got {message:?}");
    };
    assert_eq!(frame.code, CloseCode::Away);
    assert!(socket.next().await.is_none());
    wait_for_listeners(&hub, 0).await;
}

#[tokio::test]
async fn a_listener_that_falls_behind_is_dropped() {
    let hub = EventHub::with_capacity(4);
    let mut socket = connect(&hub, EventType::ALL.to_vec(), None).await;
    // On this single-threaded runtime the listener cannot run during the loop.
    for index in 0..16 {
        hub.publish_logging("info", &format!("event {index}"), BTreeMap::new());
    }
    let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Close(Some(frame)) = message else {
        panic!("expected a close frame, got {message:?}");
    };
    assert_eq!(frame.code, CloseCode::Again);
    wait_for_listeners(&hub, 0).await;
    // Reading on sends the client's close answer; the stream then ends.
    assert!(socket.next().await.is_none());
}

#[tokio::test]
async fn a_message_over_the_bound_closes_that_listener_only() {
    let hub = EventHub::default();
    let mut bystander = connect(&hub, EventType::ALL.to_vec(), None).await;
    let mut socket = connect(&hub, EventType::ALL.to_vec(), None).await;
    wait_for_listeners(&hub, 2).await;
    // At the bound, a message is read and ignored.
    let at_bound = "x".repeat(MAX_INCOMING_MESSAGE);
    socket.send(Message::text(at_bound)).await.unwrap();
    let over = "x".repeat(MAX_INCOMING_MESSAGE + 1);
    socket.send(Message::text(over)).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Close(Some(frame)) = message else {
        panic!("expected a close frame, got {message:?}");
    };
    assert_eq!(frame.code, CloseCode::Size);
    wait_for_listeners(&hub, 1).await;
    hub.publish_logging("info", "still here", BTreeMap::new());
    assert_eq!(
        next_json(&mut bystander).await["metadata"]["message"],
        "still here"
    );
}

#[tokio::test]
async fn a_plain_request_gets_a_400_envelope() {
    let hub = EventHub::default();
    let mut stream = serve(&hub, EventType::ALL.to_vec(), None);
    stream
        .write_all(b"GET /1.0/events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "status": "", "status_code": 0, "operation": "",
            "error_code": 400,
            "error": "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
            "metadata": null})
    );
    assert_eq!(hub.listener_count(), 0);
}

#[tokio::test]
async fn project_and_all_projects_exclude_each_other() {
    let hub = EventHub::default();
    let request = http::Request::new(());
    let error = events_websocket(&hub, request, vec![], Some("p".to_owned()), true)
        .await
        .unwrap_err();
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error.to_string(),
        "Cannot specify a project when requesting all projects"
    );
}

#[test]
fn handshake_headers_are_checked() {
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
    assert!(matches!(
        handshake_accept(&headers),
        Err(EventsError::NotWebsocket(message)) if message.starts_with("unsupported version")
    ));
    headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    assert!(handshake_accept(&headers).is_err());
    // RFC 6455's example key and answer; the oracle shows the same answer from upstream.
    headers.insert(
        SEC_WEBSOCKET_KEY,
        HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
    );
    assert_eq!(
        handshake_accept(&headers).unwrap(),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}
