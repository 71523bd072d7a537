//! The engine: every screen of every instance, their captures and their counters.
//!
//! How a request for a screen is served:
//! 1. A stopped instance answers [`ScreensError::NotRunning`] at once, whatever capture is kept.
//! 2. The screen is checked against the source's [`Displays`](crate::Displays) before any state
//!    is made for it, so a client cannot make the engine keep state for made-up screens.
//! 3. State is kept per instance ([`InstanceKey`], and the source's `Arc` as its identity: an
//!    instance re-created under the same name starts afresh) and per [`ScreenId`].
//! 4. If the screen's last capture is younger than the minimum interval given by the caller,
//!    that capture is the answer: N viewers never cost the source more than one capture per
//!    interval (an interval of zero captures for every request, still one at a time).
//! 5. If the source keeps its picture current by itself and its version is still the last
//!    capture's ([`FrameSource::current_version`]), the last capture is the answer, taken anew
//!    ([`Served::Unchanged`]): the pixels are neither copied nor hashed again.
//! 6. Otherwise, if a capture is in flight, the request waits for it (single flight); else it
//!    starts one in a task of its own, so a client that goes away cannot cancel a capture others
//!    wait for, and a waiter that is cancelled leaves nothing behind.
//! 7. A new capture starts by letting go of the last one (a guest's screen can be large; only
//!    its hash, `changed_at` and renderings are kept). The capture task hashes the pixels (on
//!    the blocking pool). Pixels equal to the previous capture's keep its renderings and
//!    `changed_at` ([`Capture`]), and the screen's change signal ([`Screens::changes`]) moves
//!    only when the hash does.
//! 8. The task always frees the screen's in-flight slot, even when the source panics (a drop
//!    guard publishes [`ScreensError::CapturePanicked`]): the next request captures afresh.
//! 9. Every outcome is counted per instance ([`ScreenMetrics`]); an instance's state and
//!    counters go with [`Screens::forget`], and by themselves once its source is dropped (swept
//!    when metrics are rendered and when a new screen is made).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use vgashot_framebuffer::PixelHash;
use vgashot_stdext::MutexExt;

use crate::capture::{Capture, Previous};
use crate::error::ScreensError;
use crate::metrics::{self, ScreenMetrics, Served};
use crate::render::{RenderLimits, RenderPool};
use crate::source::{FrameSource, ScreenId, SourceError};

/// Which instance: its project and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// The project.
    pub project: String,
    /// The instance's name.
    pub name: String,
}

/// What a capture ended with, shared by everyone who waited for it.
type Outcome = Result<Arc<Capture>, ScreensError>;

/// One screen's captures.
#[derive(Default)]
struct ScreenState {
    last: Option<Arc<Capture>>,
    in_flight: Option<watch::Receiver<Option<Outcome>>>,
}

/// One screen: its captures and its change signal.
struct Screen {
    state: Mutex<ScreenState>,
    changes: watch::Sender<Option<PixelHash>>,
}

impl Screen {
    fn new() -> Self {
        Self {
            state: Mutex::default(),
            changes: watch::Sender::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, ScreenState> {
        // Every update is a pair of assignments; a poisoned lock is still consistent.
        self.state.lock_unpoisoned()
    }
}

/// The screens and counters of one instance.
struct InstanceScreens {
    /// The source they were made for: they go with it, and a later source of the same name
    /// gets its own (the weak pointer keeps the allocation, so its address is never another's).
    source: Weak<dyn FrameSource>,
    metrics: Arc<ScreenMetrics>,
    screens: HashMap<ScreenId, Arc<Screen>>,
}

impl InstanceScreens {
    fn new(source: &Arc<dyn FrameSource>) -> Self {
        Self {
            source: Arc::downgrade(source),
            metrics: Arc::default(),
            screens: HashMap::new(),
        }
    }

    fn belong_to(&self, source: &Arc<dyn FrameSource>) -> bool {
        std::ptr::addr_eq(self.source.as_ptr(), Arc::as_ptr(source))
    }
}

/// A request's answer: a capture, how it was served, and the instance's counters (for what the
/// caller counts itself: `304`s, streams).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The capture.
    pub capture: Arc<Capture>,
    /// How it was served.
    pub served: Served,
    /// The instance's counters.
    pub metrics: Arc<ScreenMetrics>,
}

/// Every screen of every instance, their captures and their counters.
pub struct Screens {
    pool: Arc<RenderPool>,
    instances: Mutex<BTreeMap<InstanceKey, InstanceScreens>>,
}

impl std::fmt::Debug for Screens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screens").finish_non_exhaustive()
    }
}

