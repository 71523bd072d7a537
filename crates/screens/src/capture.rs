//! One capture of a screen, shared by every request it serves.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::time::Instant;
use vgashot_framebuffer::{Frame, PixelHash};

use crate::error::ScreensError;
use crate::render::{Encodings, RenderPool};
use crate::variant::Variant;

/// A capture: the pixels, their hash, when they were taken and last changed, and their
/// renderings (made lazily, once each, and kept for as long as the pixels stay the same).
#[derive(Debug)]
pub struct Capture {
    frame: Arc<Frame>,
    hash: PixelHash,
    captured_at: SystemTime,
    changed_at: SystemTime,
    encodings: Arc<Encodings>,
    pool: Arc<RenderPool>,
    /// When the capture was asked of the source, for the minimum interval.
    pub(crate) taken: Instant,
}

impl Capture {
    /// A capture of `frame` (whose hash is `hash`), taken at `captured_at` and asked for at
    /// `taken`. When `previous` shows the same pixels, its frame, renderings and `changed_at`
    /// are kept: nothing is encoded again for pixels that did not change.
    pub(crate) fn new(
        frame: Frame,
        hash: PixelHash,
        captured_at: SystemTime,
        taken: Instant,
        previous: Option<&Capture>,
        pool: &Arc<RenderPool>,
    ) -> Self {
        match previous.filter(|previous| previous.hash == hash) {
            Some(previous) => Self {
                frame: previous.frame.clone(),
                hash,
                captured_at,
                changed_at: previous.changed_at,
                encodings: previous.encodings.clone(),
                pool: pool.clone(),
                taken,
            },
            None => Self {
                frame: Arc::new(frame),
                hash,
                captured_at,
                changed_at: captured_at,
                encodings: Arc::default(),
                pool: pool.clone(),
                taken,
            },
        }
    }

    /// The pixels.
    pub fn frame(&self) -> &Arc<Frame> {
        &self.frame
    }

    /// The pixels' hash: the strong `ETag` of the plain PNG, independent of any encoding.
    pub fn hash(&self) -> PixelHash {
        self.hash
    }

    /// When the source took this capture (`Date` of the image).
    pub fn captured_at(&self) -> SystemTime {
        self.captured_at
    }

    /// When the pixels last changed: this capture's time, or an earlier capture's when the
    /// pixels are the same (`Last-Modified`).
    pub fn changed_at(&self) -> SystemTime {
        self.changed_at
    }

    /// The strong `ETag` of `variant`: the pixel hash, plus the rendering's parameters.
    /// Computing it encodes nothing, so a `304` costs no encoding.
    pub fn etag(&self, variant: &Variant) -> String {
        format!("\"{}{}\"", self.hash.to_hex(), variant.etag_suffix())
    }

    /// The bytes of `variant` (the plain PNG for [`Variant::plain`]), rendered the first time
    /// any capture of these pixels is asked for it.
    pub async fn render(&self, variant: &Variant) -> Result<Bytes, ScreensError> {
        self.encodings
            .get_or_render(&self.pool, &self.frame, *variant)
            .await
    }
}
