//! Our copy of the server's screen: packed RGB, 3 bytes a pixel, rows top to bottom (the layout
//! of `vgashot_framebuffer::Frame`, so a copy of it is a frame as it is).

use crate::error::RfbError;

/// The server's screen as we know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Screen {
    width: u16,
    height: u16,
    rgb: Vec<u8>,
}

/// A rectangle of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl Screen {
    /// A black screen of `width` x `height`, refused (before anything is allocated) when it has
    /// more than `max_pixels` pixels.
    pub(crate) fn new(width: u16, height: u16, max_pixels: u64) -> Result<Self, RfbError> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > max_pixels {
            return Err(RfbError::ScreenTooLarge {
                width,
                height,
                max_pixels,
            });
        }
        Ok(Self {
            width,
            height,
            rgb: vec![0; usize::from(width) * usize::from(height) * 3],
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// The pixels, packed RGB.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// `rect` if it lies inside the screen.
    pub(crate) fn check(&self, rect: Rect) -> Result<Rect, RfbError> {
        let inside = u32::from(rect.x) + u32::from(rect.width) <= u32::from(self.width)
            && u32::from(rect.y) + u32::from(rect.height) <= u32::from(self.height);
        if inside {
            Ok(rect)
        } else {
            Err(RfbError::OutsideScreen {
                x: rect.x,
                y: rect.y,
                width: rect.width,
                height: rect.height,
                screen_width: self.width,
                screen_height: self.height,
            })
        }
    }

    /// Writes one row of `rect` (checked) from the wire's 32-bit little-endian `xRGB` pixels.
    pub(crate) fn put_row(&mut self, rect: Rect, row: u16, pixels: &[u8]) {
        let start = self.offset(rect.x, rect.y + row);
        let target = &mut self.rgb[start..start + usize::from(rect.width) * 3];
        for (out, pixel) in target.chunks_exact_mut(3).zip(pixels.chunks_exact(4)) {
            out.copy_from_slice(&[pixel[2], pixel[1], pixel[0]]);
        }
    }

    /// Copies the area of `rect`'s size at `source` (both checked) to `rect`: CopyRect. Rows are
    /// copied in the order that reads each source row before it is overwritten.
    pub(crate) fn copy(&mut self, rect: Rect, source_x: u16, source_y: u16) {
        let row_bytes = usize::from(rect.width) * 3;
        let mut copy_row = |row: u16| {
            let from = self.offset(source_x, source_y + row);
            let to = self.offset(rect.x, rect.y + row);
            self.rgb.copy_within(from..from + row_bytes, to);
        };
        if source_y >= rect.y {
            (0..rect.height).for_each(&mut copy_row);
        } else {
            (0..rect.height).rev().for_each(&mut copy_row);
        }
    }

    fn offset(&self, x: u16, y: u16) -> usize {
        (usize::from(y) * usize::from(self.width) + usize::from(x)) * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u16, y: u16, width: u16, height: u16) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn rows_land_where_the_rectangle_says_in_rgb_order() {
        let mut screen = Screen::new(3, 2, 6).unwrap();
        screen.put_row(rect(1, 1, 2, 1), 0, &[1, 2, 3, 0, 4, 5, 6, 0]);
        assert_eq!(
            screen.rgb(),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 2, 1, 6, 5, 4]
        );
    }

    #[test]
    fn overlapping_copies_read_before_they_write() {
        let mut screen = Screen::new(1, 4, 4).unwrap();
        for row in 0..4 {
            screen.put_row(rect(0, row, 1, 1), 0, &[0, 0, row as u8 + 1, 0]);
        }
        // Down by one: rows 0..3 to 1..4.
        screen.copy(rect(0, 1, 1, 3), 0, 0);
        let reds: Vec<u8> = screen.rgb().chunks(3).map(|pixel| pixel[0]).collect();
        assert_eq!(reds, [1, 1, 2, 3]);
        // Up by two: rows 2..4 to 0..2.
        screen.copy(rect(0, 0, 1, 2), 0, 2);
        let reds: Vec<u8> = screen.rgb().chunks(3).map(|pixel| pixel[0]).collect();
        assert_eq!(reds, [2, 3, 2, 3]);
    }

    #[test]
    fn sizes_are_bounded_before_allocation_and_rectangles_checked() {
        assert!(matches!(
            Screen::new(u16::MAX, u16::MAX, 1 << 20),
            Err(RfbError::ScreenTooLarge {
                max_pixels: 1_048_576,
                ..
            })
        ));
        let screen = Screen::new(4, 4, 16).unwrap();
        assert!(screen.check(rect(0, 0, 4, 4)).is_ok());
        assert!(screen.check(rect(1, 0, 4, 4)).is_err());
        assert!(screen.check(rect(u16::MAX, u16::MAX, u16::MAX, 1)).is_err());
    }
}
