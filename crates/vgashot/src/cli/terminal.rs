//! Pictures in the terminal: which image protocol a terminal speaks, how large it is, and the
//! escape sequences that draw a screenshot with the kitty graphics protocol, iTerm2 inline
//! images or sixel.
//!
//! Terminals are told apart by their environment, as chafa, timg and viu do, since asking the
//! terminal (a DA1 or kitty query) needs raw input and a timeout for terminals that never
//! answer: `KITTY_WINDOW_ID` or `TERM=xterm-kitty` (and Ghostty) speak kitty's protocol;
//! `TERM_PROGRAM=iTerm.app` / `LC_TERMINAL=iTerm2`, WezTerm and mintty show iTerm2 images;
//! foot, mlterm, Konsole and `TERM`s naming sixel draw sixel. Inside tmux or screen none is
//! assumed, since they swallow these sequences unless configured to pass them through;
//! `--graphics` overrides the guess either way.

use base64::Engine as _;
use clap::ValueEnum;
use vgashot_framebuffer::Frame;

/// Which image protocol to draw with (`--graphics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Graphics {
    /// Guess from the environment, and only on a terminal.
    Auto,
    /// The kitty graphics protocol (kitty, Ghostty, WezTerm, Konsole).
    Kitty,
    /// iTerm2 inline images (iTerm2, WezTerm, mintty).
    Iterm2,
    /// Sixel (foot, mlterm, xterm -ti vt340, Windows Terminal, Konsole).
    Sixel,
    /// No images: print where the stream is.
    None,
}

/// An image protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// kitty's `ESC _ G ... ESC \`, PNG data, one image id replaced in place.
    Kitty,
    /// iTerm2's `ESC ] 1337 ; File=... BEL`, PNG data.
    Iterm2,
    /// DEC sixel, pixels quantized to 216 colours.
    Sixel,
}

impl Graphics {
    /// The protocol to use, guessing from `var` (the environment) for `auto` when `terminal`
    /// says standard output is a terminal.
    pub fn protocol(
        self,
        terminal: bool,
        var: impl Fn(&str) -> Option<String>,
    ) -> Option<Protocol> {
        match self {
            Self::Auto if terminal => detect(var),
            Self::Auto | Self::None => None,
            Self::Kitty => Some(Protocol::Kitty),
            Self::Iterm2 => Some(Protocol::Iterm2),
            Self::Sixel => Some(Protocol::Sixel),
        }
    }
}

/// The protocol the terminal described by the environment `var` shows images with, if any.
pub fn detect(var: impl Fn(&str) -> Option<String>) -> Option<Protocol> {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    let term = var("TERM").unwrap_or_default();
    let program = var("TERM_PROGRAM").unwrap_or_default();
    if term.is_empty() || term == "dumb" {
        return None;
    }
    if var("TMUX").is_some()
        || term.starts_with("screen")
        || term.starts_with("tmux")
        || program == "tmux"
    {
        return None;
    }
    if var("KITTY_WINDOW_ID").is_some()
        || term == "xterm-kitty"
        || term == "xterm-ghostty"
        || program == "ghostty"
    {
        return Some(Protocol::Kitty);
    }
    if program == "iTerm.app"
        || var("LC_TERMINAL").as_deref() == Some("iTerm2")
        || program == "WezTerm"
        || program == "mintty"
    {
        return Some(Protocol::Iterm2);
    }
    if term.starts_with("foot")
        || term.starts_with("mlterm")
        || term.contains("sixel")
        || term.starts_with("yaft")
        || term.starts_with("contour")
        || var("KONSOLE_VERSION").is_some()
    {
        return Some(Protocol::Sixel);
    }
    None
}

/// The terminal's size in cells and, when it says, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Width in pixels, 0 when unknown.
    pub width: u16,
    /// Height in pixels, 0 when unknown.
    pub height: u16,
}

impl WindowSize {
    /// The size of the terminal on standard output (80x24 when it does not say).
    pub fn of_stdout() -> Self {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer, which is valid and writable.
        let status = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
        if status != 0 || size.ws_col == 0 || size.ws_row == 0 {
            return Self {
                cols: 80,
                rows: 24,
                width: 0,
                height: 0,
            };
        }
        Self {
            cols: size.ws_col,
            rows: size.ws_row,
            width: size.ws_xpixel,
            height: size.ws_ypixel,
        }
    }

    /// A cell's size in pixels: measured when the terminal reports pixels, else the common
    /// 8x16.
    fn cell(&self) -> (u32, u32) {
        if self.width > 0 && self.height > 0 {
            (
                (u32::from(self.width) / u32::from(self.cols)).max(1),
                (u32::from(self.height) / u32::from(self.rows)).max(1),
            )
        } else {
            (8, 16)
        }
    }
}

/// Where and how large a picture is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Cells across.
    pub cols: u32,
    /// Cells down.
    pub rows: u32,
    /// Pixels across (for sixel, which draws pixels).
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

