//! `Frame::from_ppm` must never panic, whatever it is given. A deterministic
//! stand-in for the fuzz target (fuzz/fuzz_targets/ppm_parse.rs) that runs
//! with the ordinary tests.

mod common;

use std::collections::BTreeSet;

use common::{XorShift, patterned, ppm};
use vgashot_framebuffer::Frame;

/// Bytes a PPM header is made of, so random inputs often get deep into the
/// parser instead of failing on the first byte.
const ALPHABET: &[u8] = b"P6P3 \t\n\r\x0b\x0c#0123456789255\x00\xff";

/// Checks one input: both entry points agree, and what they accept is a
/// consistent frame that round-trips. Returns the outcome's kind (`Ok` or
/// the error variant's name) so the tests can check they reached far.
fn check(bytes: &[u8]) -> String {
    let from_slice = Frame::from_ppm(bytes);
    let from_vec = Frame::from_ppm_vec(bytes.to_vec());
    assert_eq!(format!("{from_slice:?}"), format!("{from_vec:?}"));
    if let (Ok(a), Ok(b)) = (&from_slice, &from_vec) {
        assert_eq!(a, b);
        assert_eq!(a.rgb().len(), a.width() as usize * a.height() as usize * 3);
        assert_eq!(Frame::from_ppm(&a.to_ppm()).as_ref().ok(), Some(a));
    }
    match from_slice {
        Ok(_) => "Ok".to_owned(),
        Err(e) => format!("{e:?}")
            .split([' ', '('])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Asserts that the run met every outcome in `expected` at least once, so a
/// generator that stopped reaching the parser's depths is noticed.
fn assert_reached(seen: &BTreeSet<String>, expected: &[&str]) {
    for kind in expected {
        assert!(seen.contains(*kind), "never produced {kind}; saw {seen:?}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift::new(0x5eed);
    let mut seen = BTreeSet::new();
    for _ in 0..100_000 {
        let len = rng.below(48);
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.byte()
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                }
            })
            .collect();
        if rng.below(2) == 0 {
            bytes.splice(0..0, *b"P6");
        }
        seen.insert(check(&bytes));
    }
    assert_reached(
        &seen,
        &[
            "BadMagic",
            "TruncatedHeader",
            "ExpectedDigit",
            "MissingWhitespace",
            "ZeroSize",
        ],
    );
}

#[test]
fn mutated_valid_ppms_never_panic() {
    let mut rng = XorShift::new(0xfeed);
    // Tight and QEMU-padded layouts, with plain and commented headers.
    let mut seeds = Vec::new();
    for (w, h) in [(1, 1), (3, 2), (4, 3), (7, 5)] {
        let frame = patterned(w, h);
        seeds.push(frame.to_ppm());
        seeds.push(ppm(&format!("P6 #c\n{w}\t{h}\r\n#x\n255\n"), frame.rgb()));
        let row = w as usize * 3;
        let mut padded = Vec::new();
        for pixels in frame.rgb().chunks_exact(row) {
            padded.extend_from_slice(pixels);
            padded.resize(padded.len() + row.next_multiple_of(4) - row, 0);
        }
        seeds.push(ppm(&format!("P6\n{w} {h}\n255\n"), &padded));
    }
    let mut seen = BTreeSet::new();
    for seed in &seeds {
        assert_eq!(check(seed), "Ok");
        // Every truncation.
        for end in 0..seed.len() {
            seen.insert(check(&seed[..end]));
        }
    }
    for _ in 0..100_000 {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(6) {
                0 if at < bytes.len() => bytes[at] = rng.byte(),
                1 if at < bytes.len() => bytes[at] = ALPHABET[rng.below(ALPHABET.len())],
                2 => bytes.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                3 if at < bytes.len() => {
                    bytes.remove(at);
                }
                // A run of digits, to grow header numbers past the limits.
                4 => {
                    let digits: Vec<u8> = (0..1 + rng.below(12))
                        .map(|_| b'0' + rng.below(10) as u8)
                        .collect();
                    bytes.splice(at..at, digits);
                }
                _ => bytes.truncate(at),
            }
        }
        seen.insert(check(&bytes));
    }
    assert_reached(
        &seen,
        &[
            "Ok",
            "BadMagic",
            "TruncatedHeader",
            "ExpectedDigit",
            "MissingWhitespace",
            "NumberOverflow",
            "ZeroSize",
            "TooLarge",
            "UnsupportedMaxval",
            "Truncated",
            "TrailingData",
        ],
    );
}
