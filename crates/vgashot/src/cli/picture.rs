//! What an image's first bytes say about it: its size in pixels, read from the headers of PNG,
//! JPEG and WebP alone, so a command can report a screenshot's size (and `list --screens` a
//! screen's) without decoding pixels or reading a whole body.

/// Bytes of a PNG up to the end of its `IHDR` width and height: all `list` needs to read.
pub const PNG_HEADER_LEN: usize = 24;

/// The width and height of a PNG, JPEG or WebP image, from its headers; `None` when the bytes
/// are none of them (or cut short).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    png(bytes).or_else(|| jpeg(bytes)).or_else(|| webp(bytes))
}

/// The name of the image's format, for messages.
pub fn format_name(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "PNG"
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        "JPEG"
    } else if bytes.len() >= 12 && &bytes[8..12] == b"WEBP" {
        "WebP"
    } else {
        "image"
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be16(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?).into())
}

fn le16(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?).into())
}

/// The signature, then `IHDR` first: width and height at bytes 16 and 20.
fn png(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be32(bytes, 16)?, be32(bytes, 20)?))
}

/// Walks the JPEG markers to the first start of frame (`SOFn`, not `DHT`, `JPG` or `DAC`).
fn jpeg(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(&[0xff, 0xd8]) {
        return None;
    }
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xff {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xff {
            at += 1; // Fill byte.
            continue;
        }
        let length = usize::try_from(be16(bytes, at + 2)?).ok()?;
        if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
            return Some((be16(bytes, at + 7)?, be16(bytes, at + 5)?));
        }
        at += 2 + length;
    }
}

/// `RIFF` `WEBP`, then the first chunk: lossless (`VP8L`), lossy (`VP8 `) or extended (`VP8X`).
fn webp(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WEBP" {
        return None;
    }
    match bytes.get(12..16)? {
        b"VP8L" => {
            if *bytes.get(20)? != 0x2f {
                return None;
            }
            let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8 " => Some((le16(bytes, 26)? & 0x3fff, le16(bytes, 28)? & 0x3fff)),
        b"VP8X" => {
            let le24 = |at: usize| -> Option<u32> {
                let b = bytes.get(at..at + 3)?;
                Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
            };
            Some((le24(24)? + 1, le24(27)? + 1))
        }
        _ => None,
    }
}

/// A byte count as the `incus` client writes sizes: `512B`, `5.03KiB`, `1.20MiB`.
pub fn byte_size(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    // Display only: the loss of precision beyond 2^53 bytes does not show.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_headers() {
        let frame = vgashot_framebuffer::Frame::new(7, 5, vec![9; 7 * 5 * 3]).unwrap();
        let png = frame
            .encode_png(vgashot_framebuffer::PngCompression::Fastest)
            .unwrap();
        assert_eq!(dimensions(&png), Some((7, 5)));
        assert_eq!(dimensions(&png[..PNG_HEADER_LEN]), Some((7, 5)));
        assert_eq!(format_name(&png), "PNG");
        let jpeg = frame.encode_jpeg(80).unwrap();
        assert_eq!(dimensions(&jpeg), Some((7, 5)));
        assert_eq!(format_name(&jpeg), "JPEG");
        let webp = frame.encode_webp_lossless().unwrap();
        assert_eq!(dimensions(&webp), Some((7, 5)));
        assert_eq!(format_name(&webp), "WebP");
        assert_eq!(dimensions(b"nothing"), None);
        assert_eq!(dimensions(&png[..20]), None);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size(0), "0B");
        assert_eq!(byte_size(1023), "1023B");
        assert_eq!(byte_size(5150), "5.03KiB");
        assert_eq!(byte_size(3 * 1024 * 1024), "3.00MiB");
    }
}
