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
//! 6. An instance's screens and counters are kept for one instance, not for a name: they
//!    remember the instance they were made for, and go as soon as the driver no longer has that
//!    very instance, however it went (deleted by a request, or by the driver itself, as an
//!    ephemeral instance that stopped), with no hook on any delete path. They are swept when the
//!    metrics are rendered (so a deleted instance has no lines there) and whenever a new screen
//!    is made (so the map holds no more than the live instances' screens and the ones made
//!    since), and an instance created again under a deleted one's name starts afresh.

pub mod metrics;
pub mod stream;
pub mod variant;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use vgashot_framebuffer::Frame;
use vgashot_instance_drivers::qemu::cmdline::screenshot_min_interval;
use vgashot_instance_drivers::{
    DriverError, Instance, QemuDriver, QemuInstance, ScreenshotOptions,
};

use crate::error::ApiError;
use metrics::ScreenMetrics;
use stream::StreamSlots;
use variant::{RenderQueue, Variant, VariantCache};

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

/// An instance, by project and name.
type InstanceKey = (String, String);

/// The screens and counters of one instance.
struct InstanceScreens {
    /// The instance they were made for: they go with it, and a later instance of the same name
    /// gets its own.
    instance: Weak<QemuInstance>,
    /// Its counters.
    metrics: Arc<ScreenMetrics>,
    /// Its screens, by device and head.
    screens: HashMap<(Option<String>, Option<u32>), Arc<Screen>>,
}

impl InstanceScreens {
    fn new(instance: &Arc<QemuInstance>) -> Self {
        Self {
            instance: Arc::downgrade(instance),
            metrics: Arc::default(),
            screens: HashMap::new(),
        }
    }

    /// Whether these are `instance`'s (the weak pointer keeps the allocation, so an address is
    /// never another instance's).
    fn belong_to(&self, instance: &Arc<QemuInstance>) -> bool {
        std::ptr::eq(self.instance.as_ptr(), Arc::as_ptr(instance))
    }
}

/// Every screen of every instance the driver has, and their metrics.
pub struct Screens {
    /// The instances, to tell which screens belong to one that is gone.
    driver: QemuDriver,
    instances: Mutex<BTreeMap<InstanceKey, InstanceScreens>>,
    /// Every rendering of every capture runs through this queue ([`variant`]).
    renders: Arc<RenderQueue>,
    /// The open MJPEG streams' slots ([`stream`]).
    streams: StreamSlots,
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
    /// The screens of the instances of `driver`.
    pub fn new(driver: QemuDriver) -> Self {
        Self {
            driver,
            instances: Mutex::default(),
            renders: Arc::default(),
            streams: StreamSlots::default(),
        }
    }

    /// The metrics of every instance the driver has, as OpenMetrics text.
    pub fn render_metrics(&self) -> String {
        let instances: Vec<_> = {
            let mut instances = self.instances();
            self.forget_gone(&mut instances);
            instances
                .iter()
                .map(|((project, name), screens)| {
                    (project.clone(), name.clone(), screens.metrics.clone())
                })
                .collect()
        };
        metrics::render(&instances)
    }

