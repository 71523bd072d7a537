//! Screens for many viewers: capture policy and serving, apart from any driver and any HTTP.
//!
//! A screenshot used to go back and forth (the driver encoded a full PNG for every capture, and
//! the REST layer hashed and encoded again); here a capture is pixels, and every encoding is
//! made lazily, once per distinct frame. How a screen is served:
//!
//! 1. An instance is a [`FrameSource`]: it yields frames (pixels, size, when taken) for a
//!    [`ScreenId`] and describes its [`Displays`]; it knows nothing of encodings.
//! 2. [`Screens::capture`] checks the screen exists, serves a capture younger than the minimum
//!    interval (configuration the caller gives, per request), or joins the capture in flight, or
//!    starts one in a task of its own (single flight; panic- and cancel-safe): see [`engine`].
//! 3. A [`Capture`] holds the pixels and their hash (the `ETag`, [`Capture::etag`], computed
//!    without encoding anything, so a `304` costs no encoding), and renders a [`Variant`] (the
//!    plain PNG included) on first demand, off the async workers, under a bound on concurrent
//!    rendering work: see [`render`]. Pixels that did not change keep their renderings.
//! 4. [`Screens::changes`] is a screen's change signal (the latest pixel hash), and
//!    [`Screens::follow`] gives a [`Follower`] that yields a capture each time the screen's
//!    pixels change: pushed by the source where it can ([`ChangeFeed`]), polled otherwise; see
//!    [`follow`].
//! 5. Counters per instance ([`ScreenMetrics`]) render as OpenMetrics text
//!    ([`Screens::render_metrics`]) and go with the instance ([`Screens::forget`]).
//! 6. Every failure is a [`ScreensError`], whose variants say the HTTP status meant for them.

mod capture;
pub mod engine;
mod error;
pub mod follow;
pub mod metrics;
pub mod render;
mod source;
mod variant;

#[cfg(test)]
mod tests;

pub use capture::Capture;
pub use engine::{Answer, InstanceKey, Screens};
pub use error::ScreensError;
pub use follow::Follower;
pub use metrics::{ScreenMetrics, Served, StreamGuard};
pub use render::RenderLimits;
pub use source::{
    ChangeFeed, DisplayDevice, Displays, FrameOrigin, FrameSource, FrameVersion, ScreenId,
    SourceError, TimedFrame,
};
pub use variant::{DEFAULT_JPEG_QUALITY, ImageFormat, MAX_SIDE, Variant};
