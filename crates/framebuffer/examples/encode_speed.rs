//! Times PPM decoding and PNG encoding on screen-like frames, to choose and
//! check the [`PngCompression`] settings. Not a test: run it by hand with
//!
//! ```text
//! cargo run --release -p vgashot-framebuffer --example encode_speed
//! ```
//!
//! It prints the median time and the output size of each step for a VGA text
//! console (720x400) and two desktop-like frames (1024x768, 1920x1080), next
//! to two references from the `png` crate: its `Compression::Balanced`
//! (zlib level 6 with adaptive filtering, what libpng does by default and so
//! roughly what QEMU's own PNG screendump costs) and its `Compression::Fastest`
//! (fdeflate with the Up filter).
//!
//! For the thumbnail path it also times [`Frame::pixel_hash`] (the `ETag`),
//! [`Frame::resize`] to 320 pixels wide, [`Frame::encode_jpeg`] at quality
//! 80 and [`Frame::encode_webp_lossless`], on the full frame and on the
//! 320-wide thumbnail.

use std::hint::black_box;
use std::time::Instant;

use vgashot_framebuffer::{Frame, PngCompression, fit_within};

/// Deterministic xorshift64, so every run measures the same pictures.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A text console: black, with rows of 9x16 cells holding random 8x14
/// glyphs in the usual VGA colours, some lines empty, some short.
fn text_console(width: u32, height: u32) -> Frame {
    let (w, h) = (width as usize, height as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let glyphs: Vec<[u8; 16]> = (0..96)
        .map(|_| {
            let mut glyph = [0u8; 16];
            for row in &mut glyph[2..14] {
                *row = (rng.next() & (rng.next() | rng.next())) as u8;
            }
            glyph
        })
        .collect();
    for line in 0..h / 16 {
        let len = if rng.below(4) == 0 {
            0
        } else {
            rng.below(w / 9)
        };
        let colour: [u8; 3] = match rng.below(6) {
            0 => [85, 255, 85],
            1 => [255, 255, 85],
            2 => [255, 255, 255],
            _ => [170, 170, 170],
        };
        for cell in 0..len {
            if rng.below(6) == 0 {
                continue; // a space
            }
            let glyph = &glyphs[rng.below(glyphs.len())];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits >> (7 - gx) & 1 == 1 {
                        let i = ((line * 16 + gy) * w + cell * 9 + gx) * 3;
                        rgb[i..i + 3].copy_from_slice(&colour);
                    }
                }
            }
        }
    }
    Frame::new(width, height, rgb).expect("sizes match")
}

/// A desktop: a smooth two-colour gradient wallpaper with a few flat
/// windows on it, each with a title bar and dark text-like speckles.
fn desktop(width: u32, height: u32) -> Frame {
    let (w, h) = (width as usize, height as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
        }
    }
    let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
    for k in 0..6u8 {
        let (x0, y0) = (rng.below(w * 2 / 3), rng.below(h * 2 / 3));
        let (ww, wh) = (w / 4 + rng.below(w / 4), h / 4 + rng.below(h / 4));
        let fill = [230 - k * 10, 230, 235];
        for y in y0..(y0 + wh).min(h) {
            for x in x0..(x0 + ww).min(w) {
                let speckle = (y - y0) % 18 < 12
                    && (x - x0) % 7 < 5
                    && x > x0 + 8
                    && x + 8 < x0 + ww
                    && rng.below(3) == 0;
                let px = if y < y0 + 24 {
                    [40, 60, 120 + k * 10]
                } else if speckle {
                    [20, 20, 20]
                } else {
                    fill
                };
                let i = (y * w + x) * 3;
                rgb[i..i + 3].copy_from_slice(&px);
            }
        }
    }
    Frame::new(width, height, rgb).expect("sizes match")
}

/// Runs `setup` then times `f` on its result, `runs` times after one
/// warm-up, and returns the median in milliseconds with the last output.
/// Setup (such as cloning an input) and dropping the output stay outside the
/// timed part.
fn median_ms<I, T>(
    runs: usize,
    mut setup: impl FnMut() -> I,
    mut f: impl FnMut(I) -> T,
) -> (f64, T) {
    let mut last = f(setup());
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let input = setup();
        let start = Instant::now();
        let out = black_box(f(black_box(input)));
        times.push(start.elapsed().as_secs_f64() * 1e3);
        last = out;
    }
    times.sort_by(f64::total_cmp);
    (times[runs / 2], last)
}

/// Encodes with the `png` crate's own presets, for comparison.
fn png_preset(frame: &Frame, compression: png::Compression) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, frame.width(), frame.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(compression);
    let mut writer = encoder.write_header().expect("header");
    writer.write_image_data(frame.rgb()).expect("data");
    writer.finish().expect("finish");
    out
}

