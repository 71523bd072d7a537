//! A [`QemuInstance`] as a [`FrameSource`] of the screens engine (`vgashot-screens`).
//!
//! 1. [`FrameSource::frame`] asks the running QEMU for a PPM and decodes it
//!    ([`screenshot::capture_frame`]): no PNG is encoded here; the engine encodes what a request
//!    asks for, once per distinct frame.
//! 2. [`FrameSource::displays`] is the instance's display device ([`DISPLAY_DEVICE_ID`]) with
//!    the heads its config gives it ([`display_plan`]: 1 for std VGA, `vgashot.vga.heads` for
//!    virtio), or none for `vgashot.vga=none`, so the engine refuses other screens before it keeps
//!    any state for them.
//! 3. [`FrameSource::running`] is whether QEMU runs, so a stopped VM answers "not running" at
//!    once.
//! 4. The primary screen is served from the VNC mirror ([`crate::qemu::mirror`]) while it has
//!    a picture, and followers of it get the mirror's change feed; other heads, and the primary
//!    screen before the mirror's first full update or after its session failed, take a
//!    screendump. Each frame says which ([`FrameOrigin`]); a mirrored one carries the mirror's
//!    version, which [`FrameSource::current_version`] gives without copying the picture.
//! 5. The driver's errors become [`SourceError`]s: not running and a missing head keep their
//!    meaning; anything else is [`SourceError::Failed`] with the [`DriverError`] inside, which
//!    the REST layer can downcast for its status.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use vgashot_qmp::Qmp;
use vgashot_screens::{
    ChangeFeed, DisplayDevice, Displays, FrameOrigin, FrameSource, FrameVersion, ScreenId,
    SourceError, TimedFrame,
};

use crate::error::DriverError;
use crate::instance::{Instance, ScreenshotOptions};
use crate::qemu::QemuInstance;
use crate::qemu::cmdline::{DISPLAY_DEVICE_ID, display_plan, screenshot_min_interval};
use crate::qemu::mirror::SessionSpec;
use crate::qemu::screenshot;

#[async_trait]
impl FrameSource for QemuInstance {
    async fn frame(&self, screen: &ScreenId) -> Result<TimedFrame, SourceError> {
        let qmp = self.running_qmp().ok_or(SourceError::NotRunning)?;
        if is_primary(screen) {
            if let Some((frame, version)) = self.mirror.picture(|| self.mirror_spec(&qmp)) {
                return Ok(TimedFrame {
                    frame,
                    // The mirror is current: QEMU would have sent what changed.
                    captured_at: SystemTime::now(),
                    origin: FrameOrigin::Mirror,
                    version: Some(version),
                });
            }
        }
        self.screendump(screen).await
    }

    fn displays(&self) -> Displays {
        // A definition that does not validate cannot run: it has no screen either.
        let heads = display_plan(&self.definition()).map_or(0, |(_, heads)| heads);
        Displays {
            devices: (heads > 0)
                .then(|| DisplayDevice {
                    id: DISPLAY_DEVICE_ID.to_owned(),
                    heads,
                })
                .into_iter()
                .collect(),
        }
    }

    fn running(&self) -> bool {
        self.state().pid.is_some()
    }

    fn change_feed(&self, screen: &ScreenId) -> Option<ChangeFeed> {
        if !is_primary(screen) {
            return None;
        }
        let qmp = self.running_qmp()?;
        self.mirror.feed(|| self.mirror_spec(&qmp))
    }

    fn current_version(&self, screen: &ScreenId) -> Option<FrameVersion> {
        if !is_primary(screen) || !self.running() {
            return None;
        }
        self.mirror.version()
    }
}

impl QemuInstance {
    /// What a mirror session of this VM needs; `None` for a definition that does not validate.
    fn mirror_spec(&self, qmp: &Qmp) -> Option<SessionSpec> {
        Some(SessionSpec {
            qmp: qmp.clone(),
            max_pixels: self.max_screen_pixels(),
            period: screenshot_min_interval(&self.definition()).ok()?,
        })
    }
}

/// Whether `screen` is the primary console, the one QEMU's VNC server shows.
fn is_primary(screen: &ScreenId) -> bool {
    screen.device.is_none() && screen.head.is_none()
}

/// What the engine needs to know of a driver error.
fn source_error(error: DriverError) -> SourceError {
    match error {
        DriverError::NotRunning => SourceError::NotRunning,
        DriverError::HeadNotFound { device, head } => SourceError::HeadNotFound { device, head },
        other => SourceError::Failed(Box::new(other)),
    }
}

impl QemuInstance {
    /// A `screendump` of `screen`, whatever the mirror holds: the frame as QEMU has it now. The
    /// last screen of a VM that is ending is taken this way, since QEMU's VNC server stops
    /// refreshing a paused VM and the mirror may lag by up to its 3 s refresh.
    pub(crate) async fn screendump(&self, screen: &ScreenId) -> Result<TimedFrame, SourceError> {
        let qmp = self.running_qmp().ok_or(SourceError::NotRunning)?;
        let options = ScreenshotOptions {
            device: screen.device.clone(),
            head: screen.head,
            ..Default::default()
        };
        let max_pixels = self.max_screen_pixels();
        let (frame, captured_at) = screenshot::capture_frame(&qmp, &options, max_pixels)
            .await
            .map_err(source_error)?;
        Ok(TimedFrame {
            frame: Arc::new(frame),
            captured_at,
            origin: FrameOrigin::Screendump,
            version: None,
        })
    }
}
