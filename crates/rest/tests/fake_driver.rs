//! The REST layer's handlers against a fake driver, without QEMU: what `crates/rest` knows of
//! instances is the `Driver` and `Instance` traits, so any driver serves the same API.
//!
//! 1. [`FakeDriver`] keeps instances in memory; a [`FakeInstance`] changes state when asked and
//!    is a frame source whose frames the test scripts ([`FakeInstance::script`]).
//! 2. The real daemon (`vgashot_rest::Daemon`) serves it on a Unix socket in a temporary
//!    directory, and the crate's own client drives it, as a tool would: every request goes
//!    through the router, the handlers, operations and the screens engine.
//! 3. Each test asserts exact outcomes: statuses, Incus's error texts, pixels, capture counts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::{Value, json};
use vgashot_client::{Client, ClientError};
use vgashot_framebuffer::Frame;
use vgashot_instance_drivers::{
    DISPLAY_DEVICE_ID, Driver, DriverError, Instance, InstanceDefinition, InstanceState,
    InstanceStatus, InstanceType, Result, TRANSITION_CAPACITY, Transition,
};
use vgashot_rest::Daemon;
use vgashot_rest::model::{InstanceSource, InstanceStatePut, InstancesPost};
use vgashot_screens::{
    DisplayDevice, Displays, FrameOrigin, FrameSource, ScreenId, SourceError, TimedFrame,
};

/// What the next capture of a [`FakeInstance`] answers.
enum Scripted {
    /// These pixels.
    Frame(Frame),
    /// This driver error, as a failed capture.
    Fails(DriverError),
}

/// An instance in memory.
struct FakeInstance {
    name: String,
    project: String,
    definition: Mutex<InstanceDefinition>,
    status: Mutex<InstanceStatus>,
    /// The captures to answer, in order; the last frame is answered again when it runs out.
    script: Mutex<VecDeque<Scripted>>,
    last_frame: Mutex<Option<Frame>>,
    captures: AtomicUsize,
}

impl FakeInstance {
    fn new(definition: InstanceDefinition) -> Self {
        Self {
            name: definition.name.clone(),
            project: definition.project.clone(),
            definition: Mutex::new(definition),
            status: Mutex::new(InstanceStatus::Stopped),
            script: Mutex::default(),
            last_frame: Mutex::default(),
            captures: AtomicUsize::new(0),
        }
    }

    fn script(&self, next: Scripted) {
        self.script.lock().unwrap().push_back(next);
    }

    fn set_status(&self, status: InstanceStatus) {
        *self.status.lock().unwrap() = status;
    }
}

#[async_trait]
impl FrameSource for FakeInstance {
    async fn frame(&self, _screen: &ScreenId) -> std::result::Result<TimedFrame, SourceError> {
        if !self.running() {
            return Err(SourceError::NotRunning);
        }
        self.captures.fetch_add(1, Ordering::SeqCst);
        let next = self.script.lock().unwrap().pop_front();
        let frame = match next {
            Some(Scripted::Frame(frame)) => {
                *self.last_frame.lock().unwrap() = Some(frame.clone());
                frame
            }
            Some(Scripted::Fails(error)) => return Err(SourceError::Failed(Box::new(error))),
            None => self
                .last_frame
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| SourceError::Failed("nothing scripted".into()))?,
        };
        Ok(TimedFrame {
            frame: Arc::new(frame),
            captured_at: SystemTime::now(),
            origin: FrameOrigin::Screendump,
            version: None,
        })
    }

    fn displays(&self) -> Displays {
        Displays {
            devices: vec![DisplayDevice {
                id: DISPLAY_DEVICE_ID.to_owned(),
                heads: 1,
            }],
        }
    }

    fn running(&self) -> bool {
        *self.status.lock().unwrap() == InstanceStatus::Running
    }
}

#[async_trait]
impl Instance for FakeInstance {
    fn name(&self) -> &str {
        &self.name
    }

    fn project(&self) -> &str {
        &self.project
    }

    fn instance_type(&self) -> InstanceType {
        InstanceType::VirtualMachine
    }

    fn definition(&self) -> InstanceDefinition {
        self.definition.lock().unwrap().clone()
    }

    fn state(&self) -> InstanceState {
        let status = *self.status.lock().unwrap();
        InstanceState {
            status,
            reason: None,
            pid: (status == InstanceStatus::Running).then_some(4242),
        }
    }

