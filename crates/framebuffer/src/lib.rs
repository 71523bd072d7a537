//! Turns a QEMU screendump into a PNG, outside QEMU.
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
//! Thumbnails are planned but not here yet.
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

mod encode;
mod error;
mod frame;
mod ppm;

pub use encode::PngCompression;
pub use error::{FrameError, HeaderField};
pub use frame::{Frame, MAX_DIMENSION, MAX_PIXELS};
