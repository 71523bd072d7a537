//! The command-line client end to end: `vgashot screenshot`, `list` and `watch` run as child
//! processes against the real daemon and real VMs, over the Unix socket and over TLS with
//! client certificates and a pinned server certificate.

mod support;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Daemon, decode_png, wait_for_picture};
use vgashot_client::HistoryFilter;
use vgashot_fixtures::Fixture;
use vgashot_incus_wire::Screenshot;

/// `vgashot ARGS` run in `cwd`, for the daemon of `daemon` (`VGASHOT_DIR`), with the client's
/// configuration in `conf`, and none of the variables that describe an image-capable terminal.
fn command(daemon: &Daemon, cwd: &Path, conf: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(support::daemon_binary());
    command
        .args(args)
        .current_dir(cwd)
        .env("VGASHOT_DIR", daemon.dir.path())
        .env("VGASHOT_CONF", conf)
        .env("HOME", cwd)
        .env("VGASHOT_LOG", "warn")
        .stdin(Stdio::null());
    for name in [
        "TERM",
        "TERM_PROGRAM",
        "KITTY_WINDOW_ID",
        "LC_TERMINAL",
        "KONSOLE_VERSION",
        "TMUX",
        "VGASHOT_GRAPHICS",
    ] {
        command.env_remove(name);
    }
    command
}