    async fn update(&self, definition: InstanceDefinition) -> Result<()> {
        *self.definition.lock().unwrap() = definition;
        Ok(())
    }

    async fn start(&self) -> Result<()> {
        self.set_status(InstanceStatus::Running);
        Ok(())
    }

    async fn stop(&self, _force: bool, _timeout: Duration) -> Result<()> {
        self.set_status(InstanceStatus::Stopped);
        Ok(())
    }

    async fn console_log(&self) -> Result<Vec<u8>> {
        Ok(b"fake boot\r\n".to_vec())
    }

    async fn clear_console_log(&self) -> Result<()> {
        Ok(())
    }
}

/// A driver of [`FakeInstance`]s. It publishes no transitions of its own: the handlers' own
/// lifecycle events are what these tests see.
struct FakeDriver {
    instances: Mutex<BTreeMap<(String, String), Arc<FakeInstance>>>,
    transitions: tokio::sync::broadcast::Sender<Transition>,
}

impl Default for FakeDriver {
    fn default() -> Self {
        Self {
            instances: Mutex::default(),
            transitions: tokio::sync::broadcast::channel(TRANSITION_CAPACITY).0,
        }
    }
}

impl std::fmt::Debug for FakeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeDriver")
    }
}

impl FakeDriver {
    fn fake(&self, name: &str) -> Arc<FakeInstance> {
        self.instances.lock().unwrap()[&("default".to_owned(), name.to_owned())].clone()
    }
}

#[async_trait]
impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn version(&self) -> Option<String> {
        Some("1.2.3".into())
    }

    async fn create(&self, definition: InstanceDefinition) -> Result<Arc<dyn Instance>> {
        if definition.instance_type != InstanceType::VirtualMachine {
            return Err(DriverError::UnsupportedType(definition.instance_type));
        }
        let key = (definition.project.clone(), definition.name.clone());
        let mut instances = self.instances.lock().unwrap();
        if instances.contains_key(&key) {
            return Err(DriverError::AlreadyExists { name: key.1 });
        }
        let instance = Arc::new(FakeInstance::new(definition));
        instances.insert(key, instance.clone());
        Ok(instance)
    }

    fn get(&self, project: &str, name: &str) -> Result<Arc<dyn Instance>> {
        let instances = self.instances.lock().unwrap();
        let instance = instances
            .get(&(project.to_owned(), name.to_owned()))
            .ok_or(DriverError::NotFound)?;
        Ok(instance.clone())
    }

    fn list(&self, project: &str) -> Vec<Arc<dyn Instance>> {
        let instances = self.instances.lock().unwrap();
        instances
            .iter()
            .filter(|((instance_project, _), _)| instance_project == project)
            .map(|(_, instance)| instance.clone() as Arc<dyn Instance>)
            .collect()
    }

    async fn delete(&self, project: &str, name: &str) -> Result<()> {
        let key = (project.to_owned(), name.to_owned());
        self.instances
            .lock()
            .unwrap()
            .remove(&key)
            .map(drop)
            .ok_or(DriverError::NotFound)
    }

    async fn rename(&self, project: &str, old: &str, new: &str) -> Result<Arc<dyn Instance>> {
        let mut instances = self.instances.lock().unwrap();
        let new_key = (project.to_owned(), new.to_owned());
        if instances.contains_key(&new_key) {
            return Err(DriverError::AlreadyExists {
                name: new.to_owned(),
            });
        }
        let old = instances
            .remove(&(project.to_owned(), old.to_owned()))
            .ok_or(DriverError::NotFound)?;
        let mut definition = old.definition();
        definition.name = new.to_owned();
        let renamed = Arc::new(FakeInstance::new(definition));
        instances.insert(new_key, renamed.clone());
        Ok(renamed)
    }

    fn transitions(&self) -> tokio::sync::broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }
}

