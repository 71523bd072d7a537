//! Transitions a real Linux guest causes (`crates/linux-guest`): a kernel panic, reported through
//! the pvpanic device, and the guest powering itself off. QEMU stays alive, paused, after
//! either, so the transition carries the last screen; for the panic, the text console shows the
//! panic's lines, which the screen before it did not.
//!
//! The guests run under TCG (`VGASHOT_ACCEL`, set before anything else runs, unless given): on
//! this project's machines `/dev/kvm` is nested virtualisation in which the kernel does not boot
//! in minutes. One test function, so the variable is set while no other thread exists.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Harness;
use tokio::sync::broadcast;
use vgashot_instance_drivers::{
    Instance, InstanceStatus, QemuInstance, Transition, TransitionKind,
};
use vgashot_linux_guest::{
    BootOptions, Console, LinuxGuest, PANIC_LINE, POWEROFF_LINE, READY_LINE,
};
use vgashot_screens::{FrameSource, ScreenId};

/// How long a boot to the ready line and the panic or power-off after it may take on a loaded
/// 2-core machine under TCG (7-35 s measured for the text console), yet far below a hang.
const GUEST_DEADLINE: Duration = Duration::from_secs(120);
/// How long after boot the panicking guest panics: long enough that the screen read once its
/// ready line is on the serial console is still the one before the panic on a loaded machine
/// (3 s was not: the panic's text was already drawn when it was read).
const PANIC_AFTER: Duration = Duration::from_secs(12);
/// Guest memory: some room above the least the guest boots with.
const GUEST_MEMORY: &str = "128MiB";
/// The text console's character cell height in pixels (80x25 cells on a 720x400 screen).
const CELL_HEIGHT: usize = 16;

#[test]
fn a_guest_that_panics_or_powers_off_leaves_its_last_screen() {
    if std::env::var_os("VGASHOT_ACCEL").is_none() {
        // SAFETY: this is the binary's only test, and it sets the variable before it starts any
        // thread (the runtime below), so nothing reads the environment meanwhile.
        unsafe { std::env::set_var("VGASHOT_ACCEL", "tcg") };
    }
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(panic_and_poweroff());
}

async fn panic_and_poweroff() {
    let Some(harness) = Harness::new().await else {
        return;
    };
    let Some(guest) = prepared(&harness) else {
        return;
    };
    let mut transitions = harness.driver.transitions();
    let quiet = |panic_after, poweroff_after| BootOptions {
        console: Console::Text,
        panic_after,
        poweroff_after,
        // The screen keeps the known lines and what the kernel says at its worst: the panic.
        quiet: true,
        no_tty_shell: true,
        ..BootOptions::default()
    };
    // Both boot at once; each test of the pair waits for its own VM's transitions.
    let panicking = boot(&harness, &guest, "panics", &quiet(Some(PANIC_AFTER), None)).await;
    let powering_off = boot(
        &harness,
        &guest,
        "powers-off",
        &quiet(None, Some(Duration::ZERO)),
    )
    .await;

    // The screen once the guest is ready, before it panics.
    wait_for_console(&panicking, READY_LINE).await;
    let before = panicking.frame(&ScreenId::default()).await.unwrap().frame;
    assert_eq!((before.width(), before.height()), (720, 400));

    let mut ended = Vec::new();
    let since = Instant::now();
    while ended.len() < 2 {
        assert!(since.elapsed() < GUEST_DEADLINE, "only {ended:?} ended");
        let transition = next(&mut transitions).await;
        if transition.kind != TransitionKind::Started {
            ended.push(transition);
        }
    }
    let by_name = |name: &str| ended.iter().find(|t| t.name == name).unwrap().clone();

    let panicked = by_name("panics");
    assert_eq!(panicked.kind, TransitionKind::GuestPanicked);
    assert_eq!(panicked.status, InstanceStatus::Error);
    assert_eq!(panicked.reason, "the guest kernel panicked");
    let last = panicked
        .final_frame
        .expect("the panic left QEMU to capture");
    assert_eq!((last.frame.width(), last.frame.height()), (720, 400));
    let (rows_before, rows_after) = (
        text_rows(before.rgb(), 720),
        text_rows(last.frame.rgb(), 720),
    );
    // "vgashot guest panics now", "Kernel panic - not syncing: ..." and its end line at least.
    assert!(
        rows_after >= rows_before + 2,
        "{rows_before} text rows before the panic, {rows_after} on the last screen"
    );
    let state = panicking.state();
    assert_eq!(state.status, InstanceStatus::Error);
    assert_eq!(state.reason.as_deref(), Some("the guest kernel panicked"));
    assert_eq!(state.pid, None, "QEMU was ended after the capture");
    // What the guest printed last was kept before QEMU ended.
    let log = String::from_utf8_lossy(&panicking.console_log().await.unwrap()).into_owned();
    assert!(log.contains(PANIC_LINE), "{log}");
    assert!(log.contains("Kernel panic - not syncing"), "{log}");

    let powered_off = by_name("powers-off");
    assert_eq!(powered_off.kind, TransitionKind::GuestShutdown);
    assert_eq!(powered_off.status, InstanceStatus::Stopped);
    assert_eq!(powered_off.reason, "the guest shut down");
    let last = powered_off
        .final_frame
        .expect("the power-off left QEMU to capture");
    assert_eq!((last.frame.width(), last.frame.height()), (720, 400));
    let state = powering_off.state();
    assert_eq!((state.status, state.pid), (InstanceStatus::Stopped, None));
    let log = String::from_utf8_lossy(&powering_off.console_log().await.unwrap()).into_owned();
    assert!(log.contains(POWEROFF_LINE), "{log}");
}

