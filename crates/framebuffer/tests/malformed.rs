//! Every way a PPM can be wrong gives its own, exact error.

mod common;

use common::ppm;
use vgashot_framebuffer::{Frame, FrameError, HeaderField, MAX_DIMENSION};

/// Parses with both entry points, checks they agree, and returns the error.
fn error(bytes: &[u8]) -> FrameError {
    let from_slice = Frame::from_ppm(bytes).expect_err("input must be refused");
    let from_vec = Frame::from_ppm_vec(bytes.to_vec()).expect_err("input must be refused");
    assert_eq!(format!("{from_slice:?}"), format!("{from_vec:?}"));
    from_slice
}

#[test]
fn truncated_pixel_data() {
    let bytes = ppm("P6\n4 2\n255\n", &[7; 23]);
    assert!(matches!(
        error(&bytes),
        FrameError::Truncated {
            expected: 24,
            actual: 23
        }
    ));
    assert!(matches!(
        error(b"P6\n4 2\n255\n"),
        FrameError::Truncated {
            expected: 24,
            actual: 0
        }
    ));
}

#[test]
fn truncated_header() {
    use HeaderField::*;
    let cases: [(&[u8], HeaderField); 9] = [
        (b"", Magic),
        (b"P", Magic),
        (b"P6", Width),
        (b"P6\n", Width),
        (b"P6 640", Height),
        (b"P6 640 480", Maxval),
        (b"P6 640 480 ", Maxval),
        (b"P6 640 480 255", Maxval),
        (b"P6 640 480 # a comment that never ends", Maxval),
    ];
    for (bytes, field) in cases {
        match error(bytes) {
            FrameError::TruncatedHeader { field: f } if f == field => {}
            other => panic!("{:?}: {other:?}", bytes.escape_ascii().to_string()),
        }
    }
}

#[test]
fn bad_magic() {
    assert!(matches!(
        error(b"GIF89a\x01\x00"),
        FrameError::BadMagic {
            found: [b'G', b'I']
        }
    ));
    assert!(matches!(
        error(b"\x89PNG\r\n\x1a\n"),
        FrameError::BadMagic {
            found: [0x89, b'P']
        }
    ));
    // P5 (greymap) and P7 (PAM) are netpbm, but not what QEMU writes.
    assert!(matches!(
        error(b"P5\n1 1\n255\n\x00"),
        FrameError::BadMagic {
            found: [b'P', b'5']
        }
    ));
    assert!(matches!(
        error(b"p6\n1 1\n255\n\x00\x00\x00"),
        FrameError::BadMagic {
            found: [b'p', b'6']
        }
    ));
}

#[test]
fn ascii_p3_is_refused() {
    assert!(matches!(
        error(b"P3\n2 1\n255\n255 0 0  0 255 0\n"),
        FrameError::BadMagic {
            found: [b'P', b'3']
        }
    ));
}

#[test]
fn maxval_other_than_255() {
    let cases = [
        (65535, "P6 1 1 65535\n"),
        (1, "P6 1 1 1\n"),
        (0, "P6 1 1 0\n"),
        (256, "P6 1 1 256\n"),
    ];
    for (maxval, header) in cases {
        match error(&ppm(header, &[0; 6])) {
            FrameError::UnsupportedMaxval { maxval: m } if m == maxval => {}
            other => panic!("{header:?}: {other:?}"),
        }
    }
}

#[test]
fn zero_dimensions() {
    assert!(matches!(
        error(b"P6 0 480 255\n"),
        FrameError::ZeroSize {
            width: 0,
            height: 480
        }
    ));
    assert!(matches!(
        error(b"P6 640 0 255\n"),
        FrameError::ZeroSize {
            width: 640,
            height: 0
        }
    ));
    assert!(matches!(
        error(b"P6 0 0 255\n"),
        FrameError::ZeroSize {
            width: 0,
            height: 0
        }
    ));
}

