//! A real Linux guest (`crates/linux-guest`: Debian's kernel and busybox) under the real daemon,
//! booted directly from `vgashot.boot.kernel`, `vgashot.boot.initrd` and `vgashot.boot.cmdline`:
//! its console log shows the init's known lines, its screen is a framebuffer console with text
//! on it, and on request it panics or powers itself off, which listeners of the lifecycle events
//! hear with the reason.
//!
//! The guest is prepared once per test binary in the cache under `target/linux-guest/` (the
//! first run downloads two packages with `apt-get download`), then copied into a directory of
//! its own per test, apart from the daemon's directory, as an image directory would be. Where
//! the guest cannot be prepared the tests are skipped, except on CI and under `cargo xtask test`
//! (`VGASHOT_REQUIRE_LINUX_GUEST`), where they fail.
//!
//! The VMs run under TCG unless `VGASHOT_ACCEL` says otherwise: on this project's machines
//! `/dev/kvm` is nested virtualisation in which the kernel does not reach its first line in
//! 4 minutes, where TCG takes it to the ready line in about 3 seconds (framebuffer console) or 7
//! (text console), several times that while the machine is busy.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::lifecycle::{LifecycleListener, pinned_last_screen};
use support::terminal::{Terminal, incus_command};
use support::{Daemon, decode_png, json};
use vgashot_linux_guest::{
    BootOptions, Console, KERNEL_LINE_PREFIX, LinuxGuest, MIN_MEMORY_MIB, PANIC_LINE,
    POWEROFF_LINE, READY_LINE,
};

/// How long a boot, or a panic, may take on a loaded 2-core machine under TCG (3-35 s
/// measured), yet far below a hang.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// The guests' memory: some room above the least they boot with.
const GUEST_MEMORY_MIB: u32 = 128;
const _: () = assert!(GUEST_MEMORY_MIB >= MIN_MEMORY_MIB);
/// What the kernel prints when `/init` panics it through sysrq.
const KERNEL_PANIC_LINE: &str = "Kernel panic - not syncing: sysrq triggered crash";

/// The guest, prepared once for every test of this binary, or `None` where they may be skipped.
fn prepared() -> Option<&'static LinuxGuest> {
    static GUEST: OnceLock<Result<LinuxGuest, String>> = OnceLock::new();
    let prepared = GUEST.get_or_init(|| {
        LinuxGuest::prepare(&LinuxGuest::default_cache_dir()).map_err(|error| {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        })
    });
    match prepared {
        Ok(guest) => Some(guest),
        Err(error) => {
            support::skip_unless_required(
                "VGASHOT_REQUIRE_LINUX_GUEST",
                &format!("the Linux guest ({error})"),
            );
            None
        }
    }
}

/// A daemon, and the guest (with the kernel for `console`) copied into the daemon's image
/// directory.
async fn daemon_and_guest(console: Console) -> Option<(Daemon, LinuxGuest)> {
    let guest = prepared()?;
    let accel = std::env::var("VGASHOT_ACCEL").unwrap_or_else(|_| "tcg".to_owned());
    let daemon = Daemon::start_with_env(&[("VGASHOT_ACCEL", &accel)]).await?;
    // The kernel and initrd go where the daemon takes images from.
    let guest = guest.copy_to(daemon.images.path(), console).unwrap();
    Some((daemon, guest))
}

/// Creates and starts VM `name` booting `guest` with `options`, [`GUEST_MEMORY_MIB`] and no
/// disk.
async fn start_guest(daemon: &Daemon, name: &str, guest: &LinuxGuest, options: &BootOptions) {
    let body = json!({
        "name": name,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": {
            "limits.memory": format!("{GUEST_MEMORY_MIB}MiB"),
            "vgashot.boot.kernel": guest.kernel(options.console),
            "vgashot.boot.initrd": guest.initrd(),
            "vgashot.boot.cmdline": guest.cmdline(options),
        },
        "devices": {},
        "start": true,
    });
    daemon.operation("POST", "/1.0/instances", Some(body)).await;
}

