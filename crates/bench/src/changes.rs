//! A changing screen through the mirror against the screendump path: frames a 30 fps MJPEG
//! stream delivers, what each costs, and how long a change in the guest takes to reach a viewer.
//!
//! How it measures:
//! 1. Starts the release daemon and one VM showing [`Fixture::Counter`], whose picture encodes
//!    the BIOS ticks since its first frame and changes [`BIOS_TICK_HZ`] (18.2) times a second,
//!    with `console.screenshot.min_interval: "0"` (so the stream's 30 fps, not the default
//!    250 ms, paces both paths) and the history recorder off.
//! 2. Calibration: once the counter runs at its rate (its value moves by f = 18.2 per second
//!    of the host's clock; under KVM it first jumps by the ticks the BIOS missed at boot), a
//!    poller asks for the screen through the screendump path (plain PNG,
//!    `&device=video0&head=0`, a capture per request) back to back for [`CALIBRATION`],
//!    before and after every window. A frame of value v asked at s and answered at r bounds
//!    the counter's origin T0 (the nominal time of value 0): its change to v was before r, its
//!    change to v + 1 after s, so s − (v + 1)/f < T0 ≤ r − v/f. The upper bound, the least
//!    r − v/f of all requests, holds whatever the guest does (a frame is never answered before
//!    it changed); a window's frames are timed against the mean of its two calibrations' upper
//!    bounds. How far the lower bound lies below (or, when the guest drew a tick late, above)
//!    and how far the two calibrations differ is the error, reported.
//! 3. Idle: CPU time (utime + stime in `/proc`) of the daemon and the QEMU over [`WINDOW`],
//!    nobody viewing: the floor.
//! 4. Streams: one client reads `?type=vga&stream=mjpeg&fps=30` of the mirrored primary screen,
//!    or with `&device=video0&head=0` of the screendump path (the baseline, which polls every
//!    frame period), for [`WINDOW`] after one second of warm-up, keeping each part that differs
//!    from the one before (the stream repeats a frame once, one period later) with the time it
//!    arrived, and the CPU time over the window. Windows: screendump, mirror, a `wait=` client
//!    of the mirror (step 5), mirror, then [`LINGER`] for the mirror session to go, screendump.
//! 5. `wait=`: a client asks `?type=vga&wait=5s` with `If-None-Match` of the last `ETag`, again
//!    at each answer: the daemon answers when the screen differs.
//! 6. Afterwards, each kept frame is decoded (JPEG: each bit cell's centre read as white or
//!    dark blue; PNG: [`decode_counter`], exact) into its value v; a value's first arrival at t
//!    is a latency of t − (T0 + v/f), T0 of its window. Values skipped between consecutive frames are changes the
//!    viewer never saw.

use std::path::Path;
use std::time::{Duration, Instant};

use vgashot_fixtures::{BIOS_TICK_HZ, COUNTER_CELL_13H, Fixture, MODE13_SCREENDUMP_SIZE};
use vgashot_fixtures::{COUNTER_MARKER_ROWS_13H, decode_counter};
use vgashot_framebuffer::Frame;

use crate::Result;
use crate::daemon::{Connection, Daemon, create_vm, total_cpu_time, wait_for_greeting};
use crate::report::Section;

/// The VM's name.
const VM: &str = "counter";
/// Both paths paced by the stream (`0`: no minimum interval of the instance's own).
const CONFIG: [(&str, &str); 2] = [
    ("console.screenshot.min_interval", "0"),
    ("console.history.enabled", "false"),
];
/// The stream's frames per second: the most a stream may ask for.
const FPS: u32 = 30;
/// How long one window lasts: about 180 changes of the counter.
const WINDOW: Duration = Duration::from_secs(10);
/// How long a stream runs before its window starts: the mirror's session starts, the
/// first frames (a screendump before the mirror's first picture) go by.
const WARMUP: Duration = Duration::from_secs(1);
/// How long each calibration of T0 polls: a few hundred requests.
const CALIBRATION: Duration = Duration::from_secs(1);
/// How long the daemon keeps a mirror session after the last request (15 s), its idle check
/// (1 s) and a margin.
const LINGER: Duration = Duration::from_secs(18);
/// The `wait=` a waiting client asks for: far longer than the counter's 55 ms.
const WAIT: &str = "5s";

