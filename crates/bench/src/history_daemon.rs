//! The screen history through the release daemon: what recording costs a VM whose screen is
//! still, and how many bytes an hour of history takes.
//!
//! How it measures:
//! 1. Starts the release daemon over a temporary directory ([`crate::daemon`]) and a VM
//!    showing a still picture (1024x768 bars).
//! 2. Idle cost: alternates windows of [`WINDOW`] with the VM's `console.history.enabled`
//!    `false` (the baseline) and `true`, [`IDLE_ROUNDS`] of each. Before a disabled window it
//!    waits until the screen's mirror, which the recorder's follower kept connected, has been
//!    let go ([`MIRROR_LINGER`] and a sweep); before an enabled one, [`FOLLOW_SETTLE`] for the
//!    recorder to follow the screen again. Over each window: the daemon's and QEMU's CPU time
//!    (utime + stime of each process) per wall-clock second, and the screenshots recorded.
//! 3. Bytes per hour, for SeaBIOS's text console and for `Fixture::Counter` (a screen that
//!    changes 18 times a second), one VM after the other: once the VM's first screenshot is
//!    recorded and its boot has settled (no screenshot for [`BYTES_SETTLE`], or
//!    [`BYTES_SETTLE_MAX`] passed: the counter never settles), the store's size (`page_count` times
//!    `page_size`, read through a read-only connection, so rows, indexes and the WAL's commits
//!    all count) is read at the start and the end of [`BYTES_WINDOW`], and the growth scaled to
//!    an hour. Meanwhile a client polls the plain screenshot once per `console.history.interval`
//!    and adds up the PNGs: what a monitor that saves every screenshot stores, the baseline.
//! 4. The daemon and every VM are killed on every exit path ([`Daemon`]'s `Drop`).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection as Sqlite, OpenFlags};
use vgashot_fixtures::Fixture;
use vgashot_instance_drivers::qemu::MIRROR_LINGER;

use crate::Result;
use crate::daemon::{
    Connection, Daemon, PNG_MAGIC, call, cpu_time, create_vm, find_qemu_pid, set_config,
    wait_for_size,
};
use crate::report::Section;

/// How long one idle window lasts: CPU time is counted in 10 ms ticks, so 10 s resolves a
/// thousandth of a core.
const WINDOW: Duration = Duration::from_secs(10);
/// The kernel's CPU accounting tick, in seconds (`CLK_TCK` is 100 on Linux).
const TICK: f64 = 0.01;
/// Idle windows of each kind.
const IDLE_ROUNDS: usize = 3;
/// After enabling the history: the recorder's sweep (1 s) and the mirror's first picture.
const FOLLOW_SETTLE: Duration = Duration::from_secs(3);
/// A bytes VM's boot has settled once this long passes without a screenshot recorded...
const BYTES_SETTLE: Duration = Duration::from_secs(5);
/// ...or this long after its first.
const BYTES_SETTLE_MAX: Duration = Duration::from_secs(15);
/// How long the store's growth is measured, then scaled to an hour.
const BYTES_WINDOW: Duration = Duration::from_secs(30);
/// The default `console.history.interval`, at which the baseline client polls.
const INTERVAL: Duration = Duration::from_secs(1);
/// The VM of the idle windows.
const STILL: &str = "still";
/// The still picture.
const STILL_FIXTURE: Fixture = Fixture::bars(1024, 768);

/// What the idle section measures.
const IDLE_INTRO: &str = "What recording costs a VM whose screen does not change: the release \
     daemon with one VM showing still 1024x768 bars and no viewer, `console.history.enabled` \
     `false` (the baseline: no follower, no mirror) against `true` (the recorder follows the \
     screen through QEMU's VNC mirror, which sends nothing while the screen is still), in \
     alternating 10 s windows, 3 of each, in the same run. Before each disabled window the \
     benchmark waits for the mirror to be let go (15 s after its last follower). CPU is utime + \
     stime of the daemon and of the VM's QEMU per wall-clock second, counted by the kernel in 10 \
     ms ticks (the ticks column: both sides' totals over their 30 s); with both sides a few \
     ticks, the ratio is that noise, and the figure that counts is the one above baseline. Goal: \
     an unchanging screen costs nothing above idle (within a tick per 10 s, 0.001 s/s, either \
     sign) and records no screenshot.";