    /// The metrics of one instance; counters of an instance the driver no longer has count
    /// nowhere.
    pub fn instance_metrics(&self, project: &str, name: &str) -> Arc<ScreenMetrics> {
        match self.driver.get(project, name) {
            Ok(instance) => self
                .of_instance(&mut self.instances(), &instance)
                .metrics
                .clone(),
            Err(_) => Arc::default(),
        }
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
        let (metrics, screen) = self.screen(vm, key);
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
                    let previous = state.last.clone();
                    tokio::spawn(run_capture(
                        vm.clone(),
                        key.clone(),
                        screen.clone(),
                        previous,
                        metrics.clone(),
                        self.renders.clone(),
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

    fn instances(&self) -> MutexGuard<'_, BTreeMap<InstanceKey, InstanceScreens>> {
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `key`'s screen of `vm` and `vm`'s counters, made if new.
    fn screen(&self, vm: &Arc<QemuInstance>, key: &ScreenKey) -> (Arc<ScreenMetrics>, Arc<Screen>) {
        let mut instances = self.instances();
        let head = (key.device.clone(), key.head);
        let known = instances
            .get(&(vm.project().to_owned(), vm.name().to_owned()))
            .is_some_and(|screens| screens.belong_to(vm) && screens.screens.contains_key(&head));
        if !known {
            self.forget_gone(&mut instances);
        }
        let screens = self.of_instance(&mut instances, vm);
        let screen = screens.screens.entry(head).or_default().clone();
        (screens.metrics.clone(), screen)
    }

    /// `vm`'s screens, made afresh when there are none or they are of an earlier instance of
    /// the same name.
    fn of_instance<'a>(
        &self,
        instances: &'a mut BTreeMap<InstanceKey, InstanceScreens>,
        vm: &Arc<QemuInstance>,
    ) -> &'a mut InstanceScreens {
        let key = (vm.project().to_owned(), vm.name().to_owned());
        let screens = instances
            .entry(key)
            .or_insert_with(|| InstanceScreens::new(vm));
        if !screens.belong_to(vm) {
            *screens = InstanceScreens::new(vm);
        }
        screens
    }

    /// Drops the screens and counters of every instance the driver no longer has.
    fn forget_gone(&self, instances: &mut BTreeMap<InstanceKey, InstanceScreens>) {
        instances.retain(|(project, name), screens| {
            self.driver
                .get(project, name)
                .is_ok_and(|live| screens.belong_to(&live))
        });
    }
}

/// Takes one capture and publishes it to every waiter.
async fn run_capture(
    vm: Arc<QemuInstance>,
    key: ScreenKey,
    screen: Arc<Screen>,
    previous: Option<Arc<Capture>>,
    metrics: Arc<ScreenMetrics>,
    renders: Arc<RenderQueue>,
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
            let changed_at = match &previous {
                Some(previous) if previous.hash == hash => previous.changed_at,
                _ => captured_at,
            };
            Ok(Arc::new(Capture {
                frame: Arc::new(frame),
                hash,
                png: Bytes::from(png),
                captured_at,
                changed_at,
                variants: VariantCache::new(renders),
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

#[cfg(test)]
mod tests {
    use vgashot_instance_drivers::{DriverPaths, InstanceDefinition, InstanceType};

    use super::*;

    fn definition(name: &str) -> InstanceDefinition {
        InstanceDefinition {
            name: name.into(),
            project: "default".into(),
            instance_type: InstanceType::VirtualMachine,
            description: String::new(),
            config: Default::default(),
            devices: Default::default(),
            profiles: Vec::new(),
            ephemeral: false,
            created_at: "2026-12-01T00:00:00Z".into(),
            last_used_at: String::new(),
        }
    }

    /// The `not_modified` line of `name` in the metrics, if it has one.
    fn not_modified(screens: &Screens, name: &str) -> Option<String> {
        let prefix =
            format!("vgashot_screenshot_not_modified_total{{project=\"default\",name=\"{name}\"}}");
        screens
            .render_metrics()
            .lines()
            .find(|line| line.starts_with(&prefix))
            .map(str::to_owned)
    }

    /// Counters go with their instance, whoever deleted it, and a new instance of the same name
    /// starts from zero; no VM runs, as none is needed to count.
    #[tokio::test]
    async fn counters_go_with_their_instance() {
        let dir = tempfile::tempdir().unwrap();
        let driver = QemuDriver::open(DriverPaths {
            state_dir: dir.path().join("state"),
            runtime_dir: dir.path().join("run"),
        })
        .await
        .unwrap();
        let screens = Screens::new(driver.clone());
        for name in ["v1", "v2"] {
            driver.create(definition(name)).await.unwrap();
            screens
                .instance_metrics("default", name)
                .count_not_modified();
        }
        let line = |name: &str, count| {
            format!(
                "vgashot_screenshot_not_modified_total{{project=\"default\",name=\"{name}\"}} {count}"
            )
        };
        assert_eq!(not_modified(&screens, "v1"), Some(line("v1", 1)));
        // A name the driver does not have is counted nowhere.
        screens
            .instance_metrics("default", "nope")
            .count_not_modified();
        assert_eq!(not_modified(&screens, "nope"), None);

        // Deleted straight through the driver, as an ephemeral instance deletes itself.
        driver.delete("default", "v1").await.unwrap();
        let text = screens.render_metrics();
        assert!(!text.contains("name=\"v1\""), "{text}");
        assert_eq!(not_modified(&screens, "v2"), Some(line("v2", 1)));

        // Deleted and created again with no look at the metrics between: a new instance.
        driver.delete("default", "v2").await.unwrap();
        driver.create(definition("v2")).await.unwrap();
        screens.instance_metrics("default", "v2");
        assert_eq!(not_modified(&screens, "v2"), Some(line("v2", 0)));
    }
}