/// Which way a viewer gets the screen.
#[derive(Clone, Copy, PartialEq)]
enum Viewer {
    /// MJPEG of the mirrored primary screen.
    MirrorStream,
    /// MJPEG of the same screen as `device=video0&head=0`: screendumps (baseline).
    ScreendumpStream,
    /// `wait=` with `If-None-Match` on the mirrored primary screen (PNG answers).
    MirrorWait,
}

impl Viewer {
    fn name(self) -> &'static str {
        match self {
            Self::ScreendumpStream => "screendump path, MJPEG at 30 fps (baseline)",
            Self::MirrorStream => "mirror, MJPEG at 30 fps",
            Self::MirrorWait => "mirror, `wait=5s` with `If-None-Match` (PNG)",
        }
    }
}

/// One window of one viewer: what arrived when, and the CPU it cost.
struct Run {
    viewer: Viewer,
    elapsed: Duration,
    cpu: Duration,
    /// Each new frame (JPEG or PNG) and when it arrived, in seconds from the run's origin.
    frames: Vec<(f64, Vec<u8>)>,
    /// The calibrations just before and just after the window.
    calibrations: (Calibration, Calibration),
}

impl Run {
    /// The counter's origin for this window: the mean of its calibrations' upper bounds.
    fn t0(&self) -> f64 {
        (self.calibrations.0.upper + self.calibrations.1.upper) / 2.0
    }
}

/// Bounds of the counter's origin (the nominal time of value 0), in seconds from the run's
/// origin: `lower` < T0 ≤ `upper` if the guest drew every tick on time.
#[derive(Clone, Copy, Default)]
struct Calibration {
    lower: f64,
    upper: f64,
}

/// Measures the streaming section and the latency section.
pub async fn measure() -> Result<(Section, Section)> {
    let daemon = Daemon::start().await?;
    let socket = daemon.socket();
    create_vm(&daemon, VM, Some(Fixture::Counter), &CONFIG).await?;
    wait_for_greeting(&socket, VM).await?;
    let processes = daemon.processes()?;
    let origin = Instant::now();

    wait_for_steady_counter(&socket).await?;
    eprintln!("bench: changes: idle");
    let idle = {
        let (started, cpu) = (Instant::now(), total_cpu_time(&processes)?);
        tokio::time::sleep(WINDOW).await;
        (total_cpu_time(&processes)? - cpu).as_secs_f64() / started.elapsed().as_secs_f64()
    };
    let mut runs = Vec::new();
    for viewer in [
        Viewer::ScreendumpStream,
        Viewer::MirrorStream,
        Viewer::MirrorWait,
        Viewer::MirrorStream,
        Viewer::ScreendumpStream,
    ] {
        if viewer == Viewer::ScreendumpStream && !runs.is_empty() {
            // The mirror session of the windows before must be gone.
            tokio::time::sleep(LINGER).await;
        }
        eprintln!("bench: changes: {}", viewer.name());
        let before = calibrate(&socket, origin).await?;
        let mut run = view(&socket, &processes, viewer, origin, before).await?;
        run.calibrations.1 = calibrate(&socket, origin).await?;
        runs.push(run);
    }
    let decoded: Vec<(Viewer, Decoded)> = runs
        .iter()
        .map(|run| (run.viewer, Decoded::of(run)))
        .collect();
    Ok((
        streaming_section(&runs, &decoded, idle),
        latency_section(&runs, &decoded),
    ))
}

