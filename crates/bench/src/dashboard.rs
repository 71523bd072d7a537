//! The web page's load on many still screens, mirrored against screendumps, and what a mirrored
//! screen costs the daemon in memory.
//!
//! How it measures:
//! 1. Starts the release daemon and [`VMS`] VMs, each showing a still 1024x768 picture
//!    (`Fixture::bars(1024, 768)`), with the history recorder off (`console.history.enabled:
//!    "false"`), so nothing but the benchmark asks for screens. It waits for each fixture's
//!    greeting on the serial console, which asks for no screen.
//! 2. Memory, unviewed: the daemon's VmRSS with every VM running and no screen ever asked for
//!    (the baseline of the memory table).
//! 3. Idle: once the guests have drawn their pictures (the processes' CPU quiet for two
//!    seconds), the CPU time (utime + stime in `/proc`) of the daemon and every QEMU over
//!    [`WINDOW`], nobody asking for anything.
//! 4. Memory, mirrored: the primary screens of the first 8 VMs, then of all 16, are asked for
//!    (a plain PNG every 300 ms, past the 250 ms minimum interval) until each has been served
//!    from its mirror (`vgashot_screenshot_frames_total{source="mirror"}`); VmRSS after each.
//! 5. The dashboard: for N of [`LEVELS`], N pollers, one per VM, each on its own keep-alive
//!    connection, ask once a second (phases spread over the second) for the 320 px JPEG
//!    thumbnail with `If-None-Match` of the last `ETag`, as the web page does, for [`WINDOW`];
//!    each poller makes one request before the window to hold an `ETag` (on the mirror, once
//!    its screen was served from a running session and then once as unchanged: the steady
//!    state). Two paths: the
//!    mirrored primary screen (`?type=vga&format=jpeg&width=320`), and the same screen asked
//!    as `&device=video0&head=0`, which the mirror does not serve: a `screendump` per
//!    capture, today's engine, the baseline. Windows in the order screendump 8, mirror 8,
//!    mirror 16, screendump 16, so drift in the machine weighs on both paths alike.
//! 6. Idle again, once every mirror session has been let go ([`LINGER`] after the last
//!    request): the floor is the mean of both idle windows.
//! 7. Figure: (CPU of the daemon and all QEMUs per second − the idle floor) / N, per VM per
//!    second; ratio: the mirror's over the screendump's at the same N. Goal ≤ 1/20.

use std::path::Path;
use std::time::{Duration, Instant};

use vgashot_fixtures::Fixture;

use crate::Result;
use crate::daemon::{
    Connection, Daemon, PNG_MAGIC, cpu_time, create_vm, metric, png_size, rss_kib, total_cpu_time,
    wait_for_greeting,
};
use crate::report::Section;

/// VMs started, all showing the same still picture.
const VMS: usize = 16;
/// How many of them are polled, one table row pair each.
const LEVELS: [usize; 2] = [8, 16];
/// How long one window lasts: pollers at 1 Hz make 25 requests each; the 10 ms tick of
/// `/proc`'s CPU times, over 17 processes, stays below 0.1 ms per VM per second.
const WINDOW: Duration = Duration::from_secs(25);
/// How often each poller asks, as the web page refreshes a card.
const POLL: Duration = Duration::from_secs(1);
/// How long the daemon keeps a mirror session after its last request (its `LINGER`, 15 s),
/// plus its idle check (1 s) and a margin.
const LINGER: Duration = Duration::from_secs(18);
/// CPU per second of the daemon and all QEMUs together below which the VMs count as done
/// booting: 3 ticks, where a QEMU drawing its picture takes hundreds.
const QUIET: Duration = Duration::from_millis(30);
/// The still picture.
const PICTURE: Fixture = Fixture::bars(1024, 768);
/// What the web page asks for a card.
const THUMBNAIL: &str = "&format=jpeg&width=320";
/// The history recorder would ask for every screen each second: off, so only pollers ask.
const CONFIG: [(&str, &str); 1] = [("console.history.enabled", "false")];

/// Which path of a screen the pollers take.
#[derive(Clone, Copy, PartialEq)]
enum ScreenPath {
    /// The primary screen, served from the mirror.
    Mirror,
    /// The same screen as `device=video0&head=0`: a screendump per capture.
    Screendump,
}

impl ScreenPath {
    fn query(self) -> &'static str {
        match self {
            Self::Mirror => "",
            Self::Screendump => "&device=video0&head=0",
        }
    }
}

/// What one window of pollers measured.
struct Window {
    path: ScreenPath,
    vms: usize,
    elapsed: Duration,
    cpu: Duration,
    /// The daemon's share of `cpu`.
    daemon_cpu: Duration,
    requests: u64,
    not_modified: u64,
    errors: u64,
    captures: u64,
}

