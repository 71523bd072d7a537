//! A live stream of a screen: `multipart/x-mixed-replace` of JPEG frames (MJPEG), which an
//! `<img>` element in any browser plays.
//!
//! How a stream runs:
//! 1. A task per stream follows the screen ([`Screens::follow`]): pushed by the VNC mirror
//!    where the screen has one, polled otherwise, at most `fps` captures a second (or one per
//!    the instance's minimum interval if longer), sharing captures with every other viewer.
//! 2. A frame is sent only when the screen changed (the follower yields only new pixels), but
//!    for the one repeat of step 3: a still screen sends nothing more.
//! 3. Each part ends with the next boundary, and a new frame is sent once more one frame period
//!    later unless a newer one came: Chromium shows a part only once the part after it begins
//!    (measured: a still screen stayed blank until then), and on a still screen the next change
//!    may be minutes away.
//! 4. Frames go through a channel of one: a viewer that reads slower than frames come loses the
//!    frames in between (the newest is offered again each period until taken), and nothing
//!    queues without bound.
//! 5. The task ends when the viewer goes away (the channel closes) or the instance stops.
//! 6. At most [`MAX_STREAMS_PER_INSTANCE`] streams of one instance and [`MAX_STREAMS`] in all run
//!    at once; one more gets a 503 envelope. Frames are rendered through the engine's bounded
//!    render pool ([`vgashot_screens::RenderLimits`]); when it is full, the frame is rendered
//!    again one period later.

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
        let period = Duration::from_secs(1) / fps;
        let Ok(mut follower) = screens.follow(&vm, &screen, period) else {
            return; // The instance stopped meanwhile: the stream ends.
        };
        let mut owed = None;
        loop {
            // A change, or one period when something is owed (a repeat, a frame to retry).
            let changed = tokio::select! {
                answer = follower.changed() => Some(answer),
                () = tokio::time::sleep(period), if owed.is_some() => None,
                () = sender.closed() => break,
            };
            match changed {
                Some(Ok(answer)) => owed = Some(Owed::Render(answer.capture)),
                // The instance stopped (or lost its display): the stream ends.
                Some(Err(_)) => break,
                None => {}
            }
            let Some(next) = owed.take() else {
                continue;
            };
            let still_owed = match next {
                Owed::Render(capture) => match capture.render(&variant).await {
                    Ok(jpeg) => send(&sender, part(&jpeg), false),
                    // The render queue is full: tried again after a period.
                    Err(ScreensError::Busy { .. }) => Ok(Some(Owed::Render(capture))),
                    Err(_) => break,
                },
                Owed::Send(part) => send(&sender, part, false),
                Owed::Repeat(part) => send(&sender, part, true),
            };
            match still_owed {
                Ok(still_owed) => owed = still_owed,
                Err(Closed) => break,
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

/// What a stream owes its viewer.
enum Owed {
    /// A new frame, not rendered yet (the render queue was full).
    Render(Arc<vgashot_screens::Capture>),
    /// A part the viewer has not taken yet (it had not read the one before).
    Send(Bytes),
    /// The last part once more, for browsers that show a part only when the next begins.
    Repeat(Bytes),
}

/// The viewer went away.
struct Closed;

/// Offers `part` to the viewer, and says what is still owed: the part itself if the viewer has
/// not read the last one yet, its repeat if it was new, nothing after a repeat.
fn send(sender: &mpsc::Sender<Bytes>, part: Bytes, repeat: bool) -> Result<Option<Owed>, Closed> {
    match sender.try_send(part.clone()) {
        Ok(()) if repeat => Ok(None),
        Ok(()) => Ok(Some(Owed::Repeat(part))),
        Err(TrySendError::Full(_)) if repeat => Ok(Some(Owed::Repeat(part))),
        Err(TrySendError::Full(_)) => Ok(Some(Owed::Send(part))),
        Err(TrySendError::Closed(_)) => Err(Closed),
    }
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
