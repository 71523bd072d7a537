//! What a screenshot request asks for besides the screen: a size, a format, a quality; and the
//! renderings of a capture, made once each.
//!
//! How the CPU spent on renderings is bounded:
//! 1. A capture keeps at most [`MAX_KEPT_VARIANTS`] renderings; a request for another one is
//!    rendered without being kept, so a capture's memory does not grow with the variety asked.
//! 2. Every rendering (thumbnails, JPEG, WebP, stream frames) runs through one [`RenderQueue`]:
//!    at most [`render_workers`] at once, one core fewer than the machine has, so distinct
//!    `width`/`format` requests, however many, leave a core to captures, the plain PNG and the
//!    rest of the daemon.
//! 3. Renderings waiting for a worker are bounded too ([`QUEUED_RENDERS_PER_WORKER`]); one more
//!    is refused at once with a 503 envelope rather than queued without end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};
use vgashot_framebuffer::{Frame, FrameError, PngCompression};

use crate::error::ApiError;
use crate::limits::LimitError;
use crate::request::Query;

/// The largest thumbnail side accepted: as large as any screen QEMU shows.
pub const MAX_SIDE: u32 = 8192;
/// JPEG quality when none is asked for.
pub const DEFAULT_JPEG_QUALITY: u8 = 80;
/// Renderings kept per capture; more distinct ones are rendered without being kept. 16 cover
/// what viewers ask at once (a thumbnail size or two per page, a stream, a format) while a
/// capture of a 1280x800 screen keeps at most a few MiB of them.
pub const MAX_KEPT_VARIANTS: usize = 16;

/// Renderings that may wait for a worker, per worker: a rendering takes milliseconds (tens for
/// a full-size WebP), so a full queue is drained within about a second, and a client beyond it
/// learns at once that the server is busy.
pub const QUEUED_RENDERS_PER_WORKER: usize = 16;

/// How many renderings run at once: every core but one, and at least one (one on a 2-core
/// machine), so renderings alone never take every core.
pub fn render_workers() -> usize {
    std::thread::available_parallelism()
        .map(|cores| cores.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// The workers of step 2 and the bounded queue of step 3.
#[derive(Debug)]
pub struct RenderQueue {
    workers: Arc<Semaphore>,
    /// Renderings running or waiting.
    admitted: Arc<AtomicUsize>,
    /// The most renderings running or waiting.
    limit: usize,
}

impl Default for RenderQueue {
    fn default() -> Self {
        Self::new(render_workers())
    }
}

/// A rendering's place in the queue, given back when dropped.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RenderQueue {
    /// A queue of `workers` workers, each with [`QUEUED_RENDERS_PER_WORKER`] waiting places.
    pub fn new(workers: usize) -> Self {
        Self {
            workers: Arc::new(Semaphore::new(workers)),
            admitted: Arc::default(),
            limit: workers * (1 + QUEUED_RENDERS_PER_WORKER),
        }
    }

    /// Runs `job` on a blocking thread once a worker is free, or refuses it at once with
    /// [`LimitError::RenderQueue`] when the queue is full. The worker and the place are held
    /// until the job ends, even if the caller goes away meanwhile.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(LimitError::RenderQueue { limit: self.limit }.into());
        }
        let admitted = Admitted(self.admitted.clone());
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the render queue is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _held = (admitted, worker);
            job()
        })
        .await
        .map_err(|error| ApiError::Internal(format!("rendering panicked: {error}")))
    }
}

/// An image format of a screenshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ImageFormat {
    /// PNG, lossless (the default, and what Incus returns).
    Png,
    /// JPEG, lossy, with `quality`.
    Jpeg,
    /// WebP, lossless (smaller and faster than lossy WebP on screen content, measured).
    Webp,
}

impl ImageFormat {
    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
        }
    }
}

/// A rendering of a screen: size (`None` for the screen's own), format and quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Width asked for; with only one of width and height the aspect ratio is kept.
    pub width: Option<u32>,
    /// Height asked for.
    pub height: Option<u32>,
    /// The format.
    pub format: ImageFormat,
    /// JPEG quality, 1-100.
    pub quality: Option<u8>,
}

impl Variant {
    /// The plain PNG, byte for byte what Incus clients get.
    pub fn plain() -> Self {
        Self {
            width: None,
            height: None,
            format: ImageFormat::Png,
            quality: None,
        }
    }

    /// Whether this is the plain PNG.
    pub fn is_plain(&self) -> bool {
        *self == Self::plain()
    }

