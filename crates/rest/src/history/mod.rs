//! The screen history as the API layer uses it: the store off the async workers, each VM's
//! identity and settings, the recorder, and the pinned final screen.
//!
//! 1. [`ScreenHistory`] owns the store ([`vgashot_history::History`]); every call runs on the
//!    blocking pool ([`ScreenHistory::run`]), since SQLite blocks.
//! 2. A VM's history is found by its identity, its project and creation time
//!    ([`instance_ref`]): renamed or restarted it keeps its history, deleted and made again under
//!    the same name it starts afresh. Its settings are its `console.history.*` keys
//!    ([`settings`]).
//! 3. [`recorder`] follows each running VM's screen into the store.
//! 4. [`ScreenHistory::record_final`] pins the last screen of a VM that stopped, shut down,
//!    panicked or crashed, for the driver's transitions to call.
//! 5. Deleting a VM deletes its history ([`ScreenHistory::forget`]); the recorder also sweeps the
//!    histories of instances that are gone however they went (an ephemeral VM that stopped).

pub mod recorder;

use std::sync::Arc;

use tokio::sync::Semaphore;
use vgashot_history::{FinalReason, History, HistoryError, InstanceRef, Retention};
use vgashot_instance_drivers::{Driver, HistorySettings, Instance, Transition, TransitionKind};
use vgashot_screens::{ScreensError, TimedFrame, Variant};

use crate::error::ApiError;
use crate::urls::with_project;

/// The daemon's screen history.
#[derive(Debug)]
pub struct ScreenHistory {
    store: Arc<History>,
    /// Renderings of stored frames (thumbnails, other formats) running at once.
    renders: Arc<Semaphore>,
}

/// Renderings of stored frames at once: one. Each is a decode and an encode of milliseconds;
/// more are refused as busy (503) rather than queued, so a burst of thumbnail requests for old
/// screens cannot take the cores from the live screens.
pub const CONCURRENT_RENDERS: usize = 1;

impl ScreenHistory {
    /// The history kept in `store`.
    pub fn new(store: History) -> Self {
        Self {
            store: Arc::new(store),
            renders: Arc::new(Semaphore::new(CONCURRENT_RENDERS)),
        }
    }

    /// `variant` of a stored image (a PNG): the stored bytes for the plain PNG, otherwise
    /// decoded and rendered on the blocking pool, one at a time ([`CONCURRENT_RENDERS`]).
    pub async fn render(&self, image: Vec<u8>, variant: Variant) -> Result<Vec<u8>, ApiError> {
        if variant.is_plain() {
            return Ok(image);
        }
        let slot = self
            .renders
            .clone()
            .try_acquire_owned()
            .map_err(|_| ScreensError::Busy {
                limit: CONCURRENT_RENDERS,
            })?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let frame = History::decode(&image)?;
            Ok(variant.render(&frame)?)
        })
        .await
        .map_err(|_| ApiError::Internal("a screen history rendering panicked".into()))?
    }

    /// Runs `work` on the store off the async workers.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&History) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|_| ApiError::Internal("a screen history task panicked".into()))?
            .map_err(ApiError::History)
    }

    /// Records the final screen of `vm`, pinned, with `reason`: `frame` when the driver
    /// captured one before QEMU ended, else the latest screen recorded. Returns its id, for the
    /// URL `/1.0/instances/NAME/screenshots/ID`.
    pub async fn record_final(
        &self,
        vm: &Arc<dyn Instance>,
        reason: FinalReason,
        frame: Option<Arc<TimedFrame>>,
    ) -> Result<i64, ApiError> {
        let instance = instance_ref(vm);
        self.run(move |store| store.record_final(&instance, reason, frame.as_deref()))
            .await
    }

    /// Pins the last screen of the instance that `transition` ended, and answers its URL for
    /// the transition's lifecycle event: the frame the driver captured before QEMU ended, or
    /// (QEMU gone) the latest one recorded. `None` for a start, for an instance deleted
    /// meanwhile, and when nothing could be pinned (logged: the event goes out without it).
    pub async fn pin_final_screen(
        &self,
        driver: &dyn Driver,
        transition: &Transition,
    ) -> Option<String> {
        let reason = match transition.kind {
            TransitionKind::Started => return None,
            TransitionKind::Stopped => FinalReason::Stop,
            TransitionKind::GuestShutdown => FinalReason::Shutdown,
            TransitionKind::GuestPanicked => FinalReason::Panic,
            TransitionKind::Crashed => FinalReason::Crash,
        };
        let vm = driver.get(&transition.project, &transition.name).ok()?;
        match self
            .record_final(&vm, reason, transition.final_frame.clone())
            .await
        {
            Ok(id) => Some(with_project(
                &screenshot_url(&transition.name, id),
                &transition.project,
            )),
            Err(ApiError::History(HistoryError::NothingRecorded)) => None,
            Err(error) => {
                tracing::warn!(
                    instance = %transition.name,
                    error = %crate::describe(&error),
                    "the last screen was not pinned"
                );
                None
            }
        }
    }

    /// Deletes the history of `vm` (being deleted).
    pub async fn forget(&self, vm: &Arc<dyn Instance>) -> Result<(), ApiError> {
        let identity = instance_ref(vm).identity;
        self.run(move |store| store.forget_instance(&identity))
            .await
    }
}

/// Whose history `vm`'s is: its project and name, and its identity (project and creation time).
pub fn instance_ref(vm: &Arc<dyn Instance>) -> InstanceRef {
    let definition = vm.definition();
    InstanceRef {
        identity: identity(&definition.project, &definition.created_at),
        project: definition.project,
        name: definition.name,
    }
}

/// The identity of an instance of `project` created at `created_at` (RFC 3339 with
/// nanoseconds: two instances of one name are never created in the same nanosecond).
fn identity(project: &str, created_at: &str) -> String {
    format!("{project}/{created_at}")
}

/// `vm`'s `console.history.*` settings.
pub fn settings(vm: &Arc<dyn Instance>) -> Result<HistorySettings, ApiError> {
    Ok(vm.history_settings()?)
}

/// The retention rules of `settings`.
pub fn retention(settings: &HistorySettings) -> Retention {
    Retention {
        max_age: Some(settings.retention),
        max_bytes: Some(settings.size),
    }
}

/// The URL of screenshot `id` of the instance `name`.
pub fn screenshot_url(name: &str, id: i64) -> String {
    format!("/1.0/instances/{name}/screenshots/{id}")
}
