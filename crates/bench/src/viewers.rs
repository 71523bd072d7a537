//! Many viewers of one screen, through the real daemon: what sharing captures buys, in
//! throughput, latency, captures, QEMU's CPU time and the daemon's memory.
//!
//! How it measures:
//! 1. Starts the release daemon (`target/release/vgashot daemon`) over a temporary `VGASHOT_DIR`
//!    and creates a VM booting [`Fixture::Counter`], a screen that changes 18 times a second, so
//!    no capture is ever a repeat of the last one.
//! 2. With no viewers for [`WINDOW`]: QEMU's CPU time, the floor of the guest-impact table.
//! 3. For each of [`LEVELS`] clients, each looping `GET /1.0/instances/VM/console?type=vga` on
//!    its own keep-alive connection for [`WINDOW`]: requests, their latency, captures (the delta
//!    of `vgashot_screenshot_captures_total` in `GET /1.0/metrics`), QEMU's CPU time (utime +
//!    stime of its pid in `/proc`) and the daemon's peak RSS. First with the default
//!    `console.screenshot.min_interval` (250 ms), then with `0` (a capture per request unless
//!    one is in flight, which it joins).
//! 4. The baseline, a capture for every request as upstream Incus takes them: the API cannot
//!    do that for concurrent requests (single flight is not optional), so the daemon is stopped
//!    with SIGTERM (the VM keeps running), this process re-attaches to the same VM with the qemu
//!    driver, and the same numbers of clients each loop on `console_screenshot`, which always
//!    takes a capture of its own. See [`INTRO`] for why that is the honest choice.
//! 5. Whatever happens, [`Daemon`]'s `Drop` kills the daemon and every QEMU whose pid file lies
//!    under its directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Barrier;
use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::{
    DriverPaths, Instance, QemuDriver, QemuInstance, ScreenshotOptions,
};

use crate::report::Section;
use crate::stats::Samples;
use crate::{Result, workspace_root};

/// Concurrent clients, one row each, each on a connection of its own. The largest stays within
/// the daemon's 512 connections per socket (`rest/limits.rs`), with room for the metrics
/// requests: past the cap the daemon refuses connections with a `503` by design, and a level
/// that measured those refusals would not measure sharing.
const LEVELS: [usize; 4] = [1, 10, 100, 500];
/// How long the clients of one level keep asking (and how long the idle floor is measured).
const WINDOW: Duration = Duration::from_secs(5);
/// The clients whose load the guest-impact table compares.
const GUEST_IMPACT_CLIENTS: usize = 100;
/// A request slower than this counts as failed, so a stuck daemon cannot stall the benchmark.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests one level may send in all: a bound on memory (one latency sample each) whatever
/// the machine's speed.
const MAX_REQUESTS: u64 = 2_000_000;
/// The VM's name.
const VM: &str = "viewers";
/// What every client asks for: the plain screenshot, as `incus query` and upstream's API.
const SCREENSHOT: &str = "/1.0/instances/viewers/console?type=vga";
/// The first bytes of every PNG, to tell a screenshot from an error envelope.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// What the many-viewers section measures, and why its baseline is what it is.
const INTRO: &str = "The release daemon (`vgashot daemon`, own `VGASHOT_DIR`) with one VM \
     showing `Fixture::Counter`, a screen that changes 18 times a second, so every capture is a \
     new picture. Each of N clients loops `GET /1.0/instances/VM/console?type=vga` on its own \
     keep-alive Unix-socket connection for 5 s; the load generator runs on the same 2 cores as \
     the daemon and QEMU. Captures/s is the delta of `vgashot_screenshot_captures_total` from \
     `GET /1.0/metrics`; QEMU CPU is the utime + stime of the VM's QEMU process per wall-clock \
     second; RSS is the daemon's peak VmRSS during the level. Rows: `default` is \
     `console.screenshot.min_interval` 250 ms (one capture per interval, shared by all); `0` \
     captures on demand but still single-flight (requests arriving during a capture share it). \
     Baseline (`per-request`): every request takes its own capture, as upstream Incus does. The \
     API cannot serve that to concurrent clients (single flight is always on, and N distinct \
     VMs would measure N guests, not one), so the daemon is stopped (its VM keeps running) and \
     the benchmark re-attaches to the same QEMU with the qemu driver, whose `console_screenshot` \
     always captures; N tasks loop on it. That baseline skips HTTP and uses vgashot's own capture \
     (PPM through a memfd, PNG encoded outside QEMU, about 0.3× the QEMU time of upstream's \
     QEMU-encoded PNG, see above), so it flatters upstream: the gap to the shared rows is a lower \
     bound. Its RSS is not the daemon's, hence —. The levels run one after another, not \
     interleaved. Ratio: req/s over the baseline's at the same N.";