/// Measures the dashboard section and the memory section.
pub async fn measure() -> Result<(Section, Section)> {
    let daemon = Daemon::start().await?;
    let socket = daemon.socket();
    let names: Vec<String> = (0..VMS).map(|index| format!("dash{index:02}")).collect();
    for name in &names {
        create_vm(&daemon, name, Some(PICTURE), &CONFIG).await?;
    }
    for name in &names {
        wait_for_greeting(&socket, name).await?;
    }
    let daemon_pid = daemon.pid()?;
    let processes = daemon.processes()?;
    if processes.len() != VMS + 1 {
        return Err(format!("found {} QEMU pid files", processes.len() - 1).into());
    }

    eprintln!("bench: dashboard: memory unviewed, idle");
    let unviewed = rss_kib(daemon_pid).ok_or("no VmRSS of the daemon")?;
    wait_until_quiet(&processes).await?;
    let idle_before = idle(&processes).await?;

    eprintln!("bench: dashboard: memory mirrored");
    let mut mirrored = Vec::new();
    for count in LEVELS {
        for name in &names[..count] {
            mirror_screen(&socket, name).await?;
        }
        mirrored.push((count, rss_kib(daemon_pid).ok_or("no VmRSS of the daemon")?));
    }

    let order = [
        (ScreenPath::Screendump, LEVELS[0]),
        (ScreenPath::Mirror, LEVELS[0]),
        (ScreenPath::Mirror, LEVELS[1]),
        (ScreenPath::Screendump, LEVELS[1]),
    ];
    let mut windows = Vec::new();
    for (path, vms) in order {
        eprintln!("bench: dashboard: {vms} pollers, {}", path_name(path));
        windows.push(poll_window(&socket, &processes, &names[..vms], path).await?);
    }
    eprintln!("bench: dashboard: waiting for the mirrors to be let go, then idle");
    tokio::time::sleep(LINGER).await;
    let idle_after = idle(&processes).await?;
    let floor = Idle {
        total: (idle_before.total + idle_after.total) / 2.0,
        daemon: (idle_before.daemon + idle_after.daemon) / 2.0,
    };

    Ok((
        dashboard_section(&windows, idle_before.total, idle_after.total, floor),
        memory_section(unviewed, &mirrored),
    ))
}

fn path_name(path: ScreenPath) -> &'static str {
    match path {
        ScreenPath::Mirror => "mirrored primary screen",
        ScreenPath::Screendump => "screendump path, `device=video0&head=0` (baseline)",
    }
}

/// CPU seconds per second with nobody asking: of the daemon and QEMUs, and of the daemon.
#[derive(Clone, Copy)]
struct Idle {
    total: f64,
    daemon: f64,
}

/// The idle floor of `processes` (the daemon first) over [`WINDOW`].
async fn idle(processes: &[i32]) -> Result<Idle> {
    let started = Instant::now();
    let (total, daemon) = (total_cpu_time(processes)?, cpu_time(processes[0])?);
    tokio::time::sleep(WINDOW).await;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Idle {
        total: (total_cpu_time(processes)? - total).as_secs_f64() / seconds,
        daemon: (cpu_time(processes[0])? - daemon).as_secs_f64() / seconds,
    })
}

/// Waits until the guests have drawn their pictures: a fixture draws 1024x768 through the
/// banked VGA window, each write a trip into QEMU, seconds of CPU for 16 VMs after their
/// greetings. Quiet is two seconds in a row below [`QUIET`] for all `processes` together.
async fn wait_until_quiet(processes: &[i32]) -> Result {
    let started = Instant::now();
    let mut quiet_seconds = 0;
    while quiet_seconds < 2 {
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the VMs never went quiet after they booted".into());
        }
        let before = total_cpu_time(processes)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = total_cpu_time(processes)? - before;
        quiet_seconds = if busy < QUIET { quiet_seconds + 1 } else { 0 };
    }
    Ok(())
}

/// Asks for `url` of `name` every 300 ms until one answer is served as unchanged: a new
/// session's first updates (QEMU sends the screen again at its first refresh) are over.
async fn settle(socket: &Path, name: &str, url: &str) -> Result {
    let label = format!("name=\"{name}\"");
    let labels = [label.as_str()];
    let unchanged = || metric(socket, "vgashot_screenshot_unchanged_total", &labels);
    let started = Instant::now();
    let mut connection = Connection::open(socket).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = unchanged().await?;
        connection.get_if_none_match(url, None).await?;
        if unchanged().await? > before {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("{name}'s mirror never settled").into());
        }
    }
}