/// The largest size of an `image`-sized picture that fits the window above its last row (kept
/// for the status line), never enlarged, with the picture's aspect ratio.
pub fn fit(image: (u32, u32), window: WindowSize) -> Placement {
    let (cell_width, cell_height) = window.cell();
    let cols = u32::from(window.cols).max(1);
    let rows = u32::from(window.rows).saturating_sub(1).max(1);
    let (width, height) = (image.0.max(1), image.1.max(1));
    // Scale by the tighter side, in integers: width/height * min(room_w/width, room_h/height, 1).
    let (room_width, room_height) = (u64::from(cols * cell_width), u64::from(rows * cell_height));
    let (w, h) = (u64::from(width), u64::from(height));
    let (scaled_width, scaled_height) = if room_width * h <= room_height * w {
        (room_width.min(w), (room_width.min(w) * h / w).max(1))
    } else {
        ((room_height.min(h) * w / h).max(1), room_height.min(h))
    };
    let to_u32 = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    let (scaled_width, scaled_height) = (to_u32(scaled_width), to_u32(scaled_height));
    Placement {
        cols: scaled_width.div_ceil(cell_width).clamp(1, cols),
        rows: scaled_height.div_ceil(cell_height).clamp(1, rows),
        width: scaled_width,
        height: scaled_height,
    }
}

/// Draws `png` at the cursor with the kitty graphics protocol as image 1, replacing the
/// previous image 1 and its placement, so frames update in place; `q=2` keeps the terminal from
/// answering.
pub fn kitty(png: &[u8], placement: Placement) -> Vec<u8> {
    /// The protocol's limit on one chunk of base64.
    const CHUNK: usize = 4096;
    let encoded = base64::engine::general_purpose::STANDARD.encode(png);
    let chunks: Vec<&[u8]> = encoded.as_bytes().chunks(CHUNK).collect();
    let mut out = Vec::with_capacity(encoded.len() + chunks.len() * 16 + 64);
    for (index, chunk) in chunks.iter().enumerate() {
        let more = u8::from(index + 1 < chunks.len());
        if index == 0 {
            out.extend_from_slice(
                format!(
                    "\x1b_Ga=T,f=100,i=1,q=2,C=1,c={},r={},m={more};",
                    placement.cols, placement.rows
                )
                .as_bytes(),
            );
        } else {
            out.extend_from_slice(format!("\x1b_Gm={more};").as_bytes());
        }
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\x1b\\");
    }
    out
}

/// Deletes every kitty image this program placed, when it leaves.
pub const KITTY_CLEAR: &str = "\x1b_Ga=d,d=A,q=2\x1b\\";

/// Draws an image file (`png`, any format iTerm2 reads) at the cursor as an iTerm2 inline
/// image, fitted to the placement's cells.
pub fn iterm2(image: &[u8], placement: Placement) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(image);
    format!(
        "\x1b]1337;File=inline=1;size={};width={};height={};preserveAspectRatio=1:{encoded}\x07",
        image.len(),
        placement.cols,
        placement.rows
    )
    .into_bytes()
}

/// `frame` as sixel: a 6x6x6 colour cube (enough to read a screen, and no palette search), one
/// band of six pixel rows at a time, each colour of the band as a run-length-encoded row.
pub fn sixel(frame: &Frame) -> Vec<u8> {
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let level = |value: u8| (u16::from(value) * 5 + 127) / 255;
    let indices: Vec<u8> = frame
        .rgb()
        .chunks_exact(3)
        .map(|rgb| {
            let index = level(rgb[0]) * 36 + level(rgb[1]) * 6 + level(rgb[2]);
            u8::try_from(index).unwrap_or(0)
        })
        .collect();
    let mut out = format!("\x1bP0;1;0q\"1;1;{width};{height}").into_bytes();
    for index in 0..216u16 {
        let (r, g, b) = (index / 36, index / 6 % 6, index % 6);
        out.extend_from_slice(format!("#{index};2;{};{};{}", r * 20, g * 20, b * 20).as_bytes());
    }
    let mut bands: Vec<Option<Vec<u8>>> = vec![None; 216];
    for top in (0..height).step_by(6) {
        for (row, bit) in (top..height.min(top + 6)).zip(0u8..) {
            for (x, &colour) in indices[row * width..(row + 1) * width].iter().enumerate() {
                bands[usize::from(colour)].get_or_insert_with(|| vec![0; width])[x] |= 1 << bit;
            }
        }
        let mut first = true;
        for (colour, bits) in bands.iter_mut().enumerate() {
            let Some(bits) = bits.take() else { continue };
            if !first {
                out.push(b'$');
            }
            first = false;
            out.extend_from_slice(format!("#{colour}").as_bytes());
            run_length(&bits, &mut out);
        }
        out.push(b'-');
    }
    out.extend_from_slice(b"\x1b\\");
    out
}