/// The daemon over a fake driver, serving until dropped.
struct Served {
    client: Client,
    driver: Arc<FakeDriver>,
    socket: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("unix.socket");
    let driver = Arc::new(FakeDriver::default());
    let daemon = Daemon::new(driver.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let path = socket.clone();
    tokio::spawn(async move {
        daemon
            .serve_unix(&path, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let client = Client::new(&socket);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.request("GET", "/1.0", None).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon never listened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Served {
        client,
        driver,
        socket,
        _stop: stop,
        _dir: dir,
    }
}

/// Creates the VM `name` (stopped), with `config`.
async fn create(
    client: &Client,
    name: &str,
    config: Value,
) -> std::result::Result<Value, ClientError> {
    let body = json!({
        "name": name,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": config,
    });
    client.call("POST", "/1.0/instances", Some(&body)).await
}

fn api_error(result: std::result::Result<Value, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A 4×2 frame whose every pixel is `rgb`.
fn frame(rgb: [u8; 3]) -> Frame {
    Frame::new(4, 2, rgb.repeat(8)).unwrap()
}

#[tokio::test]
async fn create_list_and_change_state() {
    // Through the client's typed calls, so the wire model is what both ends read and write.
    let served = serve().await;
    let client = &served.client;
    let request = InstancesPost {
        name: "v1".into(),
        kind: "virtual-machine".into(),
        source: InstanceSource {
            kind: "none".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    client.create_instance(&request, None).await.unwrap();
    assert_eq!(
        client.call("GET", "/1.0/instances", None).await.unwrap(),
        json!(["/1.0/instances/v1"])
    );
    let listed = client.instances(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].status.as_str()),
        ("v1", "Stopped")
    );
    assert_eq!(listed[0].status_code, 102);

    let start = InstanceStatePut {
        action: "start".into(),
        ..Default::default()
    };
    client.change_state("v1", &start, None).await.unwrap();
    let state = client.instance_state("v1", None).await.unwrap();
    assert_eq!((state.status.as_str(), state.pid), ("Running", 4242));
    let full = client.instances_full(None).await.unwrap();
    assert_eq!(full[0].state.as_ref().unwrap().status, "Running");
    let server = client.server().await.unwrap();
    assert_eq!(server.environment.driver, "fake");
    assert_eq!(server.environment.driver_version, "1.2.3");

    let stop = InstanceStatePut {
        action: "stop".into(),
        force: true,
        ..Default::default()
    };
    client.change_state("v1", &stop, None).await.unwrap();
    assert_eq!(
        served.driver.fake("v1").state().status,
        InstanceStatus::Stopped
    );
    client.delete_instance("v1", None).await.unwrap();
    assert!(client.instances(None).await.unwrap().is_empty());
    assert_eq!(
        api_error(client.instance("v1", None).await.map(|_| Value::Null)).0,
        404
    );
}

#[tokio::test]
async fn a_screenshot_is_the_scripted_frame_shared_and_revalidated() {
    let served = serve().await;
    let client = &served.client;
    // One capture serves every request for a minute, so the count below is exact.
    create(
        client,
        "v1",
        json!({"console.screenshot.min_interval": "60s"}),
    )
    .await
    .unwrap();
    let vm = served.driver.fake("v1");
    vm.set_status(InstanceStatus::Running);
    vm.script(Scripted::Frame(frame([255, 0, 0])));

    let reply = client
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("image/png"));
    let png = Frame::from_png(&reply.body).unwrap();
    assert_eq!((png.width(), png.height()), (4, 2));
    assert_eq!(png.rgb(), [255, 0, 0].repeat(8).as_slice());
    let etag = reply.header("etag").unwrap().to_owned();

    let again = client
        .request_with(
            "GET",
            "/1.0/instances/v1/console?type=vga",
            &[(http::header::IF_NONE_MATCH, &etag)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let jpeg = client
        .request(
            "GET",
            "/1.0/instances/v1/console?type=vga&format=jpeg&width=2",
            None,
        )
        .await
        .unwrap();
    assert_eq!(jpeg.status, 200);
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    assert_eq!(vm.captures.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn errors_have_incus_statuses_and_words() {
    let served = serve().await;
    let client = &served.client;
    assert_eq!(
        api_error(client.call("GET", "/1.0/instances/missing", None).await),
        (
            404,
            "Failed to fetch instance \"missing\" in project \"default\": Instance not found"
                .into()
        )
    );
    create(
        client,
        "v1",
        json!({"console.screenshot.min_interval": "0"}),
    )
    .await
    .unwrap();
    assert_eq!(
        api_error(create(client, "v1", json!({})).await),
        (409, "Instance \"v1\" already exists".into())
    );
    assert_eq!(
        api_error(create(client, "bad_name", json!({})).await).0,
        400
    );

    // A stopped instance has no screen.
    let shot = client
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await
        .unwrap();
    assert_eq!(
        (shot.status, shot.error().to_string()),
        (400, "Instance is not running".into())
    );
    let stop = json!({"action": "stop", "timeout": 0});
    assert_eq!(
        api_error(
            client
                .call("PUT", "/1.0/instances/v1/state", Some(&stop))
                .await
        ),
        (400, "The instance is already stopped".into())
    );

    let vm = served.driver.fake("v1");
    vm.set_status(InstanceStatus::Running);
    assert_eq!(
        api_error(client.call("DELETE", "/1.0/instances/v1", None).await),
        (
            400,
            "The instance is currently running, stop it first".into()
        )
    );
    // A driver error inside a capture keeps its own status; anything else is a 500.
    vm.script(Scripted::Fails(DriverError::ScreenTooLarge {
        bytes: 1 << 30,
        limit: 1 << 20,
    }));
    vm.script(Scripted::Fails(DriverError::NotRunning));
    let too_large = client
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await
        .unwrap();
    assert_eq!(too_large.status, 400);
    assert!(
        too_large
            .error()
            .to_string()
            .starts_with("The screen is larger than the 1048576 pixels"),
        "{}",
        too_large.error()
    );
    let not_running = client
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await
        .unwrap();
    assert_eq!(not_running.status, 400);
    let unscripted = client
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await
        .unwrap();
    assert_eq!(
        (unscripted.status, unscripted.error().to_string()),
        (500, "nothing scripted".into())
    );
    let bad_head = client
        .request(
            "GET",
            "/1.0/instances/v1/console?type=vga&device=video0&head=1",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (bad_head.status, bad_head.error().to_string()),
        (400, "Display device \"video0\" has no head 1".into())
    );
}

/// An events websocket on the served socket, for the types in `query`.
async fn listen(
    served: &Served,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::UnixStream> {
    let stream = tokio::net::UnixStream::connect(&served.socket)
        .await
        .unwrap();
    let url = format!("ws://vgashot/1.0/events?{query}");
    let (socket, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// The metadata of the `screen` events `socket` gets within `period`, with when each came.
async fn screen_events(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>,
    period: Duration,
) -> Vec<(tokio::time::Instant, Value)> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + period;
    let mut events = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, socket.next()).await {
        let tokio_tungstenite::tungstenite::Message::Text(text) = message.unwrap() else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["type"], "screen", "{event}");
        events.push((tokio::time::Instant::now(), event["metadata"].clone()));
    }
    events
}

#[tokio::test]
async fn screen_events_are_paced_per_instance_and_cost_nothing_without_listeners() {
    let served = serve().await;
    create(
        &served.client,
        "v1",
        json!({"console.screenshot.min_interval": "0"}),
    )
    .await
    .unwrap();
    let vm = served.driver.fake("v1");
    vm.set_status(InstanceStatus::Running);
    // A guest that repaints at every capture.
    for shade in 0..=255u8 {
        vm.script(Scripted::Frame(frame([shade, 0, 0])));
    }
    // A listener of other types does not make the screen be followed.
    let mut others = listen(&served, "type=lifecycle,operation").await;
    assert!(
        screen_events(&mut others, Duration::from_millis(1500))
            .await
            .is_empty()
    );
    assert_eq!(vm.captures.load(Ordering::SeqCst), 0);

    // Three listeners of `screen` (one of every type) share one follower: one capture, and
    // one event, a second.
    let mut listeners = Vec::new();
    for query in ["type=screen", "", "type=operation,screen"] {
        listeners.push(listen(&served, query).await);
    }
    let events = screen_events(&mut listeners[0], Duration::from_millis(3500)).await;
    assert!((3..=5).contains(&events.len()), "{events:?}");
    for pair in events.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(800),
            "{gap:?} between {pair:?}"
        );
        assert_ne!(pair[0].1["etag"], pair[1].1["etag"]);
    }
    let first = &events[0].1;
    assert_eq!(
        (
            &first["name"],
            &first["project"],
            &first["width"],
            &first["height"]
        ),
        (&json!("v1"), &json!("default"), &json!(4), &json!(2))
    );
    assert!(first.get("device").is_none(), "{first}");
    let captures = vm.captures.load(Ordering::SeqCst);
    assert!(captures <= events.len() + 1, "{captures} captures");

    // With the listeners gone the follower stops: the count stays.
    drop(listeners);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut settled = vm.captures.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = vm.captures.load(Ordering::SeqCst);
        if now == settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "captures go on: {now}"
        );
        settled = now;
    }
    assert!(
        screen_events(&mut others, Duration::from_millis(1500))
            .await
            .is_empty()
    );
    assert_eq!(vm.captures.load(Ordering::SeqCst), settled);
}
