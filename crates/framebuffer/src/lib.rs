//! Turns a QEMU screendump into a PNG, JPEG or WebP, full size or as a
//! thumbnail, outside QEMU.
//!
//! QEMU can write a PNG itself, but it runs libpng on its main loop, so the
//! guest stalls for as long as the compression takes. It can also write a
//! binary PPM, which costs it little more than a copy. This crate takes that
//! PPM and does the expensive part in our own process.
//!
//! # Design
//!
//! A screenshot goes through these steps:
//!
//! 1. The caller asks QEMU, over QMP, for `screendump` in PPM format and
//!    reads the file it wrote. This crate does no I/O: it works on bytes, so
//!    it can be tested and fuzzed without a VM.
//! 2. [`Frame::from_ppm`] (or [`Frame::from_ppm_vec`], which reuses the read
//!    buffer) parses the `P6` header strictly. Dimensions are checked against
//!    [`MAX_DIMENSION`] and [`MAX_PIXELS`] before anything is allocated, so
//!    a corrupt header cannot exhaust memory, and every malformed input gives
//!    a typed [`FrameError`], never a panic. QEMU's 4-byte row padding for
//!    odd widths is recognised and stripped.
//! 3. The result is a [`Frame`]: width, height and tightly packed RGB8. Its
//!    fields are private and every constructor validates, so code that holds
//!    a `Frame` never re-checks sizes.
//! 4. [`Frame::encode_png`] compresses it with the chosen
//!    [`PngCompression`]. The default, [`PngCompression::Fastest`], keeps a
//!    720x400 text console well under a millisecond.
//! 5. The caller writes or sends the PNG bytes. [`Frame::to_ppm`] goes the
//!    other way, for tests and round trips.
//!
//! A screenshot served over HTTP, possibly as a thumbnail, adds these:
//!
//! 6. [`Frame::pixel_hash`] fingerprints the decoded pixels (XXH3-128 of
//!    the size and RGB bytes) into a [`PixelHash`]. It depends on what is on
//!    screen only, not on the format or size asked for, so it makes a strong
//!    `ETag`, and a request whose `If-None-Match` matches can be answered
//!    `304` before any resizing or encoding.
//! 7. [`fit_within`] turns the requested width and/or height into a target
//!    size (keeping the aspect ratio when only one is given), and
//!    [`Frame::resize`] shrinks the frame to it with a Catmull-Rom filter,
//!    which keeps text consoles free of moiré. Enlarging is refused with
//!    [`FrameError::Upscale`]: thumbnails only shrink.
//! 8. The result is encoded as PNG (step 4), as JPEG with
//!    [`Frame::encode_jpeg`] (quality 1 to 100, no chroma subsampling so
//!    coloured text keeps its colour), or as lossless WebP with
//!    [`Frame::encode_webp_lossless`]. All three encoders are pure Rust, so
//!    the crate needs no C library.
//!
//! Timings for each step on text-console and 1920x1080 frames come from
//! `examples/encode_speed.rs`.
//!
//! # Example
//!
//! ```
//! use vgashot_framebuffer::{Frame, PngCompression};
//!
//! // What QEMU writes for a 2x1 screen: one red and one white pixel.
//! let ppm = b"P6\n2 1\n255\n\xff\x00\x00\xff\xff\xff";
//! let frame = Frame::from_ppm(ppm)?;
//! assert_eq!(frame.pixel(0, 0), [255, 0, 0]);
//! let png = frame.encode_png(PngCompression::default())?;
//! assert!(png.starts_with(b"\x89PNG"));
//! # Ok::<(), vgashot_framebuffer::FrameError>(())
//! ```
//!
//! A thumbnail with its `ETag`:
//!
//! ```
//! use vgashot_framebuffer::{Frame, fit_within};
//!
//! let frame = Frame::new(1024, 768, vec![40; 1024 * 768 * 3])?;
//! let etag = format!("\"{}\"", frame.pixel_hash().to_hex());
//! assert_eq!(etag.len(), 34);
//! let (width, height) = fit_within(frame.width(), frame.height(), Some(320), None)?;
//! assert_eq!((width, height), (320, 240));
//! let jpeg = frame.resize(width, height)?.encode_jpeg(80)?;
//! assert!(jpeg.starts_with(&[0xFF, 0xD8]));
//! # Ok::<(), vgashot_framebuffer::FrameError>(())
//! ```

mod encode;
mod error;
mod frame;
mod hash;
mod jpeg;
mod ppm;
mod resize;
mod webp;

pub use encode::PngCompression;
pub use error::{FrameError, HeaderField};
pub use frame::{Frame, MAX_DIMENSION, MAX_PIXELS};
pub use hash::PixelHash;
pub use resize::fit_within;
