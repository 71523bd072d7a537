//! Thumbnails: target-size arithmetic and downscaling.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::frame::rgb_len;
use crate::{Frame, FrameError};

/// The filter [`Frame::resize`] uses.
///
/// Why Catmull-Rom, measured on a 720x400 text console and a 1920x1080
/// desktop shrunk to 320 wide, and on 1-pixel stripes and checkerboards (the
/// worst case for moiré, whose ideal thumbnail is flat grey):
///
/// - `fast_image_resize`'s Box filter is fastest (0.11 ms text, 0.34 ms
///   1080p) but samples whole pixels rather than covering fractions of them,
///   so 1-pixel stripes shrunk 2.25x beat between 85 and 170: visible moiré.
/// - Bilinear, Catmull-Rom and Lanczos3 all keep those stripes within about
///   110..145. Of these, Catmull-Rom is the sharpest that does not ring much:
///   Lanczos3's negative lobes clip on a black console and brighten it
///   (mean 16.0 to 16.9, against 16.5 for Catmull-Rom), and cost twice as
///   much (1.15 ms against 0.6 ms for 1080p to 320x180).
/// - Nearest neighbour aliases outright (stripes stay 0 and 255).
///
/// Pixels are averaged in sRGB, not linear light: linear averaging would
/// keep thin light text a little brighter but needs a 16-bit detour that
/// costs several times more, which a thumbnail does not repay.
const FILTER: ResizeAlg = ResizeAlg::Convolution(FilterType::CatmullRom);

/// Computes the size of a thumbnail of a `src_width` x `src_height` frame
/// from the width and height a client asked for.
///
/// - Both given: exactly that size (the aspect ratio may change).
/// - One given: the other follows the source's aspect ratio, rounded to the
///   nearest pixel and at least 1 (1024x768 with width 320 gives 320x240;
///   720x400 with height 100 gives 180x100).
/// - Neither given: the source size, meaning "no resize".
///
/// Why a free function: the REST layer can validate a request's `width` and
/// `height` (and answer `400`) from the frame's size alone, and the
/// arithmetic is tested apart from pixels. It does not refuse upscaling;
/// [`Frame::resize`] does.
///
/// # Errors
///
/// [`FrameError::ZeroSize`] or [`FrameError::TooLarge`] if the source size
/// or the resulting size is zero or beyond [`MAX_DIMENSION`](crate::MAX_DIMENSION)
/// and [`MAX_PIXELS`](crate::MAX_PIXELS).
pub fn fit_within(
    src_width: u32,
    src_height: u32,
    width: Option<u32>,
    height: Option<u32>,
) -> Result<(u32, u32), FrameError> {
    rgb_len(src_width, src_height)?;
    let size = match (width, height) {
        (Some(width), Some(height)) => (width, height),
        (Some(width), None) => (width, scale(src_height, width, src_width)),
        (None, Some(height)) => (scale(src_width, height, src_height), height),
        (None, None) => (src_width, src_height),
    };
    rgb_len(size.0, size.1)?;
    Ok(size)
}

/// `side * num / den` rounded to the nearest integer, at least 1 when `num`
/// is not zero (a zero `num` stays zero so that the caller's check reports
/// the zero the client asked for). `den` is a validated, non-zero side.
fn scale(side: u32, num: u32, den: u32) -> u32 {
    if num == 0 {
        return 0;
    }
    // At most 2^14 * 2^32 * 2 + 2^14: no overflow in u64.
    let (side, num, den) = (u64::from(side), u64::from(num), u64::from(den));
    let rounded = (side * num * 2 + den) / (den * 2);
    u32::try_from(rounded.max(1)).unwrap_or(u32::MAX)
}

impl Frame {
    /// Shrinks the frame to exactly `width` x `height` pixels, for
    /// thumbnails; use [`fit_within`] to keep the aspect ratio.
    ///
    /// Filtering is Catmull-Rom (see the comment on the filter in
    /// `src/resize.rs` for the measurements): text consoles shrink without
    /// moiré or jagged glyphs, flat areas keep their exact colour, and a
    /// 1920x1080 frame becomes 320x180 in well under a millisecond. The same
    /// size returns a copy.
    ///
    /// Why upscaling is refused: thumbnails only shrink, an enlarged
    /// screenshot holds no more information than the original (a client can
    /// scale it itself), and refusing keeps a request from making us
    /// allocate and encode a frame far larger than the screen.
    ///
    /// # Errors
    ///
    /// [`FrameError::ZeroSize`] or [`FrameError::TooLarge`] for a size
    /// outside the limits; [`FrameError::Upscale`] if `width` or `height`
    /// exceeds the frame's; [`FrameError::Resize`] if the resizer fails,
    /// which valid sizes should never cause.
    pub fn resize(&self, width: u32, height: u32) -> Result<Frame, FrameError> {
        rgb_len(width, height)?;
        if width > self.width() || height > self.height() {
            return Err(FrameError::Upscale {
                from_width: self.width(),
                from_height: self.height(),
                width,
                height,
            });
        }
        if (width, height) == (self.width(), self.height()) {
            return Ok(self.clone());
        }
        let src = ImageRef::new(self.width(), self.height(), self.rgb(), PixelType::U8x3)
            .map_err(|e| FrameError::Resize(Box::new(e)))?;
        let mut dst = Image::new(width, height, PixelType::U8x3);
        Resizer::new()
            .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(FILTER))
            .map_err(|e| FrameError::Resize(Box::new(e)))?;
        Frame::new(width, height, dst.into_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_rounds_to_nearest_and_stays_positive() {
        assert_eq!(scale(768, 320, 1024), 240);
        assert_eq!(scale(3, 1, 2), 2); // 1.5 rounds up
        assert_eq!(scale(5, 1, 4), 1); // 1.25 rounds down
        assert_eq!(scale(1, 1, 16384), 1); // never below 1
        assert_eq!(scale(100, 0, 7), 0);
        assert_eq!(scale(16384, u32::MAX, 1), u32::MAX); // saturates
    }
}
