//! Binary PPM (`P6`) decoding.
//!
//! The input comes from a file QEMU wrote, but we treat it as untrusted: a
//! half-written file, a file from another tool or a fuzzer must give a typed
//! error, never a panic. The lints below make clippy hold this module to
//! that (no indexing that could go out of bounds, no unwrap, no panic).

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::frame::{Frame, rgb_len};
use crate::{FrameError, HeaderField};

/// The one maxval we accept: 8-bit samples, the only kind QEMU writes.
const MAXVAL: u32 = 255;

/// Netpbm whitespace: what C's `isspace` accepts, since libnetpbm reads
/// headers with it (the format's text names blanks, tabs, CRs and LFs; vertical
/// tab and form feed are accepted too so we take what netpbm tools take).
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// What the header says and where the pixel data starts.
struct Header {
    width: u32,
    height: u32,
    /// Offset of the first pixel byte, just past the single whitespace byte
    /// that follows maxval.
    data_offset: usize,
    /// `width * height * 3`, already checked against the limits.
    rgb_len: usize,
}

/// How the pixel rows are laid out after the header.
enum Layout {
    /// Rows of exactly `width * 3` bytes, as the format defines.
    Tight,
    /// Rows padded to a multiple of 4 bytes, as QEMU writes them (see
    /// [`Frame::from_ppm`]).
    Padded {
        /// Bytes from the start of one row to the start of the next.
        stride: usize,
    },
}

/// A cursor over the header bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips the whitespace and comments between the field `after` and the
    /// field `next`, requiring at least one of them.
    ///
    /// A comment runs from `#` through the next CR or LF and counts as a
    /// separator, as in libnetpbm.
    fn separator(&mut self, after: HeaderField, next: HeaderField) -> Result<(), FrameError> {
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(FrameError::TruncatedHeader { field: next }),
                Some(byte) if is_whitespace(byte) => self.pos += 1,
                Some(b'#') => {
                    let rest = self.bytes.get(self.pos..).unwrap_or_default();
                    match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                        Some(end) => self.pos += end + 1,
                        None => return Err(FrameError::TruncatedHeader { field: next }),
                    }
                }
                Some(found) if self.pos == start => {
                    return Err(FrameError::MissingWhitespace {
                        after,
                        offset: self.pos,
                        found,
                    });
                }
                Some(_) => return Ok(()),
            }
        }
    }

    /// Reads an unsigned decimal number, refusing one that does not fit in
    /// a `u32` rather than wrapping.
    fn number(&mut self, field: HeaderField) -> Result<u32, FrameError> {
        match self.peek() {
            None => return Err(FrameError::TruncatedHeader { field }),
            Some(b'0'..=b'9') => {}
            Some(found) => {
                return Err(FrameError::ExpectedDigit {
                    field,
                    offset: self.pos,
                    found,
                });
            }
        }
        let mut value: u32 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u32::from(digit - b'0')))
                .ok_or(FrameError::NumberOverflow { field })?;
            self.pos += 1;
        }
        Ok(value)
    }
}

/// Parses and validates everything before the pixel data.
fn parse_header(bytes: &[u8]) -> Result<Header, FrameError> {
    match bytes.get(..2) {
        None => {
            return Err(FrameError::TruncatedHeader {
                field: HeaderField::Magic,
            });
        }
        Some(b"P6") => {}
        Some(&[a, b]) => return Err(FrameError::BadMagic { found: [a, b] }),
        // `get(..2)` yields exactly two bytes; this arm only satisfies the
        // compiler and is reported like any other bad magic.
        Some(_) => return Err(FrameError::BadMagic { found: [0, 0] }),
    }
    let mut reader = Reader { bytes, pos: 2 };

    reader.separator(HeaderField::Magic, HeaderField::Width)?;
    let width = reader.number(HeaderField::Width)?;
    reader.separator(HeaderField::Width, HeaderField::Height)?;
    let height = reader.number(HeaderField::Height)?;
    reader.separator(HeaderField::Height, HeaderField::Maxval)?;
    let maxval = reader.number(HeaderField::Maxval)?;

    // Exactly one whitespace byte ends the header: the next byte is pixel
    // data even if it looks like whitespace or `#`.
    match reader.peek() {
        None => {
            return Err(FrameError::TruncatedHeader {
                field: HeaderField::Maxval,
            });
        }
        Some(byte) if is_whitespace(byte) => reader.pos += 1,
        Some(found) => {
            return Err(FrameError::MissingWhitespace {
                after: HeaderField::Maxval,
                offset: reader.pos,
                found,
            });
        }
    }

    let rgb_len = rgb_len(width, height)?;
    if maxval != MAXVAL {
        return Err(FrameError::UnsupportedMaxval { maxval });
    }
    Ok(Header {
        width,
        height,
        data_offset: reader.pos,
        rgb_len,
    })
}