/// What the guest-impact section measures.
const GUEST_INTRO: &str = "What viewers cost the guest: QEMU's own CPU time (utime + stime of the \
     VM's QEMU process, all threads) per wall-clock second while 100 clients loop on the \
     screenshot, against the same with `console.screenshot.min_interval: \"0\"` (the ratios' \
     baseline); `screendump` runs in QEMU's main loop, which the guest's devices share. Above \
     idle subtracts the floor measured with no viewers (QEMU's timers and display refresh); a \
     figure within a few thousandths of zero, either sign, is noise of the 10 ms tick. Same VM and run as the table above.";

/// Measures both sections: the many-viewers table and the guest impact.
pub async fn measure() -> Result<(Section, Section)> {
    let binary = daemon_binary();
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p vgashot` \
             (`cargo xtask bench` does)",
            binary.display()
        )
        .into());
    }
    let mut daemon = Daemon::spawn(&binary)?;
    let socket = daemon.socket();
    daemon.wait_until_serving().await?;
    let image = Fixture::Counter.write_image(daemon.images.path())?;
    call(
        &socket,
        "POST",
        "/1.0/instances",
        Some(&json!({
            "name": VM,
            "type": "virtual-machine",
            "source": {"type": "none"},
            "config": {"limits.memory": "64MiB"},
            "devices": {"root": {"type": "disk", "path": "/", "source": image}},
            "start": true,
        })),
    )
    .await?;
    wait_for_counter(&socket).await?;
    let qemu = find_qemu_pid(&daemon.dir.path().join("run")).ok_or("the VM wrote no pid file")?;
    let target = Target::Daemon {
        socket: socket.clone(),
        pid: daemon.pid()?,
    };

    eprintln!("bench: viewers: idle floor");
    let idle_cpu = {
        let before = cpu_time(qemu)?;
        tokio::time::sleep(WINDOW).await;
        (cpu_time(qemu)? - before).as_secs_f64() / WINDOW.as_secs_f64()
    };
    let mut shared = Vec::new();
    for clients in LEVELS {
        eprintln!("bench: viewers: min_interval default, {clients} clients");
        shared.push(run_level(&target, clients, qemu).await?);
    }
    set_min_interval(&socket, "0").await?;
    let mut on_demand = Vec::new();
    for clients in LEVELS {
        eprintln!("bench: viewers: min_interval 0, {clients} clients");
        on_demand.push(run_level(&target, clients, qemu).await?);
    }

    // The baseline: the same VM, re-attached without the daemon.
    daemon.terminate().await?;
    let dir = daemon.dir.path();
    let driver = QemuDriver::open(DriverPaths {
        state_dir: dir.to_owned(),
        runtime_dir: dir.join("run"),
    })
    .await?;
    let vm = driver.get("default", VM)?;
    vm.console_screenshot(&ScreenshotOptions::default()).await?;
    let target = Target::Driver(vm.clone());
    let mut per_request = Vec::new();
    for clients in LEVELS {
        eprintln!("bench: viewers: per-request baseline, {clients} clients");
        per_request.push(run_level(&target, clients, qemu).await?);
    }
    vm.stop(true, Duration::ZERO).await?;

    let mut viewers = Section::custom(
        "Many viewers of one screen",
        INTRO,
        &[
            "path",
            "clients",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "captures/s",
            "QEMU CPU s/s",
            "daemon RSS MiB",
            "ratio",
        ],
    );
    for ((baseline, zero), default) in per_request.iter().zip(&on_demand).zip(&shared) {
        viewers.push_cells(baseline.cells("per-request capture (baseline)", None));
        viewers.push_cells(zero.cells("vgashot, min_interval 0", Some(baseline)));
        viewers.push_cells(default.cells("vgashot, min_interval 250 ms", Some(baseline)));
    }

    let mut guest = Section::custom(
        "Guest impact of 100 viewers",
        GUEST_INTRO,
        &[
            "case",
            "captures/s",
            "QEMU CPU s/s",
            "CPU ratio",
            "above idle s/s",
            "above-idle ratio",
        ],
    );
    let at = |levels: &[Level]| {
        levels
            .iter()
            .find(|level| level.clients == GUEST_IMPACT_CLIENTS)
            .cloned()
            .expect("LEVELS holds GUEST_IMPACT_CLIENTS")
    };
    let zero = at(&on_demand);
    let zero_cpu = zero.cpu_per_second();
    let ratio = |value: f64, base: f64| {
        if base > 0.0 {
            format!("{:.3}", value / base)
        } else {
            "—".to_owned()
        }
    };
    guest.push_cells(vec![
        "no viewers (floor)".to_owned(),
        "0".to_owned(),
        format!("{idle_cpu:.4}"),
        ratio(idle_cpu, zero_cpu),
        "—".to_owned(),
        "—".to_owned(),
    ]);
    for (name, level) in [
        ("100 viewers, per-request capture", at(&per_request)),
        ("100 viewers, min_interval 0", zero.clone()),
        ("100 viewers, min_interval 250 ms", at(&shared)),
    ] {
        let cpu = level.cpu_per_second();
        // Signed: a load whose cost is within the floor's noise shows as a small negative.
        let above = cpu - idle_cpu;
        guest.push_cells(vec![
            name.to_owned(),
            format!("{:.1}", level.captures_per_second()),
            format!("{cpu:.4}"),
            ratio(cpu, zero_cpu),
            format!("{above:.4}"),
            ratio(above, zero_cpu - idle_cpu),
        ]);
    }
    Ok((viewers, guest))
}

/// What the clients of one level ask: the daemon over HTTP, or the driver directly (baseline).
enum Target {
    /// The daemon on `socket`, whose process is `pid` (for its RSS and its metrics).
    Daemon {
        /// The daemon's Unix socket.
        socket: PathBuf,
        /// The daemon's process id.
        pid: u32,
    },
    /// The VM, through the qemu driver in this process: a capture per call.
    Driver(Arc<QemuInstance>),
}

/// The figures of one level.
#[derive(Clone)]
struct Level {
    clients: usize,
    latencies: Samples,
    errors: u64,
    elapsed: Duration,
    /// Captures QEMU took; `None` for the baseline, where every request is one.
    captures: Option<u64>,
    qemu_cpu: Duration,
    rss_peak_kib: Option<u64>,
}

impl Level {
    fn requests_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn captures_per_second(&self) -> f64 {
        let captures = self.captures.unwrap_or(self.latencies.len() as u64);
        captures as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_second(&self) -> f64 {
        self.qemu_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// The row of the many-viewers table, with the ratio of request rates to `baseline`.
    fn cells(&self, path: &str, baseline: Option<&Level>) -> Vec<String> {
        let ms = |fraction| self.latencies.quantile(fraction).as_secs_f64() * 1e3;
        let name = match self.errors {
            0 => path.to_owned(),
            errors => format!("{path} ({errors} failed)"),
        };
        vec![
            name,
            self.clients.to_string(),
            self.latencies.len().to_string(),
            format!("{:.0}", self.requests_per_second()),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.99)),
            format!("{:.1}", self.captures_per_second()),
            format!("{:.4}", self.cpu_per_second()),
            self.rss_peak_kib.map_or("—".to_owned(), |kib| {
                format!("{:.1}", kib as f64 / 1024.0)
            }),
            baseline.map_or("—".to_owned(), |baseline| {
                format!(
                    "{:.2}",
                    self.requests_per_second() / baseline.requests_per_second()
                )
            }),
        ]
    }
}

/// When the clients of a level start: all at once, after every one has connected.
struct Start {
    barrier: Barrier,
    at: OnceLock<Instant>,
}

impl Start {
    /// Waits for every client, then answers the common deadline.
    async fn deadline(&self) -> Instant {
        self.barrier.wait().await;
        *self.at.get_or_init(Instant::now) + WINDOW
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
}

/// Runs `clients` clients against `target` for [`WINDOW`], with QEMU's pid `qemu`.
async fn run_level(target: &Target, clients: usize, qemu: i32) -> Result<Level> {
    let start = Arc::new(Start {
        barrier: Barrier::new(clients + 1),
        at: OnceLock::new(),
    });
    let budget = Arc::new(AtomicU64::new(MAX_REQUESTS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (start, budget) = (start.clone(), budget.clone());
        match target {
            Target::Daemon { socket, .. } => {
                tasks.spawn(http_client(socket.clone(), start, budget));
            }
            Target::Driver(vm) => {
                tasks.spawn(driver_client(vm.clone(), start, budget));
            }
        }
    }
    let captures_before = match target {
        Target::Daemon { socket, .. } => Some(captures(socket).await?),
        Target::Driver(_) => None,
    };
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = match target {
        Target::Daemon { pid, .. } => Some(tokio::spawn(peak_rss(*pid, sampling.clone()))),
        Target::Driver(_) => None,
    };
    start.deadline().await;
    let started = *start
        .at
        .get()
        .expect("set by the first to pass the barrier");
    let cpu_before = cpu_time(qemu)?;
    let tallies = tasks.join_all().await;
    let elapsed = started.elapsed();
    let qemu_cpu = cpu_time(qemu)? - cpu_before;
    sampling.store(false, Ordering::Relaxed);
    let rss_peak_kib = match sampler {
        Some(sampler) => Some(sampler.await?),
        None => None,
    };
    let captures = match (target, captures_before) {
        (Target::Daemon { socket, .. }, Some(before)) => Some(captures(socket).await? - before),
        _ => None,
    };
    let mut latencies = Samples::default();
    let mut errors = 0;
    for tally in tallies {
        errors += tally.errors;
        for latency in tally.latencies {
            latencies.push(latency);
        }
    }
    // Let the last level's stragglers and closed connections settle before the next.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Level {
        clients,
        latencies,
        errors,
        elapsed,
        captures,
        qemu_cpu,
        rss_peak_kib,
    })
}

/// Takes one request from the level's `budget`; `false` once it is spent.
fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// One viewer of the daemon: a keep-alive connection, screenshots until the deadline.
async fn http_client(socket: PathBuf, start: Arc<Start>, budget: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    let mut connection = Connection::open(&socket).await.ok();
    let deadline = start.deadline().await;
    while Instant::now() < deadline && take(&budget) {
        let began = Instant::now();
        let open = match connection.take() {
            Some(open) => Some(open),
            None => Connection::open(&socket).await.ok(),
        };
        let Some(mut open) = open else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, open.exchange("GET", SCREENSHOT, None));
        match reply.await {
            Ok(Ok(reply)) => {
                if reply.status == 200 && reply.body.starts_with(PNG_MAGIC) {
                    tally.latencies.push(began.elapsed());
                } else {
                    tally.errors += 1;
                }
                connection = Some(open);
            }
            // A broken or stuck connection: count it, and open another.
            Ok(Err(_)) | Err(_) => tally.errors += 1,
        }
    }
    tally
}

/// One viewer in the baseline: a capture of its own for every request.
async fn driver_client(vm: Arc<QemuInstance>, start: Arc<Start>, budget: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    let options = ScreenshotOptions::default();
    let deadline = start.deadline().await;
    while Instant::now() < deadline && take(&budget) {
        let began = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, vm.console_screenshot(&options)).await {
            Ok(Ok(shot)) if shot.png.starts_with(PNG_MAGIC) => {
                tally.latencies.push(began.elapsed());
            }
            _ => tally.errors += 1,
        }
    }
    tally
}

/// The highest VmRSS of process `pid`, sampled every 50 ms while `sampling` holds.
async fn peak_rss(pid: u32, sampling: Arc<AtomicBool>) -> u64 {
    let mut peak = 0;
    while sampling.load(Ordering::Relaxed) {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak.max(rss_kib(pid).unwrap_or(0))
}

/// Process `pid`'s resident memory, in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Process `pid`'s CPU time, user and system, all threads (`utime + stime` of
/// `/proc/PID/stat`): the time QEMU spends outside the guest, `screendump` included.
fn cpu_time(pid: i32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces; the fields after it may not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("a /proc stat line without a command name")?
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3) at index 0.
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|&ticks| ticks > 0)
        .ok_or("no clock tick rate")?;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The pid of the QEMU whose pid file lies under `dir`.
fn find_qemu_pid(dir: &Path) -> Option<i32> {
    if let Some(pid) = vgashot_qemu_process::read_pid_file(dir) {
        return Some(pid);
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .find_map(|path| find_qemu_pid(&path))
}

/// The release daemon binary, where `cargo build --release -p vgashot` puts it.
fn daemon_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("release").join("vgashot")
}

/// The daemon, over a directory of its own; dropping it kills the daemon and its VMs.
struct Daemon {
    dir: TempDir,
    /// The image directory the daemon allows, outside `dir`.
    images: TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `binary daemon` over a new temporary `VGASHOT_DIR`.
    fn spawn(binary: &Path) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let images = tempfile::tempdir()?;
        let child = Command::new(binary)
            .arg("daemon")
            .arg("--image-dir")
            .arg(images.path())
            .env("VGASHOT_DIR", dir.path())
            .env("VGASHOT_LOG", "warn")
            .env_remove("VGASHOT_HTTPS_ADDRESS")
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Self {
            dir,
            images,
            child: Some(child),
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("unix.socket")
    }

    fn pid(&self) -> Result<u32> {
        Ok(self.child.as_ref().ok_or("the daemon is not running")?.id())
    }

    /// Waits until `GET /1.0` answers (or the daemon exits, or 20 s pass).
    async fn wait_until_serving(&mut self) -> Result {
        let started = Instant::now();
        loop {
            if call(&self.socket(), "GET", "/1.0", None).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("the daemon exited: {status}").into());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("the daemon never answered on its socket".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the daemon with SIGTERM, which leaves its VMs running, and waits for it.
    async fn terminate(&mut self) -> Result {
        let mut child = self.child.take().ok_or("the daemon is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return match status.success() {
                    true => Ok(()),
                    false => Err(format!("the daemon exited with {status}").into()),
                };
            }
            if started.elapsed() > Duration::from_secs(20) {
                self.child = Some(child);
                return Err("the daemon did not stop within 20 s of SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        vgashot_qemu_process::testing::kill_detached_under(&self.dir.path().join("run"));
    }
}

/// Polls the screenshot until it has the counter's size (QEMU shows a placeholder before).
async fn wait_for_counter(socket: &Path) -> Result {
    let started = Instant::now();
    loop {
        let mut connection = Connection::open(socket).await?;
        let reply = connection.exchange("GET", SCREENSHOT, None).await?;
        if reply.status == 200 && png_size(&reply.body) == Some(Fixture::Counter.expected_size()) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the counter never appeared on the VM's screen".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PNG's width and height, from its `IHDR` chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if !png.starts_with(PNG_MAGIC) || png.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let number = |at: usize| Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?));
    Some((number(16)?, number(20)?))
}

/// Sets the VM's `console.screenshot.min_interval`, keeping the rest of its configuration.
async fn set_min_interval(socket: &Path, value: &str) -> Result {
    let instance = call(socket, "GET", &format!("/1.0/instances/{VM}"), None).await?;
    let mut config = instance["config"].clone();
    config["console.screenshot.min_interval"] = json!(value);
    let path = format!("/1.0/instances/{VM}");
    call(socket, "PATCH", &path, Some(&json!({"config": config}))).await?;
    Ok(())
}

/// `vgashot_screenshot_captures_total` of the VM, from `GET /1.0/metrics`.
async fn captures(socket: &Path) -> Result<u64> {
    let reply = Connection::open(socket)
        .await?
        .exchange("GET", "/1.0/metrics", None)
        .await?;
    let text = String::from_utf8(reply.body)?;
    let prefix = format!("vgashot_screenshot_captures_total{{project=\"default\",name=\"{VM}\"}} ");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .ok_or_else(|| format!("no {prefix}in the metrics"))?;
    Ok(value.trim().parse()?)
}

/// Sends a request that answers a sync envelope, or an operation which is then waited for;
/// answers the metadata.
async fn call(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let reply = Connection::open(socket)
        .await?
        .exchange(method, path, body)
        .await?;
    let mut envelope: Value = serde_json::from_slice(&reply.body)?;
    if envelope["type"] == "async" {
        let operation = envelope["operation"].as_str().unwrap_or_default();
        let wait = format!("{operation}/wait?timeout=120");
        let reply = Connection::open(socket)
            .await?
            .exchange("GET", &wait, None)
            .await?;
        envelope = serde_json::from_slice(&reply.body)?;
    }
    match envelope["type"].as_str() {
        Some("sync") if envelope["status_code"] == 200 || envelope["status_code"].is_null() => {
            Ok(envelope["metadata"].clone())
        }
        _ => Err(format!("{method} {path} failed: {envelope}").into()),
    }
}

/// A reply read whole.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// One HTTP/1.1 keep-alive connection to the daemon's Unix socket: the smallest client that
/// does the job, so the load generator spends the shared cores on requests rather than on
/// itself. Errors are `io::Error` (`Send`, unlike the crate's `Result`), for spawned clients.
struct Connection {
    stream: BufReader<UnixStream>,
}

impl Connection {
    async fn open(socket: &Path) -> io::Result<Self> {
        Ok(Self {
            stream: BufReader::new(UnixStream::connect(socket).await?),
        })
    }

    /// Sends one request and reads its reply (`Content-Length` or chunked).
    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> io::Result<Reply> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: vgashot\r\n");
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.get_mut().write_all(request.as_bytes()).await?;

        let status_line = self.line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| io::Error::other(format!("a bad status line: {status_line:?}")))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = self.line().await?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io::Error::other(format!("a bad chunk size: {size:?}")))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                self.stream.read_exact(&mut body[at..]).await?;
                self.line().await?;
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.stream.read_exact(&mut body).await?;
        }
        Ok(Reply { status, body })
    }

    /// One line of the reply's head, without its line ending.
    async fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
