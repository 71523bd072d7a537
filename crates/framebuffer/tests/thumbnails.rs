//! Pixel hashes, resizing and the JPEG and WebP encoders.

mod common;

use common::{patterned, ppm};
use vgashot_framebuffer::{Frame, FrameError, MAX_DIMENSION, fit_within};

/// A frame of one colour.
fn flat(width: u32, height: u32, colour: [u8; 3]) -> Frame {
    let rgb = colour.repeat(width as usize * height as usize);
    Frame::new(width, height, rgb).expect("sizes match")
}

/// Decodes a JPEG and returns its size and RGB pixels.
fn decode_jpeg(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let rgb = decoder.decode().expect("JPEG decodes");
    let info = decoder.info().expect("JPEG info");
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (u32::from(info.width), u32::from(info.height), rgb)
}

/// Decodes a WebP and returns its size and RGB pixels.
fn decode_webp(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder =
        image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).expect("WebP header");
    assert!(!decoder.has_alpha(), "an RGB frame must not gain alpha");
    let (width, height) = decoder.dimensions();
    let mut rgb = vec![0; decoder.output_buffer_size().expect("buffer size")];
    decoder.read_image(&mut rgb).expect("WebP decodes");
    (width, height, rgb)
}

/// Mean absolute difference per channel between two equal-length buffers.
fn mean_abs_error(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

// --- pixel_hash ---

#[test]
fn hash_is_equal_for_equal_pixels_and_stable() {
    let frame = patterned(720, 400);
    let copy = Frame::new(720, 400, frame.rgb().to_vec()).unwrap();
    assert_eq!(frame.pixel_hash(), copy.pixel_hash());
    assert_eq!(frame.pixel_hash().to_hex().len(), 32);
    // XXH3 is a frozen algorithm, so ETags survive restarts and upgrades:
    // pin one value.
    assert_eq!(
        Frame::new(1, 1, vec![0, 0, 0])
            .unwrap()
            .pixel_hash()
            .to_hex(),
        "60094c9e86005114ede630f4b0645bd6"
    );
}

#[test]
fn one_changed_pixel_changes_the_hash() {
    let frame = patterned(1024, 768);
    let hash = frame.pixel_hash();
    for index in [0, 1, 2, 1024 * 384 * 3 + 7, 1024 * 768 * 3 - 1] {
        let mut rgb = frame.rgb().to_vec();
        rgb[index] ^= 1;
        let changed = Frame::new(1024, 768, rgb).unwrap();
        assert_ne!(changed.pixel_hash(), hash, "byte {index}");
    }
}

#[test]
fn hash_ignores_how_the_ppm_was_written() {
    // QEMU pads odd-width rows to 4 bytes; a tight PPM with a comment in the
    // header holds the same pixels and must give the same ETag.
    let frame = patterned(3, 2);
    let rows: Vec<&[u8]> = frame.rgb().chunks(9).collect();
    let mut padded = Vec::new();
    for row in &rows {
        padded.extend_from_slice(row);
        padded.extend_from_slice(&[0, 0, 0]); // 9 bytes -> 12
    }
    let qemu = Frame::from_ppm(&ppm("P6\n3 2\n255\n", &padded)).unwrap();
    let other = Frame::from_ppm(&ppm("P6 # written by hand\n3\t2 255\n", frame.rgb())).unwrap();
    assert_eq!(qemu.pixel_hash(), frame.pixel_hash());
    assert_eq!(other.pixel_hash(), frame.pixel_hash());
}

#[test]
fn hash_depends_on_the_size_not_just_the_bytes() {
    let rgb = patterned(8, 6).rgb().to_vec();
    let a = Frame::new(8, 6, rgb.clone()).unwrap();
    let b = Frame::new(6, 8, rgb.clone()).unwrap();
    let c = Frame::new(16, 3, rgb).unwrap();
    assert_ne!(a.pixel_hash(), b.pixel_hash());
    assert_ne!(a.pixel_hash(), c.pixel_hash());
    assert_ne!(b.pixel_hash(), c.pixel_hash());
}

// --- fit_within ---

#[test]
fn fit_within_keeps_the_aspect_ratio() {
    assert_eq!(fit_within(1024, 768, Some(320), None).unwrap(), (320, 240));
    assert_eq!(fit_within(720, 400, None, Some(100)).unwrap(), (180, 100));
    assert_eq!(fit_within(1920, 1080, Some(320), None).unwrap(), (320, 180));
    // 720x400 at 320 wide is 177.78 high: rounds to nearest.
    assert_eq!(fit_within(720, 400, Some(320), None).unwrap(), (320, 178));
    // Never rounds down to nothing.
    assert_eq!(fit_within(4000, 10, Some(100), None).unwrap(), (100, 1));
    assert_eq!(fit_within(10, 4000, None, Some(100)).unwrap(), (1, 100));
}

#[test]
fn fit_within_is_exact_with_both_and_identity_with_neither() {
    assert_eq!(
        fit_within(1024, 768, Some(100), Some(100)).unwrap(),
        (100, 100)
    );
    assert_eq!(fit_within(720, 400, None, None).unwrap(), (720, 400));
}

#[test]
fn fit_within_refuses_zero_and_oversized_sizes() {
    assert!(matches!(
        fit_within(1024, 768, Some(0), None),
        Err(FrameError::ZeroSize { .. })
    ));
    assert!(matches!(
        fit_within(1024, 768, Some(10), Some(0)),
        Err(FrameError::ZeroSize { .. })
    ));
    assert!(matches!(
        fit_within(0, 768, Some(10), None),
        Err(FrameError::ZeroSize { .. })
    ));
    assert!(matches!(
        fit_within(1024, 768, Some(MAX_DIMENSION + 1), None),
        Err(FrameError::TooLarge { .. })
    ));
    // The derived side can overflow the limit too.
    assert!(matches!(
        fit_within(1, 16384, Some(2), None),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(matches!(
        fit_within(1024, 768, Some(u32::MAX), None),
        Err(FrameError::TooLarge { .. })
    ));
}

// --- resize ---

#[test]
fn resize_gives_exact_sizes() {
    let frame = patterned(1920, 1080);
    for (width, height) in [(320, 180), (1, 1), (1920, 1), (7, 1080), (1919, 1079)] {
        let small = frame.resize(width, height).unwrap();
        assert_eq!((small.width(), small.height()), (width, height));
        assert_eq!(small.rgb().len(), width as usize * height as usize * 3);
    }
    assert_eq!(frame.resize(1920, 1080).unwrap(), frame);
}

#[test]
fn flat_colour_stays_exactly_that_colour() {
    for colour in [[0, 0, 0], [255, 255, 255], [85, 255, 85], [12, 34, 56]] {
        let small = flat(720, 400, colour).resize(97, 53).unwrap();
        assert!(
            small.rgb().chunks(3).all(|px| px == colour),
            "{colour:?} drifted"
        );
    }
}

#[test]
fn a_two_colour_split_stays_split_in_the_right_place() {
    // Left half red, right half blue; shrunk 4x the edge falls between
    // columns 79 and 80 of 160, and on a horizontal split between rows.
    let (width, height) = (640u32, 400u32);
    let mut rgb = Vec::new();
    for _y in 0..height {
        for x in 0..width {
            rgb.extend_from_slice(if x < width / 2 {
                &[255, 0, 0]
            } else {
                &[0, 0, 255]
            });
        }
    }
    let small = Frame::new(width, height, rgb)
        .unwrap()
        .resize(160, 100)
        .unwrap();
    for y in 0..100 {
        // Far from the edge: the exact colours.
        assert_eq!(small.pixel(0, y), [255, 0, 0]);
        assert_eq!(small.pixel(77, y), [255, 0, 0]);
        assert_eq!(small.pixel(82, y), [0, 0, 255]);
        assert_eq!(small.pixel(159, y), [0, 0, 255]);
        // Next to the edge: mostly the colour of its own side.
        let [r, _, b] = small.pixel(79, y);
        assert!(r > 200 && b < 55, "column 79 row {y}: {r} {b}");
        let [r, _, b] = small.pixel(80, y);
        assert!(b > 200 && r < 55, "column 80 row {y}: {r} {b}");
    }

    let mut rgb = Vec::new();
    for y in 0..300u32 {
        for _x in 0..300u32 {
            rgb.extend_from_slice(if y < 100 {
                &[255, 255, 255]
            } else {
                &[0, 0, 0]
            });
        }
    }
    // A third of the way down; 3x smaller puts the edge at row 33.33, a
    // third of the way into row 33 (source rows 99 to 101, one white).
    let small = Frame::new(300, 300, rgb).unwrap().resize(100, 100).unwrap();
    for x in 0..100 {
        assert_eq!(small.pixel(x, 0), [255; 3]);
        assert_eq!(small.pixel(x, 31), [255; 3]);
        let [edge_above, ..] = small.pixel(x, 32);
        let [edge, ..] = small.pixel(x, 33);
        assert!(edge_above > 200, "row 32: {edge_above}");
        assert!((40..128).contains(&edge), "row 33: {edge}");
        assert_eq!(small.pixel(x, 35), [0; 3]);
        assert_eq!(small.pixel(x, 99), [0; 3]);
    }
}

#[test]
fn fine_stripes_do_not_alias() {
    // One-pixel black and white stripes are the worst case for moiré: a good
    // thumbnail is close to flat grey, where nearest-neighbour keeps pure
    // black and white columns.
    let (width, height) = (720u32, 400u32);
    let mut rgb = Vec::new();
    for _y in 0..height {
        for x in 0..width {
            rgb.extend_from_slice(&[(x % 2) as u8 * 255; 3]);
        }
    }
    let small = Frame::new(width, height, rgb)
        .unwrap()
        .resize(320, 178)
        .unwrap();
    let (min, max) = small
        .rgb()
        .iter()
        .fold((255, 0), |(lo, hi), &v| (v.min(lo), v.max(hi)));
    assert!(min >= 95 && max <= 160, "stripes shrank to {min}..{max}");
}

#[test]
fn resize_refuses_zero_oversized_and_upscaling() {
    let frame = patterned(64, 48);
    assert!(matches!(
        frame.resize(0, 10),
        Err(FrameError::ZeroSize { .. })
    ));
    assert!(matches!(
        frame.resize(10, 0),
        Err(FrameError::ZeroSize { .. })
    ));
    assert!(matches!(
        frame.resize(MAX_DIMENSION + 1, 10),
        Err(FrameError::TooLarge { .. })
    ));
    let err = frame.resize(65, 48).unwrap_err();
    assert!(matches!(
        err,
        FrameError::Upscale {
            from_width: 64,
            from_height: 48,
            width: 65,
            height: 48
        }
    ));
    assert_eq!(
        err.to_string(),
        "cannot resize a 64x48 frame to 65x48: only shrinking is supported"
    );
    assert!(matches!(
        frame.resize(10, 49),
        Err(FrameError::Upscale { .. })
    ));
}

// --- JPEG ---

#[test]
fn jpeg_decodes_to_the_right_size_and_close_pixels() {
    for (width, height) in [(720, 400), (321, 179), (1, 1)] {
        let frame = patterned(width, height);
        let jpeg = frame.encode_jpeg(90).unwrap();
        let (w, h, rgb) = decode_jpeg(&jpeg);
        assert_eq!((w, h), (width, height));
        // The pattern has a band of pure noise, the worst case for JPEG;
        // real screens do far better (see the flat and thumbnail checks).
        let error = mean_abs_error(frame.rgb(), &rgb);
        assert!(error < 12.0, "{width}x{height}: mean error {error:.2}");
    }
    let thumb = patterned(1920, 1080).resize(320, 180).unwrap();
    let (_, _, rgb) = decode_jpeg(&thumb.encode_jpeg(80).unwrap());
    let error = mean_abs_error(thumb.rgb(), &rgb);
    assert!(error < 12.0, "thumbnail: mean error {error:.2}");
}

#[test]
fn jpeg_keeps_flat_colours_and_coloured_text_close() {
    let frame = flat(64, 32, [85, 255, 85]);
    let (_, _, rgb) = decode_jpeg(&frame.encode_jpeg(80).unwrap());
    assert!(mean_abs_error(frame.rgb(), &rgb) < 1.5);

    // Green one-pixel strokes on black: with 4:2:0 subsampling the strokes
    // would lose most of their colour.
    let mut rgb = vec![0u8; 72 * 16 * 3];
    for y in 2..14 {
        for x in (0..72).step_by(3) {
            let i = (y * 72 + x) * 3;
            rgb[i..i + 3].copy_from_slice(&[85, 255, 85]);
        }
    }
    let frame = Frame::new(72, 16, rgb).unwrap();
    let (_, _, back) = decode_jpeg(&frame.encode_jpeg(80).unwrap());
    let error = mean_abs_error(frame.rgb(), &back);
    assert!(error < 12.0, "green strokes: mean error {error:.2}");
    let [r, g, b] = [
        back[(5 * 72 + 3) * 3],
        back[(5 * 72 + 3) * 3 + 1],
        back[(5 * 72 + 3) * 3 + 2],
    ];
    assert!(g > 180 && g > r + 80 && g > b + 80, "stroke is {r},{g},{b}");
}

#[test]
fn jpeg_quality_must_be_1_to_100() {
    let frame = patterned(16, 16);
    for quality in [0, 101, 255] {
        assert!(matches!(
            frame.encode_jpeg(quality),
            Err(FrameError::InvalidQuality { quality: q }) if q == quality
        ));
    }
    let low = frame.encode_jpeg(1).unwrap();
    let high = frame.encode_jpeg(100).unwrap();
    assert!(low.len() < high.len());
}

// --- WebP ---

#[test]
fn webp_is_lossless() {
    for (width, height) in [(720, 400), (333, 17), (1, 1)] {
        let frame = patterned(width, height);
        let webp = frame.encode_webp_lossless().unwrap();
        assert!(webp.starts_with(b"RIFF") && &webp[8..12] == b"WEBP");
        let (w, h, rgb) = decode_webp(&webp);
        assert_eq!((w, h), (width, height));
        assert!(rgb == frame.rgb(), "{width}x{height} is not exact");
    }
}
