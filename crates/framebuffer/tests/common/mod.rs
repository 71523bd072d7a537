//! Helpers shared by the integration tests.

#![allow(dead_code)] // Each test binary uses a different subset.

use vgashot_framebuffer::Frame;

/// A tiny deterministic PRNG (xorshift64), so the tests need no extra crate
/// and every run sees the same inputs.
pub struct XorShift(u64);

impl XorShift {
    /// Seeds the generator; a zero seed would stay zero, so it is replaced.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// A frame that is far from uniform: gradients, a checkerboard of flat
/// blocks and a band of noise, so that every PNG filter and both long and
/// short DEFLATE matches get exercised.
pub fn patterned(width: u32, height: u32) -> Frame {
    let mut rng = XorShift::new(u64::from(width) << 32 | u64::from(height));
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let px = if y % 97 < 13 {
                [rng.byte(), rng.byte(), rng.byte()]
            } else if (x / 32 + y / 32) % 2 == 0 {
                [(x * 255 / width) as u8, (y * 255 / height) as u8, 0x80]
            } else {
                [(x ^ y) as u8, 0x20, (x.wrapping_mul(7) + y) as u8]
            };
            rgb.extend_from_slice(&px);
        }
    }
    Frame::new(width, height, rgb).expect("pattern has the right size")
}

/// Builds PPM bytes from a header and pixel data.
pub fn ppm(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out
}
