//! Screens for many viewers, served by the `vgashot-screens` engine.
//!
//! How a screenshot request reaches the engine:
//! 1. The instance is the engine's frame source: every driver's `Instance` is a `FrameSource`
//!    (the qemu driver's: frames decoded from QEMU's PPM, its displays, whether it runs), so a
//!    capture costs QEMU one screendump and us one decode and one hash; every encoding is made
//!    by the engine when a request asks for it, once per distinct frame.
//! 2. The instance's `console.screenshot.min_interval` (250 ms by default, `0` for every
//!    request) is asked of it here and given to the engine with each request.
//! 3. The engine does the rest: single flight, the pixel hash (`ETag`), `changed_at`
//!    (`Last-Modified`), renderings, the render bound ([`vgashot_screens::RenderLimits`]: a 503
//!    past it), and the counters of `GET /1.0/metrics`.
//! 4. An instance's screens and counters are kept for one instance, not for a name: the engine
//!    holds a weak pointer to the instance, so they go as soon as the driver lets go of it,
//!    however it went (deleted by a request, or by the driver itself, as an ephemeral instance
//!    that stopped), with no hook on any delete path; one created again under the same name
//!    starts afresh.
//! 5. [`stream`] turns captures into an MJPEG stream, at most so many at once; [`wake`] wakes
//!    a blanked screen before its capture.
//! 6. [`wait`] follows a screen ([`Screens::follow`]) and answers `wait=DURATION`.

pub mod stream;
pub mod wait;
pub mod wake;

use std::sync::Arc;

use vgashot_instance_drivers::Instance;
use vgashot_screens::{Answer, FrameSource, InstanceKey, RenderLimits, ScreenId};

use crate::error::ApiError;

/// The engine's key of `vm`: its project and name.
fn instance_key(vm: &Arc<dyn Instance>) -> InstanceKey {
    InstanceKey {
        project: vm.project().to_owned(),
        name: vm.name().to_owned(),
    }
}

/// Every screen of every VM, and their metrics.
#[derive(Debug)]
pub struct Screens {
    engine: vgashot_screens::Screens,
    /// The open MJPEG streams' slots ([`stream`]).
    streams: stream::StreamSlots,
    /// The slots of requests waiting for a change ([`wait`]).
    waiters: wait::WaitSlots,
}

impl Default for Screens {
    fn default() -> Self {
        Self {
            engine: vgashot_screens::Screens::new(RenderLimits::default()),
            streams: stream::StreamSlots::default(),
            waiters: wait::WaitSlots::default(),
        }
    }
}

impl Screens {
    /// A capture of `screen` of `vm` no older than the instance's minimum interval.
    pub async fn capture(
        &self,
        vm: &Arc<dyn Instance>,
        screen: &ScreenId,
    ) -> Result<Answer, ApiError> {
        let min_interval = vm.screenshot_min_interval()?;
        let source: Arc<dyn FrameSource> = vm.clone();
        Ok(self
            .engine
            .capture(&instance_key(vm), &source, screen, min_interval)
            .await?)
    }

    /// The metrics of every instance with screens, as OpenMetrics text.
    pub fn render_metrics(&self) -> String {
        self.engine.render_metrics()
    }
}