impl Screens {
    /// An engine whose renderings are bounded by `limits`.
    pub fn new(limits: RenderLimits) -> Self {
        Self {
            pool: Arc::new(RenderPool::new(limits)),
            instances: Mutex::default(),
        }
    }

    /// A capture of `screen` of `source` (the instance `key`) no older than `min_interval`.
    pub async fn capture(
        &self,
        key: &InstanceKey,
        source: &Arc<dyn FrameSource>,
        screen: &ScreenId,
        min_interval: Duration,
    ) -> Result<Answer, ScreensError> {
        if !source.running() {
            return Err(ScreensError::NotRunning);
        }
        let (metrics, state) = self.screen(key, source, screen)?;
        let (mut waiting, served) = {
            let mut slot = state.state();
            let fresh = slot
                .last
                .as_ref()
                .filter(|last| last.taken.elapsed() < min_interval);
            if let Some(last) = fresh {
                metrics.count(Served::Cached);
                return Ok(Answer {
                    capture: last.clone(),
                    served: Served::Cached,
                    metrics,
                });
            }
            let unchanged = slot
                .last
                .as_ref()
                .filter(|last| {
                    last.version.is_some() && last.version == source.current_version(screen)
                })
                .map(|last| Arc::new(last.revalidated(Instant::now())));
            if let Some(capture) = unchanged {
                slot.last = Some(capture.clone());
                metrics.count(Served::Unchanged);
                return Ok(Answer {
                    capture,
                    served: Served::Unchanged,
                    metrics,
                });
            }
            match &slot.in_flight {
                Some(in_flight) => (in_flight.clone(), Served::Coalesced),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    slot.in_flight = Some(receiver.clone());
                    let publisher = Publisher {
                        screen: state.clone(),
                        metrics: metrics.clone(),
                        sender: Some(sender),
                    };
                    // The last capture is stale: the engine lets go of it (a guest's screen can
                    // be large) before the new one is held, keeping only what the new one is
                    // compared with and the renderings it may reuse.
                    let previous = slot.last.take().map(|last| last.previous());
                    tokio::spawn(run_capture(
                        source.clone(),
                        screen.clone(),
                        previous,
                        self.pool.clone(),
                        publisher,
                    ));
                    (receiver, Served::Captured)
                }
            }
        };
        metrics.count(served);
        // Dropping this future here (a client gone) only drops a receiver.
        let outcome = match waiting.wait_for(Option::is_some).await {
            Ok(outcome) => outcome
                .clone()
                .unwrap_or(Err(ScreensError::CapturePanicked)),
            Err(_) => Err(ScreensError::CapturePanicked),
        };
        outcome.map(|capture| Answer {
            capture,
            served,
            metrics,
        })
    }

    /// The change signal of `screen`: the hash of its latest capture, moving only when the
    /// pixels change (`None` before the first capture). It moves on captures, so a follower
    /// still asks for them (at its own pace, under the minimum interval); a push source can
    /// drive captures later without changing followers.
    pub fn changes(
        &self,
        key: &InstanceKey,
        source: &Arc<dyn FrameSource>,
        screen: &ScreenId,
    ) -> Result<watch::Receiver<Option<PixelHash>>, ScreensError> {
        let (_, state) = self.screen(key, source, screen)?;
        Ok(state.changes.subscribe())
    }

    /// Drops the state and counters of the instance `key` (deleted): its lines leave the
    /// metrics, and an instance made again under its name starts from zero.
    pub fn forget(&self, key: &InstanceKey) {
        self.instances().remove(key);
    }

    /// The counters of every instance with state, as OpenMetrics text (see [`metrics::render`]).
    pub fn render_metrics(&self) -> String {
        let instances: Vec<_> = {
            let mut instances = self.instances();
            forget_gone(&mut instances);
            instances
                .iter()
                .map(|(key, screens)| {
                    (
                        key.project.clone(),
                        key.name.clone(),
                        screens.metrics.clone(),
                    )
                })
                .collect()
        };
        metrics::render(&instances)
    }

    /// Images encoded so far, all screens together: a `304` or a cached rendering adds none.
    pub fn encodings(&self) -> u64 {
        self.pool.encoded()
    }

    fn instances(&self) -> MutexGuard<'_, BTreeMap<InstanceKey, InstanceScreens>> {
        self.instances.lock_unpoisoned()
    }

    /// `screen` of `source` and the instance's counters, made if new and if the screen exists.
    fn screen(
        &self,
        key: &InstanceKey,
        source: &Arc<dyn FrameSource>,
        screen: &ScreenId,
    ) -> Result<(Arc<ScreenMetrics>, Arc<Screen>), ScreensError> {
        let mut instances = self.instances();
        if let Some(known) = instances
            .get(key)
            .filter(|screens| screens.belong_to(source))
            .and_then(|screens| Some((screens.metrics.clone(), screens.screens.get(screen)?)))
        {
            return Ok((known.0, known.1.clone()));
        }
        source.displays().check(screen)?;
        forget_gone(&mut instances);
        let screens = instances
            .entry(key.clone())
            .or_insert_with(|| InstanceScreens::new(source));
        if !screens.belong_to(source) {
            *screens = InstanceScreens::new(source);
        }
        let state = screens
            .screens
            .entry(screen.clone())
            .or_insert_with(|| Arc::new(Screen::new()))
            .clone();
        Ok((screens.metrics.clone(), state))
    }

    /// How many screens have state, for the tests.
    #[cfg(test)]
    pub(crate) fn screen_count(&self) -> usize {
        self.instances()
            .values()
            .map(|screens| screens.screens.len())
            .sum()
    }
}

