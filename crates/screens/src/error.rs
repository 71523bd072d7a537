//! The errors of the screens engine: one enum, each variant with the HTTP status the REST layer
//! is meant to give it (mapped in `crates/rest/src/error.rs`, the one place statuses live).
//!
//! Errors are `Clone` (causes behind `Arc`), because one capture's outcome is shared by every
//! request that waited for it.

use std::sync::Arc;

use vgashot_framebuffer::FrameError;

/// What can go wrong serving a screen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScreensError {
    /// The instance does not run, so it has no screen (400, as Incus answers for a stopped
    /// instance's console).
    #[error("Instance is not running")]
    NotRunning,
    /// The instance has no display at all (400).
    #[error("Instance has no display")]
    NoDisplay,
    /// A head was asked for without the device it belongs to (400); no state is made for it.
    #[error("A screenshot head needs a display device")]
    HeadWithoutDevice,
    /// The display device named does not exist (400); no state is made for it.
    #[error("Display device \"{device}\" not found")]
    DisplayNotFound {
        /// The device id asked for.
        device: String,
    },
    /// The device has no such head (400); no state is made for it.
    #[error("Display device \"{device}\" has no head {head}")]
    HeadNotFound {
        /// The device id.
        device: String,
        /// The head asked for.
        head: u32,
    },
    /// `quality` was given for a lossless format (400).
    #[error("The quality parameter applies to jpeg only: png and webp are lossless")]
    QualityNotJpeg,
    /// The screen cannot be rendered at the size asked for, e.g. larger than it is (400).
    #[error(transparent)]
    Size(Arc<FrameError>),
    /// The source failed to capture (400 for [`SourceError::HeadNotFound`], and for what
    /// [`SourceError::Failed`] holds when it is the caller's mistake; 500 otherwise). Its text
    /// is the source's own, so an operator reads the driver's words.
    #[error(transparent)]
    Source(Arc<SourceError>),
    /// The source panicked during a capture (500); the next request captures afresh.
    #[error("the screen capture failed unexpectedly")]
    CapturePanicked,
    /// An encoder failed on a valid frame (500).
    #[error("cannot encode the screen")]
    Encode(#[source] Arc<FrameError>),
    /// An encoder panicked (500); nothing was cached, the next request renders afresh.
    #[error("the screen rendering failed unexpectedly")]
    RenderPanicked,
    /// Every rendering slot is taken and the wait queue is full (503): the client may retry.
    #[error("Too many screenshots waiting to be rendered (at most {limit}); try again later")]
    Busy {
        /// How many may wait, [`crate::RenderLimits::queued`].
        limit: usize,
    },
}

/// Why a source gave no frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The instance does not run (it stopped while the capture was asked for).
    #[error("Instance is not running")]
    NotRunning,
    /// The source refused the screen although [`crate::FrameSource::displays`] listed it (the
    /// guest changed its mode, a head is not bound to a console).
    #[error("Display device \"{device}\" has no head {head}")]
    HeadNotFound {
        /// The device id.
        device: String,
        /// The head asked for.
        head: u32,
    },
    /// Anything else: the source's own error (e.g. a QMP failure), whose text and causes it
    /// shows as they are.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}
