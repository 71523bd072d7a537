//! Measures how the history could store frames: PNG at zlib level 2 (the live console's), 6
//! (what the history uses) and 9, against lossless WebP, for encode time, decode time (every
//! thumbnail, `at=` lookup and time-lapse decodes) and size. Not a test: run it by hand on real
//! screens saved as PNG,
//!
//! ```text
//! cargo run --release -p vgashot-history --example store_formats -- screen.png ...
//! ```

use std::hint::black_box;
use std::time::Instant;

use vgashot_framebuffer::{Frame, PngCompression};

/// The median of `runs` timings of `work`, in milliseconds.
fn median_ms(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn decode_webp(bytes: &[u8]) -> Vec<u8> {
    let mut decoder = image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).unwrap();
    let mut rgb = vec![0; decoder.output_buffer_size().unwrap()];
    decoder.read_image(&mut rgb).unwrap();
    rgb
}

fn main() {
    const RUNS: usize = 21;
    println!("| screen | format | encode ms | decode ms | bytes |");
    println!("|---|---|---|---|---|");
    for path in std::env::args().skip(1) {
        let frame = Frame::from_png(&std::fs::read(&path).unwrap()).unwrap();
        let name = format!(
            "{} {}x{}",
            std::path::Path::new(&path)
                .file_stem()
                .unwrap()
                .to_string_lossy(),
            frame.width(),
            frame.height()
        );
        for (label, level) in [
            ("PNG level 2", PngCompression::Fastest),
            ("PNG level 6", PngCompression::Balanced),
            ("PNG level 9", PngCompression::Smallest),
        ] {
            let png = frame.encode_png(level).unwrap();
            let encode = median_ms(RUNS, || {
                black_box(frame.encode_png(level).unwrap());
            });
            let decode = median_ms(RUNS, || {
                black_box(Frame::from_png(&png).unwrap());
            });
            println!(
                "| {name} | {label} | {encode:.2} | {decode:.2} | {} |",
                png.len()
            );
        }
        let webp = frame.encode_webp_lossless().unwrap();
        assert_eq!(decode_webp(&webp), frame.rgb());
        let encode = median_ms(RUNS, || {
            black_box(frame.encode_webp_lossless().unwrap());
        });
        let decode = median_ms(RUNS, || {
            black_box(decode_webp(&webp));
        });
        println!(
            "| {name} | WebP lossless | {encode:.2} | {decode:.2} | {} |",
            webp.len()
        );
    }
}