/// Asks for `name`'s primary screen until one answer came from its mirror (step 4).
async fn mirror_screen(socket: &Path, name: &str) -> Result {
    let path = format!("/1.0/instances/{name}/console?type=vga");
    let label = format!("name=\"{name}\"");
    let started = Instant::now();
    let mut connection = Connection::open(socket).await?;
    loop {
        let reply = connection.exchange("GET", &path, None).await?;
        if reply.status != 200 || !reply.body.starts_with(PNG_MAGIC) {
            return Err(format!("{path} answered {}", reply.status).into());
        }
        let from_mirror = metric(
            socket,
            "vgashot_screenshot_frames_total",
            &[&label, "source=\"mirror\""],
        )
        .await?;
        if from_mirror > 0 && png_size(&reply.body) == Some(PICTURE.expected_size()) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("{name}'s screen was never served from its mirror").into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What one poller counted.
#[derive(Default)]
struct Tally {
    requests: u64,
    not_modified: u64,
    errors: u64,
}

/// One window of pollers of `names` on `path` (step 5).
async fn poll_window(
    socket: &Path,
    processes: &[i32],
    names: &[String],
    path: ScreenPath,
) -> Result<Window> {
    // Before the window, every poller holds an ETag, as a page that has been polling; on the
    // mirror, once its screen was served from a running session (its start, a full update
    // and the screendump that answers meanwhile, are not a still screen's steady cost).
    let mut pollers = Vec::new();
    for name in names {
        let url = format!(
            "/1.0/instances/{name}/console?type=vga{THUMBNAIL}{}",
            path.query()
        );
        if path == ScreenPath::Mirror {
            mirror_screen(socket, name).await?;
            settle(socket, name, &url).await?;
        }
        let mut connection = Connection::open(socket).await?;
        let reply = connection.get_if_none_match(&url, None).await?;
        if reply.status != 200 {
            return Err(format!("{url} answered {}", reply.status).into());
        }
        pollers.push((connection, url, reply.etag));
    }
    let captures_before = metric(socket, "vgashot_screenshot_captures_total", &[]).await?;
    let (cpu_before, daemon_before) = (total_cpu_time(processes)?, cpu_time(processes[0])?);
    let started = tokio::time::Instant::now();
    let deadline = started + WINDOW;
    let mut tasks = tokio::task::JoinSet::new();
    let count = u32::try_from(names.len())?;
    for (index, (connection, url, etag)) in (0u32..).zip(pollers) {
        let first = started + POLL * index / count;
        tasks.spawn(poller(connection, url, etag, first, deadline));
    }
    let tallies = tasks.join_all().await;
    let elapsed = started.elapsed();
    let cpu = total_cpu_time(processes)? - cpu_before;
    let daemon_cpu = cpu_time(processes[0])? - daemon_before;
    let captures =
        metric(socket, "vgashot_screenshot_captures_total", &[]).await? - captures_before;
    let mut window = Window {
        path,
        vms: names.len(),
        elapsed,
        cpu,
        daemon_cpu,
        requests: 0,
        not_modified: 0,
        errors: 0,
        captures,
    };
    for tally in tallies {
        window.requests += tally.requests;
        window.not_modified += tally.not_modified;
        window.errors += tally.errors;
    }
    Ok(window)
}

/// One card of the page: a thumbnail a second with `If-None-Match`, from `first` to `deadline`.
async fn poller(
    mut connection: Connection,
    url: String,
    mut etag: Option<String>,
    first: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut next = first;
    while next < deadline {
        tokio::time::sleep_until(next).await;
        next += POLL;
        tally.requests += 1;
        match connection.get_if_none_match(&url, etag.as_deref()).await {
            Ok(reply) if reply.status == 304 => tally.not_modified += 1,
            Ok(reply) if reply.status == 200 => etag = reply.etag.or(etag),
            Ok(_) => tally.errors += 1,
            Err(_) => {
                tally.errors += 1;
                return tally;
            }
        }
    }
    tally
}

/// The dashboard table (step 7).
fn dashboard_section(windows: &[Window], before: f64, after: f64, floor: Idle) -> Section {
    let intro = format!(
        "The web page's load: the release daemon with {VMS} VMs, each showing a still 1024x768 \
         picture (`Fixture::bars(1024, 768)`, history recorder off), N of them polled by one \
         client each once a second for the 320 px JPEG thumbnail (`&format=jpeg&width=320`) \
         with `If-None-Match` of the last `ETag`, as the page does, so nearly every answer is \
         a 304; default `console.screenshot.min_interval` (250 ms). CPU is utime + stime from \
         `/proc` of the daemon and all {VMS} QEMUs over a {}-s window; above idle subtracts the \
         floor with nobody polling (the mean of {before:.4} s/s before and {after:.4} s/s \
         after, once every mirror session had been let go), and is divided by N; of which \
         the daemon: its own share (the rest is the QEMUs'). Paths: the \
         mirrored primary screen, against the same screen asked as `&device=video0&head=0`, \
         which the mirror does not serve (a `screendump` per capture: today's engine, the \
         baseline). Before a window each poller holds an `ETag`, and on the mirror its session \
         runs already and has served the screen as unchanged (the steady state of an open page: \
         a session's start, its first full updates and one screendump, is not in the window). Windows in the order screendump 8, mirror 8, mirror 16, screendump 16. \
         Captures: the delta of `vgashot_screenshot_captures_total` over all VMs (the mirror \
         serves a still screen as unchanged, without a capture). The CPU tick is 10 ms per \
         process, so a figure within about 0.1 ms/s of zero, either sign, is noise. Goal: the \
         mirror at most 1/20 of the screendump path (ratio ≤ 0.05).",
        WINDOW.as_secs()
    );
    let mut section = Section::custom(
        "Dashboard: many still screens polled once a second",
        intro,
        &[
            "path",
            "VMs polled",
            "requests",
            "304s",
            "captures",
            "CPU s/s",
            "above idle ms per VM per s",
            "of which the daemon",
            "ratio",
        ],
    );
    section.push_cells(vec![
        format!("nobody polling (floor, {VMS} VMs)"),
        "0".to_owned(),
        "0".to_owned(),
        "—".to_owned(),
        "0".to_owned(),
        format!("{:.4}", floor.total),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
    ]);
    let per_vm = |window: &Window| {
        let seconds = window.elapsed.as_secs_f64();
        let rate = window.cpu.as_secs_f64() / seconds;
        let daemon = window.daemon_cpu.as_secs_f64() / seconds;
        let vms = window.vms as f64;
        (
            rate,
            (rate - floor.total) / vms * 1e3,
            (daemon - floor.daemon) / vms * 1e3,
        )
    };
    for vms in LEVELS {
        let find = |path| windows.iter().find(|w| w.path == path && w.vms == vms);
        let (Some(dump), Some(mirror)) = (find(ScreenPath::Screendump), find(ScreenPath::Mirror))
        else {
            continue;
        };
        let baseline = per_vm(dump).1;
        for window in [dump, mirror] {
            let (rate, above, daemon) = per_vm(window);
            let name = match window.errors {
                0 => path_name(window.path).to_owned(),
                errors => format!("{} ({errors} failed)", path_name(window.path)),
            };
            section.push_cells(vec![
                name,
                window.vms.to_string(),
                window.requests.to_string(),
                format!(
                    "{:.1}%",
                    100.0 * window.not_modified as f64 / window.requests.max(1) as f64
                ),
                window.captures.to_string(),
                format!("{rate:.4}"),
                format!("{above:.3}"),
                format!("{daemon:.3}"),
                match window.path {
                    ScreenPath::Screendump => "—".to_owned(),
                    ScreenPath::Mirror => format!("{:.3}", above / baseline),
                },
            ]);
        }
    }
    section
}

/// The memory table: the daemon's VmRSS unviewed (baseline) and with screens mirrored.
fn memory_section(unviewed: u64, mirrored: &[(usize, u64)]) -> Section {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut section = Section::custom(
        "Daemon memory per mirrored screen",
        format!(
            "The daemon's VmRSS (`/proc/PID/status`) with the {VMS} VMs of the dashboard above \
             running, first with no screen ever asked for (the baseline), then with the primary \
             screens of 8 and of all 16 asked for until each was served from its mirror (a \
             1024x768 screen: the RFB session's copy, the mirror's picture and the engine's \
             last capture, 2.25 MiB of RGB each, plus the renderings asked for). Measured \
             before the dashboard's windows, in the same daemon. Ratio: RSS over the baseline's."
        ),
        &[
            "case",
            "mirrored screens",
            "daemon RSS MiB",
            "above unviewed MiB",
            "per mirrored screen MiB",
            "ratio",
        ],
    );
    section.push_cells(vec![
        format!("{VMS} VMs, no screen viewed (baseline)"),
        "0".to_owned(),
        format!("{:.1}", mib(unviewed)),
        "—".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
    ]);
    for &(count, rss) in mirrored {
        let above = mib(rss) - mib(unviewed);
        section.push_cells(vec![
            format!("{count} screens mirrored"),
            count.to_string(),
            format!("{:.1}", mib(rss)),
            format!("{above:.1}"),
            format!("{:.2}", above / count as f64),
            format!("{:.2}", rss as f64 / unviewed as f64),
        ]);
    }
    section
}
