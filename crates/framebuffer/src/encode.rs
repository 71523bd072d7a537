//! PNG encoding.

use png::{BitDepth, ColorType, DeflateCompression, Filter};

use crate::{Frame, FrameError};

/// How hard to compress a PNG: a speed against size choice.
///
/// Why three named levels instead of the `png` crate's knobs: callers should
/// say what they want (a quick screenshot, a stored artefact), not pick zlib
/// levels and filters; the mapping below was chosen by measurement on
/// text-mode and desktop-like frames (see `examples/encode_speed.rs`) and can
/// be retuned without touching callers. DEFLATE runs on `zlib-rs`, enabled
/// through the `png` crate's feature of that name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PngCompression {
    /// As fast as we can encode, for screenshots taken in a loop: zlib
    /// level 2 with per-row adaptive filtering. On real screens (text
    /// consoles, flat colour) zlib-rs's level 1 is a little faster but 5-9
    /// times larger (level 1 is its "quick" strategy, with a weak match
    /// finder); level 2 costs about 15% more time for files as small as
    /// libpng's default. Measured faster and smaller than the `png` crate's
    /// fdeflate-based `Compression::Fastest`.
    #[default]
    Fastest,
    /// What libpng does by default (zlib level 6, adaptive filtering):
    /// smaller than `Fastest` on busy screens, for screenshots that are kept.
    Balanced,
    /// The smallest file, whatever it costs (several times slower than
    /// libpng's default): zlib level 9 with per-row adaptive filtering.
    Smallest,
}

impl PngCompression {
    /// The DEFLATE level and row filter this setting stands for.
    fn settings(self) -> (DeflateCompression, Filter) {
        match self {
            Self::Fastest => (DeflateCompression::Level(2), Filter::Adaptive),
            Self::Balanced => (DeflateCompression::Level(6), Filter::Adaptive),
            Self::Smallest => (DeflateCompression::Level(9), Filter::Adaptive),
        }
    }
}

impl Frame {
    /// Encodes the frame as a PNG (RGB, 8 bits per channel, not interlaced)
    /// and returns the file's bytes.
    ///
    /// Why here rather than in QEMU: QEMU's own PNG screendump runs libpng on
    /// its main loop, stalling the guest while it compresses; asking QEMU
    /// for a PPM and encoding in our process keeps that work off the guest's
    /// path. The whole image is compressed in memory; a frame is at most
    /// [`MAX_PIXELS`](crate::MAX_PIXELS) pixels, so this is bounded.
    ///
    /// # Errors
    ///
    /// [`FrameError::PngEncode`] if the `png` crate fails, which a valid
    /// `Frame` and an in-memory output should never cause.
    pub fn encode_png(&self, compression: PngCompression) -> Result<Vec<u8>, FrameError> {
        let (deflate, filter) = compression.settings();
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width(), self.height());
        encoder.set_color(ColorType::Rgb);
        encoder.set_depth(BitDepth::Eight);
        encoder.set_deflate_compression(deflate);
        encoder.set_filter(filter);
        let mut writer = encoder.write_header().map_err(FrameError::PngEncode)?;
        writer
            .write_image_data(self.rgb())
            .map_err(FrameError::PngEncode)?;
        writer.finish().map_err(FrameError::PngEncode)?;
        Ok(out)
    }
}

impl Frame {
    /// Decodes an 8-bit RGB PNG, as QEMU's screendump and [`Frame::encode_png`] write: a screen
    /// image that comes back, e.g. in tests comparing pixels or a client saving a screenshot.
    pub fn from_png(png_bytes: &[u8]) -> Result<Frame, FrameError> {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().map_err(FrameError::PngDecode)?;
        let (color, depth) = (reader.info().color_type, reader.info().bit_depth);
        if (color, depth) != (ColorType::Rgb, BitDepth::Eight) {
            return Err(FrameError::UnsupportedPng { color, depth });
        }
        let (width, height) = (reader.info().width, reader.info().height);
        // Bounded before allocating, like PPM input.
        let length = crate::frame::rgb_len(width, height)?;
        let mut rgb = vec![0; reader.output_buffer_size().unwrap_or(length).max(length)];
        let info = reader.next_frame(&mut rgb).map_err(FrameError::PngDecode)?;
        rgb.truncate(info.buffer_size());
        Frame::new(width, height, rgb)
    }
}
