//! A live stream of a screen: `multipart/x-mixed-replace` of JPEG frames (MJPEG), which an
//! `<img>` element in any browser plays.
//!
//! How a stream runs:
//! 1. A task per stream ticks at the requested frame rate and asks [`Screens`] for a capture,
//!    so every stream and every plain request of the screen share captures (and the instance's
//!    minimum interval).
//! 2. A frame is sent only when the screen changed (its `ETag` differs from the last frame sent),
//!    but for the one repeat of step 3.
//! 3. Each part ends with the next boundary, and a frame that the screen keeps is sent once
//!    more at the next tick: Chromium shows a part only once the part after it begins (measured:
//!    a still screen stayed blank until then), and on a still screen the next change may be
//!    minutes away.
//! 4. Frames go through a channel of one: a viewer that reads slower than frames come loses the
//!    frames in between (the next tick sends the newest), and nothing queues without bound.
//! 5. The task ends when the viewer goes away (the channel closes) or the instance stops.
//! 6. At most [`MAX_STREAMS_PER_INSTANCE`] streams of one instance and [`MAX_STREAMS`] in all run
//!    at once; one more gets a 503 envelope. Frames are rendered through the engine's bounded
//!    render pool ([`vgashot_screens::RenderLimits`]); when it is full, the stream skips that
//!    frame.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc::{self, error::TrySendError};
use vgashot_instance_drivers::Instance;
use vgashot_screens::{ImageFormat, ScreenId, ScreenMetrics, ScreensError, Variant};

use super::Screens;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::limits::{LimitError, Quota, Refused, Slot};

/// The part boundary of the multipart stream.
pub const BOUNDARY: &str = "vgashot-frame";
/// Frames per second when none is asked for.
pub const DEFAULT_FPS: u32 = 5;
/// The most frames per second a stream may ask for.
pub const MAX_FPS: u32 = 30;

/// The most MJPEG streams of one instance at once: each costs a task and, on a changing screen,
/// a JPEG rendering per frame of its own size; 16 viewers of one live screen are a crowd, and
/// more of them should share thumbnails instead.
pub const MAX_STREAMS_PER_INSTANCE: usize = 16;

/// The most MJPEG streams at once: four instances' worth of [`MAX_STREAMS_PER_INSTANCE`], so
/// streams alone cannot occupy the render queue.
pub const MAX_STREAMS: usize = 64;

/// The streams' slots, per instance (project, name) and in all.
#[derive(Debug)]
pub(crate) struct StreamSlots(Quota<(String, String)>);

impl Default for StreamSlots {
    fn default() -> Self {
        Self(Quota::new(MAX_STREAMS_PER_INSTANCE, MAX_STREAMS))
    }
}

impl StreamSlots {
    /// A place for a stream of `vm`, or the 503 of the limit that refuses it.
    fn acquire(&self, vm: &dyn Instance) -> Result<Slot<(String, String)>, ApiError> {
        self.0
            .try_acquire((vm.project().to_owned(), vm.name().to_owned()))
            .map_err(|refused| {
                match refused {
                    Refused::Total(limit) => LimitError::Streams { limit },
                    Refused::PerKey(limit) => LimitError::InstanceStreams { limit },
                }
                .into()
            })
    }
}

/// Starts streaming `screen` of `vm` as JPEG frames of `variant`'s size and quality, counted as
/// open in `metrics` (the instance's) while it runs, or refuses with a 503 when the instance, or
/// the server, has all the streams it may.
pub fn mjpeg(
    screens: Arc<Screens>,
    vm: Arc<dyn Instance>,
    screen: ScreenId,
    variant: Variant,
    fps: u32,
    metrics: &Arc<ScreenMetrics>,
) -> Result<ApiResponse, ApiError> {
    let slot = screens.streams.acquire(vm.as_ref())?;
    let variant = Variant {
        format: ImageFormat::Jpeg,
        ..variant
    };
    let (sender, mut receiver) = mpsc::channel::<Bytes>(1);
    let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
    let mut opened = false;
    let guard = metrics.open_stream();
    tokio::spawn(async move {
        let _open = (guard, slot);
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / fps);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_sent = None;
        let mut repeat_owed = false;
        while !sender.is_closed() {
            ticks.tick().await;
            let Ok(answer) = screens.capture(&vm, &screen).await else {
                break; // The instance stopped (or lost its display): the stream ends.
            };
            let capture = answer.capture;
            let etag = capture.etag(&variant);
            let unchanged = last_sent.as_ref() == Some(&etag);
            if unchanged && !repeat_owed {
                continue;
            }
            let jpeg = match capture.render(&variant).await {
                Ok(jpeg) => jpeg,
                // The render queue is full: this frame is skipped, the next tick tries again.
                Err(ScreensError::Busy { .. }) => continue,
                Err(_) => break,
            };
            match sender.try_send(part(&jpeg)) {
                Ok(()) => {
                    repeat_owed = !unchanged;
                    last_sent = Some(etag);
                }
                // The viewer has not read the last frame yet: skip this one.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Closed(_)) => break,
            }
        }
    });
    let frames = futures_util::stream::poll_fn(move |context| {
        if !opened {
            opened = true;
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(opening.clone()))));
        }
        receiver
            .poll_recv(context)
            .map(|part| part.map(|part| Ok::<_, Infallible>(hyper::body::Frame::data(part))))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            CONTENT_TYPE,
            format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
        )
        .header(CACHE_CONTROL, "no-cache, no-store")
        .body(StreamBody::new(frames).boxed_unsync())
        .expect("static headers are valid"))
}

/// One part of the multipart stream, closed by the boundary of the next.
fn part(jpeg: &[u8]) -> Bytes {
    let mut part = format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    part.extend_from_slice(jpeg);
    part.extend_from_slice(format!("\r\n--{BOUNDARY}\r\n").as_bytes());
    Bytes::from(part)
}
