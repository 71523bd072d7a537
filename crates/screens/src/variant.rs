//! What a request asks for besides the screen: a size, a format, a quality; and how a frame is
//! rendered so.
//!
//! 1. [`Variant::parse`] reads `width`, `height`, `format` and `quality` through a getter, so the
//!    REST layer passes its query without this crate knowing its type.
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

    /// Reads `width`, `height`, `format` and `quality` through `get` (a query's parameters),
    /// with `format` defaulting to `default_format` (PNG for a screenshot, JPEG for a stream);
    /// anything out of range is [`ScreensError::InvalidParameter`] or
    /// [`ScreensError::QualityNotJpeg`].
    pub fn parse<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        default_format: ImageFormat,
    ) -> Result<Self, ScreensError> {
        let side = |name: &'static str| parse_number(&get, name, 1..=MAX_SIDE, "1 to 8192");
        let format = match get("format") {
            None | Some("") => default_format,
            Some("png") => ImageFormat::Png,
            Some("jpeg" | "jpg") => ImageFormat::Jpeg,
            Some("webp") => ImageFormat::Webp,
            Some(other) => {
                return Err(ScreensError::InvalidParameter {
                    name: "format",
                    value: other.to_owned(),
                    accepted: "png, jpeg or webp",
                });
            }
        };
        let quality = parse_number(&get, "quality", 1..=100, "1 to 100")?;
        Self::new(side("width")?, side("height")?, format, quality)
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

/// The parameter `name` through `get` as a number in `range`, if given.
fn parse_number<'a, T>(
    get: &impl Fn(&str) -> Option<&'a str>,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
    accepted: &'static str,
) -> Result<Option<T>, ScreensError>
where
    T: std::str::FromStr + PartialOrd,
{
    get(name)
        .map(|value| {
            value
                .parse::<T>()
                .ok()
                .filter(|number| range.contains(number))
                .ok_or_else(|| ScreensError::InvalidParameter {
                    name,
                    value: value.to_owned(),
                    accepted,
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query string's parameters, as the REST layer would give them.
    fn parse(raw: &str, default_format: ImageFormat) -> Result<Variant, ScreensError> {
        let pairs: Vec<(&str, &str)> = raw
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        Variant::parse(
            |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| *value)
            },
            default_format,
        )
    }

    #[test]
    fn a_stream_defaults_to_jpeg_and_takes_a_quality() {
        let variant = parse("stream=mjpeg&quality=70", ImageFormat::Jpeg).unwrap();
        assert_eq!(variant.format, ImageFormat::Jpeg);
        assert_eq!(variant.quality, Some(70));
    }

    #[test]
    fn parameters_are_checked_with_the_texts_of_before() {
        assert!(parse("type=vga", ImageFormat::Png).unwrap().is_plain());
        let thumbnail = parse("width=320&format=jpeg&quality=70", ImageFormat::Png).unwrap();
        assert_eq!(thumbnail.width, Some(320));
        assert_eq!(thumbnail.etag_suffix(), "-w320-jpeg-q70");
        for (bad, text) in [
            (
                "width=0",
                "Invalid value for width parameter: 0 (1 to 8192)",
            ),
            (
                "width=-1",
                "Invalid value for width parameter: -1 (1 to 8192)",
            ),
            (
                "height=99999",
                "Invalid value for height parameter: 99999 (1 to 8192)",
            ),
            (
                "width=abc",
                "Invalid value for width parameter: abc (1 to 8192)",
            ),
            (
                "format=gif",
                "Invalid value for format parameter: gif (png, jpeg or webp)",
            ),
            (
                "quality=0",
                "Invalid value for quality parameter: 0 (1 to 100)",
            ),
            (
                "quality=101",
                "Invalid value for quality parameter: 101 (1 to 100)",
            ),
            (
                "format=jpeg&quality=x",
                "Invalid value for quality parameter: x (1 to 100)",
            ),
            (
                "quality=50",
                "The quality parameter applies to jpeg only: png and webp are lossless",
            ),
            (
                "format=webp&quality=50",
                "The quality parameter applies to jpeg only: png and webp are lossless",
            ),
        ] {
            assert_eq!(
                parse(bad, ImageFormat::Png).unwrap_err().to_string(),
                text,
                "{bad}"
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