/// Polls the console log (the serial port) until it holds every one of `lines`; returns it.
async fn wait_for_console(daemon: &Daemon, name: &str, lines: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let reply = daemon
            .request("GET", &format!("/1.0/instances/{name}/console"), None)
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let log = String::from_utf8_lossy(&reply.body).into_owned();
        if lines.iter().all(|line| log.contains(line)) {
            return log;
        }
        assert!(
            started.elapsed() < BOOT_DEADLINE,
            "{name}'s console never showed all of {lines:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `GET /1.0/instances/NAME/state` until its status is `status`; returns the state.
async fn wait_for_status(daemon: &Daemon, name: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = daemon
            .request("GET", &format!("/1.0/instances/{name}/state"), None)
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let state = json(&reply)["metadata"].clone();
        if state["status"] == status {
            return state;
        }
        assert!(
            started.elapsed() < BOOT_DEADLINE,
            "{name} never became {status}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The share of pixels of an RGB picture that are not the colour of its first pixel.
fn lit_share(rgb: &[u8]) -> f64 {
    let background = &rgb[..3];
    let pixels = rgb.chunks_exact(3);
    let total = pixels.len();
    let lit = pixels.filter(|pixel| pixel != &background).count();
    lit as f64 / total as f64
}

/// Boots the guest with `console`, checks its console log, and polls its screen until it is
/// `size` with more than `lit` of its pixels lit (text on it).
async fn boots_to(console: Console, size: (u32, u32), lit: f64) {
    let Some((daemon, guest)) = daemon_and_guest(console).await else {
        return;
    };
    let options = BootOptions {
        console,
        ..BootOptions::default()
    };
    let started = Instant::now();
    start_guest(&daemon, "linux", &guest, &options).await;
    let kernel_line = format!("{KERNEL_LINE_PREFIX}{}", guest.release());
    let log = wait_for_console(&daemon, "linux", &[&kernel_line, READY_LINE]).await;
    eprintln!("{console:?}: ready {:?} after the start", started.elapsed());
    // The kernel's own messages are there too, and the kernel line comes before the ready one.
    assert!(log.contains("Linux version "), "{log}");
    assert!(log.find(&kernel_line) < log.find(READY_LINE), "{log}");
    assert!(
        !log.contains("cannot load"),
        "a module failed to load:\n{log}"
    );

    let started = Instant::now();
    loop {
        let shot = daemon
            .request("GET", "/1.0/instances/linux/console?type=vga", None)
            .await;
        assert_eq!(shot.status, 200, "{:?}", shot.body);
        let (width, height, rgb) = decode_png(&shot.body);
        let share = lit_share(&rgb);
        if (width, height) == size && share > lit {
            break;
        }
        assert!(
            started.elapsed() < BOOT_DEADLINE,
            "the screen never became the {console:?} console: {width}x{height}, {share:.4} lit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = wait_for_status(&daemon, "linux", "Running").await;
    assert_eq!(state["status_code"], 103);
}

/// fbcon on the bochs driver: QEMU's std VGA at its EDID's 1280x800; the boot messages cover a
/// few percent of it.
#[tokio::test]
async fn boots_to_a_framebuffer_console_with_the_known_lines() {
    boots_to(Console::Framebuffer, (1280, 800), 0.01).await;
}

/// vgacon: 80x25 cells of 9x16 pixels; a screen full of boot messages lights far more than
/// the firmware's two lines (0.5% measured; a full screen about 12%).
#[tokio::test]
async fn boots_to_a_text_console_with_the_known_lines() {
    boots_to(Console::Text, (720, 400), 0.05).await;
}

#[tokio::test]
async fn panics_on_request() {
    let Some((daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    let options = BootOptions {
        panic_after: Some(Duration::from_secs(1)),
        ..BootOptions::default()
    };
    start_guest(&daemon, "doomed", &guest, &options).await;
    let log = wait_for_console(&daemon, "doomed", &[PANIC_LINE, KERNEL_PANIC_LINE]).await;
    assert!(log.find(READY_LINE) < log.find(PANIC_LINE), "{log}");
}

/// What a user sees of a panicked guest: the guest's pvpanic driver reports the panic through
/// the VM's pvpanic device (`GUEST_PANICKED`), QEMU pauses (`-action panic=pause`), and the
/// daemon ends it after keeping its last screen: an `instance-panicked` lifecycle event with the
/// reason, and the state `Error`, with no QEMU left.
#[tokio::test]
async fn a_panicked_guest_is_an_error() {
    let Some((daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    let mut listener = LifecycleListener::open(&daemon).await;
    let options = BootOptions {
        panic_after: Some(Duration::ZERO),
        ..BootOptions::default()
    };
    start_guest(&daemon, "panicked", &guest, &options).await;
    let events = listener
        .until("panicked", "instance-panicked", BOOT_DEADLINE)
        .await;
    let actions: Vec<_> = events.iter().map(|event| event["action"].clone()).collect();
    assert_eq!(
        actions,
        ["instance-created", "instance-started", "instance-panicked"]
    );
    let (url, pinned) = pinned_last_screen(
        &daemon,
        &events[2]["context"],
        ("the guest kernel panicked", "Error"),
        "panic",
    )
    .await;
    let state = wait_for_status(&daemon, "panicked", "Error").await;
    assert_eq!(state["status_code"], 112, "{state}");
    assert_eq!(state["pid"], 0, "QEMU was ended: {state}");
    // What the guest printed before it died is in the console log.
    wait_for_console(&daemon, "panicked", &[PANIC_LINE, KERNEL_PANIC_LINE]).await;

    // The pinned last screen was taken while QEMU waited, paused, after the panic, so it shows
    // more of the screen written (the panic's text) than the screens recorded before.
    let lit = |reply: support::Reply| {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        lit_share(&decode_png(&reply.body).2)
    };
    let last = lit(daemon.request("GET", &format!("{url}/image"), None).await);
    let history = json(
        &daemon
            .request(
                "GET",
                "/1.0/instances/panicked/screenshots?recursion=1&reason=change",
                None,
            )
            .await,
    );
    let before = history["metadata"]
        .as_array()
        .expect("the recorded screens");
    // The recorder may have caught the panic's screen too, as a change, before QEMU was ended:
    // the same pixels as the pinned one. Every other screen of the boot shows less.
    let boot: Vec<_> = before
        .iter()
        .filter(|shot| shot["etag"] != pinned["etag"])
        .collect();
    assert!(
        !boot.is_empty(),
        "the boot's screens were recorded: {before:?}"
    );
    for shot in boot {
        let image = format!("/1.0/instances/panicked/screenshots/{}/image", shot["id"]);
        let earlier = lit(daemon.request("GET", &image, None).await);
        assert!(
            earlier < last,
            "{shot}: {earlier} of its pixels lit, the last {last}"
        );
    }
}

/// A guest that powers itself off: QEMU stays (`-action shutdown=pause`) until the daemon has
/// kept the last screen and ends it; an `instance-shutdown` lifecycle event with the reason, and
/// the state `Stopped`.
#[tokio::test]
async fn a_guest_that_powers_off_is_stopped_with_a_shutdown_event() {
    let Some((daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    let mut listener = LifecycleListener::open(&daemon).await;
    let options = BootOptions {
        poweroff_after: Some(Duration::ZERO),
        ..BootOptions::default()
    };
    start_guest(&daemon, "leaving", &guest, &options).await;
    let events = listener
        .until("leaving", "instance-shutdown", BOOT_DEADLINE)
        .await;
    pinned_last_screen(
        &daemon,
        &events.last().unwrap()["context"],
        ("the guest shut down", "Stopped"),
        "shutdown",
    )
    .await;
    let state = wait_for_status(&daemon, "leaving", "Stopped").await;
    assert_eq!(state["pid"], 0, "QEMU was ended: {state}");
    wait_for_console(&daemon, "leaving", &[POWEROFF_LINE]).await;
}

/// How long the serial shell may take to answer a typed line on a loaded machine under TCG.
const SHELL_DEADLINE: Duration = Duration::from_secs(30);

/// What `incus console` prints once it is attached.
const ATTACHED: &str = "To detach from the console, press: <ctrl>+a q";

/// `incus console NAME` in a terminal, attached.
fn attach_console(incus: &std::path::Path, daemon: &Daemon, args: &[&str]) -> Terminal {
    let terminal = Terminal::spawn(incus_command(incus, daemon, args));
    terminal.wait_for(ATTACHED, SHELL_DEADLINE);
    terminal
}

/// The real `incus console` in a pty reaches the guest's serial shell: what the typist types
/// runs and its output comes back; a second client watches the same output and its typing is
/// dropped; `--force` takes the keyboard; ctrl+a q detaches; the console log has it all.
#[tokio::test]
async fn incus_console_types_into_the_serial_shell() {
    let Some(incus) = support::incus() else {
        return;
    };
    let Some((daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    let options = BootOptions {
        serial_shell: true,
        ..BootOptions::default()
    };
    start_guest(&daemon, "shell", &guest, &options).await;
    wait_for_console(&daemon, "shell", &[READY_LINE]).await;

    let mut typist = attach_console(&incus, &daemon, &["console", "shell"]);
    // `$((6*7))` in the echoed command, `42` only in what the shell runs.
    typist.type_in(b"echo typed-$((6*7))\r");
    typist.wait_for("typed-42", SHELL_DEADLINE);

    let mut watcher = attach_console(&incus, &daemon, &["console", "shell"]);
    watcher.wait_for(vgashot_rest::console::WATCHER_NOTICE.trim(), SHELL_DEADLINE);
    watcher.type_in(b"echo watcher-$((2*3))\r");
    // The serial line is in order: had the watcher's line reached the shell, its answer would
    // come before this one.
    typist.type_in(b"echo typist-$((3*3))\r");
    for terminal in [&typist, &watcher] {
        let output = terminal.wait_for("typist-9", SHELL_DEADLINE);
        assert!(!output.contains("watcher-6"), "{output}");
    }

    let mut forced = attach_console(&incus, &daemon, &["console", "shell", "--force"]);
    forced.type_in(b"echo forced-$((4*4))\r");
    forced.wait_for("forced-16", SHELL_DEADLINE);
    typist.wait_for("forced-16", SHELL_DEADLINE);
    typist.type_in(b"echo old-typist-$((5*5))\r");
    forced.type_in(b"echo forced-again-$((7*7))\r");
    let output = typist.wait_for("forced-again-49", SHELL_DEADLINE);
    assert!(!output.contains("old-typist-25"), "{output}");

    for terminal in [&mut forced, &mut watcher, &mut typist] {
        terminal.type_keys(b"\x01q", SHELL_DEADLINE);
        let status = terminal.wait_exit(SHELL_DEADLINE);
        assert!(status.success(), "{status}: {}", terminal.output());
    }
    // The bridge kept the log, and the log is the ring's again once everyone left.
    let log = wait_for_console(&daemon, "shell", &["typed-42", "typist-9", "forced-16"]).await;
    assert!(!log.contains("watcher-6"), "{log}");
    let mut again = attach_console(&incus, &daemon, &["console", "shell"]);
    again.type_in(b"echo again-$((8*8))\r");
    again.wait_for("again-64", SHELL_DEADLINE);
    again.type_keys(b"\x01q", SHELL_DEADLINE);
    assert!(again.wait_exit(SHELL_DEADLINE).success());
}

/// `wake=true` shows a blanked screen again: the guest blanks its console after a second
/// without input (`consoleblank=1`), its screenshot is then black, and a woken one has text.
#[tokio::test]
async fn a_blanked_screen_wakes_for_its_screenshot() {
    let Some((daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    let options = BootOptions {
        console_blank: Some(1),
        ..BootOptions::default()
    };
    start_guest(&daemon, "sleepy", &guest, &options).await;
    wait_for_console(&daemon, "sleepy", &[READY_LINE]).await;
    let share = |path: &'static str| {
        let daemon = &daemon;
        async move {
            let shot = daemon.request("GET", path, None).await;
            assert_eq!(shot.status, 200, "{:?}", shot.body);
            lit_share(&decode_png(&shot.body).2)
        }
    };
    let started = Instant::now();
    while share("/1.0/instances/sleepy/console?type=vga").await > 0.0 {
        assert!(
            started.elapsed() < BOOT_DEADLINE,
            "the screen never blanked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let woken = share("/1.0/instances/sleepy/console?type=vga&wake=true").await;
    assert!(
        woken > 0.01,
        "the woken screen has {woken:.4} of its pixels lit"
    );
}

/// A daemon restarted while a console was attached gives the serial port back to the log when
/// it re-attaches, and consoles work again.
#[tokio::test]
async fn a_console_survives_a_daemon_restart() {
    let Some(incus) = support::incus() else {
        return;
    };
    let Some((mut daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    let options = BootOptions {
        serial_shell: true,
        ..BootOptions::default()
    };
    start_guest(&daemon, "shell", &guest, &options).await;
    wait_for_console(&daemon, "shell", &[READY_LINE]).await;
    let mut before = attach_console(&incus, &daemon, &["console", "shell"]);
    before.type_in(b"echo before-$((2*21))\r");
    before.wait_for("before-42", SHELL_DEADLINE);

    daemon.terminate();
    assert!(!before.wait_exit(SHELL_DEADLINE).success());
    daemon.spawn().await;
    wait_for_status(&daemon, "shell", "Running").await;
    // The log drains the ring again (a port left on the closed socket would be a 500 here).
    wait_for_console(&daemon, "shell", &["before-42"]).await;
    let mut after = attach_console(&incus, &daemon, &["console", "shell"]);
    after.type_in(b"echo after-$((3*21))\r");
    after.wait_for("after-63", SHELL_DEADLINE);
    after.type_keys(b"\x01q", SHELL_DEADLINE);
    assert!(after.wait_exit(SHELL_DEADLINE).success());
    wait_for_console(&daemon, "shell", &["before-42", "after-63"]).await;
}

/// A renamed instance keeps its console log, and its old name is free.
#[tokio::test]
async fn a_rename_keeps_the_console_log() {
    let Some((daemon, guest)) = daemon_and_guest(Console::Framebuffer).await else {
        return;
    };
    start_guest(&daemon, "before", &guest, &BootOptions::default()).await;
    wait_for_console(&daemon, "before", &[READY_LINE]).await;
    let running = daemon
        .request(
            "POST",
            "/1.0/instances/before",
            Some(json!({"name": "after"})),
        )
        .await;
    assert_eq!(running.status, 400);
    assert_eq!(
        json(&running)["error"],
        "Renaming of running instance not allowed"
    );
    let stop = json!({"action": "stop", "force": true});
    daemon
        .operation("PUT", "/1.0/instances/before/state", Some(stop))
        .await;
    daemon
        .operation(
            "POST",
            "/1.0/instances/before",
            Some(json!({"name": "after"})),
        )
        .await;
    let log = daemon
        .request("GET", "/1.0/instances/after/console", None)
        .await;
    assert!(String::from_utf8_lossy(&log.body).contains(READY_LINE));
    let gone = daemon.request("GET", "/1.0/instances/before", None).await;
    assert_eq!(gone.status, 404);
}