/// What the bytes section measures.
const BYTES_INTRO: &str = "How fast the store grows with the default settings (a look a second, \
     PNG level 6, identical frames stored once): the release daemon's `history.sqlite` \
     (`page_count × page_size` through a read-only connection: frames, rows, indexes, the WAL's \
     commits), read at the start and end of a 30 s window once the VM's boot has settled (5 s without a \
     screenshot, at most 15 s) and scaled to an \
     hour (a short window through the real daemon, so the figure is an estimate: a page is 4 \
     KiB). Screens: SeaBIOS's text console (a blinking cursor, otherwise still) and \
     `Fixture::Counter` (changes 18 times a second, so every look is a new frame). Baseline: \
     the same screen polled once a second over the same window, every PNG kept, as a monitor \
     that stores its own timeline does. Ratio: the history's bytes over the baseline's.";

/// Measures both sections: the idle cost and the bytes per hour.
pub async fn measure() -> Result<(Section, Section)> {
    let daemon = Daemon::start().await?;
    let idle = idle_cost(&daemon).await?;
    let bytes = bytes_per_hour(&daemon).await?;
    Ok((idle, bytes))
}

/// CPU time and screenshots over the windows of one kind.
#[derive(Default)]
struct Windows {
    elapsed: Duration,
    daemon: Duration,
    qemu: Duration,
    recorded: usize,
}

