//! One capture of a screen, shared by every request it serves.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::time::Instant;
use vgashot_framebuffer::{Frame, PixelHash};

use crate::error::ScreensError;
use crate::render::{Encodings, RenderPool};
use crate::source::FrameVersion;
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
    /// The source's version of these pixels, if it keeps one.
    pub(crate) version: Option<FrameVersion>,
    /// When the capture was asked of the source, for the minimum interval.
    pub(crate) taken: Instant,
}

/// What a new capture keeps of the one before it, so that the screen's last capture (its
/// pixels, as large as the guest's screen) can be let go before a new one is taken: its hash,
/// when its pixels last changed, and its renderings.
#[derive(Debug)]
pub(crate) struct Previous {
    hash: PixelHash,
    changed_at: SystemTime,
    encodings: Arc<Encodings>,
}

impl Capture {
    /// A capture of `frame` (whose hash is `hash`, and the source's version `version`), taken
    /// at `captured_at` and asked for at `taken`. When `previous` shows the same pixels, its
    /// renderings and `changed_at` are kept: nothing is encoded again for pixels that did not
    /// change.
    pub(crate) fn new(
        (frame, hash, version): (Arc<Frame>, PixelHash, Option<FrameVersion>),
        captured_at: SystemTime,
        taken: Instant,
        previous: Option<Previous>,
        pool: &Arc<RenderPool>,
    ) -> Self {
        let (changed_at, encodings) = match previous.filter(|previous| previous.hash == hash) {
            Some(previous) => (previous.changed_at, previous.encodings),
            None => (captured_at, Arc::default()),
        };
        Self {
            frame,
            hash,
            captured_at,
            changed_at,
            encodings,
            pool: pool.clone(),
            version,
            taken,
        }
    }

    /// This capture, vouched for at `taken` by the source (its version has not moved): the
    /// same pixels, hash and renderings, shared, not copied; taken now.
    pub(crate) fn revalidated(&self, taken: Instant) -> Self {
        Self {
            frame: self.frame.clone(),
            hash: self.hash,
            captured_at: SystemTime::now(),
            changed_at: self.changed_at,
            encodings: self.encodings.clone(),
            pool: self.pool.clone(),
            version: self.version,
            taken,
        }
    }

    /// What the next capture of this screen keeps of this one.
    pub(crate) fn previous(&self) -> Previous {
        Previous {
            hash: self.hash,
            changed_at: self.changed_at,
            encodings: self.encodings.clone(),
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
