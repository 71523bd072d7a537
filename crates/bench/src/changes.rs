//! A changing screen through the mirror against the screendump path: frames a 30 fps MJPEG
//! stream delivers, what each costs, and how long a change in the guest takes to reach a viewer.
//!
//! How it measures:
//! 1. Starts the release daemon and one VM showing [`Fixture::Counter`], whose picture encodes
//!    the BIOS ticks since its first frame and changes [`BIOS_TICK_HZ`] (18.2) times a second,
//!    with `console.screenshot.min_interval: "0"` (so the stream's 30 fps, not the default
//!    250 ms, paces both paths) and the history recorder off.
//! 2. Calibration: a poller asks for the screen through the screendump path (plain PNG,
//!    `&device=video0&head=0`, a capture per request) back to back for [`CALIBRATION`]. A
//!    frame showing value v, asked at s and answered at r, bounds the counter's origin T0 (the
//!    nominal time of value 0): its change to v was before r, its change to v + 1 after s, so
//!    s − (v + 1)/f < T0 ≤ r − v/f. The intersection over all requests gives T0 and its
//!    half-width. Done at the start and again at the end; the frames are timed against the
//!    mean of both, and the spread says how far the guest's ticks drift from the host's clock.
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
//!    is a latency of t − (T0 + v/f). Values skipped between consecutive frames are changes the
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
/// How long each calibration of T0 polls.
const CALIBRATION: Duration = Duration::from_secs(3);
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
}

/// The counter's origin: the nominal time of value 0, in seconds from the run's origin.
#[derive(Clone, Copy)]
struct Calibration {
    t0: f64,
    half_width: f64,
    samples: usize,
}

/// Measures the streaming section and the latency section.
pub async fn measure() -> Result<(Section, Section)> {
    let daemon = Daemon::start().await?;
    let socket = daemon.socket();
    create_vm(&daemon, VM, Fixture::Counter, &CONFIG).await?;
    wait_for_greeting(&socket, VM).await?;
    let processes = daemon.processes()?;
    let origin = Instant::now();

    eprintln!("bench: changes: calibrating the counter's origin");
    let before = calibrate(&socket, origin).await?;
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
    ] {
        eprintln!("bench: changes: {}", viewer.name());
        runs.push(view(&socket, &processes, viewer, origin).await?);
    }
    tokio::time::sleep(LINGER).await;
    eprintln!("bench: changes: {}", Viewer::ScreendumpStream.name());
    runs.push(view(&socket, &processes, Viewer::ScreendumpStream, origin).await?);
    let after = calibrate(&socket, origin).await?;

    let t0 = (before.t0 + after.t0) / 2.0;
    let decoded: Vec<(Viewer, Decoded)> = runs
        .iter()
        .map(|run| (run.viewer, Decoded::of(run, t0)))
        .collect();
    Ok((
        streaming_section(&runs, &decoded, idle),
        latency_section(&decoded, before, after),
    ))
}

/// Step 2: the counter's origin from a screendump poller's frames.
async fn calibrate(socket: &Path, origin: Instant) -> Result<Calibration> {
    let url = format!("/1.0/instances/{VM}/console?type=vga&device=video0&head=0");
    let mut connection = Connection::open(socket).await?;
    let (mut low, mut high, mut samples) = (f64::MIN, f64::MAX, 0);
    let started = Instant::now();
    while started.elapsed() < CALIBRATION {
        let sent = origin.elapsed().as_secs_f64();
        let reply = connection.exchange("GET", &url, None).await?;
        let answered = origin.elapsed().as_secs_f64();
        if reply.status != 200 {
            return Err(format!("{url} answered {}", reply.status).into());
        }
        let frame = Frame::from_png(&reply.body)?;
        let Some(value) = decode_counter(frame.width(), frame.height(), frame.rgb()) else {
            continue;
        };
        let value = f64::from(value);
        low = low.max(sent - (value + 1.0) / BIOS_TICK_HZ);
        high = high.min(answered - value / BIOS_TICK_HZ);
        samples += 1;
    }
    if samples == 0 {
        return Err("the screendump poller decoded no counter frame".into());
    }
    // Bounds that cross (the guest late on a tick) still centre on T0; their gap is the error.
    Ok(Calibration {
        t0: (low + high) / 2.0,
        half_width: (high - low).abs() / 2.0,
        samples,
    })
}

/// Steps 4 and 5: one window of `viewer`.
async fn view(socket: &Path, processes: &[i32], viewer: Viewer, origin: Instant) -> Result<Run> {
    let mut connection = Connection::open(socket).await?;
    match viewer {
        Viewer::MirrorWait => wait_client(&mut connection, processes, origin).await,
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
            stream_client(&mut connection, processes, viewer, origin).await
        }
    }
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
    fn of(run: &Run, t0: f64) -> Self {
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
fn latency_section(
    decoded: &[(Viewer, Decoded)],
    before: Calibration,
    after: Calibration,
) -> Section {
    let spread = (after.t0 - before.t0).abs() * 1e3;
    let error = spread / 2.0 + before.half_width.max(after.half_width) * 1e3;
    let intro = format!(
        "From a change in the guest to the frame at the viewer, same VM and windows as the \
         table above. The counter shows the BIOS ticks since its first frame, so value v \
         appeared at T0 + v/{BIOS_TICK_HZ:.4} s. T0 comes from a screendump poller (plain PNG \
         through the screendump path, back to back for {} s): a frame of value v asked at s and \
         answered at r bounds s − (v+1)/f < T0 ≤ r − v/f, and the bounds of all its requests \
         meet within ±{:.1} ms ({} frames) at the start and ±{:.1} ms ({} frames) at the end; \
         the two estimates differ by {spread:.1} ms, and frames are timed against their mean, \
         so each latency carries about ±{error:.1} ms. A latency counts from the tick, so it \
         includes the guest's own delay in drawing the frame (well under a millisecond when its \
         vCPU runs, more when the 2 cores are busy). Each value's first arrival counts; a JPEG \
         frame's value is read from its bit cells' centres, a PNG's exactly. The mirror hears \
         of a change at QEMU's VNC refresh timer (30 ms at its fastest, slower while ticks find \
         nothing new). Goal: median ≤ 50 ms. Ratio: median over the baseline's.",
        CALIBRATION.as_secs(),
        before.half_width * 1e3,
        before.samples,
        after.half_width * 1e3,
        after.samples,
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
        let quantile = |fraction: f64| {
            let last = latencies.len().saturating_sub(1);
            latencies
                .get((fraction * last as f64).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let median = quantile(0.5);
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
            format!("{:.1}", quantile(0.0)),
            format!("{median:.1}"),
            format!("{:.1}", quantile(0.95)),
            ratio,
        ]);
    }
    section
}
