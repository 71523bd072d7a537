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
//! Without Chromium, node or `tests/ui/node_modules` the tests skip ([`support::browser`]).
//! `VGASHOT_UI_SCREENSHOT=docs/ui.png` also saves a screenshot of the page over TLS.

mod support;

use std::time::Instant;

use serde_json::json;
use support::Daemon;
use support::browser::{Browser, TrustedIdentity, workspace_root};
use support::ui_proxy::UiProxy;
use vgashot_fixtures::{BAR_COLOURS, Fixture};

/// The running VM's screen.
const FIXTURE: Fixture = Fixture::bars(640, 480);

/// Makes the two VMs (`bars`, running, `idle`, stopped), waits for the bars, and returns the
/// script's environment.
async fn two_vms(daemon: &Daemon) -> Vec<(&'static str, String)> {
    let started = Instant::now();
    daemon
        .create_vm("bars", Some(FIXTURE), json!({}), true)
        .await;
    // A second VM that stays stopped: its card shows the placeholder.
    daemon.create_vm("idle", None, json!({}), false).await;
    support::wait_for_picture(daemon, "bars", FIXTURE).await;
    eprintln!("ui: VMs ready in {:?}", started.elapsed());
    vec![
        ("VGASHOT_UI_RUNNING", "bars".to_owned()),
        ("VGASHOT_UI_STOPPED", "idle".to_owned()),
        ("VGASHOT_UI_BARS", json!(BAR_COLOURS).to_string()),
        ("VGASHOT_UI_SCREEN", "640x480".to_owned()),
    ]
}

/// The page's Start button left the VM running, and the other one untouched.
async fn assert_left_as_expected(daemon: &Daemon) {
    for (name, expected) in [("bars", "Running"), ("idle", "Stopped")] {
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
    let mut env = two_vms(&daemon).await;
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
    let mut env = two_vms(&daemon).await;
    let proxy = UiProxy::start(&daemon);
    env.push(("VGASHOT_UI_ENTRY", proxy.url.clone()));
    let (report, took) = browser.run_at("ui-test.mjs", &proxy.base, None, &env).await;
    eprintln!("ui through vgashot ui: browser test in {took:?}: {report}");
    assert_left_as_expected(&daemon).await;
}
