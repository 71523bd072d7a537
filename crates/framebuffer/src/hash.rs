//! A hash of a frame's pixels, for strong HTTP `ETag`s.

use std::fmt;

use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::Frame;

/// A 128-bit fingerprint of a frame's size and pixels, from
/// [`Frame::pixel_hash`].
///
/// Why a newtype rather than a bare `[u8; 16]`: it gives the one canonical
/// text form ([`PixelHash::to_hex`], also its `Display`), so the REST layer
/// and any cache agree on how an `ETag` is spelt, and it cannot be mixed up
/// with other 16-byte values such as UUIDs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PixelHash([u8; 16]);

impl PixelHash {
    /// The 16 bytes of the hash, most significant first.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The hash as 32 lowercase hexadecimal digits, for use in an `ETag`
    /// (which the caller quotes: `"<hex>"`).
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl From<PixelHash> for [u8; 16] {
    fn from(hash: PixelHash) -> Self {
        hash.0
    }
}

impl fmt::Display for PixelHash {
    /// Writes the 32 lowercase hexadecimal digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PixelHash {
    /// Writes `PixelHash(<hex>)`, shorter and more useful than a byte list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PixelHash({self})")
    }
}

impl Frame {
    /// A 128-bit hash of the width, the height and the RGB bytes: equal
    /// frames give equal hashes, and different frames give different ones
    /// for all practical purposes (a collision among 2^128 values is not
    /// something screenshots will meet).
    ///
    /// Why: the REST layer serves a strong `ETag` that must depend on what is
    /// on screen, not on the image format, size or quality asked for, so it
    /// can answer `304 Not Modified` before encoding anything. A thumbnail
    /// page polling many idle VMs then costs one hash per request instead of
    /// one encode.
    ///
    /// Why XXH3-128: it runs at memory speed (a 1920x1080 frame, 6 MB, in
    /// well under a millisecond, see `examples/encode_speed.rs`), 128 bits
    /// make accidental collisions irrelevant, and XXH3 is a frozen, specified
    /// algorithm, so the same pixels give the same hash on every machine,
    /// release and restart (the bytes are taken big-endian). It is not
    /// cryptographic: an `ETag` only needs to detect change, and the pixels
    /// come from our own VMs. The width and height form the seed
    /// (`width << 32 | height`), so two frames with the same bytes laid out
    /// differently (say 2x1 and 1x2) hash differently.
    pub fn pixel_hash(&self) -> PixelHash {
        let seed = u64::from(self.width()) << 32 | u64::from(self.height());
        PixelHash(xxh3_128_with_seed(self.rgb(), seed).to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_32_lowercase_digits_and_debug_shows_it() {
        let hash = PixelHash([0xAB; 16]);
        assert_eq!(hash.to_hex(), "ab".repeat(16));
        assert_eq!(
            format!("{hash:?}"),
            format!("PixelHash({})", "ab".repeat(16))
        );
        assert_eq!(<[u8; 16]>::from(hash), [0xAB; 16]);
    }

    #[test]
    fn layout_is_part_of_the_hash() {
        let wide = Frame::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let tall = Frame::new(1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_ne!(wide.pixel_hash(), tall.pixel_hash());
    }
}
