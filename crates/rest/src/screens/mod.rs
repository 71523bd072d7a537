//! Screens for many viewers: one capture serves every request for a while, and captures in
//! flight are shared.
//!
//! How a screenshot request is served:
//! 1. Each screen (instance, device, head) has a [`Screen`]. If its last capture is younger than
//!    the instance's `console.screenshot.min_interval` (250 ms by default), that capture is the
//!    answer: N viewers never cost QEMU more than one capture per interval.
//! 2. Otherwise, if a capture is in flight, the request waits for it (single flight).
//!    Otherwise it starts one, in a task of its own, so a client that goes away cannot cancel a
//!    capture others wait for.
//! 3. A capture keeps the frame's pixels, their hash (the strong `ETag`, independent of any
//!    encoding), the plain PNG (the same bytes for every client, so Incus clients see no
//!    difference), and renderings of other sizes and formats made on demand, once each.
//! 4. When the pixels did not change since the previous capture, the screen keeps its
//!    `changed_at` (`Last-Modified`), so a page polling an unchanged screen with
//!    `If-None-Match` gets 304s and no body.
//! 5. Every outcome is counted per instance ([`metrics`]) for `GET /1.0/metrics`.

pub mod metrics;
pub mod stream;
pub mod variant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use vgashot_framebuffer::Frame;
use vgashot_instance_drivers::qemu::cmdline::screenshot_min_interval;
use vgashot_instance_drivers::{DriverError, Instance, QemuInstance, ScreenshotOptions};

use crate::error::ApiError;
use metrics::ScreenMetrics;
use variant::{Variant, VariantCache};

/// Which screen: an instance's, on a device and head.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScreenKey {
    /// The project.
    pub project: String,
    /// The instance.
    pub name: String,
    /// The display device, `None` for the primary console.
    pub device: Option<String>,
    /// The head of a multi-head device.
    pub head: Option<u32>,
}

/// One capture of a screen, shared by every request it serves.
#[derive(Debug)]
pub struct Capture {
    /// The pixels.
    pub frame: Arc<Frame>,
    /// The pixels' hash, hex: the strong `ETag` of the plain PNG.
    pub hash: String,
    /// The plain PNG: what `GET .../console?type=vga` returns.
    pub png: Bytes,
    /// When QEMU answered this capture.
    pub captured_at: SystemTime,
    /// When the pixels last changed (this capture's time, or an earlier capture's when the
    /// pixels are the same): `Last-Modified`.
    pub changed_at: SystemTime,
    /// Other sizes and formats, rendered once each.
    variants: VariantCache,
    /// When this capture was taken, for the minimum interval.
    taken: Instant,
}

impl Capture {
    /// The bytes of `variant` of this capture (the plain PNG for [`Variant::plain`]).
    pub async fn render(self: &Arc<Self>, variant: &Variant) -> Result<Bytes, ApiError> {
        if variant.is_plain() {
            return Ok(self.png.clone());
        }
        self.variants.get_or_render(&self.frame, variant).await
    }

    /// The strong `ETag` of `variant`: the pixel hash, plus the rendering's parameters.
    pub fn etag(&self, variant: &Variant) -> String {
        format!("\"{}{}\"", self.hash, variant.etag_suffix())
    }
}

/// What a capture ended with, shared by everyone who waited for it.
type Outcome = Result<Arc<Capture>, Arc<ApiError>>;

/// One screen's state.
#[derive(Default)]
struct ScreenState {
    last: Option<Arc<Capture>>,
    in_flight: Option<watch::Receiver<Option<Outcome>>>,
}

/// One screen: its last capture and the capture in flight.
#[derive(Default)]
struct Screen {
    state: Mutex<ScreenState>,
}

impl Screen {
    fn state(&self) -> MutexGuard<'_, ScreenState> {
        // Every update is a pair of assignments; a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every screen of every instance, and their metrics.
#[derive(Default)]
pub struct Screens {
    screens: Mutex<HashMap<ScreenKey, Arc<Screen>>>,
    metrics: metrics::Metrics,
}

impl std::fmt::Debug for Screens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screens").finish_non_exhaustive()
    }
}

