//! The screen history's own costs, through `crates/history`'s API in this process: what the
//! recorder's write of one frame costs, and how an `at=` lookup fares in a week of history.
//!
//! How it measures:
//! 1. Recording: boots one VM per screen of [`SCREENS`] with the qemu driver (SeaBIOS's 720x400
//!    text console, the 640x400 mode 13h picture of [`Fixture::Mode13`], 1920x1080 bars), waits
//!    for its picture, and opens a fresh store ([`History::open`]) in a temporary directory on
//!    the machine's disk, with the daemon's default bounds.
//! 2. Each round, interleaved: the baseline, a plain screenshot of the screen (the driver's
//!    `console_screenshot`: `screendump` of a PPM into a memfd, decoded, our PNG encoded), what
//!    the live console pays for each new frame a viewer sees; then the recorder's write
//!    ([`History::record`] and [`History::trim`] with the default retention) of that frame with
//!    one pixel changed (a new frame: encoded as PNG and stored with its row), and of the
//!    screenshot's frame again (a known frame: a row pointing at the stored one). Pixel hashes are
//!    computed before the clock starts: the screens engine has them already.
//! 3. Lookup: fills one store, through [`History::record`] as the recorder writes, with a week
//!    of rows for one instance at one row a second ([`WEEK`]; the most the default
//!    `console.history.interval` records) and an hour of rows for another ([`HOUR`]), their
//!    frames drawn from [`DISTINCT_FRAMES`] counter pictures shown in turn.
//! 4. Times [`History::at`] at pseudo-random times within each history, the two interleaved:
//!    the hour's lookup is the baseline, so the ratio is what a week's rows add to a lookup.
//! 5. Each VM is stopped once its screen is measured, and any QEMU left under the driver's
//!    directory is killed on every exit path ([`KillVmsUnder`]).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use vgashot_fixtures::{Fixture, MODE13_SCREENDUMP_SIZE, counter_rgb};
use vgashot_framebuffer::{Frame, PixelHash};
use vgashot_history::{History, InstanceRef, Limits, NewShot, Reason, Retention};
use vgashot_instance_drivers::{Driver as _, Instance, QemuInstance, ScreenshotOptions};

use crate::driver_latency::{definition, open_driver, wait_for_screen};
use crate::report::{Row, Section};
use crate::stats::Samples;
use crate::{Result, WARMUP, timed};

/// Measured rounds per recording row.
const ROUNDS: usize = 100;
/// Measured lookups per history.
const LOOKUPS: usize = 2000;
/// The screens whose recording is measured (`None`: SeaBIOS's text console).
const SCREENS: [(&str, Option<Fixture>, (u32, u32)); 3] = [
    ("720x400 text", None, (720, 400)),
    (
        "640x400 mode 13h picture",
        Some(Fixture::Mode13),
        MODE13_SCREENDUMP_SIZE,
    ),
    (
        "1920x1080 bars",
        Some(Fixture::bars(1920, 1080)),
        (1920, 1080),
    ),
];
/// A week of history at one row a second.
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
/// The small history of the baseline.
const HOUR: Duration = Duration::from_secs(3600);
/// Rows a second in both histories: the recorder's most at the default interval of `1s`.
const ROW_EVERY: Duration = Duration::from_secs(1);
/// Distinct pictures the rows show, in turn: a screen cycling through a few screens (a dashboard,
/// a console whose screens recur), far within the default `console.history.size`. Few, because
/// every write sums the sizes of all stored frames (the daemon-wide cap) by reading their rows,
/// so a fill with thousands of distinct frames takes tens of milliseconds a row; and the frames
/// are held in memory (768 KB each).
const DISTINCT_FRAMES: u16 = 128;
/// The daemon's default bounds: `--max-screen-pixels` and `--history-max-bytes`.
const LIMITS: Limits = Limits {
    max_frame_pixels: 16 * 1024 * 1024,
    max_total_bytes: 1 << 30,
};
/// The default retention: `console.history.retention` 7 days, `console.history.size` 64 MiB.
const RETENTION: Retention = Retention {
    max_age: Some(WEEK),
    max_bytes: Some(64 << 20),
};

