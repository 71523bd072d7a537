//! The web page at `/ui/`, end to end in a real browser: the real daemon with a TLS listener on
//! 127.0.0.1, a running VM showing colour bars and a stopped one, a client certificate made here
//! and trusted with `vgashot trust add`, and `tests/ui/ui-test.mjs` driving Debian's headless
//! Chromium through `playwright-core` with that certificate. The script checks the page, the
//! thumbnail's pixels against [`vgashot_fixtures::BAR_COLOURS`], the live view and "Save PNG",
//! that stopping the VM through the API turns its card to Stopped, that an error envelope shows
//! on the card, and that the Start button starts the VM again. `tests/ui/guest-event-test.mjs`
//! shows a card following a guest-initiated change from its lifecycle events alone: the Linux
//! guest (`crates/linux-guest`, under TCG) powers itself off and its card turns Stopped with the
//! reason, with no request for the list meanwhile.
//!
//! Without Chromium, node or `tests/ui/node_modules` the test skips ([`support::browser`]).
//! `VGASHOT_UI_SCREENSHOT=docs/ui.png` also saves a screenshot of the page (the one in the
//! README).

mod support;

use std::time::Instant;

use serde_json::json;
use support::Daemon;
use support::browser::{Browser, TrustedIdentity, workspace_root};
use vgashot_fixtures::{BAR_COLOURS, Fixture};
use vgashot_linux_guest::{BootOptions, LinuxGuest};

#[tokio::test]
async fn the_page_shows_and_drives_the_vms() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let Some(daemon) = Daemon::start_listening("127.0.0.1:0").await else {
        return;
    };
    let started = Instant::now();
    let fixture = Fixture::bars(640, 480);
    daemon
        .create_vm("bars", Some(fixture), json!({}), true)
        .await;
    // A second VM that stays stopped: its card shows the placeholder.
    daemon.create_vm("idle", None, json!({}), false).await;
    // A running VM without a display: its card says so and asks for no screen.
    daemon
        .create_vm("headless", None, json!({"vgashot.vga": "none"}), true)
        .await;
    support::wait_for_picture(&daemon, "bars", fixture).await;
    let vm_ready = started.elapsed();

    // Trust the browser's certificate, as a user would with `vgashot trust add`.
    let identity = TrustedIdentity::make(&daemon, "browser").await;
    let mut env = vec![
        ("VGASHOT_UI_RUNNING", "bars".to_owned()),
        ("VGASHOT_UI_STOPPED", "idle".to_owned()),
        ("VGASHOT_UI_HEADLESS", "headless".to_owned()),
        ("VGASHOT_UI_BARS", json!(BAR_COLOURS).to_string()),
        ("VGASHOT_UI_SCREEN", "640x480".to_owned()),
    ];
    if let Some(screenshot) = std::env::var_os("VGASHOT_UI_SCREENSHOT") {
        let path = workspace_root().join(screenshot);
        env.push(("VGASHOT_UI_SCREENSHOT", path.display().to_string()));
    }
    let (report, took) = browser.run("ui-test.mjs", &identity, &env).await;
    eprintln!("ui: VM ready in {vm_ready:?}, browser test in {took:?}: {report}");

    // The page's Start button left the VM running, and the other one untouched.
    for (name, expected) in [
        ("bars", "Running"),
        ("idle", "Stopped"),
        ("headless", "Running"),
    ] {
        let reply = daemon
            .request("GET", &format!("/1.0/instances/{name}/state"), None)
            .await;
        assert_eq!(
            support::json(&reply)["metadata"]["status"],
            expected,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_card_follows_its_guest_powering_off() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let guest = match LinuxGuest::prepare(&LinuxGuest::default_cache_dir()) {
        Ok(guest) => guest,
        Err(error) => {
            let missing = format!("the Linux guest ({error})");
            return support::skip_unless_required("VGASHOT_REQUIRE_LINUX_GUEST", &missing);
        }
    };
    // TCG: on this project's machines `/dev/kvm` is nested and the kernel does not boot there.
    let accel = std::env::var("VGASHOT_ACCEL").unwrap_or_else(|_| "tcg".to_owned());
    let Some(daemon) =
        Daemon::start_listening_with_env("127.0.0.1:0", &[("VGASHOT_ACCEL", &accel)]).await
    else {
        return;
    };
    let options = BootOptions {
        poweroff_after: Some(std::time::Duration::ZERO),
        ..BootOptions::default()
    };
    let guest = guest
        .copy_to(daemon.images.path(), options.console)
        .unwrap();
    let body = json!({
        "name": "leaving",
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": {
            "limits.memory": "128MiB",
            "vgashot.boot.kernel": guest.kernel(options.console),
            "vgashot.boot.initrd": guest.initrd(),
            "vgashot.boot.cmdline": guest.cmdline(&options),
        },
        "devices": {},
    });
    daemon.operation("POST", "/1.0/instances", Some(body)).await;
    let identity = TrustedIdentity::make(&daemon, "browser").await;
    let env = [("VGASHOT_UI_GUEST", "leaving".to_owned())];
    let (report, took) = browser.run("guest-event-test.mjs", &identity, &env).await;
    eprintln!("ui: guest event test in {took:?}: {report}");
}
