//! WebP encoding, lossless only.

use image_webp::{ColorType, WebPEncoder};

use crate::{Frame, FrameError};

impl Frame {
    /// Encodes the frame as a lossless WebP: decoding it gives back exactly
    /// these pixels.
    ///
    /// There is no quality parameter because there is no lossy mode; the
    /// name says so, so that a caller cannot believe a `quality` was honoured.
    /// A client that wants a small lossy image should ask for JPEG.
    ///
    /// Why lossless, with the pure-Rust `image-webp`, and not lossy through
    /// libwebp (`libwebp-sys`, which builds the bundled C sources): both
    /// were measured on a 720x400 text console and a 1920x1080 desktop-like
    /// frame.
    ///
    /// - On screen content lossy WebP is not even smaller: at quality 80
    ///   libwebp gave 59 KB for the console (against 35 KB here) and 478 KB
    ///   for the desktop (352 KB here), while smearing glyph edges (errors up
    ///   to 145 levels).
    /// - It is slow: 9 ms and 74 ms at libwebp's method 2, 52 ms for 1080p
    ///   even at its fastest method, against 1.2 ms and 9 ms here.
    /// - It costs a C build (about 15 s more of a clean release build) and
    ///   `unsafe` FFI. libwebp's own lossless mode is smaller still (25 KB
    ///   and 220 KB at its fastest setting) but 4 to 5 times slower.
    ///
    /// # Errors
    ///
    /// [`FrameError::WebpEncode`] if the encoder fails, which a valid frame
    /// (at most 16384 pixels a side, the format's own limit) and an
    /// in-memory output should never cause.
    pub fn encode_webp_lossless(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        WebPEncoder::new(&mut out)
            .encode(self.rgb(), self.width(), self.height(), ColorType::Rgb8)
            .map_err(FrameError::WebpEncode)?;
        Ok(out)
    }
}
