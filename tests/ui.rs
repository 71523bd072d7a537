//! The web page at `/ui/`, end to end in a real browser, both ways a user reaches it:
//! 1. over the daemon's TLS listener on 127.0.0.1, with a client certificate made here and
//!    trusted with `vgashot trust add`, presented by the browser;
//! 2. through `vgashot ui`, the loopback proxy to the daemon's Unix socket, with no certificate:
//!    the browser opens the address it printed, whose one-time token becomes a session cookie.
//!
//! Each way has a running VM showing colour bars and a stopped one, and
//! `tests/ui/ui-test.mjs` drives Debian's headless Chromium through `playwright-core`. The
//! script checks the page, the thumbnail's pixels against [`vgashot_fixtures::BAR_COLOURS`],
//! the live view (the MJPEG stream) and "Save PNG", that stopping the VM through the API turns
//! its card to Stopped (the events websocket), that an error envelope shows on the card, and
//! that the Start button starts the VM again; through `vgashot ui` also the cookie's attributes.
//!
//! A third test, `tests/ui/guest-event-test.mjs`, shows a card following a guest-initiated
//! change from its lifecycle events alone: the Linux guest (`crates/linux-guest`, under TCG)
//! powers itself off and its card turns Stopped with the reason, with no request for the list
//! meanwhile.
//!
//! Without Chromium, node or `tests/ui/node_modules` the tests skip ([`support::browser`]).
//! `VGASHOT_UI_SCREENSHOT=docs/ui.png` also saves a screenshot of the page over TLS.

mod support;

use std::time::Instant;

use serde_json::json;
use support::Daemon;
use support::browser::{Browser, TrustedIdentity, workspace_root};
use support::ui_proxy::UiProxy;
use vgashot_fixtures::{BAR_COLOURS, Fixture};
use vgashot_linux_guest::{BootOptions, LinuxGuest};

/// The running VM's screen.
const FIXTURE: Fixture = Fixture::bars(640, 480);

/// Makes the VMs (`bars`, running, `idle`, stopped, `headless`, running with no display), waits for the bars, and returns the
/// script's environment.
async fn three_vms(daemon: &Daemon) -> Vec<(&'static str, String)> {
    let started = Instant::now();
    daemon
        .create_vm("bars", Some(FIXTURE), json!({}), true)
        .await;
    // A second VM that stays stopped: its card shows the placeholder.
    daemon.create_vm("idle", None, json!({}), false).await;
    // A running VM without a display: its card says so and asks for no screen.
    daemon
        .create_vm("headless", None, json!({"vgashot.vga": "none"}), true)
        .await;
    support::wait_for_picture(daemon, "bars", FIXTURE).await;
    eprintln!("ui: VMs ready in {:?}", started.elapsed());
    vec![
        ("VGASHOT_UI_RUNNING", "bars".to_owned()),
        ("VGASHOT_UI_STOPPED", "idle".to_owned()),
        ("VGASHOT_UI_HEADLESS", "headless".to_owned()),
        ("VGASHOT_UI_BARS", json!(BAR_COLOURS).to_string()),
        ("VGASHOT_UI_SCREEN", "640x480".to_owned()),
    ]
}

/// The page's Start button left the VM running, and the other one untouched.
async fn assert_left_as_expected(daemon: &Daemon) {
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
async fn the_page_shows_and_drives_the_vms() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let Some(daemon) = Daemon::start_listening("127.0.0.1:0").await else {
        return;
    };
    let mut env = three_vms(&daemon).await;
    // Trust the browser's certificate, as a user would with `vgashot trust add`.
    let identity = TrustedIdentity::make(&daemon, "browser").await;
    if let Some(screenshot) = std::env::var_os("VGASHOT_UI_SCREENSHOT") {
        let path = workspace_root().join(screenshot);
        env.push(("VGASHOT_UI_SCREENSHOT", path.display().to_string()));
    }
    let (report, took) = browser.run("ui-test.mjs", &identity, &env).await;
    eprintln!("ui over TLS: browser test in {took:?}: {report}");
    assert_left_as_expected(&daemon).await;
}

#[tokio::test]
async fn the_page_works_the_same_through_vgashot_ui() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let mut env = three_vms(&daemon).await;
    let proxy = UiProxy::start(&daemon);
    env.push(("VGASHOT_UI_ENTRY", proxy.url.clone()));
    let (report, took) = browser.run_at("ui-test.mjs", &proxy.base, None, &env).await;
    eprintln!("ui through vgashot ui: browser test in {took:?}: {report}");
    assert_left_as_expected(&daemon).await;
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