    /// Reads `width`, `height`, `format` and `quality` from a query, with `format` defaulting to
    /// `default_format` (PNG for a screenshot, JPEG for a stream); anything out of range is a 400
    /// that says what is accepted.
    pub fn parse(query: &Query, default_format: ImageFormat) -> Result<Self, ApiError> {
        let side = |name: &str| -> Result<Option<u32>, ApiError> {
            query
                .get(name)
                .map(|value| {
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|side| (1..=MAX_SIDE).contains(side))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "Invalid value for {name} parameter: {value} (1 to {MAX_SIDE})"
                            ))
                        })
                })
                .transpose()
        };
        let format = match query.get("format") {
            None | Some("") => default_format,
            Some("png") => ImageFormat::Png,
            Some("jpeg" | "jpg") => ImageFormat::Jpeg,
            Some("webp") => ImageFormat::Webp,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "Invalid value for format parameter: {other} (png, jpeg or webp)"
                )));
            }
        };
        let quality = query
            .get("quality")
            .map(|value| {
                value
                    .parse::<u8>()
                    .ok()
                    .filter(|quality| (1..=100).contains(quality))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "Invalid value for quality parameter: {value} (1 to 100)"
                        ))
                    })
            })
            .transpose()?;
        if quality.is_some() && format != ImageFormat::Jpeg {
            return Err(ApiError::BadRequest(
                "The quality parameter applies to jpeg only: png and webp are lossless".into(),
            ));
        }
        Ok(Self {
            width: side("width")?,
            height: side("height")?,
            format,
            quality,
        })
    }

    /// What distinguishes this rendering's `ETag` from the plain PNG's.
    pub fn etag_suffix(&self) -> String {
        if self.is_plain() {
            return String::new();
        }
        let mut suffix = String::new();
        if let Some(width) = self.width {
            suffix.push_str(&format!("-w{width}"));
        }
        if let Some(height) = self.height {
            suffix.push_str(&format!("-h{height}"));
        }
        suffix.push('-');
        suffix.push_str(self.format.name());
        if let Some(quality) = self.quality {
            suffix.push_str(&format!("-q{quality}"));
        }
        suffix
    }

    /// Renders `frame` (off the async workers: resizing and encoding take milliseconds).
    fn render(&self, frame: &Frame) -> Result<Vec<u8>, ApiError> {
        let (width, height) =
            vgashot_framebuffer::fit_within(frame.width(), frame.height(), self.width, self.height)
                .map_err(size_error)?;
        let resized;
        let frame = if (width, height) == (frame.width(), frame.height()) {
            frame
        } else {
            resized = frame.resize(width, height).map_err(size_error)?;
            &resized
        };
        let encoded = match self.format {
            ImageFormat::Png => frame.encode_png(PngCompression::Fastest),
            ImageFormat::Jpeg => frame.encode_jpeg(self.quality.unwrap_or(DEFAULT_JPEG_QUALITY)),
            ImageFormat::Webp => frame.encode_webp_lossless(),
        };
        encoded.map_err(|error| ApiError::Internal(format!("cannot encode the screen: {error}")))
    }
}

/// A size the screen cannot be rendered at is the caller's mistake.
fn size_error(error: FrameError) -> ApiError {
    ApiError::BadRequest(error.to_string())
}

/// The renderings of one capture.
#[derive(Debug)]
pub struct VariantCache {
    entries: Mutex<HashMap<Variant, Arc<OnceCell<Bytes>>>>,
    renders: Arc<RenderQueue>,
}

impl VariantCache {
    /// No renderings yet; they will run through `renders`.
    pub fn new(renders: Arc<RenderQueue>) -> Self {
        Self {
            entries: Mutex::default(),
            renders,
        }
    }

    /// `variant` of `frame`, rendered by the first request that asks and shared by the others.
    pub async fn get_or_render(
        &self,
        frame: &Arc<Frame>,
        variant: &Variant,
    ) -> Result<Bytes, ApiError> {
        let cell = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match entries.get(variant) {
                Some(cell) => cell.clone(),
                None if entries.len() < MAX_KEPT_VARIANTS => {
                    entries.entry(*variant).or_default().clone()
                }
                None => Arc::new(OnceCell::new()),
            }
        };
        cell.get_or_try_init(|| {
            let frame = frame.clone();
            let variant = *variant;
            async move {
                self.renders
                    .run(move || variant.render(&frame))
                    .await?
                    .map(Bytes::from)
            }
        })
        .await
        .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_render_queue_runs_few_at_once_and_refuses_beyond_its_queue() {
        let queue = Arc::new(RenderQueue::new(1));
        let limit = 1 + QUEUED_RENDERS_PER_WORKER;
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        for _ in 0..limit {
            let (queue, released) = (queue.clone(), released.clone());
            let (running, most) = (running.clone(), most.clone());
            jobs.push(tokio::spawn(async move {
                queue
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let _ = released.lock().unwrap().recv();
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        while queue.admitted.load(Ordering::SeqCst) < limit {
            tokio::task::yield_now().await;
        }
        let refused = queue.run(|| ()).await.unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refused.to_string(),
            format!(
                "Too many screenshots waiting to be rendered (at most {limit}); try again later"
            )
        );
        for _ in 0..limit {
            release.send(()).unwrap();
        }
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one worker");
        assert_eq!(queue.admitted.load(Ordering::SeqCst), 0);
        queue.run(|| ()).await.unwrap();
    }

    fn parse(raw: &str) -> Result<Variant, ApiError> {
        Variant::parse(&Query::parse(Some(raw)), ImageFormat::Png)
    }

    #[test]
    fn a_stream_defaults_to_jpeg_and_takes_a_quality() {
        let query = Query::parse(Some("stream=mjpeg&quality=70"));
        let variant = Variant::parse(&query, ImageFormat::Jpeg).unwrap();
        assert_eq!(variant.format, ImageFormat::Jpeg);
        assert_eq!(variant.quality, Some(70));
    }

    #[test]
    fn parameters_are_checked() {
        assert!(parse("type=vga").unwrap().is_plain());
        let thumbnail = parse("width=320&format=jpeg&quality=70").unwrap();
        assert_eq!(thumbnail.width, Some(320));
        assert_eq!(thumbnail.format, ImageFormat::Jpeg);
        assert_eq!(thumbnail.etag_suffix(), "-w320-jpeg-q70");
        for bad in [
            "width=0",
            "width=-1",
            "height=99999",
            "width=abc",
            "format=gif",
            "quality=0",
            "quality=101",
            "format=jpeg&quality=x",
            "quality=50",
            "format=webp&quality=50",
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
