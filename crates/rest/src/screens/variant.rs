//! What a screenshot request asks for besides the screen: a size, a format, a quality; and the
//! renderings of a capture, made once each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;
use vgashot_framebuffer::{Frame, FrameError, PngCompression};

use serde::{Deserialize, Deserializer};

use crate::error::ApiError;
use crate::request::{bounded, invalid};

/// The largest thumbnail side accepted: as large as any screen QEMU shows.
pub const MAX_SIDE: u32 = 8192;
/// JPEG quality when none is asked for.
pub const DEFAULT_JPEG_QUALITY: u8 = 80;
/// Renderings kept per capture; more distinct ones are rendered without being kept.
const MAX_KEPT_VARIANTS: usize = 16;

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

/// Reads the `width` parameter: 1 to [`MAX_SIDE`].
pub fn width<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    side(deserializer, "width")
}

/// Reads the `height` parameter: 1 to [`MAX_SIDE`].
pub fn height<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    side(deserializer, "height")
}

/// Reads a thumbnail side called `name`: 1 to [`MAX_SIDE`].
fn side<'de, D: Deserializer<'de>>(deserializer: D, name: &str) -> Result<Option<u32>, D::Error> {
    bounded(deserializer, name, 1..=MAX_SIDE)
}

/// Reads the `quality` parameter: 1 to 100.
pub fn quality<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    bounded(deserializer, "quality", 1..=100)
}

/// Reads the `format` parameter: `png`, `jpeg` (or `jpg`) or `webp`.
pub fn format<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ImageFormat>, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "png" => Ok(Some(ImageFormat::Png)),
        "jpeg" | "jpg" => Ok(Some(ImageFormat::Jpeg)),
        "webp" => Ok(Some(ImageFormat::Webp)),
        other => Err(invalid("format", other, Some("png, jpeg or webp"))),
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

    /// The rendering asked for, with `format` defaulting to `default_format` (PNG for a
    /// screenshot, JPEG for a stream); the values were checked as the query was read
    /// ([`side`], [`quality`], [`format`]), and a quality for a lossless format is a 400.
    pub fn new(
        width: Option<u32>,
        height: Option<u32>,
        format: Option<ImageFormat>,
        quality: Option<u8>,
        default_format: ImageFormat,
    ) -> Result<Self, ApiError> {
        let format = format.unwrap_or(default_format);
        if quality.is_some() && format != ImageFormat::Jpeg {
            return Err(ApiError::BadRequest(
                "The quality parameter applies to jpeg only: png and webp are lossless".into(),
            ));
        }
        Ok(Self {
            width,
            height,
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
#[derive(Debug, Default)]
pub struct VariantCache {
    entries: Mutex<HashMap<Variant, Arc<OnceCell<Bytes>>>>,
}

impl VariantCache {
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
                tokio::task::spawn_blocking(move || variant.render(&frame))
                    .await
                    .map_err(|error| ApiError::Internal(format!("rendering panicked: {error}")))?
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

    #[test]
    fn a_quality_is_for_jpeg_only() {
        let stream = Variant::new(None, None, None, Some(70), ImageFormat::Jpeg).unwrap();
        assert_eq!(stream.format, ImageFormat::Jpeg);
        assert_eq!(stream.quality, Some(70));
        let thumbnail = Variant::new(
            Some(320),
            None,
            Some(ImageFormat::Jpeg),
            Some(70),
            ImageFormat::Png,
        )
        .unwrap();
        assert_eq!(thumbnail.etag_suffix(), "-w320-jpeg-q70");
        assert!(
            Variant::new(None, None, None, None, ImageFormat::Png)
                .unwrap()
                .is_plain()
        );
        for format in [None, Some(ImageFormat::Webp)] {
            let error = Variant::new(None, None, format, Some(50), ImageFormat::Png).unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
        }
    }
}