/// What the recording section measures.
const RECORD_INTRO: &str = "The recorder's write of one screenshot (`History::record`, then \
     `History::trim` with the default retention, as `crates/rest/src/history/recorder.rs` does on \
     the blocking pool) into a store on this machine's disk, for frames captured from real VMs. \
     A new frame is the captured one with one pixel changed, so it is encoded (PNG, zlib level 6) \
     and stored with its row; a known frame is one already stored, so only a row is written. \
     Baseline: a plain screenshot of the same screen (`console_screenshot`: `screendump` of a PPM \
     into a memfd, decoded, our PNG at zlib level 2), what the live console pays for each new \
     frame a viewer sees; the recorder itself looks through the VNC mirror, which costs next to \
     nothing. The three interleaved round by round. The stored size is the new frame's PNG.";

/// What the lookup section measures.
const LOOKUP_INTRO: &str = "`History::at` (what `console?type=vga&at=TIME` asks the store: the \
     last screenshot taken at or before a time) at pseudo-random times, in one store holding a \
     week of one instance's history at one row a second (604,800 rows, the most the default \
     `console.history.interval` of 1 s records: a screen that changes all the time) and an hour \
     of another's (3,600 rows, the baseline), both written through `History::record` as the \
     recorder writes them, their frames 128 counter pictures shown in turn. The lookups of the \
     two alternate. The ratio is what a week of rows adds to a lookup.";

/// The recording section, and the version of the QEMU it ran.
pub async fn measure_recording() -> Result<(String, Section)> {
    let dir = tempfile::tempdir()?;
    let _vms = KillVmsUnder(dir.path().join("run"));
    let driver = open_driver(dir.path()).await?;
    let mut section = Section::new("Screen history: recording a frame", RECORD_INTRO);
    for (index, (name, fixture, size)) in SCREENS.into_iter().enumerate() {
        let vm = driver
            .create(definition(&format!("record{index}"), fixture, dir.path())?)
            .await?;
        vm.start().await?;
        let store = dir.path().join(format!("record{index}.sqlite"));
        let outcome = match wait_for_screen(&vm, fixture, size).await {
            Ok(()) => match History::open(&store, LIMITS) {
                Ok(history) => measure_screen(&vm, &history, name, &mut section).await,
                Err(error) => Err(error.into()),
            },
            Err(error) => Err(error),
        };
        vm.stop(true, Duration::ZERO).await?;
        outcome?;
    }
    Ok((driver.version().unwrap_or_default(), section))
}

async fn measure_screen(
    vm: &QemuInstance,
    history: &History,
    name: &str,
    section: &mut Section,
) -> Result {
    let options = ScreenshotOptions::default();
    let instance = instance("record");
    let (mut captures, mut new_frames, mut known_frames) = Default::default();
    let mut stored_bytes = 0;
    for round in 0..WARMUP + ROUNDS {
        let captured = timed(&mut captures, round, async {
            Ok(vm.console_screenshot(&options).await?)
        })
        .await?
        .frame
        .ok_or("a screenshot without its frame")?;
        let changed = with_one_pixel_changed(&captured, round)?;
        let (known, new) = (captured.pixel_hash(), changed.pixel_hash());
        let id = timed(&mut new_frames, round, async {
            record(history, &instance, &changed, new, SystemTime::now())
        })
        .await?;
        stored_bytes = history.get(&instance.identity, id)?.stored_bytes;
        timed(&mut known_frames, round, async {
            record(history, &instance, &captured, known, SystemTime::now())
        })
        .await?;
    }
    let rows = [
        (
            format!("{name}: a screenshot, screendump + PNG (baseline)"),
            &captures,
            None,
        ),
        (
            format!(
                "{name}: record a new frame ({:.1} KB stored)",
                stored_bytes as f64 / 1e3
            ),
            &new_frames,
            Some(&captures),
        ),
        (
            format!("{name}: record a known frame (a row)"),
            &known_frames,
            Some(&captures),
        ),
    ];
    for (row, samples, baseline) in rows {
        section.push(Row::new(row, samples, baseline));
    }
    Ok(())
}

/// Kills every QEMU whose pid file lies under its directory when dropped: no exit path (an
/// error before a VM's stop, a panic) leaves a VM of the recording section running.
struct KillVmsUnder(PathBuf);

impl Drop for KillVmsUnder {
    fn drop(&mut self) {
        vgashot_qemu_process::testing::kill_detached_under(&self.0);
    }
}

/// `frame` with the pixel at `index` (wrapping) inverted: new pixels of the same content.
fn with_one_pixel_changed(frame: &Frame, index: usize) -> Result<Frame> {
    let mut rgb = frame.rgb().to_vec();
    let at = (index * 3) % rgb.len().max(1);
    if let Some(byte) = rgb.get_mut(at) {
        *byte ^= 0xff;
    }
    Ok(Frame::new(frame.width(), frame.height(), rgb)?)
}