impl Windows {
    fn per_second(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    fn total(&self) -> f64 {
        self.per_second(self.daemon + self.qemu)
    }
}

async fn idle_cost(daemon: &Daemon) -> Result<Section> {
    let socket = daemon.socket();
    create_vm(daemon, STILL, Some(STILL_FIXTURE), &[]).await?;
    wait_for_size(&socket, STILL, STILL_FIXTURE.expected_size()).await?;
    let run = daemon.dir.path().join("run");
    let qemu = find_qemu_pid(&run).ok_or("the VM wrote no pid file")?;
    let daemon_pid = i32::try_from(daemon.pid()?)?;
    let (mut disabled, mut enabled) = (Windows::default(), Windows::default());
    for round in 0..IDLE_ROUNDS {
        for (value, settle, windows) in [
            (
                "false",
                MIRROR_LINGER + Duration::from_secs(3),
                &mut disabled,
            ),
            ("true", FOLLOW_SETTLE, &mut enabled),
        ] {
            eprintln!("bench: history: idle round {round}, enabled {value}");
            set_config(&socket, STILL, "console.history.enabled", value).await?;
            tokio::time::sleep(settle).await;
            let recorded = screenshots(&socket, STILL).await?;
            let (daemon_before, qemu_before) = (cpu_time(daemon_pid)?, cpu_time(qemu)?);
            let started = Instant::now();
            tokio::time::sleep(WINDOW).await;
            windows.elapsed += started.elapsed();
            windows.daemon += cpu_time(daemon_pid)? - daemon_before;
            windows.qemu += cpu_time(qemu)? - qemu_before;
            windows.recorded += screenshots(&socket, STILL).await? - recorded;
        }
    }
    force_stop(&socket, STILL).await?;

    let mut section = Section::custom(
        "Screen history: an idle VM",
        IDLE_INTRO,
        &[
            "case",
            "seconds",
            "screenshots recorded",
            "daemon CPU s/s",
            "QEMU CPU s/s",
            "total s/s",
            "ticks",
            "above baseline s/s",
            "ratio",
        ],
    );
    let base = disabled.total();
    for (name, windows) in [
        ("history disabled (baseline)", &disabled),
        ("history enabled", &enabled),
    ] {
        let total = windows.total();
        section.push_cells(vec![
            name.to_owned(),
            format!("{:.0}", windows.elapsed.as_secs_f64()),
            windows.recorded.to_string(),
            format!("{:.4}", windows.per_second(windows.daemon)),
            format!("{:.4}", windows.per_second(windows.qemu)),
            format!("{total:.4}"),
            format!(
                "{:.0}",
                (windows.daemon + windows.qemu).as_secs_f64() / TICK
            ),
            format!("{:.4}", total - base),
            if base > 0.0 {
                format!("{:.3}", total / base)
            } else {
                "—".to_owned()
            },
        ]);
    }
    Ok(section)
}

async fn bytes_per_hour(daemon: &Daemon) -> Result<Section> {
    let socket = daemon.socket();
    let store = daemon.dir.path().join("history.sqlite");
    let mut section = Section::custom(
        "Screen history: bytes per hour",
        BYTES_INTRO,
        &[
            "screen",
            "window s",
            "screenshots recorded",
            "history MB/hour",
            "every PNG kept MB/hour (baseline)",
            "ratio",
        ],
    );
    let screens = [
        BytesScreen {
            title: "SeaBIOS text console 720x400",
            vm: "text",
            fixture: None,
            size: (720, 400),
        },
        BytesScreen {
            title: "counter 640x400, 18 changes a second",
            vm: "counter",
            fixture: Some(Fixture::Counter),
            size: Fixture::Counter.expected_size(),
        },
    ];
    for BytesScreen {
        title: screen,
        vm,
        fixture,
        size,
    } in screens
    {
        eprintln!("bench: history: bytes per hour of {vm}");
        create_vm(daemon, vm, fixture, &[]).await?;
        wait_for_size(&socket, vm, size).await?;
        wait_for_first_screenshot(&socket, vm).await?;
        wait_until_settled(&socket, vm).await?;
        let (rows_before, bytes_before) = (screenshots(&socket, vm).await?, store_bytes(&store)?);
        let started = Instant::now();
        let polled = poll_screenshots(&socket, vm, started + BYTES_WINDOW).await?;
        let elapsed = started.elapsed();
        let grown = store_bytes(&store)?.saturating_sub(bytes_before);
        let rows = screenshots(&socket, vm).await? - rows_before;
        force_stop(&socket, vm).await?;
        let per_hour = |bytes: u64| bytes as f64 / elapsed.as_secs_f64() * 3600.0 / 1e6;
        section.push_cells(vec![
            screen.to_owned(),
            format!("{:.0}", elapsed.as_secs_f64()),
            rows.to_string(),
            format!("{:.3}", per_hour(grown)),
            format!("{:.3}", per_hour(polled)),
            if polled > 0 {
                format!("{:.3}", grown as f64 / polled as f64)
            } else {
                "—".to_owned()
            },
        ]);
    }
    Ok(section)
}

/// A screen whose history's growth is measured.
struct BytesScreen {
    /// Its row's name.
    title: &'static str,
    /// The VM's name.
    vm: &'static str,
    /// What it boots (`None`: nothing, SeaBIOS's text console).
    fixture: Option<Fixture>,
    /// Its screen's size once the guest has set its mode.
    size: (u32, u32),
}

/// Stops the VM at once (its last screen is pinned into the history, after the window).
async fn force_stop(socket: &Path, vm: &str) -> Result {
    let body = serde_json::json!({"action": "stop", "force": true});
    call(
        socket,
        "PUT",
        &format!("/1.0/instances/{vm}/state"),
        Some(&body),
    )
    .await?;
    Ok(())
}

/// The number of screenshots in the VM's history (`GET .../screenshots`, recursion 0).
async fn screenshots(socket: &Path, vm: &str) -> Result<usize> {
    let list = call(
        socket,
        "GET",
        &format!("/1.0/instances/{vm}/screenshots"),
        None,
    )
    .await?;
    Ok(list.as_array().map_or(0, Vec::len))
}

/// Polls until the recorder has written the VM's first screenshot (at most 30 s).
async fn wait_for_first_screenshot(socket: &Path, vm: &str) -> Result {
    let started = Instant::now();
    while screenshots(socket, vm).await? == 0 {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("the recorder wrote no screenshot of {vm} in 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until [`BYTES_SETTLE`] passes without a new screenshot of the VM, at most
/// [`BYTES_SETTLE_MAX`].
async fn wait_until_settled(socket: &Path, vm: &str) -> Result {
    let started = Instant::now();
    let (mut count, mut since) = (screenshots(socket, vm).await?, Instant::now());
    while since.elapsed() < BYTES_SETTLE && started.elapsed() < BYTES_SETTLE_MAX {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = screenshots(socket, vm).await?;
        if now != count {
            (count, since) = (now, Instant::now());
        }
    }
    Ok(())
}

/// The baseline monitor: the VM's plain screenshot every [`INTERVAL`] until `deadline`;
/// answers the bytes of every PNG it got.
async fn poll_screenshots(socket: &Path, vm: &str, deadline: Instant) -> Result<u64> {
    let path = format!("/1.0/instances/{vm}/console?type=vga");
    let mut ticker = tokio::time::interval(INTERVAL);
    let mut connection = Connection::open(socket).await?;
    let mut bytes = 0;
    loop {
        ticker.tick().await;
        if Instant::now() >= deadline {
            return Ok(bytes);
        }
        let reply = connection.exchange("GET", &path, None).await?;
        if reply.status != 200 || !reply.body.starts_with(PNG_MAGIC) {
            return Err(format!("{vm}'s screenshot answered {}", reply.status).into());
        }
        bytes += reply.body.len() as u64;
    }
}

/// The store's size in bytes as a reader sees it: every page in use, the WAL's included.
fn store_bytes(path: &Path) -> Result<u64> {
    let store = Sqlite::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let pragma = |name: &str| -> Result<u64> {
        Ok(store.pragma_query_value(None, name, |row| row.get::<_, u64>(0))?)
    };
    Ok((pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?)
}
