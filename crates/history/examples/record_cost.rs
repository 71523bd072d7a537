//! Measures what recording costs: a screenshot of new pixels (encode, insert, retention), one
//! of pixels already stored (a row only), an `at=` lookup in a large history, and the bytes the
//! database file takes per screenshot. Not a test: run it by hand on a real screen saved as PNG,
//!
//! ```text
//! cargo run --release -p vgashot-history --example record_cost -- screen.png
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vgashot_framebuffer::Frame;
use vgashot_history::{History, InstanceRef, Limits, NewShot, Reason, Retention};

fn main() {
    const NEW: usize = 500;
    const REPEATED: usize = 20_000;
    let path = std::env::args().nth(1).expect("a PNG of a screen");
    let screen = Frame::from_png(&std::fs::read(&path).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("record-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = dir.join("history.sqlite");
    let history = History::open(
        &database,
        Limits {
            max_frame_pixels: 1 << 24,
            max_total_bytes: 1 << 30,
        },
    )
    .unwrap();
    let instance = InstanceRef {
        project: "default".into(),
        name: "v1".into(),
        identity: "default/2026-12-02T00:00:00Z".into(),
    };
    let retention = Retention {
        max_age: Some(Duration::from_secs(7 * 86400)),
        max_bytes: Some(64 << 20),
    };
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let record = |frame: &Frame, second: usize| {
        history
            .record(
                &instance,
                NewShot {
                    frame,
                    hash: frame.pixel_hash(),
                    taken_at: start + Duration::from_secs(second as u64),
                    reason: Reason::Change,
                    pinned: false,
                    note: "",
                },
            )
            .unwrap();
        history
            .trim(&instance.identity, retention, SystemTime::now())
            .unwrap();
    };
    // New pixels: the screen with one pixel changed each time (a clock ticking).
    let started = Instant::now();
    for index in 0..NEW {
        let mut rgb = screen.rgb().to_vec();
        rgb[index * 3] ^= 0xff;
        record(
            &Frame::new(screen.width(), screen.height(), rgb).unwrap(),
            index,
        );
    }
    let per_new = started.elapsed().as_secs_f64() * 1e3 / NEW as f64;
    // Pixels already stored: a row each.
    let started = Instant::now();
    for index in 0..REPEATED {
        record(&screen, NEW + index);
    }
    let per_repeat = started.elapsed().as_secs_f64() * 1e3 / REPEATED as f64;
    let lookups = 1000;
    let started = Instant::now();
    for index in 0..lookups {
        history
            .at(
                &instance.identity,
                start + Duration::from_secs((index * 17 % (NEW + REPEATED)) as u64),
            )
            .unwrap();
    }
    let per_lookup = started.elapsed().as_secs_f64() * 1e3 / lookups as f64;
    drop(history);
    let file_bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "{}x{}: new frame {per_new:.2} ms, stored frame (row only) {per_repeat:.3} ms, \
         at= lookup {per_lookup:.3} ms among {} rows, database {file_bytes} bytes \
         ({:.0} bytes per row)",
        screen.width(),
        screen.height(),
        NEW + REPEATED,
        file_bytes as f64 / (NEW + REPEATED) as f64
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
