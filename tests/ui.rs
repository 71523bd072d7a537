//! The web page at `/ui/`, end to end in a real browser: the real daemon with a TLS listener on
//! 127.0.0.1, a running VM showing colour bars and a stopped one, a client certificate made here
//! and trusted with `vgashot trust add`, and `tests/ui/ui-test.mjs` driving Debian's headless
//! Chromium through `playwright-core` with that certificate. The script checks the page, the
//! thumbnail's pixels against [`vgashot_fixtures::BAR_COLOURS`], the live view and "Save PNG",
//! that stopping the VM through the API turns its card to Stopped, that an error envelope shows
//! on the card, and that the Start button starts the VM again.
//!
//! Without Chromium, node or `tests/ui/node_modules` (`npm ci` in `tests/ui`) the test skips
//! with a note, except where `CI` or `VGASHOT_REQUIRE_UI` is set (`cargo xtask test` sets it
//! when it installed them): there it fails. `VGASHOT_UI_SCREENSHOT=docs/ui.png` also saves a
//! screenshot of the page (the one in the README).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::Daemon;
use vgashot_fixtures::{BAR_COLOURS, Fixture};

/// How long the browser script may take; it needs about 10 s on a machine with KVM.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// What the browser test needs, found on this machine.
struct Tools {
    chromium: PathBuf,
    node: PathBuf,
    script: PathBuf,
}

/// The repository's root (this crate is `crates/vgashot`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser, node and the npm packages, or `None` where the test may be skipped.
fn tools() -> Option<Tools> {
    let chromium = std::env::var_os("VGASHOT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node = support::on_path("node");
    let ui = workspace_root().join("tests/ui");
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push("Debian's chromium (/usr/bin/chromium)");
    }
    if node.is_none() {
        missing.push("node");
    }
    if !ui
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push("playwright-core (`npm ci` in tests/ui)");
    }
    if missing.is_empty() {
        return Some(Tools {
            chromium,
            node: node?,
            script: ui.join("ui-test.mjs"),
        });
    }
    support::skip_unless_required(
        "VGASHOT_REQUIRE_UI",
        &format!(
            "{} (`cargo xtask test` installs them as root)",
            missing.join(", ")
        ),
    );
    None
}

/// A self-signed ECDSA P-384 client certificate, as a browser would import: (cert, key) PEM.
fn client_identity() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "browser");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

#[tokio::test]
async fn the_page_shows_and_drives_the_vms() {
    let Some(tools) = tools() else { return };
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
    support::wait_for_picture(&daemon, "bars", fixture).await;
    let vm_ready = started.elapsed();

    // Trust the browser's certificate, as a user would with `vgashot trust add`.
    let (certificate, key) = client_identity();
    let cert_path = daemon.dir.path().join("browser.crt");
    let key_path = daemon.dir.path().join("browser.key");
    std::fs::write(&cert_path, certificate).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let trusted = Command::new(support::daemon_binary())
        .args(["trust", "add"])
        .arg(&cert_path)
        .env("VGASHOT_DIR", daemon.dir.path())
        .env("VGASHOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );

    let reply = daemon.request("GET", "/1.0", None).await;
    let address = support::json(&reply)["metadata"]["environment"]["addresses"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut command = Command::new(&tools.node);
    command
        .arg(&tools.script)
        .current_dir(tools.script.parent().unwrap())
        .env("VGASHOT_UI_URL", format!("https://{address}"))
        .env("VGASHOT_UI_CERT", &cert_path)
        .env("VGASHOT_UI_KEY", &key_path)
        .env("VGASHOT_UI_RUNNING", "bars")
        .env("VGASHOT_UI_STOPPED", "idle")
        .env("VGASHOT_UI_BARS", json!(BAR_COLOURS).to_string())
        .env("VGASHOT_UI_SCREEN", "640x480")
        .env("VGASHOT_CHROMIUM", &tools.chromium)
        .env_remove("VGASHOT_UI_SCREENSHOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(screenshot) = std::env::var_os("VGASHOT_UI_SCREENSHOT") {
        command.env("VGASHOT_UI_SCREENSHOT", workspace_root().join(screenshot));
    }
    let browser_started = Instant::now();
    let mut child = command.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if browser_started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser test took longer than {SCRIPT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut report = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut report).unwrap();
    assert!(status.success(), "the browser test failed ({status})");
    eprintln!(
        "ui: VM ready in {vm_ready:?}, browser test in {:?}: {}",
        browser_started.elapsed(),
        report.trim()
    );

    // The page's Start button left the VM running, and the other one untouched.
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