fn run(daemon: &Daemon, cwd: &Path, conf: &Path, args: &[&str]) -> Output {
    command(daemon, cwd, conf, args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
fn succeeds(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts exit status 1 with nothing on stdout, and returns stderr.
#[track_caller]
fn fails(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "");
    stderr(output)
}

#[tokio::test]
async fn screenshots_lists_and_watch_over_the_socket() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    daemon
        .create_vm("v2", Some(fixture), json!({}), false)
        .await;
    wait_for_picture(&daemon, "v1", fixture).await;
    let expected = fixture.expected_rgb().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    let conf = cwd.join("conf");
    let vgashot = |args: &[&str]| run(&daemon, cwd, &conf, args);

    // The default: NAME.png in the current directory, over $VGASHOT_DIR/unix.socket.
    let said = succeeds(&vgashot(&["screenshot", "v1"]));
    assert!(
        said.starts_with("Screenshot of v1 saved to v1.png (640x480 PNG, "),
        "{said}"
    );
    let (width, height, rgb) = decode_png(&std::fs::read(cwd.join("v1.png")).unwrap());
    assert_eq!((width, height), (640, 480));
    assert_eq!(rgb, expected);

    // A thumbnail in another format, over --socket.
    let socket = daemon.socket();
    let socket = socket.to_str().unwrap();
    let said = succeeds(&vgashot(&[
        "screenshot",
        "v1",
        "--width",
        "320",
        "--format",
        "jpeg",
        "--socket",
        socket,
    ]));
    assert!(said.contains("v1.jpg (320x240 JPEG, "), "{said}");
    let jpeg = image::load_from_memory(&std::fs::read(cwd.join("v1.jpg")).unwrap()).unwrap();
    assert_eq!((jpeg.width(), jpeg.height()), (320, 240));
    assert_eq!(
        image::guess_format(&std::fs::read(cwd.join("v1.jpg")).unwrap()).unwrap(),
        image::ImageFormat::Jpeg
    );

    // The format follows -o's extension; `-o -` writes only the image to stdout.
    succeeds(&vgashot(&[
        "screenshot",
        "v1",
        "-o",
        "small.webp",
        "--height",
        "48",
    ]));
    let webp = std::fs::read(cwd.join("small.webp")).unwrap();
    assert_eq!(
        image::guess_format(&webp).unwrap(),
        image::ImageFormat::WebP
    );
    assert_eq!(image::load_from_memory(&webp).unwrap().height(), 48);
    let piped = vgashot(&["screenshot", "v1", "-o", "-"]);
    succeeds(&piped);
    assert!(piped.stderr.is_empty(), "{}", stderr(&piped));
    assert_eq!(decode_png(&piped.stdout).2, expected);

    // Errors as the incus client prints them.
    assert_eq!(
        fails(&vgashot(&["screenshot", "v2"])),
        "Error: Instance is not running\n"
    );
    assert!(!cwd.join("v2.png").exists());
    assert_eq!(
        fails(&vgashot(&["screenshot", "nope"])),
        "Error: Failed to fetch instance \"nope\" in project \"default\": Instance not found\n"
    );
    assert_eq!(
        fails(&vgashot(&["screenshot", "v1", "--width", "4000"])),
        "Error: cannot resize a 640x480 frame to 4000x3000: only shrinking is supported\n"
    );
    let missing = cwd.join("missing.socket");
    let unreachable = fails(&vgashot(&[
        "screenshot",
        "v1",
        "--socket",
        missing.to_str().unwrap(),
    ]));
    assert!(
        unreachable.starts_with(&format!(
            "Error: no daemon answers on {}: ",
            missing.display()
        )),
        "{unreachable}"
    );

    // `list`: a table like `incus list`, CSV and JSON, and screen sizes when asked.
    assert_eq!(
        succeeds(&vgashot(&["list"])),
        "\
+------+---------+-----------------+
| NAME | STATUS  |      TYPE       |
+------+---------+-----------------+
| v1   | RUNNING | VIRTUAL-MACHINE |
+------+---------+-----------------+
| v2   | STOPPED | VIRTUAL-MACHINE |
+------+---------+-----------------+
"
    );
    let listed: Value = serde_json::from_str(&succeeds(&vgashot(&["list", "-f", "json"]))).unwrap();
    assert_eq!(
        listed,
        json!([
            {"name": "v1", "status": "Running", "type": "virtual-machine"},
            {"name": "v2", "status": "Stopped", "type": "virtual-machine"},
        ])
    );
    assert_eq!(
        succeeds(&vgashot(&["list", "--format", "csv", "--screens"])),
        "v1,RUNNING,VIRTUAL-MACHINE,640x480\nv2,STOPPED,VIRTUAL-MACHINE,\n"
    );
    let listed: Value =
        serde_json::from_str(&succeeds(&vgashot(&["list", "-f", "json", "--screens"]))).unwrap();
    assert_eq!(listed[0]["screen"], json!({"width": 640, "height": 480}));
    assert_eq!(listed[1]["screen"], Value::Null);
    assert_eq!(
        fails(&vgashot(&["list", "--project", "nope"])),
        "Error: Project not found\n"
    );

    // `watch` on a pipe: where the stream is, and a curl command that fetches it.
    let said = succeeds(&vgashot(&["watch", "v1", "--fps", "3"]));
    let path = "/1.0/instances/v1/console?type=vga&stream=mjpeg&fps=3";
    assert!(said.contains(&format!("  GET {path}\n")), "{said}");
    assert!(
        said.contains(&format!(
            "  curl -N --unix-socket {socket} 'http://vgashot{path}' -o v1.mjpeg\n"
        )),
        "{said}"
    );
    let stream = daemon.client().send("GET", path, &[], None).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/x-mixed-replace")
    );
    drop(stream);
    // A kitty terminal is only guessed when stdout is one.
    let output = command(&daemon, cwd, &conf, &["watch", "v1"])
        .env("TERM", "xterm-kitty")
        .output()
        .unwrap();
    assert!(
        succeeds(&output).contains("  GET /1.0/instances/v1/console?type=vga&stream=mjpeg&fps=2\n")
    );
    assert_eq!(
        fails(&vgashot(&["watch", "v2"])),
        "Error: Instance is not running\n"
    );
    assert_eq!(
        fails(&vgashot(&["watch", "nope"])),
        "Error: Failed to fetch instance \"nope\" in project \"default\": Instance not found\n"
    );

    // Drawing (kitty, forced) until Ctrl-C, which restores the terminal and exits 0.
    let mut child = command(&daemon, cwd, &conf, &["watch", "v1", "--graphics", "kitty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = std::thread::spawn({
        let seen = seen.clone();
        move || {
            let mut buffer = [0; 65536];
            while let Ok(read @ 1..) = out.read(&mut buffer) {
                seen.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
        }
    });
    let drawn = |seen: &[u8]| seen.windows(6).any(|window| window == b"\x1b_Ga=T");
    let started = Instant::now();
    while !drawn(&seen.lock().unwrap()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never drawn: {}",
            stderr(&child.wait_with_output().unwrap())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more looks at the unchanged screen: 304s, nothing drawn.
    let not_modified = || support::metric(&daemon, "vgashot_screenshot_not_modified_total", "v1");
    let looked = not_modified().await;
    while not_modified().await < looked + 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "watch stopped looking at the screen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(status.success(), "{status}");
    assert!(seen.starts_with("\x1b[?1049h"), "{seen:.80}");
    assert_eq!(
        seen.matches("\x1b_Ga=T,f=100,i=1").count(),
        1,
        "an unchanged screen is drawn once"
    );
    assert!(seen.contains("v1 | 640x480 | changed "), "{seen:.80}");
    assert!(seen.ends_with("\x1b[?25h\x1b[?1049l"), "{seen:.80}");
}

/// The remote's TLS address and certificate, as `GET /1.0` on the socket reports them.
async fn tls_server(daemon: &Daemon) -> (String, String, String) {
    let reply = daemon.request("GET", "/1.0", None).await;
    let environment = support::json(&reply)["metadata"]["environment"].clone();
    (
        environment["addresses"][0].as_str().unwrap().to_owned(),
        environment["certificate"].as_str().unwrap().to_owned(),
        environment["certificate_fingerprint"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test]
async fn history_lists_what_the_api_lists() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let config = json!({"console.history.interval": "200ms"});
    daemon
        .create_vm("v1", Some(Fixture::Counter), config, true)
        .await;
    let client = daemon.client();
    let everything = HistoryFilter::default();
    let started = Instant::now();
    let recorded = loop {
        let shots = client.screenshots("v1", None, &everything).await.unwrap();
        if shots.len() >= 3 {
            break shots;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{shots:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Up to the third screenshot: a range that stays the same while the VM goes on recording.
    let until = recorded[2].taken_at.clone();
    let filter = HistoryFilter {
        until: Some(until.clone()),
        ..HistoryFilter::default()
    };
    let listed = client.screenshots("v1", None, &filter).await.unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let conf = cwd.path().join("conf");
    let history = |format: &str| {
        let args = ["history", "v1", "--until", &until, "--format", format];
        succeeds(&run(&daemon, cwd.path(), &conf, &args))
    };

    let as_json: Vec<Screenshot> = serde_json::from_str(&history("json")).unwrap();
    assert_eq!(as_json, listed);
    let csv = history("csv");
    let rows: Vec<_> = csv.lines().collect();
    assert_eq!(rows.len(), listed.len(), "{csv}");
    for (row, shot) in rows.iter().zip(&listed) {
        let size = format!("{}x{}", shot.width, shot.height);
        let start = format!("{},{},{},{size},", shot.id, shot.taken_at, shot.reason);
        assert!(row.starts_with(&start), "{row} for {shot:?}");
    }
    let table = history("table");
    assert!(table.contains("| ID "), "{table}");
    assert!(table.contains("TAKEN AT"), "{table}");
    for shot in &listed {
        assert!(table.contains(&shot.taken_at), "{table}");
    }
    let unknown = fails(&run(
        &daemon,
        cwd.path(),
        &conf,
        &["history", "v1", "--reason", "whim"],
    ));
    assert!(unknown.contains("reason"), "{unknown}");
}

#[tokio::test]
async fn remotes_over_tls_with_pinned_certificates() {
    let Some(daemon) = Daemon::start_listening("127.0.0.1:0").await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    let (address, certificate, fingerprint) = tls_server(&daemon).await;
    let url = format!("https://{address}");
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    let alice = cwd.join("alice");
    let mallory = cwd.join("mallory");

    // Alice makes her certificate, and the daemon's administrator trusts it.
    let made = run(&daemon, cwd, &alice, &["remote", "generate-certificate"]);
    let alice_fingerprint = succeeds(&made).trim().to_owned();
    assert_eq!(alice_fingerprint.len(), 64);
    let trusted = run(
        &daemon,
        cwd,
        &alice,
        &["trust", "add", alice.join("client.crt").to_str().unwrap()],
    );
    assert_eq!(succeeds(&trusted).trim(), alice_fingerprint);

    // A server never accepted is refused, with its fingerprint to compare.
    let refused = fails(&run(
        &daemon,
        cwd,
        &alice,
        &["screenshot", "v1", "--remote", &url],
    ));
    assert!(
        refused.starts_with("Error: the certificate of "),
        "{refused}"
    );
    assert!(refused.contains(&fingerprint), "{refused}");
    assert!(refused.contains("--accept-certificate"), "{refused}");

    // Accepted once, then pinned: later runs need no flag.
    wait_for_picture(&daemon, "v1", fixture).await;
    let accepted = run(
        &daemon,
        cwd,
        &alice,
        &[
            "screenshot",
            "v1",
            "--remote",
            &url,
            "--accept-certificate",
            "-o",
            "tls.png",
        ],
    );
    assert!(succeeds(&accepted).contains("tls.png (640x480 PNG, "));
    assert!(
        stderr(&accepted).contains(&fingerprint),
        "{}",
        stderr(&accepted)
    );
    assert_eq!(
        decode_png(&std::fs::read(cwd.join("tls.png")).unwrap()).2,
        fixture.expected_rgb().unwrap()
    );
    let port = address.rsplit(':').next().unwrap();
    let pin = alice.join(format!("servers/127.0.0.1_{port}.crt"));
    assert_eq!(
        std::fs::read_to_string(&pin).unwrap().trim(),
        certificate.trim()
    );
    let again = run(
        &daemon,
        cwd,
        &alice,
        &["screenshot", "v1", "--remote", &url, "-o", "-"],
    );
    succeeds(&again);
    assert!(again.stderr.is_empty(), "{}", stderr(&again));
    assert_eq!(decode_png(&again.stdout).0, 640);
    let listed = succeeds(&run(
        &daemon,
        cwd,
        &alice,
        &["list", "--remote", &url, "-f", "csv"],
    ));
    assert_eq!(listed, "v1,RUNNING,VIRTUAL-MACHINE\n");
    let watch = succeeds(&run(
        &daemon,
        cwd,
        &alice,
        &["watch", "v1", "--remote", &url],
    ));
    assert!(
        watch.contains(&format!(
            "curl -N --cacert {} --cert {} --key {} '{url}/1.0/instances/v1/console?type=vga&stream=mjpeg&fps=2'",
            pin.display(),
            alice.join("client.crt").display(),
            alice.join("client.key").display()
        )),
        "{watch}"
    );

    // Mallory's certificate (made on first use) is not trusted: Incus's 403.
    let untrusted = run(
        &daemon,
        cwd,
        &mallory,
        &["screenshot", "v1", "--remote", &url, "--accept-certificate"],
    );
    let said = fails(&untrusted);
    assert!(said.contains("Generating a client certificate"), "{said}");
    assert!(said.ends_with("Error: not authorized\n"), "{said}");
    assert!(mallory.join("client.key").exists());
    assert!(!cwd.join("v1.png").exists());

    // A server whose certificate changed is refused, even with --accept-certificate.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let other = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&pin, other.pem()).unwrap();
    let other_fingerprint = vgashot_rest::auth::trust::fingerprint(other.der());
    for extra in [None, Some("--accept-certificate")] {
        let mut args = vec!["screenshot", "v1", "--remote", &url];
        args.extend(extra);
        let changed = fails(&run(&daemon, cwd, &alice, &args));
        assert!(
            changed.starts_with("Error: the certificate of "),
            "{changed}"
        );
        assert!(changed.contains("changed"), "{changed}");
        assert!(changed.contains(&fingerprint), "{changed}");
        assert!(changed.contains(&other_fingerprint), "{changed}");
        assert!(changed.contains(&pin.display().to_string()), "{changed}");
    }
    assert_eq!(std::fs::read_to_string(&pin).unwrap(), other.pem());
}