/// Drops the state of every instance whose source is gone.
fn forget_gone(instances: &mut BTreeMap<InstanceKey, InstanceScreens>) {
    instances.retain(|_, screens| screens.source.strong_count() > 0);
}

/// Publishes a capture's outcome to its screen and waiters, exactly once: when the capture
/// task ends without publishing (the source panicked, the runtime shut down), dropping it
/// frees the screen's slot and tells the waiters.
struct Publisher {
    screen: Arc<Screen>,
    metrics: Arc<ScreenMetrics>,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Publisher {
    fn publish(&mut self, outcome: Outcome) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        match &outcome {
            Ok(capture) => {
                let hash = capture.hash();
                self.screen.changes.send_if_modified(|latest| {
                    let changed = *latest != Some(hash);
                    *latest = Some(hash);
                    changed
                });
            }
            Err(_) => self.metrics.count_error(),
        }
        {
            let mut slot = self.screen.state();
            if let Ok(capture) = &outcome {
                slot.last = Some(capture.clone());
            }
            slot.in_flight = None;
        }
        sender.send_replace(Some(outcome));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if self.sender.is_some() {
            tracing::error!("a screen capture ended without an outcome");
            self.publish(Err(ScreensError::CapturePanicked));
        }
    }
}

/// Takes one capture of `screen` and publishes it.
async fn run_capture(
    source: Arc<dyn FrameSource>,
    screen: ScreenId,
    previous: Option<Previous>,
    pool: Arc<RenderPool>,
    mut publisher: Publisher,
) {
    let taken = Instant::now();
    let outcome = match source.frame(&screen).await {
        Ok(timed) => {
            let hashed = tokio::task::spawn_blocking(move || {
                let hash = timed.frame.pixel_hash();
                (timed, hash)
            })
            .await;
            match hashed {
                Ok((timed, hash)) => {
                    publisher
                        .metrics
                        .observe_capture(taken.elapsed(), timed.origin);
                    Ok(Arc::new(Capture::new(
                        (timed.frame, hash, timed.version),
                        timed.captured_at,
                        taken,
                        previous,
                        &pool,
                    )))
                }
                Err(_) => Err(ScreensError::CapturePanicked),
            }
        }
        Err(SourceError::NotRunning) => Err(ScreensError::NotRunning),
        Err(error) => Err(ScreensError::Source(Arc::new(error))),
    };
    publisher.publish(outcome);
}