/// The recorder's write: the row (and the frame when new), then the instance's retention.
fn record(
    history: &History,
    instance: &InstanceRef,
    frame: &Frame,
    hash: PixelHash,
    taken_at: SystemTime,
) -> Result<i64> {
    let id = history.record(instance, change(frame, hash, taken_at))?;
    history.trim(&instance.identity, RETENTION, taken_at)?;
    Ok(id)
}

/// A screenshot as the recorder records a change.
fn change(frame: &Frame, hash: PixelHash, taken_at: SystemTime) -> NewShot<'_> {
    NewShot {
        frame,
        hash,
        taken_at,
        reason: Reason::Change,
        pinned: false,
        note: "",
    }
}

/// A made-up instance of the store (the daemon uses its project and creation time).
fn instance(name: &str) -> InstanceRef {
    InstanceRef {
        project: "default".into(),
        name: name.into(),
        identity: format!("default/{name}/bench"),
    }
}

/// The lookup section: fills the store, then times lookups (blocking: SQLite blocks).
pub async fn measure_lookup() -> Result<Section> {
    let section = tokio::task::spawn_blocking(|| -> std::result::Result<Section, String> {
        lookup_section().map_err(|error| error.to_string())
    })
    .await??;
    Ok(section)
}

fn lookup_section() -> Result<Section> {
    let dir = tempfile::tempdir()?;
    let history = History::open(&dir.path().join("history.sqlite"), LIMITS)?;
    let frames = (0..DISTINCT_FRAMES)
        .map(|value| {
            let (width, height) = MODE13_SCREENDUMP_SIZE;
            let frame = Frame::new(width, height, counter_rgb(value))?;
            let hash = frame.pixel_hash();
            Ok((frame, hash))
        })
        .collect::<Result<Vec<_>>>()?;
    // The histories end now, as a running VM's do; both were written a row a second.
    let end = SystemTime::now();
    let (week, hour) = (instance("week"), instance("hour"));
    let filled = Instant::now();
    for (who, span) in [(&hour, HOUR), (&week, WEEK)] {
        fill(&history, who, span, end, &frames)?;
    }
    eprintln!(
        "bench: history: {} rows written in {:.1} s",
        (WEEK + HOUR).as_secs() / ROW_EVERY.as_secs(),
        filled.elapsed().as_secs_f64()
    );
    let mut random = Lcg(0x5eed);
    let (mut in_week, mut in_hour) = (Samples::default(), Samples::default());
    for round in 0..WARMUP + LOOKUPS {
        for (who, span, samples) in [(&week, WEEK, &mut in_week), (&hour, HOUR, &mut in_hour)] {
            let at = end - span.mul_f64(random.next_fraction());
            let started = Instant::now();
            history.at(&who.identity, at)?;
            if round >= WARMUP {
                samples.push(started.elapsed());
            }
        }
    }
    let mut section = Section::new("Screen history: `at=` lookup in a week", LOOKUP_INTRO);
    section.push(Row::new(
        "an hour of history, 3,600 rows (baseline)".into(),
        &in_hour,
        None,
    ));
    section.push(Row::new(
        "a week of history, 604,800 rows".into(),
        &in_week,
        Some(&in_hour),
    ));
    Ok(section)
}

/// Writes `span` of `instance`'s history ending at `end`, a row every [`ROW_EVERY`], the
/// frames in turn.
fn fill(
    history: &History,
    instance: &InstanceRef,
    span: Duration,
    end: SystemTime,
    frames: &[(Frame, PixelHash)],
) -> Result {
    let rows = span.as_secs() / ROW_EVERY.as_secs();
    for row in 0..rows {
        if row % 100_000 == 0 {
            eprintln!("bench: history: {row} of {rows} rows of {}", instance.name);
        }
        let (frame, hash) = &frames[row as usize % frames.len()];
        let taken_at = end - span + ROW_EVERY * u32::try_from(row)?;
        history.record(instance, change(frame, *hash, taken_at))?;
    }
    Ok(())
}

/// A small linear congruential generator: the same lookup times in every run, no dependency.
struct Lcg(u64);

impl Lcg {
    /// A fraction in `[0, 1)`.
    fn next_fraction(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