/// The counter's value on the screendump path's screen now, and when it was answered.
async fn counter_now(connection: &mut Connection, origin: Instant) -> Result<(f64, f64, u16)> {
    let url = format!("/1.0/instances/{VM}/console?type=vga&device=video0&head=0");
    loop {
        let sent = origin.elapsed().as_secs_f64();
        let reply = connection.exchange("GET", &url, None).await?;
        let answered = origin.elapsed().as_secs_f64();
        if reply.status != 200 {
            return Err(format!("{url} answered {}", reply.status).into());
        }
        let frame = Frame::from_png(&reply.body)?;
        if let Some(value) = decode_counter(frame.width(), frame.height(), frame.rgb()) {
            return Ok((sent, answered, value));
        }
        // The guest has not drawn its first counter frame yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the counter moves at its rate: under KVM it first jumps by the timer ticks the
/// BIOS missed while it booted (see `Fixture::Counter`).
async fn wait_for_steady_counter(socket: &Path) -> Result {
    let mut connection = Connection::open(socket).await?;
    let origin = Instant::now();
    let (_, mut then, mut last) = counter_now(&mut connection, origin).await?;
    loop {
        if origin.elapsed() > Duration::from_secs(60) {
            return Err("the counter never settled to its rate".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, now, value) = counter_now(&mut connection, origin).await?;
        let expected = (now - then) * BIOS_TICK_HZ;
        if (f64::from(value.wrapping_sub(last)) - expected).abs() <= 1.5 {
            return Ok(());
        }
        (then, last) = (now, value);
    }
}

/// Step 2: bounds of the counter's origin from a screendump poller's frames.
async fn calibrate(socket: &Path, origin: Instant) -> Result<Calibration> {
    let mut connection = Connection::open(socket).await?;
    let (mut lower, mut upper) = (f64::MIN, f64::MAX);
    let started = Instant::now();
    while started.elapsed() < CALIBRATION {
        let (sent, answered, value) = counter_now(&mut connection, origin).await?;
        let value = f64::from(value);
        lower = lower.max(sent - (value + 1.0) / BIOS_TICK_HZ);
        upper = upper.min(answered - value / BIOS_TICK_HZ);
    }
    Ok(Calibration { lower, upper })
}

/// Steps 4 and 5: one window of `viewer`.
async fn view(
    socket: &Path,
    processes: &[i32],
    viewer: Viewer,
    origin: Instant,
    calibration: Calibration,
) -> Result<Run> {
    let mut connection = Connection::open(socket).await?;
    let mut run = match viewer {
        Viewer::MirrorWait => wait_client(&mut connection, processes, origin).await?,
        Viewer::MirrorStream | Viewer::ScreendumpStream => {
            let query = match viewer {
                Viewer::ScreendumpStream => "&device=video0&head=0",
                _ => "",
            };
            let url = format!("/1.0/instances/{VM}/console?type=vga&stream=mjpeg&fps={FPS}{query}");
            connection.send("GET", &url, &[], None).await?;
            let head = connection.head().await?;
            if head.status != 200 {
                return Err(format!("{url} answered {}", head.status).into());
            }
            stream_client(&mut connection, processes, viewer, origin).await?
        }
    };
    run.calibrations = (calibration, calibration);
    Ok(run)
}

/// Reads a stream's parts for [`WINDOW`] after [`WARMUP`], keeping each new one (step 4).
async fn stream_client(
    connection: &mut Connection,
    processes: &[i32],
    viewer: Viewer,
    origin: Instant,
) -> Result<Run> {
    let mut parts = Parts::default();
    let warm_until = tokio::time::Instant::now() + WARMUP;
    while tokio::time::Instant::now() < warm_until || parts.seen == 0 {
        let chunk = connection.chunk().await?.ok_or("the stream ended")?;
        parts.feed(&chunk);
        parts.take();
    }
    let cpu_before = total_cpu_time(processes)?;
    let started = tokio::time::Instant::now();
    let mut frames = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let chunk = match tokio::time::timeout_at(started + WINDOW, connection.chunk()).await {
            Err(_) => break,
            Ok(chunk) => chunk?.ok_or("the stream ended")?,
        };
        let arrived = origin.elapsed().as_secs_f64();
        parts.feed(&chunk);
        for part in parts.take() {
            if last.as_ref() != Some(&part) {
                last = Some(part.clone());
                frames.push((arrived, part));
            }
        }
    }
    Ok(Run {
        viewer,
        elapsed: started.elapsed(),
        cpu: total_cpu_time(processes)? - cpu_before,
        frames,
        calibrations: Default::default(),
    })
}

/// A `wait=` client for [`WINDOW`] (step 5).
async fn wait_client(
    connection: &mut Connection,
    processes: &[i32],
    origin: Instant,
) -> Result<Run> {
    let url = format!("/1.0/instances/{VM}/console?type=vga&wait={WAIT}");
    let mut etag = connection.get_if_none_match(&url, None).await?.etag;
    let cpu_before = total_cpu_time(processes)?;
    let started = tokio::time::Instant::now();
    let mut frames = Vec::new();
    loop {
        let request = connection.get_if_none_match(&url, etag.as_deref());
        let reply = match tokio::time::timeout_at(started + WINDOW, request).await {
            Err(_) => break,
            Ok(reply) => reply?,
        };
        let arrived = origin.elapsed().as_secs_f64();
        match reply.status {
            200 => {
                etag = reply.etag;
                frames.push((arrived, reply.body));
            }
            304 => {}
            status => return Err(format!("{url} answered {status}").into()),
        }
    }
    Ok(Run {
        viewer: Viewer::MirrorWait,
        elapsed: started.elapsed(),
        cpu: total_cpu_time(processes)? - cpu_before,
        frames,
        calibrations: Default::default(),
    })
}

/// The parts of a multipart stream, taken out of its chunks as they complete.
#[derive(Default)]
struct Parts {
    buffer: Vec<u8>,
    seen: usize,
}

impl Parts {
    fn feed(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The parts' bodies completed so far.
    fn take(&mut self) -> Vec<Vec<u8>> {
        const LENGTH: &[u8] = b"Content-Length: ";
        let mut bodies = Vec::new();
        while let Some(at) = find(&self.buffer, LENGTH) {
            let Some(end) = find(&self.buffer[at..], b"\r\n\r\n").map(|end| at + end) else {
                break;
            };
            let length = std::str::from_utf8(&self.buffer[at + LENGTH.len()..end])
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok());
            let Some(length) = length else {
                self.buffer.drain(..end);
                continue;
            };
            let body = end + 4;
            if self.buffer.len() < body + length {
                break;
            }
            bodies.push(self.buffer[body..body + length].to_vec());
            self.buffer.drain(..body + length);
        }
        self.seen += bodies.len();
        bodies
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A run's frames as counter values: latencies of first arrivals, and what was missed.
struct Decoded {
    /// Milliseconds from each value's change to its first arrival.
    latencies: Vec<f64>,
    /// Distinct values delivered.
    delivered: usize,
    /// Values between consecutive delivered ones that never arrived.
    skipped: u64,
    /// Frames whose value could not be read.
    unreadable: usize,
}

impl Decoded {
    fn of(run: &Run) -> Self {
        let t0 = run.t0();
        let mut decoded = Self {
            latencies: Vec::new(),
            delivered: 0,
            skipped: 0,
            unreadable: 0,
        };
        let mut previous: Option<u16> = None;
        for (arrived, bytes) in &run.frames {
            let value = match run.viewer {
                Viewer::MirrorWait => Frame::from_png(bytes)
                    .ok()
                    .and_then(|frame| decode_counter(frame.width(), frame.height(), frame.rgb())),
                Viewer::MirrorStream | Viewer::ScreendumpStream => read_jpeg_counter(bytes),
            };
            let Some(value) = value else {
                decoded.unreadable += 1;
                continue;
            };
            if previous == Some(value) {
                continue;
            }
            if let Some(previous) = previous {
                decoded.skipped += u64::from(value.wrapping_sub(previous).saturating_sub(1));
            }
            previous = Some(value);
            decoded.delivered += 1;
            let changed = t0 + f64::from(value) / BIOS_TICK_HZ;
            decoded.latencies.push((arrived - changed) * 1e3);
        }
        decoded
    }
}

/// The counter's value in a JPEG frame: JPEG shifts colours, so each bit cell's centre is read
/// as white (1) or dark blue (0) on a row near the top and one near the bottom of the cells,
/// which must agree, under the orange marker band.
fn read_jpeg_counter(jpeg: &[u8]) -> Option<u16> {
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let rgb = decoder.decode().ok()?;
    let info = decoder.info()?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if (width, height) != MODE13_SCREENDUMP_SIZE
        || info.pixel_format != jpeg_decoder::PixelFormat::RGB24
    {
        return None;
    }
    let pixel = |x: u32, y: u32| {
        let at = (y as usize * width as usize + x as usize) * 3;
        rgb.get(at..at + 3)
    };
    let marker = pixel(width / 2, 10)?;
    if !(marker[0] > 200 && (80..180).contains(&marker[1]) && marker[2] < 80) {
        return None;
    }
    let read_row = |y: u32| -> Option<u16> {
        let mut value = 0u16;
        for cell in 0..16u32 {
            let x = (cell * u32::from(COUNTER_CELL_13H) + u32::from(COUNTER_CELL_13H) / 2) * 2;
            let bit = match pixel(x, y)? {
                [r, g, b] if *r > 180 && *g > 180 && *b > 180 => 1,
                [r, g, b] if *r < 80 && *g < 80 && *b > 60 => 0,
                _ => return None,
            };
            value = value << 1 | bit;
        }
        Some(value)
    };
    let top = read_row(u32::from(COUNTER_MARKER_ROWS_13H) * 2 + 40)?;
    (top == read_row(height - 40)?).then_some(top)
}

/// The streaming table: frames delivered and CPU per frame (steps 3, 4 and 6).
fn streaming_section(runs: &[Run], decoded: &[(Viewer, Decoded)], idle: f64) -> Section {
    let intro = format!(
        "One VM showing `Fixture::Counter`, which changes its picture {BIOS_TICK_HZ:.2} times a \
         second, with `console.screenshot.min_interval: \"0\"` so the stream's {FPS} fps paces \
         both paths, and one client reading `?type=vga&stream=mjpeg&fps={FPS}` of the mirrored \
         primary screen, or with `&device=video0&head=0` (a `screendump` every frame period: \
         today's engine, the baseline), for two windows of {} s each (screendump, mirror, \
         mirror, screendump; a stream repeats each frame once, which is not counted). Frames: \
         distinct counter values delivered; skipped: values between consecutive frames that \
         never arrived (goal: none, every change delivered). CPU: utime + stime of the daemon \
         and the QEMU from `/proc`; above idle subtracts the floor with nobody viewing. Ratio: \
         CPU per frame above idle over the baseline's.",
        WINDOW.as_secs()
    );
    let mut section = Section::custom(
        "A changing screen streamed: frames and their cost",
        intro,
        &[
            "path",
            "seconds",
            "frames",
            "frames/s",
            "skipped",
            "CPU s/s",
            "above idle s/s",
            "ms CPU per frame above idle",
            "ratio",
        ],
    );
    section.push_cells(vec![
        "nobody viewing (floor)".to_owned(),
        format!("{}", WINDOW.as_secs()),
        "0".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
        format!("{idle:.4}"),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
    ]);
    let mut baseline = None;
    for viewer in [Viewer::ScreendumpStream, Viewer::MirrorStream] {
        let (mut seconds, mut cpu, mut frames, mut skipped) = (0.0, 0.0, 0, 0);
        for (run, (_, decoded)) in runs.iter().zip(decoded) {
            if run.viewer == viewer {
                seconds += run.elapsed.as_secs_f64();
                cpu += run.cpu.as_secs_f64();
                frames += decoded.delivered;
                skipped += decoded.skipped;
            }
        }
        let above = cpu / seconds - idle;
        let per_frame = above * seconds / frames.max(1) as f64 * 1e3;
        let ratio = match baseline {
            None => {
                baseline = Some(per_frame);
                "—".to_owned()
            }
            Some(base) => format!("{:.3}", per_frame / base),
        };
        section.push_cells(vec![
            viewer.name().to_owned(),
            format!("{seconds:.1}"),
            frames.to_string(),
            format!("{:.1}", frames as f64 / seconds),
            skipped.to_string(),
            format!("{:.4}", cpu / seconds),
            format!("{above:.4}"),
            format!("{per_frame:.3}"),
            ratio,
        ]);
    }
    section
}

/// The latency table (step 6), with how T0 was found and what error it carries.
fn latency_section(runs: &[Run], decoded: &[(Viewer, Decoded)]) -> Section {
    let calibrations: Vec<Calibration> = runs
        .iter()
        .flat_map(|run| [run.calibrations.0, run.calibrations.1])
        .collect();
    let mut gaps: Vec<f64> = calibrations
        .iter()
        .map(|calibration| (calibration.upper - calibration.lower) * 1e3)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let drift = runs
        .iter()
        .map(|run| (run.calibrations.1.upper - run.calibrations.0.upper).abs() * 1e3)
        .fold(0.0, f64::max);
    let gap = quantile(&gaps, 0.5);
    let bounds = if gap >= 0.0 {
        format!(
            "The lower bounds lay {gap:.1} ms below them (median; {:.1} to {:.1} ms): a latency \
             may be short of the truth by about that much.",
            quantile(&gaps, 0.0),
            quantile(&gaps, 1.0)
        )
    } else {
        format!(
            "The bounds crossed, by {:.1} ms (median; {:.1} to {:.1} ms): the guest drew some \
             ticks late (its vCPU waiting for one of the busy cores), so the upper bound follows \
             its promptest ticks, and a tick drawn late counts here as the viewer's latency: \
             the figures err long.",
            -gap,
            -quantile(&gaps, 1.0),
            -quantile(&gaps, 0.0)
        )
    };
    let intro = format!(
        "From a change in the guest to the frame at the viewer, same VM and windows as the \
         table above. The counter shows the BIOS ticks since its first frame, so value v \
         appeared at T0 + v/f, f = {BIOS_TICK_HZ:.4} Hz. T0 comes from a screendump poller \
         (plain PNG through the screendump path, back to back for {} s) just before and just \
         after each window: a frame of value v asked at s and answered at r bounds \
         s − (v+1)/f < T0 ≤ r − v/f. The upper bound is safe (no frame is answered before it \
         changed), and each window is timed against the mean of its two calibrations' upper \
         bounds, which differed by at most {drift:.1} ms (a latency carries about half that). \
         {bounds} Each value's first arrival counts; a JPEG frame's value is read from its bit \
         cells' centres, a PNG's exactly. The mirror hears of a change at QEMU's VNC refresh \
         timer (30 ms at its fastest, slower after ticks that find nothing new). Goal: median \
         ≤ 50 ms. Ratio: median over the baseline's.",
        CALIBRATION.as_secs(),
    );
    let mut section = Section::custom(
        "Change-to-viewer latency",
        intro,
        &["path", "frames", "min ms", "median ms", "p95 ms", "ratio"],
    );
    let mut baseline = None;
    for viewer in [
        Viewer::ScreendumpStream,
        Viewer::MirrorStream,
        Viewer::MirrorWait,
    ] {
        let mut latencies: Vec<f64> = decoded
            .iter()
            .filter(|(of, _)| *of == viewer)
            .flat_map(|(_, decoded)| decoded.latencies.iter().copied())
            .collect();
        let unreadable: usize = decoded
            .iter()
            .filter(|(of, _)| *of == viewer)
            .map(|(_, decoded)| decoded.unreadable)
            .sum();
        latencies.sort_by(f64::total_cmp);
        let median = quantile(&latencies, 0.5);
        let ratio = match baseline {
            None => {
                baseline = Some(median);
                "—".to_owned()
            }
            Some(base) => format!("{:.3}", median / base),
        };
        let name = match unreadable {
            0 => viewer.name().to_owned(),
            unreadable => format!("{} ({unreadable} frames unreadable)", viewer.name()),
        };
        section.push_cells(vec![
            name,
            latencies.len().to_string(),
            format!("{:.1}", quantile(&latencies, 0.0)),
            format!("{median:.1}"),
            format!("{:.1}", quantile(&latencies, 0.95)),
            ratio,
        ]);
    }
    section
}

/// The `fraction` quantile of `sorted`, nearest rank; NaN when it is empty.
fn quantile(sorted: &[f64], fraction: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    sorted
        .get((fraction * last as f64).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}