fn main() {
    let scenes = [
        ("720x400 text console", text_console(720, 400)),
        ("1024x768 desktop", desktop(1024, 768)),
        ("1920x1080 desktop", desktop(1920, 1080)),
    ];
    let path = std::env::temp_dir().join(format!("encode_speed-{}.ppm", std::process::id()));
    for (name, frame) in &scenes {
        let runs = if frame.rgb().len() > 4_000_000 {
            21
        } else {
            41
        };
        let raw = frame.rgb().len();
        let ppm = frame.to_ppm();
        std::fs::write(&path, &ppm).expect("write temporary PPM");
        println!("{name}: {raw} bytes of RGB, median of {runs} runs");
        let row = |label: &str, ms: f64, len: Option<usize>| match len {
            Some(len) => {
                let pct = len as f64 / raw as f64 * 100.0;
                println!("  {label:40} {ms:8.3} ms {len:>10} B {pct:6.2} %");
            }
            None => println!("  {label:40} {ms:8.3} ms"),
        };

        let (ms, _) = median_ms(runs, || (), |()| Frame::from_ppm(&ppm).unwrap());
        row("decode: Frame::from_ppm(&[u8])", ms, None);
        let (ms, _) = median_ms(runs, || ppm.clone(), |v| Frame::from_ppm_vec(v).unwrap());
        row("decode: Frame::from_ppm_vec(Vec)", ms, None);
        let (ms, _) = median_ms(runs, || (), |()| std::fs::read(&path).unwrap());
        row("read: std::fs::read of the PPM file", ms, None);

        for compression in [
            PngCompression::Fastest,
            PngCompression::Balanced,
            PngCompression::Smallest,
        ] {
            let (ms, png) = median_ms(runs, || (), |()| frame.encode_png(compression).unwrap());
            row(&format!("encode_png({compression:?})"), ms, Some(png.len()));
        }
        let (ms, png) = median_ms(
            runs,
            || (),
            |()| png_preset(frame, png::Compression::Balanced),
        );
        row("ref: png Balanced (zlib 6 + adaptive)", ms, Some(png.len()));
        let (ms, png) = median_ms(
            runs,
            || (),
            |()| png_preset(frame, png::Compression::Fastest),
        );
        row("ref: png Fastest (fdeflate + Up)", ms, Some(png.len()));

        let (ms, png) = median_ms(
            runs,
            || (),
            |()| {
                let bytes = std::fs::read(&path).unwrap();
                let frame = Frame::from_ppm_vec(bytes).unwrap();
                frame.encode_png(PngCompression::Fastest).unwrap()
            },
        );
        row("total: read + from_ppm_vec + Fastest", ms, Some(png.len()));
        let (ms, png) = median_ms(
            runs,
            || (),
            |()| {
                let bytes = std::fs::read(&path).unwrap();
                let frame = Frame::from_ppm(&bytes).unwrap();
                frame.encode_png(PngCompression::Fastest).unwrap()
            },
        );
        row("total: read + from_ppm + Fastest", ms, Some(png.len()));

        let (ms, _) = median_ms(runs, || (), |()| frame.pixel_hash());
        row("pixel_hash (XXH3-128)", ms, None);
        let (width, height) =
            fit_within(frame.width(), frame.height(), Some(320), None).expect("valid size");
        let (ms, thumb) = median_ms(runs, || (), |()| frame.resize(width, height).unwrap());
        row(&format!("resize to {width}x{height}"), ms, None);
        for (label, image) in [("full", frame), ("thumb", &thumb)] {
            let (ms, jpeg) = median_ms(runs, || (), |()| image.encode_jpeg(80).unwrap());
            row(&format!("{label}: encode_jpeg(80)"), ms, Some(jpeg.len()));
            let (ms, webp) = median_ms(runs, || (), |()| image.encode_webp_lossless().unwrap());
            row(
                &format!("{label}: encode_webp_lossless"),
                ms,
                Some(webp.len()),
            );
            let (ms, png) = median_ms(
                runs,
                || (),
                |()| image.encode_png(PngCompression::Fastest).unwrap(),
            );
            row(
                &format!("{label}: encode_png(Fastest)"),
                ms,
                Some(png.len()),
            );
        }
        let (ms, jpeg) = median_ms(
            runs,
            || (),
            |()| {
                let _etag = frame.pixel_hash();
                frame
                    .resize(width, height)
                    .unwrap()
                    .encode_jpeg(80)
                    .unwrap()
            },
        );
        row("total: hash + resize + jpeg(80)", ms, Some(jpeg.len()));
        println!();
    }
    let _ = std::fs::remove_file(&path);
}
