//! PPM and PNG round trips on screen-sized, patterned frames.

mod common;

use common::{XorShift, patterned, ppm};
use vgashot_framebuffer::{Frame, PngCompression};

/// The screen sizes the tool meets most: VGA text mode (80x25 cells of 9x16),
/// XGA and full HD.
const SIZES: [(u32, u32); 3] = [(720, 400), (1024, 768), (1920, 1080)];

/// Decodes a PNG with the `png` crate and returns its pixels, checking that
/// it is plain 8-bit RGB without interlacing.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let info = reader.info();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    assert!(!info.interlaced);
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let frame = reader.next_frame(&mut buf).expect("PNG data");
    buf.truncate(frame.buffer_size());
    (frame.width, frame.height, buf)
}

#[test]
fn ppm_round_trip_is_lossless() {
    for (width, height) in SIZES {
        let frame = patterned(width, height);
        let bytes = frame.to_ppm();
        assert!(bytes.starts_with(format!("P6\n{width} {height}\n255\n").as_bytes()));
        let back = Frame::from_ppm(&bytes).expect("our own PPM parses");
        assert_eq!(back, frame, "{width}x{height}");
        assert_eq!(back.to_ppm(), bytes);
        let back_vec = Frame::from_ppm_vec(bytes).expect("our own PPM parses");
        assert_eq!(back_vec, frame, "{width}x{height} (vec)");
    }
}

#[test]
fn png_decodes_to_identical_pixels() {
    for (width, height) in SIZES {
        let frame = patterned(width, height);
        for compression in [
            PngCompression::Fastest,
            PngCompression::Balanced,
            PngCompression::Smallest,
        ] {
            let png = frame.encode_png(compression).expect("encodes");
            let (w, h, rgb) = decode_png(&png);
            assert_eq!((w, h), (width, height), "{compression:?}");
            assert!(
                rgb == frame.rgb(),
                "{width}x{height} {compression:?} pixels differ"
            );
        }
    }
}

#[test]
fn default_compression_is_fastest() {
    assert_eq!(PngCompression::default(), PngCompression::Fastest);
}

#[test]
fn smaller_settings_give_smaller_files() {
    let frame = patterned(720, 400);
    let fastest = frame.encode_png(PngCompression::Fastest).unwrap().len();
    let balanced = frame.encode_png(PngCompression::Balanced).unwrap().len();
    let smallest = frame.encode_png(PngCompression::Smallest).unwrap().len();
    assert!(
        smallest <= balanced && balanced <= fastest,
        "{smallest} {balanced} {fastest}"
    );
    assert!(fastest < frame.rgb().len(), "Fastest must still compress");
}

#[test]
fn one_pixel_and_extreme_aspect_frames_encode() {
    for (width, height) in [(1, 1), (1, 300), (300, 1), (3, 5)] {
        let frame = patterned(width, height);
        let (w, h, rgb) = decode_png(&frame.encode_png(PngCompression::Fastest).unwrap());
        assert_eq!((w, h), (width, height));
        assert_eq!(rgb, frame.rgb());
    }
}

/// QEMU writes rows padded to 4 bytes (pixman's stride), so a 1366-wide
/// screen has 2 extra bytes per row. Such a file must decode to the unpadded
/// pixels, with both entry points.
#[test]
fn qemu_padded_rows_are_stripped() {
    for (width, height) in [(1366, 768), (390, 450), (3, 2), (1, 1), (2, 7)] {
        let frame = patterned(width, height);
        let row = width as usize * 3;
        let stride = row.next_multiple_of(4);
        assert_ne!(row, stride, "test size {width} must need padding");
        let mut rng = XorShift::new(7);
        let mut data = Vec::new();
        for pixels in frame.rgb().chunks_exact(row) {
            data.extend_from_slice(pixels);
            data.extend((row..stride).map(|_| rng.byte()));
        }
        let bytes = ppm(&format!("P6\n{width} {height}\n255\n"), &data);
        assert_eq!(Frame::from_ppm(&bytes).unwrap(), frame, "{width}x{height}");
        assert_eq!(
            Frame::from_ppm_vec(bytes).unwrap(),
            frame,
            "{width}x{height} (vec)"
        );
    }
}

#[test]
fn pixel_reads_row_major_rgb() {
    let frame = patterned(720, 400);
    for (x, y) in [(0, 0), (719, 0), (0, 399), (719, 399), (123, 321)] {
        let i = (y as usize * 720 + x as usize) * 3;
        assert_eq!(frame.pixel(x, y), frame.rgb()[i..i + 3]);
    }
}

#[test]
fn png_decodes_back_with_from_png() {
    let frame = patterned(720, 400);
    let png = frame.encode_png(PngCompression::Fastest).unwrap();
    assert_eq!(Frame::from_png(&png).unwrap(), frame);
    assert!(matches!(
        Frame::from_png(b"not a png"),
        Err(vgashot_framebuffer::FrameError::PngDecode(_))
    ));
}
