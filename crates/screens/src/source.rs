//! Where frames come from: the [`FrameSource`] trait, the screens it has, and what it answers.
//!
//! 1. A source is one instance (a QEMU VM today; a VNC mirror or a recording later). It yields
//!    frames (pixels, size, when taken) for a [`ScreenId`]; encodings are not its business.
//! 2. It describes its displays ([`Displays`]: device ids and head counts), so the engine can
//!    refuse a screen that cannot exist ([`Displays::check`]) before it keeps any state for it.
//! 3. It says whether it runs, so a stopped instance answers "not running" at once instead of
//!    with a capture taken before it stopped.
//! 4. A source that learns of changes by itself (a VNC mirror of the screen) can give a follower
//!    a [`ChangeFeed`] ([`FrameSource::change_feed`]): a signal that moves when its picture
//!    changed, and an interest the follower holds, so the source keeps pushing while anyone
//!    follows. Sources without one are polled ([`crate::Follower`]).
//! 5. Each frame says where it came from ([`FrameOrigin`]), for the metrics.
//! 6. A source that keeps its picture current by itself versions it ([`FrameVersion`], on each
//!    frame and from [`FrameSource::current_version`]): while the version stays the same the
//!    engine keeps answering with the capture it has, without copying or hashing the pixels
//!    again, so a still mirrored screen costs nothing however often it is asked for.

use std::any::Any;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::watch;
use vgashot_framebuffer::Frame;

use crate::error::ScreensError;
pub use crate::error::SourceError;

/// Which screen of an instance: the primary console, or a device and one of its heads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScreenId {
    /// The display device's id; `None` for the primary console.
    pub device: Option<String>,
    /// The head of a multi-head device; needs `device`. `None` is head 0's console as QEMU
    /// picks it.
    pub head: Option<u32>,
}

/// One display device of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayDevice {
    /// Its id, as a request names it (`video0`).
    pub id: String,
    /// How many heads it has (at least 1): heads `0..heads` exist.
    pub heads: u32,
}

/// The displays of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Displays {
    /// Its display devices; none for an instance without a display.
    pub devices: Vec<DisplayDevice>,
}

impl Displays {
    /// Whether `screen` exists: a head needs a device, the device must be one of
    /// [`Self::devices`], and the head one of its heads; the primary console needs any display.
    pub fn check(&self, screen: &ScreenId) -> Result<(), ScreensError> {
        if self.devices.is_empty() {
            return Err(ScreensError::NoDisplay);
        }
        let Some(device_id) = &screen.device else {
            return match screen.head {
                Some(_) => Err(ScreensError::HeadWithoutDevice),
                None => Ok(()),
            };
        };
        let device = self
            .devices
            .iter()
            .find(|device| &device.id == device_id)
            .ok_or_else(|| ScreensError::DisplayNotFound {
                device: device_id.clone(),
            })?;
        match screen.head {
            Some(head) if head >= device.heads => Err(ScreensError::HeadNotFound {
                device: device_id.clone(),
                head,
            }),
            _ => Ok(()),
        }
    }
}

/// A frame and when it was taken.
#[derive(Debug, Clone)]
pub struct TimedFrame {
    /// The pixels, shared with the source when it keeps them (a mirror's picture is not
    /// copied for a capture).
    pub frame: Arc<Frame>,
    /// When the source took them (`Date`-like wall time, for `Last-Modified`).
    pub captured_at: SystemTime,
    /// How the source got them.
    pub origin: FrameOrigin,
    /// The version of the source's picture these pixels are, if it keeps one
    /// ([`FrameSource::current_version`]); `None` for a frame taken for this request alone.
    pub version: Option<FrameVersion>,
}

/// A version of a picture a source keeps current by itself (a VNC mirror's copy of a screen):
/// two frames of the same screen with the same version have the same pixels. A source never
/// gives one version to two different pictures, across sessions too (`session` tells them
/// apart, `generation` counts changes within one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameVersion {
    /// Which of the source's sessions kept the picture, unique within the process.
    pub session: u64,
    /// How many times the picture changed within the session.
    pub generation: u64,
}

