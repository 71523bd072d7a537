//! The crate's single error type.

use std::fmt;

use crate::{MAX_DIMENSION, MAX_PIXELS};

/// Names a field of the PPM header, so that a header error can say where it
/// happened without the caller having to count bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderField {
    /// The two-byte magic number (`P6`) that opens the file.
    Magic,
    /// The image width in pixels, the first decimal number.
    Width,
    /// The image height in pixels, the second decimal number.
    Height,
    /// The maximum sample value, the third decimal number.
    Maxval,
}

impl fmt::Display for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Magic => "magic number",
            Self::Width => "width",
            Self::Height => "height",
            Self::Maxval => "maxval",
        })
    }
}

/// Everything that can go wrong while building, decoding or encoding a
/// [`Frame`](crate::Frame).
///
/// One enum for the whole crate keeps callers to a single `match` (or a
/// single `?`), and each variant carries the numbers needed to understand the
/// failure without re-reading the input. The texts are meant for a person
/// looking at a failed screenshot, so they name the field and the values.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The input does not start with `P6`: it is not a binary PPM at all, or
    /// is another netpbm flavour (for example `P3`, ASCII PPM) that QEMU
    /// never writes, so we do not carry a decoder for it.
    #[error(
        "not a binary PPM (P6) image: it starts with \"{}\"",
        found.escape_ascii()
    )]
    BadMagic {
        /// The first two bytes of the input.
        found: [u8; 2],
    },

    /// The input ends inside the header, before `field` was complete. This
    /// is what an empty or half-written screendump file looks like.
    #[error("the PPM header is cut short while reading its {field}")]
    TruncatedHeader {
        /// The header field that was being read when the input ran out.
        field: HeaderField,
    },

    /// Where a decimal number must start, another byte was found (for
    /// example a sign, a letter or a binary byte).
    #[error(
        "the PPM {field} must be a decimal number, but byte {offset} is '{}'",
        found.escape_ascii()
    )]
    ExpectedDigit {
        /// The header field being read.
        field: HeaderField,
        /// Byte offset of the offending byte in the input.
        offset: usize,
        /// The offending byte.
        found: u8,
    },

    /// A header field is not followed by the whitespace that must separate
    /// it from the next one (after `maxval`, exactly one whitespace byte must
    /// come before the pixel data; a comment there is not allowed either).
    #[error(
        "the PPM {after} must be followed by whitespace, but byte {offset} is '{}'",
        found.escape_ascii()
    )]
    MissingWhitespace {
        /// The header field that lacks its trailing whitespace.
        after: HeaderField,
        /// Byte offset of the offending byte in the input.
        offset: usize,
        /// The offending byte.
        found: u8,
    },

    /// A header number has so many digits that it does not fit in 32 bits.
    /// Reported separately from [`FrameError::TooLarge`] because we cannot
    /// give the value.
    #[error("the PPM {field} has too many digits to fit in 32 bits")]
    NumberOverflow {
        /// The header field whose number overflowed.
        field: HeaderField,
    },

    /// The width or the height is zero. Netpbm allows it, but a screenshot
    /// with no pixels means the display was not set up, and PNG forbids it.
    #[error("the frame is {width}x{height}: a screenshot needs at least one pixel")]
    ZeroSize {
        /// The width that was given.
        width: u32,
        /// The height that was given.
        height: u32,
    },

    /// The dimensions exceed [`MAX_DIMENSION`] or [`MAX_PIXELS`]. Refused
    /// before allocating, so a corrupt header cannot make us reserve
    /// gigabytes.
    #[error(
        "the frame is {width}x{height}, larger than we accept \
         (at most {MAX_DIMENSION} pixels per side and {MAX_PIXELS} pixels in all)"
    )]
    TooLarge {
        /// The width that was given.
        width: u32,
        /// The height that was given.
        height: u32,
    },

    /// The maxval is not 255. QEMU always writes 255 (8 bits per channel);
    /// other values would need rescaling or 16-bit samples we do not support.
    #[error("the PPM maxval is {maxval}, but only 255 (8-bit samples) is supported")]
    UnsupportedMaxval {
        /// The maxval found in the header.
        maxval: u32,
    },

    /// The pixel data after the header is shorter than `width * height * 3`
    /// bytes: the file was cut short, for example read while QEMU was still
    /// writing it.
    #[error("the PPM pixel data is cut short: expected {expected} bytes, found {actual}")]
    Truncated {
        /// Bytes of pixel data the header announces.
        expected: usize,
        /// Bytes of pixel data present.
        actual: usize,
    },

    /// There are bytes after the pixel data (and they are not QEMU's row
    /// padding, see [`Frame::from_ppm`](crate::Frame::from_ppm)). Refused
    /// rather than ignored because it means the header and the data disagree,
    /// so the picture would likely be wrong.
    #[error(
        "the PPM has {} bytes after its pixel data: expected {expected} bytes, found {actual}",
        actual.saturating_sub(*expected)
    )]
    TrailingData {
        /// Bytes of pixel data the header announces.
        expected: usize,
        /// Bytes present after the header.
        actual: usize,
    },

    /// [`Frame::new`](crate::Frame::new) was given a buffer whose length is
    /// not `width * height * 3`, so it cannot be tightly packed RGB8 of that
    /// size.
    #[error("an RGB buffer for {width}x{height} must be {expected} bytes long, but it is {actual}")]
    BufferSize {
        /// The width that was given.
        width: u32,
        /// The height that was given.
        height: u32,
        /// The length the dimensions require.
        expected: usize,
        /// The length of the buffer that was given.
        actual: usize,
    },

    /// The PNG encoder failed. With an in-memory output and a validated
    /// frame this should not happen; it is kept as an error rather than a
    /// panic so that a bug in the encoder cannot take the process down.
    #[error("PNG encoding failed")]
    PngEncode(#[source] png::EncodingError),
    /// A PNG could not be decoded.
    #[error("cannot decode the PNG")]
    PngDecode(#[source] png::DecodingError),
    /// A PNG that is not 8-bit RGB, the only kind QEMU and vgashot write.
    #[error("the PNG is {color:?} at {depth:?}, not 8-bit RGB")]
    UnsupportedPng {
        /// Its colour type.
        color: png::ColorType,
        /// Its bit depth.
        depth: png::BitDepth,
    },

    /// [`Frame::resize`](crate::Frame::resize) was asked for a size larger
    /// than the frame in at least one direction. Thumbnails only shrink: an
    /// enlarged screenshot carries no more detail, and refusing keeps a
    /// request from making us build a frame far larger than the screen.
    #[error(
        "cannot resize a {from_width}x{from_height} frame to {width}x{height}: only shrinking is supported"
    )]
    Upscale {
        /// Width of the frame being resized.
        from_width: u32,
        /// Height of the frame being resized.
        from_height: u32,
        /// The width that was asked for.
        width: u32,
        /// The height that was asked for.
        height: u32,
    },

    /// The resizer failed. With a validated frame and target size this
    /// should not happen. The cause is boxed so that the resizing library's
    /// error types stay out of our public API.
    #[error("resizing failed")]
    Resize(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    /// A JPEG quality outside 1..=100 was given.
    #[error("JPEG quality must be between 1 and 100, not {quality}")]
    InvalidQuality {
        /// The quality that was given.
        quality: u8,
    },

    /// The JPEG encoder failed. Like [`FrameError::PngEncode`], this should
    /// not happen with a valid frame and an in-memory output.
    #[error("JPEG encoding failed")]
    JpegEncode(#[source] jpeg_encoder::EncodingError),

    /// The WebP encoder failed. Like [`FrameError::PngEncode`], this should
    /// not happen with a valid frame and an in-memory output.
    #[error("WebP encoding failed")]
    WebpEncode(#[source] image_webp::EncodingError),
}
