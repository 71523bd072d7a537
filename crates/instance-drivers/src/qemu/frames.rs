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
//! 4. The driver's errors become [`SourceError`]s: not running and a missing head keep their
//!    meaning; anything else is [`SourceError::Failed`] with the [`DriverError`] inside, which
//!    the REST layer can downcast for its status.

use async_trait::async_trait;
use vgashot_screens::{
    DisplayDevice, Displays, FrameOrigin, FrameSource, ScreenId, SourceError, TimedFrame,
};

use crate::error::DriverError;
use crate::instance::{Instance, ScreenshotOptions};
use crate::qemu::QemuInstance;
use crate::qemu::cmdline::{DISPLAY_DEVICE_ID, display_plan};
use crate::qemu::screenshot;

#[async_trait]
impl FrameSource for QemuInstance {
    async fn frame(&self, screen: &ScreenId) -> Result<TimedFrame, SourceError> {
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
            frame,
            captured_at,
            origin: FrameOrigin::Screendump,
        })
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
}

/// What the engine needs to know of a driver error.
fn source_error(error: DriverError) -> SourceError {
    match error {
        DriverError::NotRunning => SourceError::NotRunning,
        DriverError::HeadNotFound { device, head } => SourceError::HeadNotFound { device, head },
        other => SourceError::Failed(Box::new(other)),
    }
}
