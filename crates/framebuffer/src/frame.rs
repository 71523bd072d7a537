//! The decoded frame and its size limits.

use std::fmt;

use crate::FrameError;

/// Largest width or height we accept, in pixels.
///
/// Why this number: it is above every mode QEMU's display devices offer (the
/// Bochs VBE interface behind `-vga std` and `bochs-display` stops at
/// 16000x12000) and it is the largest texture side common GPUs take, so no
/// real screen is refused; anything larger in a header is corruption.
pub const MAX_DIMENSION: u32 = 16384;

/// Largest total pixel count (width times height) we accept: 64 Mi pixels,
/// for example 8192x8192.
///
/// Why: [`MAX_DIMENSION`] squared would be 256 Mi pixels, 768 MiB of RGB for
/// one frame plus as much again for the PPM input. 64 Mi pixels caps one
/// decoded frame at 192 MiB, which still holds a 16384x4096 or an 8K
/// (7680x4320) screen, while a corrupt or hostile header cannot make us
/// allocate gigabytes. It is checked before any allocation.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// One screenshot: a width, a height and tightly packed RGB8 pixels.
///
/// Why this layout: it is what QEMU's PPM holds and what PNG's RGB8 colour
/// type takes, so decoding is one copy and encoding needs no conversion.
/// Fields are private so that every `Frame` is known to be valid (non-zero,
/// within [`MAX_DIMENSION`] and [`MAX_PIXELS`], buffer length exactly
/// `width * height * 3`), which lets the encoder and the accessors skip
/// re-checking.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl fmt::Debug for Frame {
    /// Prints the size only: the pixel buffer can be megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgb_len", &self.rgb.len())
            .finish()
    }
}

/// Checks a width and a height against the limits and returns the length in
/// bytes of their RGB8 buffer. Shared by [`Frame::new`] and the PPM parser so
/// that both refuse exactly the same sizes.
pub(crate) fn rgb_len(width: u32, height: u32) -> Result<usize, FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::ZeroSize { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_DIMENSION || height > MAX_DIMENSION || pixels > MAX_PIXELS {
        return Err(FrameError::TooLarge { width, height });
    }
    // At most 192 Mi, which fits even a 32-bit usize; the conversion is
    // checked anyway so that no platform can wrap.
    usize::try_from(pixels * 3).map_err(|_| FrameError::TooLarge { width, height })
}

impl Frame {
    /// Builds a frame from pixels the caller already has (a test pattern, a
    /// thumbnail, another capture path), with the same checks as the
    /// PPM decoder so that every `Frame` is valid.
    ///
    /// `rgb` must be tightly packed RGB8, row-major, top row first: exactly
    /// `width * height * 3` bytes. The buffer is moved in, not copied.
    ///
    /// # Errors
    ///
    /// [`FrameError::ZeroSize`] or [`FrameError::TooLarge`] for dimensions
    /// outside the limits, [`FrameError::BufferSize`] for a buffer of the
    /// wrong length.
    pub fn new(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self, FrameError> {
        let expected = rgb_len(width, height)?;
        if rgb.len() != expected {
            return Err(FrameError::BufferSize {
                width,
                height,
                expected,
                actual: rgb.len(),
            });
        }
        Ok(Self { width, height, rgb })
    }

    /// Builds a frame whose size the caller has already validated with
    /// [`rgb_len`]; used by the PPM decoder.
    pub(crate) fn from_valid_parts(width: u32, height: u32, rgb: Vec<u8>) -> Self {
        debug_assert_eq!(rgb_len(width, height).ok(), Some(rgb.len()));
        Self { width, height, rgb }
    }

    /// Width in pixels, always between 1 and [`MAX_DIMENSION`].
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels, always between 1 and [`MAX_DIMENSION`].
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels as tightly packed RGB8, row-major, top row first:
    /// `width * height * 3` bytes with no row padding. Exposed as a slice so
    /// that callers (encoders, comparisons, thumbnails) read them without a
    /// copy.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The `[red, green, blue]` value of the pixel at column `x`, row `y`
    /// (origin top left). Meant for tests and spot checks such as "is the
    /// cursor cell lit"; bulk work should walk [`Frame::rgb`] instead.
    ///
    /// # Panics
    ///
    /// If `x >= width()` or `y >= height()`, like slice indexing: an
    /// out-of-range coordinate is a bug in the caller, and checking both
    /// coordinates keeps a too-large `x` from silently reading the next row.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) is outside the {}x{} frame",
            self.width,
            self.height
        );
        // Both factors are bounded by MAX_DIMENSION, so this cannot overflow.
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Encodes the frame as a binary PPM in the exact layout QEMU writes
    /// (`P6\n<width> <height>\n255\n` then the pixels), so that tests can
    /// round-trip frames and feed the decoder realistic input.
    pub fn to_ppm(&self) -> Vec<u8> {
        let header = format!("P6\n{} {}\n255\n", self.width, self.height);
        let mut out = Vec::with_capacity(header.len() + self.rgb.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.rgb);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_accept_real_screens_and_refuse_the_rest() {
        // Checked without allocating: only the arithmetic is under test.
        assert_eq!(rgb_len(1, 1).unwrap(), 3);
        assert_eq!(rgb_len(7680, 4320).unwrap(), 7680 * 4320 * 3);
        assert_eq!(rgb_len(16384, 4096).unwrap(), 16384 * 4096 * 3);
        assert_eq!(rgb_len(4096, 16384).unwrap(), 16384 * 4096 * 3);
        assert!(matches!(
            rgb_len(16384, 4097),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            rgb_len(16385, 1),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            rgb_len(u32::MAX, u32::MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            rgb_len(0, u32::MAX),
            Err(FrameError::ZeroSize { .. })
        ));
    }

    #[test]
    fn debug_does_not_dump_pixels() {
        let frame = Frame::new(2, 1, vec![9; 6]).unwrap();
        assert_eq!(
            format!("{frame:?}"),
            "Frame { width: 2, height: 1, rgb_len: 6 }"
        );
    }

    #[test]
    #[should_panic(expected = "pixel (2, 0) is outside the 2x2 frame")]
    fn pixel_refuses_x_past_the_row_end() {
        // Index 2 of row 0 would otherwise read pixel 0 of row 1.
        let frame = Frame::new(2, 2, vec![0; 12]).unwrap();
        let _ = frame.pixel(2, 0);
    }
}