/// One colour's row of sixels, runs of four or more as `!COUNT CHAR`.
fn run_length(bits: &[u8], out: &mut Vec<u8>) {
    let mut index = 0;
    while index < bits.len() {
        let value = bits[index];
        let run = bits[index..]
            .iter()
            .take_while(|&&next| next == value)
            .count();
        let character = 63 + value;
        if run >= 4 {
            out.extend_from_slice(format!("!{run}").as_bytes());
            out.push(character);
        } else {
            out.extend(std::iter::repeat_n(character, run));
        }
        index += run;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn terminals_are_told_by_their_environment() {
        let kitty = Some(Protocol::Kitty);
        let iterm2 = Some(Protocol::Iterm2);
        let sixel = Some(Protocol::Sixel);
        assert_eq!(detect(env(&[("TERM", "xterm-kitty")])), kitty);
        assert_eq!(
            detect(env(&[("TERM", "xterm-256color"), ("KITTY_WINDOW_ID", "1")])),
            kitty
        );
        assert_eq!(
            detect(env(&[
                ("TERM", "xterm-256color"),
                ("TERM_PROGRAM", "iTerm.app")
            ])),
            iterm2
        );
        assert_eq!(
            detect(env(&[
                ("TERM", "xterm-256color"),
                ("TERM_PROGRAM", "WezTerm")
            ])),
            iterm2
        );
        assert_eq!(detect(env(&[("TERM", "foot")])), sixel);
        assert_eq!(detect(env(&[("TERM", "xterm-256color")])), None);
        assert_eq!(
            detect(env(&[("TERM", "dumb"), ("KITTY_WINDOW_ID", "1")])),
            None
        );
        assert_eq!(
            detect(env(&[("TERM", "xterm-kitty"), ("TMUX", "/tmp/tmux,1,0")])),
            None
        );
        assert_eq!(detect(env(&[])), None);
        // Not a terminal: never guessed, but forced when asked.
        let kitty_env = env(&[("TERM", "xterm-kitty")]);
        assert_eq!(Graphics::Auto.protocol(false, &kitty_env), None);
        assert_eq!(Graphics::Auto.protocol(true, &kitty_env), kitty);
        assert_eq!(Graphics::Sixel.protocol(false, &kitty_env), sixel);
        assert_eq!(Graphics::None.protocol(true, &kitty_env), None);
    }

    #[test]
    fn pictures_fit_the_window_without_growing() {
        let window = WindowSize {
            cols: 100,
            rows: 41,
            width: 1000,
            height: 820,
        };
        // Cells of 10x20 pixels; 40 rows (800 px) are free.
        assert_eq!(
            fit((640, 480), window),
            Placement {
                cols: 64,
                rows: 24,
                width: 640,
                height: 480
            }
        );
        assert_eq!(
            fit((1600, 1200), window),
            Placement {
                cols: 100,
                rows: 38,
                width: 1000,
                height: 750
            }
        );
        let tall = fit((400, 1600), window);
        assert_eq!((tall.rows, tall.height, tall.width), (40, 800, 200));
        let unknown = WindowSize {
            cols: 80,
            rows: 25,
            width: 0,
            height: 0,
        };
        assert_eq!(fit((640, 480), unknown).cols, 64);
    }

    #[test]
    fn kitty_and_iterm2_sequences() {
        let placement = Placement {
            cols: 10,
            rows: 5,
            width: 80,
            height: 80,
        };
        let small = String::from_utf8(kitty(b"png", placement)).unwrap();
        assert_eq!(small, "\x1b_Ga=T,f=100,i=1,q=2,C=1,c=10,r=5,m=0;cG5n\x1b\\");
        let large = String::from_utf8(kitty(&[0; 6000], placement)).unwrap();
        assert_eq!(large.matches("\x1b_G").count(), 2);
        assert!(large.contains(",m=1;") && large.contains("\x1b_Gm=0;"));
        let inline = String::from_utf8(iterm2(b"png", placement)).unwrap();
        assert_eq!(
            inline,
            "\x1b]1337;File=inline=1;size=3;width=10;height=5;preserveAspectRatio=1:cG5n\x07"
        );
    }

    #[test]
    fn sixel_encodes_bands_and_runs() {
        // 8x7: a red top half-band and a blue rest; two bands.
        let mut rgb = Vec::new();
        for y in 0..7 {
            for _ in 0..8 {
                rgb.extend_from_slice(if y < 3 { &[255, 0, 0] } else { &[0, 0, 255] });
            }
        }
        let frame = Frame::new(8, 7, rgb).unwrap();
        let out = String::from_utf8(sixel(&frame)).unwrap();
        assert!(out.starts_with("\x1bP0;1;0q\"1;1;8;7#0;2;0;0;0"));
        assert!(out.ends_with("\x1b\\"));
        // Band 1: blue (5) rows 3-5 = bits 0b111000 -> '?'+56; red (180) rows 0-2 -> '?'+7.
        let bands = out.split("#215;2;100;100;100").nth(1).unwrap();
        assert_eq!(bands, "#5!8w$#180!8F-#5!8@-\x1b\\");
    }
}