/// How a request was served, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// By a new capture.
    Captured,
    /// By a recent capture.
    Cached,
    /// By a capture another request had started.
    Coalesced,
}

impl Screens {
    /// The metrics of every instance.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// The metrics of one instance.
    pub fn instance_metrics(&self, project: &str, name: &str) -> Arc<ScreenMetrics> {
        self.metrics.instance(project, name)
    }

    /// A capture of `key`'s screen on `vm` no older than the instance's minimum interval.
    pub async fn capture(
        &self,
        vm: &Arc<QemuInstance>,
        key: &ScreenKey,
    ) -> Result<(Arc<Capture>, Served), ApiError> {
        // A recent capture must not outlive the VM: a stopped VM has no screen.
        if vm.state().pid.is_none() {
            return Err(DriverError::NotRunning.into());
        }
        let min_interval =
            screenshot_min_interval(&vm.definition()).map_err(DriverError::Config)?;
        let metrics = self.instance_metrics(&key.project, &key.name);
        let screen = self.screen(key);
        let (mut waiting, served) = {
            let mut state = screen.state();
            let fresh = state
                .last
                .as_ref()
                .filter(|last| last.taken.elapsed() < min_interval);
            if let Some(last) = fresh {
                metrics.count(Served::Cached);
                return Ok((last.clone(), Served::Cached));
            }
            match &state.in_flight {
                Some(in_flight) => (in_flight.clone(), Served::Coalesced),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    state.in_flight = Some(receiver.clone());
                    // The last capture is stale: let it go before the new one is held (a screen
                    // can be large), keeping only what the new one is compared with.
                    let previous = state
                        .last
                        .take()
                        .map(|last| (last.hash.clone(), last.changed_at));
                    tokio::spawn(run_capture(
                        vm.clone(),
                        key.clone(),
                        screen.clone(),
                        previous,
                        metrics.clone(),
                        sender,
                    ));
                    (receiver, Served::Captured)
                }
            }
        };
        if served == Served::Coalesced {
            metrics.count(Served::Coalesced);
        }
        let outcome = waiting
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ApiError::Internal("the capture task ended without an outcome".into()))?
            .clone()
            .expect("waited for Some");
        outcome
            .map(|capture| (capture, served))
            .map_err(ApiError::Shared)
    }

    /// Forgets the screens of an instance (it was deleted).
    pub fn forget(&self, project: &str, name: &str) {
        self.screens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|key, _| key.project != project || key.name != name);
        self.metrics.forget(project, name);
    }

    fn screen(&self, key: &ScreenKey) -> Arc<Screen> {
        self.screens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }
}

/// Takes one capture and publishes it to every waiter.
async fn run_capture(
    vm: Arc<QemuInstance>,
    key: ScreenKey,
    screen: Arc<Screen>,
    previous: Option<(String, SystemTime)>,
    metrics: Arc<ScreenMetrics>,
    sender: watch::Sender<Option<Outcome>>,
) {
    let options = ScreenshotOptions {
        device: key.device.clone(),
        head: key.head,
        ..Default::default()
    };
    let started = Instant::now();
    let captured = vm
        .console_screenshot(&options)
        .await
        .map_err(ApiError::from);
    let outcome = match captured.and_then(|screenshot| match screenshot.frame {
        Some(frame) => Ok((screenshot.png, screenshot.captured_at, frame)),
        None => Err(ApiError::Internal("the capture kept no pixels".into())),
    }) {
        Ok((png, captured_at, frame)) => {
            metrics.observe_capture(started.elapsed());
            let hash = frame.pixel_hash().to_hex();
            let changed_at = match previous {
                Some((previous_hash, previous_changed_at)) if previous_hash == hash => {
                    previous_changed_at
                }
                _ => captured_at,
            };
            Ok(Arc::new(Capture {
                frame: Arc::new(frame),
                hash,
                png: Bytes::from(png),
                captured_at,
                changed_at,
                variants: VariantCache::default(),
                taken: started,
            }))
        }
        Err(error) => {
            metrics.count_error();
            Err(Arc::new(error))
        }
    };
    {
        let mut state = screen.state();
        if let Ok(capture) = &outcome {
            state.last = Some(capture.clone());
        }
        state.in_flight = None;
    }
    sender.send_replace(Some(outcome));
}