/// How a source got a frame: counted per instance in the metrics
/// (`vgashot_screenshot_frames_total{source="..."}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOrigin {
    /// Asked of the device for this capture (QEMU's `screendump`).
    Screendump,
    /// Copied from a picture the source keeps current by itself (a VNC mirror).
    Mirror,
}

impl FrameOrigin {
    /// The metrics label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Screendump => "screendump",
            Self::Mirror => "mirror",
        }
    }
}

/// What a source that learns of changes by itself gives a follower of one screen.
pub struct ChangeFeed {
    /// Moves (a generation number) whenever the source's picture of the screen changed; closed
    /// when the source stops pushing (a session that failed), after which the follower polls.
    pub changes: watch::Receiver<u64>,
    /// Held for as long as the follower lives: while any is held the source keeps its picture
    /// current (a VNC mirror stays connected).
    pub interest: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("generation", &*self.changes.borrow())
            .finish_non_exhaustive()
    }
}

/// An instance whose screens can be captured.
///
/// Object-safe (`Arc<dyn FrameSource>`), so the engine depends on this trait only, not on any
/// driver. The `Arc`'s allocation is the instance's identity: state made for one source is not
/// given to another source of the same name (a deleted and re-created instance starts afresh).
#[async_trait]
pub trait FrameSource: Send + Sync {
    /// A frame of `screen`, which [`Self::displays`] lists. It must end: the source bounds its
    /// own capture time (the QEMU source by QMP's command timeout), since every request for
    /// the screen waits for it.
    async fn frame(&self, screen: &ScreenId) -> Result<TimedFrame, SourceError>;

    /// The instance's displays. Called when a screen is first asked for, under the engine's
    /// lock: it must be quick and must not block (no I/O).
    fn displays(&self) -> Displays;

    /// Whether the instance runs now.
    fn running(&self) -> bool;

    /// A change signal for `screen` (which [`Self::displays`] lists), if this source pushes
    /// changes; `None` (the default) if it must be polled. Called when a follower starts, not
    /// under any engine lock; it must not block (a source may start connecting in a task of its
    /// own and move the signal once it is current).
    fn change_feed(&self, _screen: &ScreenId) -> Option<ChangeFeed> {
        None
    }

    /// The version of the picture [`Self::frame`] would give for `screen` now, if the source
    /// keeps one current by itself (`None`, the default, otherwise and while it has none). The
    /// engine asks it under a screen's lock before each capture: it must be quick and must not
    /// block. Asking is demand, as a frame is (a mirror asked for its version stays connected).
    fn current_version(&self, _screen: &ScreenId) -> Option<FrameVersion> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(device: Option<&str>, head: Option<u32>) -> ScreenId {
        ScreenId {
            device: device.map(str::to_owned),
            head,
        }
    }

    #[test]
    fn only_screens_that_exist_pass() {
        let displays = Displays {
            devices: vec![DisplayDevice {
                id: "video0".into(),
                heads: 2,
            }],
        };
        assert!(displays.check(&screen(None, None)).is_ok());
        assert!(displays.check(&screen(Some("video0"), Some(1))).is_ok());
        assert!(matches!(
            displays.check(&screen(None, Some(0))),
            Err(ScreensError::HeadWithoutDevice)
        ));
        assert!(matches!(
            displays.check(&screen(Some("video1"), None)),
            Err(ScreensError::DisplayNotFound { device }) if device == "video1"
        ));
        assert!(matches!(
            displays.check(&screen(Some("video0"), Some(2))),
            Err(ScreensError::HeadNotFound { head: 2, .. })
        ));
        assert!(matches!(
            Displays::default().check(&screen(None, None)),
            Err(ScreensError::NoDisplay)
        ));
    }
}