#[test]
fn huge_dimensions_are_refused_before_allocating() {
    let over = MAX_DIMENSION + 1;
    assert!(matches!(
        error(format!("P6 {over} 1 255\n").as_bytes()),
        FrameError::TooLarge { width, height: 1 } if width == over
    ));
    assert!(matches!(
        error(format!("P6 1 {over} 255\n").as_bytes()),
        FrameError::TooLarge { width: 1, height } if height == over
    ));
    // Each side is allowed, the product is not.
    assert!(matches!(
        error(b"P6 16384 16384 255\n"),
        FrameError::TooLarge {
            width: 16384,
            height: 16384
        }
    ));
    // The largest value a u32 holds is still parsed, then refused by size.
    assert!(matches!(
        error(b"P6 4294967295 1 255\n"),
        FrameError::TooLarge {
            width: u32::MAX,
            height: 1
        }
    ));
}

#[test]
fn overflowing_numbers() {
    assert!(matches!(
        error(b"P6 99999999999999999999 480 255\n"),
        FrameError::NumberOverflow {
            field: HeaderField::Width
        }
    ));
    assert!(matches!(
        error(b"P6 640 4294967296 255\n"),
        FrameError::NumberOverflow {
            field: HeaderField::Height
        }
    ));
    assert!(matches!(
        error(b"P6 640 480 99999999999999999999\n"),
        FrameError::NumberOverflow {
            field: HeaderField::Maxval
        }
    ));
    // Leading zeros are just zeros, not an overflow.
    let bytes = ppm("P6 0000000000000000000001 01 000255\n", &[1, 2, 3]);
    assert_eq!(Frame::from_ppm(&bytes).unwrap().pixel(0, 0), [1, 2, 3]);
}

#[test]
fn non_digits_where_a_number_belongs() {
    assert!(matches!(
        error(b"P6 -1 1 255\n"),
        FrameError::ExpectedDigit {
            field: HeaderField::Width,
            offset: 3,
            found: b'-'
        }
    ));
    assert!(matches!(
        error(b"P6 1 +1 255\n"),
        FrameError::ExpectedDigit {
            field: HeaderField::Height,
            offset: 5,
            found: b'+'
        }
    ));
    assert!(matches!(
        error(b"P6 1 1 \xff\n"),
        FrameError::ExpectedDigit {
            field: HeaderField::Maxval,
            offset: 7,
            found: 0xff
        }
    ));
}

#[test]
fn comments_in_the_header_are_skipped() {
    let header = "P6# right after the magic\n\
                  #whole line\r\
                  2 # after width\n\
                  \t1#\n\
                  # before maxval\n\
                  255\n";
    let frame = Frame::from_ppm(&ppm(header, &[1, 2, 3, 4, 5, 6])).unwrap();
    assert_eq!((frame.width(), frame.height()), (2, 1));
    assert_eq!(frame.pixel(1, 0), [4, 5, 6]);
    // A `#` inside the pixel data is just a byte.
    let frame = Frame::from_ppm(b"P6 1 1 255\n###").unwrap();
    assert_eq!(frame.pixel(0, 0), [b'#'; 3]);
}

#[test]
fn all_netpbm_whitespace_separates() {
    let frame = Frame::from_ppm(b"P6\r\n\x0b1\x0c\t1 \r\n 255\r\x01\x02\x03").unwrap();
    assert_eq!(frame.pixel(0, 0), [1, 2, 3]);
}

