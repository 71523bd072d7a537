//! The engine against a scripted source: frames, panics, failures and captures held until the
//! test releases them, with tokio's clock paused so the interval is exact.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use vgashot_framebuffer::Frame;

use crate::{
    DisplayDevice, Displays, FrameOrigin, FrameSource, FrameVersion, ImageFormat, InstanceKey,
    RenderLimits, ScreenId, Screens, ScreensError, Served, SourceError, TimedFrame, Variant,
};

/// What the scripted source does at one capture.
enum Step {
    /// A 4x2 frame of this grey.
    Frame(u8),
    /// Waits for a permit of the gate, then gives a frame of this grey.
    Gated(Arc<Semaphore>, u8),
    /// Fails.
    Fail,
    /// Panics.
    Panic,
}

/// A source that plays a script and counts its captures.
struct Scripted {
    steps: std::sync::Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
    running: AtomicBool,
    /// The version of its picture, as a mirroring source keeps one; `None` for a polled source.
    version: std::sync::Mutex<Option<FrameVersion>>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
        Arc::new(Self {
            steps: std::sync::Mutex::new(steps.into_iter().collect()),
            calls: AtomicUsize::new(0),
            running: AtomicBool::new(true),
            version: std::sync::Mutex::new(None),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_version(&self, generation: Option<u64>) {
        *self.version.lock().unwrap() = generation.map(|generation| FrameVersion {
            session: 7,
            generation,
        });
    }
}

#[async_trait]
impl FrameSource for Scripted {
    async fn frame(&self, _screen: &ScreenId) -> Result<TimedFrame, SourceError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let step = self.steps.lock().unwrap().pop_front();
        let grey = match step {
            Some(Step::Frame(grey)) => grey,
            Some(Step::Gated(gate, grey)) => {
                gate.acquire().await.unwrap().forget();
                grey
            }
            Some(Step::Panic) => panic!("the scripted source panics"),
            Some(Step::Fail) | None => {
                return Err(SourceError::Failed("scripted failure".into()));
            }
        };
        Ok(TimedFrame {
            frame: Arc::new(Frame::new(4, 2, vec![grey; 24]).unwrap()),
            captured_at: SystemTime::UNIX_EPOCH + Duration::from_secs(call as u64),
            origin: FrameOrigin::Screendump,
            version: *self.version.lock().unwrap(),
        })
    }

    fn displays(&self) -> Displays {
        Displays {
            devices: vec![DisplayDevice {
                id: "video0".into(),
                heads: 2,
            }],
        }
    }

    fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn current_version(&self, _screen: &ScreenId) -> Option<FrameVersion> {
        *self.version.lock().unwrap()
    }
}

const INTERVAL: Duration = Duration::from_millis(250);

fn key(name: &str) -> InstanceKey {
    InstanceKey {
        project: "default".into(),
        name: name.into(),
    }
}

fn primary() -> ScreenId {
    ScreenId::default()
}

fn as_source(source: &Arc<Scripted>) -> Arc<dyn FrameSource> {
    source.clone()
}

/// The value of counter `family` of instance `name` in the metrics, if it has a line.
fn counter(screens: &Screens, family: &str, name: &str) -> Option<u64> {
    let prefix =
        format!("vgashot_screenshot_{family}_total{{project=\"default\",name=\"{name}\"}} ");
    screens
        .render_metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
}

/// Yields to the runtime until `condition` holds, failing the test if it never does.
async fn until(condition: impl Fn() -> bool) {
    for _ in 0..100_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the condition never held");
}

#[tokio::test(start_paused = true)]
async fn a_capture_serves_every_request_of_its_interval() {
    let screens = Screens::new(RenderLimits::default());
    let scripted = Scripted::new([Step::Frame(1), Step::Frame(2), Step::Frame(3)]);
    let source = as_source(&scripted);
    let (instance, screen) = (key("v1"), primary());
    let capture = || screens.capture(&instance, &source, &screen, INTERVAL);

    let first = capture().await.unwrap();
    assert_eq!(first.served, Served::Captured);
    tokio::time::advance(Duration::from_millis(249)).await;
    let cached = capture().await.unwrap();
    assert_eq!(cached.served, Served::Cached);
    assert!(Arc::ptr_eq(&first.capture, &cached.capture));
    assert_eq!(scripted.calls(), 1);

    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(capture().await.unwrap().served, Served::Captured);
    assert_eq!(scripted.calls(), 2);

    // An interval of zero captures for every request.
    let zero = screens
        .capture(&key("v1"), &source, &primary(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(zero.served, Served::Captured);
    assert_eq!(scripted.calls(), 3);
    assert_eq!(counter(&screens, "captures", "v1"), Some(3));
    assert_eq!(counter(&screens, "cache_hits", "v1"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_version_that_has_not_moved_is_served_without_a_capture() {
    let screens = Screens::new(RenderLimits::default());
    let frames = [1, 2, 3, 4].map(Step::Frame);
    let scripted = Scripted::new(frames);
    scripted.set_version(Some(1));
    let source = as_source(&scripted);
    let (instance, screen) = (key("v1"), primary());
    let capture = || screens.capture(&instance, &source, &screen, INTERVAL);

    let first = capture().await.unwrap();
    assert_eq!(first.served, Served::Captured);
    let png = first.capture.render(&Variant::plain()).await.unwrap();
    for _ in 0..3 {
        tokio::time::advance(INTERVAL).await;
        let again = capture().await.unwrap();
        assert_eq!(again.served, Served::Unchanged);
        assert_eq!(again.capture.hash(), first.capture.hash());
        assert!(Arc::ptr_eq(again.capture.frame(), first.capture.frame()));
        assert_eq!(again.capture.render(&Variant::plain()).await.unwrap(), png);
        // Taken anew: within the interval it is the cached answer.
        assert_eq!(capture().await.unwrap().served, Served::Cached);
    }
    assert_eq!(scripted.calls(), 1);
    assert_eq!(screens.encodings(), 1);
    assert_eq!(counter(&screens, "unchanged", "v1"), Some(3));

    // The picture moved: a capture.
    scripted.set_version(Some(2));
    tokio::time::advance(INTERVAL).await;
    let moved = capture().await.unwrap();
    assert_eq!(moved.served, Served::Captured);
    assert_ne!(moved.capture.hash(), first.capture.hash());
    // The source no longer keeps a picture (a session that ended): captures again.
    scripted.set_version(None);
    tokio::time::advance(INTERVAL).await;
    assert_eq!(capture().await.unwrap().served, Served::Captured);
    tokio::time::advance(INTERVAL).await;
    assert_eq!(capture().await.unwrap().served, Served::Captured);
    assert_eq!(scripted.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn requests_during_a_capture_share_it() {
    let screens = Arc::new(Screens::new(RenderLimits::default()));
    let gate = Arc::new(Semaphore::new(0));
    let scripted = Scripted::new([Step::Gated(gate.clone(), 7)]);
    let source = as_source(&scripted);
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let (screens, source) = (screens.clone(), source.clone());
            tokio::spawn(async move {
                screens
                    .capture(&key("v1"), &source, &primary(), Duration::ZERO)
                    .await
            })
        })
        .collect();
    until(|| counter(&screens, "coalesced", "v1") == Some(4)).await;
    assert_eq!(scripted.calls(), 1);
    gate.add_permits(1);
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap().unwrap());
    }
    let captured = answers
        .iter()
        .filter(|answer| answer.served == Served::Captured)
        .count();
    assert_eq!(captured, 1);
    assert!(
        answers
            .iter()
            .all(|answer| Arc::ptr_eq(&answer.capture, &answers[0].capture))
    );
    assert_eq!(scripted.calls(), 1);
    assert_eq!(counter(&screens, "captures", "v1"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn unchanged_pixels_keep_their_etag_date_and_encodings() {
    let screens = Screens::new(RenderLimits::default());
    let scripted = Scripted::new([Step::Frame(1), Step::Frame(1), Step::Frame(2)]);
    let source = as_source(&scripted);
    let (instance, screen) = (key("v1"), primary());
    let capture = || screens.capture(&instance, &source, &screen, Duration::ZERO);
    let plain = Variant::plain();
    let thumbnail = Variant {
        width: Some(2),
        format: ImageFormat::Jpeg,
        ..Variant::plain()
    };

    let first = capture().await.unwrap().capture;
    // What a 304 needs (the ETag, the date) encodes nothing.
    let etag = first.etag(&plain);
    assert_eq!(etag, format!("\"{}\"", first.hash().to_hex()));
    assert_eq!(
        first.etag(&thumbnail),
        format!("\"{}-w2-jpeg\"", first.hash().to_hex())
    );
    assert_eq!(screens.encodings(), 0);
    let png = first.render(&plain).await.unwrap();
    assert_eq!(png, first.frame().encode_png(Default::default()).unwrap());
    first.render(&thumbnail).await.unwrap();
    first.render(&thumbnail).await.unwrap();
    assert_eq!(screens.encodings(), 2);

    // The same pixels again: same ETag and Last-Modified, and no encoding.
    let second = capture().await.unwrap().capture;
    assert_eq!(
        second.captured_at(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(2)
    );
    assert_eq!(second.changed_at(), first.changed_at());
    assert_eq!(second.etag(&plain), etag);
    assert_eq!(second.render(&plain).await.unwrap(), png);
    second.render(&thumbnail).await.unwrap();
    assert_eq!(screens.encodings(), 2);

    // New pixels: a new ETag, date and encodings.
    let third = capture().await.unwrap().capture;
    assert_ne!(third.etag(&plain), etag);
    assert_eq!(third.changed_at(), third.captured_at());
    third.render(&plain).await.unwrap();
    assert_eq!(screens.encodings(), 3);
}

#[tokio::test(start_paused = true)]
async fn requests_for_one_rendering_share_it() {
    let screens = Screens::new(RenderLimits::default());
    let source = as_source(&Scripted::new([Step::Frame(1)]));
    let capture = screens
        .capture(&key("v1"), &source, &primary(), INTERVAL)
        .await
        .unwrap()
        .capture;
    let thumbnail = Variant {
        width: Some(2),
        format: ImageFormat::Webp,
        ..Variant::plain()
    };
    let renderings: Vec<_> = (0..5)
        .map(|_| {
            let capture = capture.clone();
            tokio::spawn(async move { capture.render(&thumbnail).await })
        })
        .collect();
    let mut images = Vec::new();
    for rendering in renderings {
        images.push(rendering.await.unwrap().unwrap());
    }
    assert!(images.iter().all(|image| *image == images[0]));
    assert_eq!(screens.encodings(), 1);
}

#[tokio::test(start_paused = true)]
async fn variants_beyond_the_bound_are_rendered_but_not_kept() {
    let limits = RenderLimits {
        variants_per_frame: 1,
        ..RenderLimits::default()
    };
    let screens = Screens::new(limits);
    let source = as_source(&Scripted::new([Step::Frame(1)]));
    let capture = screens
        .capture(&key("v1"), &source, &primary(), INTERVAL)
        .await
        .unwrap()
        .capture;
    let width = |width| Variant {
        width: Some(width),
        ..Variant::plain()
    };
    for variant in [
        width(2),
        width(2),
        width(3),
        width(3),
        Variant::plain(),
        Variant::plain(),
    ] {
        capture.render(&variant).await.unwrap();
    }
    // width 2 once (kept), width 3 twice (over the bound), the plain PNG once (always kept).
    assert_eq!(screens.encodings(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_leaves_the_screen_free() {
    let screens = Screens::new(RenderLimits::default());
    let scripted = Scripted::new([Step::Panic, Step::Fail, Step::Frame(1)]);
    let source = as_source(&scripted);
    let (instance, screen) = (key("v1"), primary());
    let capture = || screens.capture(&instance, &source, &screen, INTERVAL);
    assert!(matches!(
        capture().await,
        Err(ScreensError::CapturePanicked)
    ));
    assert!(matches!(
        capture().await,
        Err(ScreensError::Source(error)) if matches!(*error, SourceError::Failed(_))
    ));
    assert_eq!(capture().await.unwrap().served, Served::Captured);
    assert_eq!(scripted.calls(), 3);
    assert_eq!(counter(&screens, "errors", "v1"), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_leaves_nothing_behind() {
    let screens = Arc::new(Screens::new(RenderLimits::default()));
    let gate = Arc::new(Semaphore::new(0));
    let scripted = Scripted::new([Step::Gated(gate.clone(), 1)]);
    let source = as_source(&scripted);
    let request = {
        let (screens, source) = (screens.clone(), source.clone());
        tokio::spawn(async move {
            screens
                .capture(&key("v1"), &source, &primary(), INTERVAL)
                .await
        })
    };
    until(|| scripted.calls() == 1).await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());

    // The capture was not the client's to cancel: it ends, and serves the next request.
    gate.add_permits(1);
    // The capture task lets go of the source: only the test's two handles are left.
    until(|| Arc::strong_count(&source) == 2).await;
    let next = screens
        .capture(&key("v1"), &source, &primary(), INTERVAL)
        .await
        .unwrap();
    assert_eq!(next.served, Served::Cached);
    assert_eq!(scripted.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_instance_leaves_no_state_nor_metrics() {
    let screens = Screens::new(RenderLimits::default());
    let v1 = as_source(&Scripted::new([Step::Frame(1)]));
    let v2 = as_source(&Scripted::new([Step::Frame(1)]));
    for (name, source) in [("v1", &v1), ("v2", &v2)] {
        screens
            .capture(&key(name), source, &primary(), INTERVAL)
            .await
            .unwrap();
    }
    assert_eq!(screens.screen_count(), 2);

    screens.forget(&key("v1"));
    assert_eq!(counter(&screens, "captures", "v1"), None);
    assert_eq!(counter(&screens, "captures", "v2"), Some(1));
    assert_eq!(screens.screen_count(), 1);

    // Gone with its source, with no call to `forget`.
    drop(v2);
    assert!(!screens.render_metrics().contains("name=\"v2\""));
    assert_eq!(screens.screen_count(), 0);

    // Made again under the same name: a new instance, from zero, with no capture of the old.
    let old = as_source(&Scripted::new([Step::Frame(1)]));
    let answer = screens
        .capture(&key("v3"), &old, &primary(), INTERVAL)
        .await
        .unwrap();
    let new = as_source(&Scripted::new([Step::Frame(1)]));
    let again = screens
        .capture(&key("v3"), &new, &primary(), INTERVAL)
        .await
        .unwrap();
    assert_eq!(again.served, Served::Captured);
    assert!(!Arc::ptr_eq(&answer.capture, &again.capture));
    assert_eq!(counter(&screens, "captures", "v3"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn screens_that_cannot_exist_get_no_state() {
    let screens = Screens::new(RenderLimits::default());
    let scripted = Scripted::new([]);
    let source = as_source(&scripted);
    let screen = |device: Option<&str>, head| ScreenId {
        device: device.map(str::to_owned),
        head,
    };
    for (bad, expected) in [
        (
            screen(None, Some(1)),
            "A screenshot head needs a display device",
        ),
        (
            screen(Some("video1"), None),
            "Display device \"video1\" not found",
        ),
        (
            screen(Some("video0"), Some(2)),
            "Display device \"video0\" has no head 2",
        ),
    ] {
        let error = screens
            .capture(&key("v1"), &source, &bad, INTERVAL)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), expected);
        assert!(screens.changes(&key("v1"), &source, &bad).is_err());
    }
    assert_eq!(screens.screen_count(), 0);
    assert_eq!(scripted.calls(), 0);
    assert!(!screens.render_metrics().contains("name=\"v1\""));
}

#[tokio::test(start_paused = true)]
async fn a_stopped_instance_is_not_running_at_once() {
    let screens = Screens::new(RenderLimits::default());
    let scripted = Scripted::new([Step::Frame(1)]);
    let source = as_source(&scripted);
    let (instance, screen) = (key("v1"), primary());
    let capture = || screens.capture(&instance, &source, &screen, INTERVAL);
    capture().await.unwrap();
    scripted.running.store(false, Ordering::SeqCst);
    assert!(matches!(capture().await, Err(ScreensError::NotRunning)));
    assert_eq!(scripted.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_change_signal_moves_with_the_pixels_only() {
    let screens = Screens::new(RenderLimits::default());
    let scripted = Scripted::new([Step::Frame(1), Step::Frame(1), Step::Frame(2)]);
    let source = as_source(&scripted);
    let mut changes = screens.changes(&key("v1"), &source, &primary()).unwrap();
    assert_eq!(*changes.borrow_and_update(), None);
    let (instance, screen) = (key("v1"), primary());
    let capture = || screens.capture(&instance, &source, &screen, Duration::ZERO);

    let first = capture().await.unwrap().capture;
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), Some(first.hash()));
    capture().await.unwrap();
    assert!(!changes.has_changed().unwrap());
    let third = capture().await.unwrap().capture;
    changes.changed().await.unwrap();
    assert_eq!(*changes.borrow_and_update(), Some(third.hash()));
}

#[tokio::test(start_paused = true)]
async fn the_last_frame_is_let_go_before_the_next_is_taken() {
    let gate = Arc::new(Semaphore::new(0));
    let source = Scripted::new([Step::Frame(7), Step::Gated(gate.clone(), 7)]);
    let screens = Arc::new(Screens::new(RenderLimits::default()));
    let first = screens
        .capture(&key("v1"), &as_source(&source), &primary(), INTERVAL)
        .await
        .unwrap();
    let png = first.capture.render(&Variant::plain()).await.unwrap();
    let encoded = screens.encodings();
    let first_frame = Arc::downgrade(first.capture.frame());
    drop(first);
    tokio::time::advance(INTERVAL).await;
    // The next capture waits in the source: by then the engine holds the old pixels no more.
    let next = tokio::spawn({
        let (screens, source) = (screens.clone(), as_source(&source));
        async move {
            screens
                .capture(&key("v1"), &source, &primary(), INTERVAL)
                .await
        }
    });
    until(|| source.calls() == 2).await;
    assert!(
        first_frame.upgrade().is_none(),
        "the last frame is still held while the next is taken"
    );
    gate.add_permits(1);
    let next = next.await.unwrap().unwrap();
    // The same pixels keep their renderings all the same.
    assert_eq!(next.capture.render(&Variant::plain()).await.unwrap(), png);
    assert_eq!(screens.encodings(), encoded);
}