/// Decides how `data_len` bytes of pixel data are laid out, or why they
/// cannot be `header`'s pixels.
fn layout(header: &Header, data_len: usize) -> Result<Layout, FrameError> {
    let expected = header.rgb_len;
    if data_len == expected {
        return Ok(Layout::Tight);
    }
    if data_len < expected {
        return Err(FrameError::Truncated {
            expected,
            actual: data_len,
        });
    }
    // Cannot overflow: width is at most MAX_DIMENSION.
    let row = header.width as usize * 3;
    let stride = row.next_multiple_of(4);
    if stride != row && stride.checked_mul(header.height as usize) == Some(data_len) {
        return Ok(Layout::Padded { stride });
    }
    Err(FrameError::TrailingData {
        expected,
        actual: data_len,
    })
}

impl Frame {
    /// Decodes a binary PPM (`P6`, maxval 255), the format QEMU's QMP
    /// `screendump` writes, copying the pixels once into the new frame. For
    /// bytes just read from a file, [`Frame::from_ppm_vec`] is faster.
    ///
    /// Why a strict parser: the bytes come from a file another process wrote
    /// and may be cut short or not a PPM at all. The header follows netpbm
    /// (whitespace and `#` comments between fields, decimal numbers); sizes
    /// are checked against [`MAX_DIMENSION`](crate::MAX_DIMENSION) and
    /// [`MAX_PIXELS`](crate::MAX_PIXELS) before anything is allocated. It
    /// never panics on any input.
    ///
    /// QEMU quirk: QEMU writes each row with its internal 24-bit line buffer
    /// stride, which pixman rounds up to a multiple of 4 bytes. For widths
    /// that are not a multiple of 4 (1366, 390, ...) its PPM therefore has 1
    /// to 3 padding bytes after every row. Pixel data of exactly `height`
    /// such padded rows is accepted and the padding dropped; for widths that
    /// are a multiple of 4 (720, 1024, 1920, ...) both layouts are the same.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] naming the first problem: [`FrameError::BadMagic`],
    /// [`FrameError::TruncatedHeader`], [`FrameError::ExpectedDigit`],
    /// [`FrameError::MissingWhitespace`], [`FrameError::NumberOverflow`],
    /// [`FrameError::ZeroSize`], [`FrameError::TooLarge`],
    /// [`FrameError::UnsupportedMaxval`], [`FrameError::Truncated`] or
    /// [`FrameError::TrailingData`].
    pub fn from_ppm(bytes: &[u8]) -> Result<Self, FrameError> {
        let header = parse_header(bytes)?;
        let data = bytes.get(header.data_offset..).unwrap_or_default();
        let rgb = match layout(&header, data.len())? {
            Layout::Tight => data.to_vec(),
            Layout::Padded { stride } => {
                let row = header.rgb_len / header.height as usize;
                let mut rgb = Vec::with_capacity(header.rgb_len);
                for padded in data.chunks_exact(stride) {
                    rgb.extend_from_slice(padded.get(..row).unwrap_or_default());
                }
                rgb
            }
        };
        Ok(Self::from_valid_parts(header.width, header.height, rgb))
    }

    /// Like [`Frame::from_ppm`], but takes ownership of the buffer (as
    /// returned by `std::fs::read`) and keeps its allocation for the pixels:
    /// they are moved down over the header inside the same buffer instead of
    /// being copied into a new one. Prefer this when the PPM comes from a
    /// file.
    ///
    /// Why both: the copy itself is cheap, but a fresh frame-sized buffer
    /// has to be faulted in page by page. Measured with
    /// `examples/encode_speed.rs`, read + decode + `Fastest` encode took
    /// 1.2 ms instead of 2.8 ms at 1024x768 and 3.0 ms instead of 7.5 ms at
    /// 1920x1080 (no difference at 720x400). [`Frame::from_ppm`] stays for
    /// callers that only have a borrowed slice, such as the fuzz target.
    ///
    /// # Errors
    ///
    /// The same as [`Frame::from_ppm`].
    pub fn from_ppm_vec(mut bytes: Vec<u8>) -> Result<Self, FrameError> {
        let header = parse_header(&bytes)?;
        let offset = header.data_offset;
        let data_len = bytes.len().saturating_sub(offset);
        match layout(&header, data_len)? {
            Layout::Tight => {
                bytes.drain(..offset);
            }
            Layout::Padded { stride } => {
                // Rows move towards the start, so each copy's destination
                // never overlaps a row that is still to be read. All ranges
                // are in bounds: `layout` checked that the data holds exactly
                // `height` rows of `stride` bytes.
                let row = header.rgb_len / header.height as usize;
                for y in 0..header.height as usize {
                    let src = offset + y * stride;
                    bytes.copy_within(src..src + row, y * row);
                }
                bytes.truncate(header.rgb_len);
            }
        }
        Ok(Self::from_valid_parts(header.width, header.height, bytes))
    }
}
