//! A time-lapse: a range of an instance's history as one animated PNG (APNG), which browsers
//! play as an image.
//!
//! 1. The range's screenshots are counted first: more than [`Bounds::max_frames`] is
//!    [`HistoryError::TooManyFrames`] before anything is decoded.
//! 2. Each frame is shown for its real duration: until the next screenshot, and the last one
//!    until the end of the range (or one second when the range is open). APNG delays are 16-bit
//!    fractions, so up to 65 s is kept to the millisecond and longer in whole seconds (at most
//!    65535 s, 18 h; longer is shown that long).
//! 3. Every frame has the canvas's size, the first frame fitted to [`Bounds::width`]: a frame of
//!    the same shape is shrunk to it, any other is drawn at its top left, shrunk to fit.
//! 4. Frames are decoded and written one at a time, so memory holds one screen, and the output
//!    is checked as it grows: past [`Bounds::max_bytes`] it is
//!    [`HistoryError::TimelapseTooLarge`].

use std::time::{Duration, SystemTime};

use png::{BitDepth, ColorType};
use vgashot_framebuffer::{Frame, fit_within};

use crate::error::{HistoryError, Result};
use crate::shot::Shot;
use crate::store::{Filter, History};

/// The most frames a time-lapse may have: ten minutes of a screen that changes every second,
/// or days of a text console; each is decoded and encoded (milliseconds each).
pub const MAX_FRAMES: usize = 600;
/// The most bytes a time-lapse may have: 32 MiB, minutes of transfer on a slow link at most.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// The canvas width when none is asked for: a thumbnail-sized time-lapse that stays small.
pub const DEFAULT_WIDTH: u32 = 640;

/// How large a time-lapse may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// At most this many frames.
    pub max_frames: usize,
    /// At most this many bytes.
    pub max_bytes: usize,
    /// The canvas width (never wider than the first frame).
    pub width: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_frames: MAX_FRAMES,
            max_bytes: MAX_BYTES,
            width: DEFAULT_WIDTH,
        }
    }
}

/// An APNG delay for `duration`: milliseconds up to 65 s, whole seconds beyond.
fn delay(duration: Duration) -> (u16, u16) {
    match u16::try_from(duration.as_millis()) {
        Ok(millis) => (millis.max(1), 1000),
        Err(_) => (u16::try_from(duration.as_secs()).unwrap_or(u16::MAX), 1),
    }
}

/// A writer that refuses to grow past a bound.
struct Bounded {
    bytes: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "time-lapse too large",
            ));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `frame` on a `width`x`height` canvas (step 3).
fn on_canvas(frame: &Frame, width: u32, height: u32) -> Result<Frame> {
    if (frame.width(), frame.height()) == (width, height) {
        return Ok(frame.clone());
    }
    let (fit_width, fit_height) = if frame.width() * height == frame.height() * width {
        (width, height)
    } else {
        let by_width = fit_within(frame.width(), frame.height(), Some(width), None);
        match by_width {
            Ok((w, h)) if h <= height => (w, h),
            _ => fit_within(frame.width(), frame.height(), None, Some(height))
                .map_err(HistoryError::Decode)?,
        }
    };
    let fitted = if fit_width < frame.width() || fit_height < frame.height() {
        frame
            .resize(fit_width.min(frame.width()), fit_height.min(frame.height()))
            .map_err(HistoryError::Decode)?
    } else {
        frame.clone()
    };
    let mut rgb = vec![0; width as usize * height as usize * 3];
    let rows = fitted.height().min(height) as usize;
    let row_bytes = fitted.width().min(width) as usize * 3;
    for row in 0..rows {
        let from = row * fitted.width() as usize * 3;
        let to = row * width as usize * 3;
        rgb[to..to + row_bytes].copy_from_slice(&fitted.rgb()[from..from + row_bytes]);
    }
    Frame::new(width, height, rgb).map_err(HistoryError::Decode)
}

impl History {
    /// The screenshots of the instance `identity` taken from `since` to `until`, as an APNG
    /// within `bounds` (see the module's steps).
    pub fn timelapse(
        &self,
        identity: &str,
        since: Option<SystemTime>,
        until: Option<SystemTime>,
        bounds: Bounds,
    ) -> Result<Vec<u8>> {
        let shots = self.list(
            identity,
            Filter {
                since,
                until,
                reason: None,
                limit: Some(bounds.max_frames.saturating_add(1)),
            },
        )?;
        if shots.len() > bounds.max_frames {
            let count = self
                .list(
                    identity,
                    Filter {
                        since,
                        until,
                        ..Filter::default()
                    },
                )?
                .len();
            return Err(HistoryError::TooManyFrames {
                count,
                max: bounds.max_frames,
            });
        }
        let first = shots.first().ok_or(HistoryError::EmptyRange)?;
        let (width, height) = fit_within(
            first.width,
            first.height,
            Some(bounds.width.min(first.width)),
            None,
        )
        .map_err(HistoryError::Decode)?;
        let durations = durations(&shots, until);
        let mut output = Bounded {
            bytes: Vec::new(),
            max: bounds.max_bytes,
        };
        let too_large = |error: png::EncodingError| match error {
            png::EncodingError::IoError(_) => HistoryError::TimelapseTooLarge {
                max: bounds.max_bytes,
            },
            other => HistoryError::Animation(other),
        };
        {
            let mut encoder = png::Encoder::new(&mut output, width, height);
            encoder.set_color(ColorType::Rgb);
            encoder.set_depth(BitDepth::Eight);
            encoder
                .set_animated(shots.len() as u32, 0)
                .map_err(HistoryError::Animation)?;
            let mut writer = encoder.write_header().map_err(too_large)?;
            for (shot, duration) in shots.iter().zip(durations) {
                let (_, image) = self.image(identity, shot.id)?;
                let frame = on_canvas(&History::decode(&image)?, width, height)?;
                let (numerator, denominator) = delay(duration);
                writer
                    .set_frame_delay(numerator, denominator)
                    .map_err(HistoryError::Animation)?;
                writer.write_image_data(frame.rgb()).map_err(too_large)?;
            }
            writer.finish().map_err(too_large)?;
        }
        Ok(output.bytes)
    }
}

/// How long each screenshot was on screen: until the next, the last until `until` (one second
/// when the range is open or ends before it).
fn durations(shots: &[Shot], until: Option<SystemTime>) -> Vec<Duration> {
    let ends = shots
        .iter()
        .skip(1)
        .map(|next| Some(next.taken_at))
        .chain([until]);
    shots
        .iter()
        .zip(ends)
        .map(|(shot, end)| {
            end.and_then(|end| end.duration_since(shot.taken_at).ok())
                .filter(|duration| !duration.is_zero())
                .unwrap_or(Duration::from_secs(1))
        })
        .collect()
}