/// The guest, copied into the harness's image directory, or `None` where it may be skipped.
fn prepared(harness: &Harness) -> Option<LinuxGuest> {
    match LinuxGuest::prepare(&LinuxGuest::default_cache_dir()) {
        Ok(guest) => {
            let images = harness.dir.path().join("images");
            std::fs::create_dir_all(&images).unwrap();
            Some(guest.copy_to(&images, Console::Text).unwrap())
        }
        Err(error) => {
            let required = ["CI", "VGASHOT_REQUIRE_LINUX_GUEST"]
                .iter()
                .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
            assert!(!required, "missing: the Linux guest ({error})");
            eprintln!("skipped: missing the Linux guest ({error})");
            None
        }
    }
}

/// Creates and starts VM `name` booting `guest` with `options`.
async fn boot(
    harness: &Harness,
    guest: &LinuxGuest,
    name: &str,
    options: &BootOptions,
) -> Arc<QemuInstance> {
    let kernel = guest.kernel(options.console).display().to_string();
    let initrd = guest.initrd().display().to_string();
    let cmdline = guest.cmdline(options);
    harness
        .started(
            name,
            &[
                ("limits.memory", GUEST_MEMORY),
                ("vgashot.boot.kernel", &kernel),
                ("vgashot.boot.initrd", &initrd),
                ("vgashot.boot.cmdline", &cmdline),
            ],
        )
        .await
}

/// Polls `vm`'s console log until it holds `line`.
async fn wait_for_console(vm: &QemuInstance, line: &str) {
    let since = Instant::now();
    loop {
        let log = vm.console_log().await.unwrap();
        if String::from_utf8_lossy(&log).contains(line) {
            return;
        }
        assert!(
            since.elapsed() < GUEST_DEADLINE,
            "{} never printed {line:?}",
            vm.name()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next transition, within [`GUEST_DEADLINE`].
async fn next(transitions: &mut broadcast::Receiver<Transition>) -> Transition {
    tokio::time::timeout(GUEST_DEADLINE, transitions.recv())
        .await
        .expect("no transition in time")
        .expect("the transitions channel works")
}

/// How many of a text screen's character rows have any pixel unlike the first one (text).
fn text_rows(rgb: &[u8], width: usize) -> usize {
    let background = &rgb[..3];
    rgb.chunks(width * 3 * CELL_HEIGHT)
        .filter(|row| row.chunks_exact(3).any(|pixel| pixel != background))
        .count()
}
