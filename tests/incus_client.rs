//! The real `incus` command-line client (Debian's 6.0.4) drives the daemon through
//! `INCUS_SOCKET`, as the README tells people to.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::terminal::Terminal;
use support::{Daemon, decode_png, wait_for_picture};
use vgashot_fixtures::Fixture;

/// Runs `incus ARGS` against the daemon with a private configuration, and returns its output.
fn run(incus: &Path, daemon: &Daemon, args: &[&str]) -> Output {
    support::terminal::incus_command(incus, daemon, args)
        // `incus init` reads a YAML body from a standard input that is not a terminal.
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `incus ARGS`, failing the test when it fails; returns its standard output.
fn ok(incus: &Path, daemon: &Daemon, args: &[&str]) -> String {
    let output = run(incus, daemon, args);
    assert!(
        output.status.success(),
        "incus {}: {}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_incus_client_drives_the_daemon() {
    let Some(incus) = support::incus() else {
        return;
    };
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    wait_for_picture(&daemon, "v1", fixture).await;

    let list = ok(
        &incus,
        &daemon,
        &["list", "--format", "csv", "--columns", "nst"],
    );
    assert!(list.contains("v1,RUNNING,VIRTUAL-MACHINE"), "{list}");
    let info = ok(&incus, &daemon, &["info", "v1"]);
    assert!(
        info.contains("Name: v1") && info.contains("RUNNING"),
        "{info}"
    );

    // `incus monitor --type=screen` shows v1's screen as it is when it starts listening.
    let monitor = Terminal::spawn(support::terminal::incus_command(
        &incus,
        &daemon,
        &["monitor", "--type=screen", "--format=json"],
    ));
    let output = monitor.wait_for("\"type\":\"screen\"", Duration::from_secs(30));
    assert!(output.contains("\"name\":\"v1\""), "{output}");
    assert!(output.contains("\"width\":640"), "{output}");
    drop(monitor);

    ok(&incus, &daemon, &["init", "--empty", "--vm", "v2"]);
    // A stopped instance is renamed; a running one is refused with upstream's words.
    ok(&incus, &daemon, &["rename", "v2", "v3"]);
    let running = run(&incus, &daemon, &["rename", "v1", "v4"]);
    assert!(!running.status.success());
    assert!(
        String::from_utf8_lossy(&running.stderr)
            .contains("Renaming of running instance not allowed"),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    ok(&incus, &daemon, &["start", "v3"]);
    let list = ok(
        &incus,
        &daemon,
        &["list", "--format", "csv", "--columns", "ns"],
    );
    assert!(list.contains("v3,RUNNING"), "{list}");
    assert!(!list.contains("v2"), "{list}");
    ok(&incus, &daemon, &["console", "v3", "--show-log"]);
    ok(&incus, &daemon, &["stop", "v3", "--force"]);
    ok(&incus, &daemon, &["delete", "v3"]);
    let list = ok(
        &incus,
        &daemon,
        &["list", "--format", "csv", "--columns", "n"],
    );
    assert_eq!(list.trim(), "v1");

    let output = run(
        &incus,
        &daemon,
        &["query", "/1.0/instances/v1/console?type=vga"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (width, height, rgb) = decode_png(&output.stdout);
    assert_eq!((width, height), (640, 480));
    assert_eq!(rgb, fixture.expected_rgb().unwrap());

    let missing = run(&incus, &daemon, &["info", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("Instance not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