#[test]
fn missing_whitespace() {
    assert!(matches!(
        error(b"P62 1 255\n"),
        FrameError::MissingWhitespace {
            after: HeaderField::Magic,
            offset: 2,
            found: b'2'
        }
    ));
    assert!(matches!(
        error(b"P6 2x1 255\n"),
        FrameError::MissingWhitespace {
            after: HeaderField::Width,
            offset: 4,
            found: b'x'
        }
    ));
    assert!(matches!(
        error(b"P6 2 1, 255\n"),
        FrameError::MissingWhitespace {
            after: HeaderField::Height,
            offset: 6,
            found: b','
        }
    ));
    // Pixel data glued to maxval.
    assert!(matches!(
        error(b"P6 1 1 255\x00\x00\x00"),
        FrameError::MissingWhitespace {
            after: HeaderField::Maxval,
            offset: 10,
            found: 0
        }
    ));
    // No comment between maxval and its single whitespace byte.
    assert!(matches!(
        error(b"P6 1 1 255#c\n\x00\x00\x00"),
        FrameError::MissingWhitespace {
            after: HeaderField::Maxval,
            offset: 10,
            found: b'#'
        }
    ));
}

#[test]
fn exactly_one_whitespace_byte_ends_the_header() {
    // The second newline is the first pixel byte, not more whitespace.
    let frame = Frame::from_ppm(b"P6 1 1 255\n\n\x01\x02").unwrap();
    assert_eq!(frame.pixel(0, 0), [b'\n', 1, 2]);
}

#[test]
fn trailing_data() {
    let bytes = ppm("P6\n4 2\n255\n", &[0; 25]);
    assert!(matches!(
        error(&bytes),
        FrameError::TrailingData {
            expected: 24,
            actual: 25
        }
    ));
    // A width of 3 needs row padding (9 -> 12 bytes); anything between the
    // tight (18) and the padded (24) length, or beyond, is still refused.
    for len in [19, 20, 23, 25, 36] {
        match error(&ppm("P6\n3 2\n255\n", &vec![0; len])) {
            FrameError::TrailingData {
                expected: 18,
                actual,
            } if actual == len => {}
            other => panic!("{len}: {other:?}"),
        }
    }
    assert!(matches!(
        error(&ppm("P6\n3 2\n255\n", &[0; 17])),
        FrameError::Truncated {
            expected: 18,
            actual: 17
        }
    ));
}

#[test]
fn frame_new_checks_its_buffer() {
    assert!(matches!(
        Frame::new(2, 2, vec![0; 11]),
        Err(FrameError::BufferSize {
            width: 2,
            height: 2,
            expected: 12,
            actual: 11
        })
    ));
    assert!(matches!(
        Frame::new(0, 2, vec![]),
        Err(FrameError::ZeroSize {
            width: 0,
            height: 2
        })
    ));
    assert!(matches!(
        Frame::new(MAX_DIMENSION + 1, 1, vec![]),
        Err(FrameError::TooLarge { .. })
    ));
    let frame = Frame::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(frame.pixel(1, 0), [4, 5, 6]);
}

#[test]
fn error_texts_name_the_problem() {
    let text = error(b"P3\n").to_string();
    assert_eq!(text, "not a binary PPM (P6) image: it starts with \"P3\"");
    let text = error(&ppm("P6\n4 2\n255\n", &[0; 30])).to_string();
    assert_eq!(
        text,
        "the PPM has 6 bytes after its pixel data: expected 24 bytes, found 30"
    );
    let text = error(b"P6 2x1 255\n").to_string();
    assert_eq!(
        text,
        "the PPM width must be followed by whitespace, but byte 4 is 'x'"
    );
    let text = error(b"P6 1 1 65535\n").to_string();
    assert_eq!(
        text,
        "the PPM maxval is 65535, but only 255 (8-bit samples) is supported"
    );
    let text = error(b"P6 16385 1 255\n").to_string();
    assert_eq!(
        text,
        "the frame is 16385x1, larger than we accept \
         (at most 16384 pixels per side and 67108864 pixels in all)"
    );
}

#[test]
fn png_errors_keep_their_cause() {
    use std::error::Error as _;
    let err = FrameError::PngEncode(png::EncodingError::LimitsExceeded);
    assert!(err.source().is_some());
    assert_eq!(err.to_string(), "PNG encoding failed");
}
