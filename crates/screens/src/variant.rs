//! What a request asks for besides the screen: a size, a format, a quality; and how a frame is
//! rendered so.
//!
//! 1. [`Variant::new`] takes `width`, `height`, `format` and `quality` as the REST layer read
//!    and range-checked them from its typed query (so the query's documentation and its checks
//!    are one), and refuses a quality for a lossless format.
//! 2. [`Variant::etag_suffix`] tells a rendering's `ETag` from the plain PNG's (whose `ETag` is
//!    the bare pixel hash).
//! 3. [`Variant::render`] shrinks (never enlarges) and encodes. The plain PNG is the variant
//!    [`Variant::plain`]: zlib-rs level 2 with adaptive filters ([`PngCompression::Fastest`]),
//!    byte for byte what the driver used to encode.

use vgashot_framebuffer::{Frame, PngCompression};

use crate::error::ScreensError;
use std::sync::Arc;

/// The largest thumbnail side accepted: as large as any screen QEMU shows.
pub const MAX_SIDE: u32 = 8192;
/// JPEG quality when none is asked for.
pub const DEFAULT_JPEG_QUALITY: u8 = 80;

/// An image format of a screenshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(rename_all = "lowercase"))]
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

    /// A rendering of values already read and range-checked (a caller's typed query): a
    /// quality for a lossless format is [`ScreensError::QualityNotJpeg`].
    pub fn new(
        width: Option<u32>,
        height: Option<u32>,
        format: ImageFormat,
        quality: Option<u8>,
    ) -> Result<Self, ScreensError> {
        if quality.is_some() && format != ImageFormat::Jpeg {
            return Err(ScreensError::QualityNotJpeg);
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

    /// Renders `frame`: shrinks it to the size asked for, then encodes it. Blocking work
    /// (milliseconds on a large screen): call it off the async workers.
    pub fn render(&self, frame: &Frame) -> Result<Vec<u8>, ScreensError> {
        let size_error = |error| ScreensError::Size(Arc::new(error));
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
        encoded.map_err(|error| ScreensError::Encode(Arc::new(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quality_is_for_jpeg_only_and_names_the_etag() {
        let thumbnail = Variant::new(Some(320), None, ImageFormat::Jpeg, Some(70)).unwrap();
        assert_eq!(thumbnail.etag_suffix(), "-w320-jpeg-q70");
        assert!(
            Variant::new(None, None, ImageFormat::Png, None)
                .unwrap()
                .is_plain()
        );
        for lossless in [ImageFormat::Png, ImageFormat::Webp] {
            let refused = Variant::new(None, None, lossless, Some(50)).unwrap_err();
            assert_eq!(
                refused.to_string(),
                "The quality parameter applies to jpeg only: png and webp are lossless"
            );
        }
    }

    #[test]
    fn the_plain_png_is_the_drivers_png() {
        let frame = Frame::new(3, 2, (0..18).collect()).unwrap();
        assert_eq!(
            Variant::plain().render(&frame).unwrap(),
            frame.encode_png(PngCompression::Fastest).unwrap()
        );
        let enlarge = Variant {
            width: Some(30),
            ..Variant::plain()
        };
        assert!(matches!(enlarge.render(&frame), Err(ScreensError::Size(_))));
    }
}
