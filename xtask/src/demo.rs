//! `cargo xtask demo`: the main job, what a newcomer runs first. The daemon, two VMs and the web
//! page through `vgashot ui`, until Ctrl-C.
//!
//! 1. Make sure QEMU and the Linux guest are there (`crates/linux-guest`: Debian's kernel and
//!    busybox, fetched once into `target/linux-guest/`), build `vgashot`, and put the VMs'
//!    images (the colour-bars fixture's disk, the guest's kernel and initramfs) in
//!    `demo-output/images/`, the one image directory the daemon is told to allow.
//! 2. Start the daemon over `demo-output/vgashot`, and `vgashot ui` on it, each in a process
//!    group of its own, so a terminal's Ctrl-C reaches only this task, which then stops
//!    everything in order. VMs run under TCG unless `VGASHOT_ACCEL` says otherwise: the Linux
//!    guest does not boot under this project's nested KVM (see `tests/linux_guest.rs`), and the
//!    fixture does not mind.
//! 3. Print the page's address first (`vgashot ui` opens it in the desktop's browser when there
//!    is one), then create and start the VMs: `bars` (the fixture) and `linux` (the guest,
//!    booting to a shell on its framebuffer console); the page shows them as they come.
//! 4. Save each VM's first full screen (`demo-output/bars.png`, `demo-output/linux.png`) and
//!    print commands to try.
//! 5. On Ctrl-C, at any point: stop and delete the VMs through the API, stop `vgashot ui`, stop
//!    the daemon; then kill whatever QEMU is still left under the daemon's run directory, so no
//!    VM outlives the demo.
//!
//! `cargo xtask demo --pictures` remakes the README's pictures instead of waiting for Ctrl-C:
//! once both VMs show their screens, headless Chromium opens the page through `vgashot ui`
//! (`tests/ui/demo-pictures.mjs`, with `playwright-core` from `tests/ui/node_modules`) and saves
//! it as `docs/ui.png`, and the Linux guest's screen becomes `docs/demo-screenshot.png`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use vgashot_client::Client;
use vgashot_fixtures::Fixture;
use vgashot_incus_wire::{InstanceStatePut, InstancesPost};
use vgashot_linux_guest::{BootOptions, Console, LinuxGuest, READY_LINE};
use vgashot_rest::describe;

use crate::{Result, workspace_root};

/// What the fixture VM shows.
const FIXTURE: Fixture = Fixture::bars(1024, 768);
/// The fixture VM's name.
const BARS: &str = "bars";
/// The Linux guest's name.
const LINUX: &str = "linux";
/// The Linux guest's memory: some room above the least it boots with.
const LINUX_MEMORY: &str = "128MiB";
/// How long a VM may take to show its screen (TCG on a busy 2-core machine takes the guest to
/// its shell in 3-35 s).
const DRAW_BOUND: Duration = Duration::from_secs(120);

/// What the demo runs, for the cleanup of step 5.
struct Running {
    daemon: Child,
    ui: Option<tokio::process::Child>,
    state: PathBuf,
}

pub fn run(args: &[String]) -> Result {
    let pictures = match args {
        [] => false,
        [flag] if flag == "--pictures" => true,
        _ => return Err("usage: cargo xtask demo [--pictures]".into()),
    };
    crate::qemu::ensure_installed()?;
    let guest = crate::qemu::ensure_linux_guest()?;
    crate::cargo(&["build", "--quiet", "--package", "vgashot"])?;
    let output = workspace_root().join("demo-output");
    let state = output.join("vgashot");
    let images = output.join("images");
    for dir in [&state, &images] {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    let disk = FIXTURE
        .write_image(&images)
        .map_err(|error| describe(&error))?;
    let guest = guest
        .copy_to(&images, Console::Framebuffer)
        .map_err(|error| describe(&error))?;

    let accel = std::env::var("VGASHOT_ACCEL").unwrap_or_else(|_| "tcg".to_owned());
    let daemon = Command::new(binary())
        .arg("daemon")
        .arg("--image-dir")
        .arg(&images)
        .env("VGASHOT_DIR", &state)
        .env("VGASHOT_ACCEL", &accel)
        .process_group(0)
        .spawn()
        .map_err(|error| format!("cannot start the daemon: {error}"))?;
    let mut running = Running {
        daemon,
        ui: None,
        state,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start tokio: {error}"))?;
    let outcome = runtime.block_on(async {
        let client = Client::new(running.state.join("unix.socket"));
        let demo = demo(&client, &mut running, &disk, &guest, &output, pictures);
        let outcome = tokio::select! {
            outcome = demo => outcome,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nxtask: interrupted");
                Ok(())
            }
        };
        eprintln!("xtask: stopping the VMs, vgashot ui and the daemon");
        for name in [BARS, LINUX] {
            remove_vm(&client, name).await;
        }
        if let Some(mut ui) = running.ui.take() {
            let _ = ui.kill().await;
        }
        outcome
    });
    stop_daemon(&mut running.daemon);
    vgashot_qemu_process::testing::kill_detached_under(&running.state.join("run"));
    outcome
}

/// The `vgashot` binary the demo runs.
fn binary() -> PathBuf {
    workspace_root().join("target/debug/vgashot")
}

/// Steps 3 and 4, then waits for Ctrl-C (or, with `pictures`, remakes the README's pictures).
async fn demo(
    client: &Client,
    running: &mut Running,
    disk: &Path,
    guest: &LinuxGuest,
    output: &Path,
    pictures: bool,
) -> Result {
    wait_for_daemon(client).await?;
    let (ui, url) = start_ui(&running.state, !pictures).await?;
    running.ui = Some(ui);
    println!("\nThe web page: {url}\n");
    // VMs left by an interrupted run are replaced.
    for name in [BARS, LINUX] {
        remove_vm(client, name).await;
    }
    let memory = |amount: &str| BTreeMap::from([("limits.memory".to_owned(), amount.to_owned())]);
    let root = BTreeMap::from([(
        "root".to_owned(),
        BTreeMap::from([
            ("type".to_owned(), "disk".to_owned()),
            ("path".to_owned(), "/".to_owned()),
            ("source".to_owned(), disk.display().to_string()),
        ]),
    )]);
    let bars = InstancesPost::virtual_machine(BARS, memory("64MiB"), root, true);
    let options = BootOptions::default();
    let mut config = memory(LINUX_MEMORY);
    config.extend([
        (
            "vgashot.boot.kernel".to_owned(),
            guest.kernel(Console::Framebuffer).display().to_string(),
        ),
        (
            "vgashot.boot.initrd".to_owned(),
            guest.initrd().display().to_string(),
        ),
        ("vgashot.boot.cmdline".to_owned(), guest.cmdline(&options)),
    ]);
    let linux = InstancesPost::virtual_machine(LINUX, config, BTreeMap::new(), true);
    for request in [&bars, &linux] {
        client
            .create_instance(request, None)
            .await
            .map_err(|error| format!("create {}: {}", request.name, describe(&error)))?;
    }
    let bars_png = output.join("bars.png");
    let expected = FIXTURE.expected_rgb().expect("a static fixture");
    save_screen(client, BARS, &bars_png, |png| {
        decoded_rgb(png).as_deref() == Some(expected.as_slice())
    })
    .await?;
    wait_for_console_line(client, LINUX, READY_LINE).await?;
    let linux_png = output.join("linux.png");
    // The ready line is on the serial port; the screen shows it a moment later, and the shell's
    // prompt after it: wait for the framebuffer console to stop changing.
    save_settled_screen(client, LINUX, &linux_png).await?;
    if pictures {
        return remake_pictures(&running.state, &linux_png).await;
    }
    let socket = client.socket().display();
    println!(
        "The VMs' first screens are in {} and {}.\n\nTry:\n  \
         target/debug/vgashot --dir {dir} list --screens\n  \
         target/debug/vgashot --dir {dir} watch {LINUX}\n  \
         curl --unix-socket {socket} 'http://vgashot/1.0/instances/{BARS}/console?type=vga' -o shot.png\n  \
         INCUS_SOCKET={socket} incus list\n\n\
         Press Ctrl-C to stop the VMs, the page and the daemon.",
        bars_png.display(),
        linux_png.display(),
        dir = running.state.display(),
    );
    std::future::pending().await
}

/// Starts `vgashot ui` on the daemon of `state` in a process group of its own (opening the
/// browser when `open` and there is a desktop), and reads the address it prints.
async fn start_ui(state: &Path, open: bool) -> Result<(tokio::process::Child, String)> {
    let mut command = tokio::process::Command::new(binary());
    command
        .arg("ui")
        .env("VGASHOT_DIR", state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !open {
        command.arg("--no-browser");
    }
    let mut ui = command
        .spawn()
        .map_err(|error| format!("cannot start vgashot ui: {error}"))?;
    let stdout = ui.stdout.take().expect("piped");
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .map_err(|error| format!("cannot read vgashot ui's address: {error}"))?;
    let url = line.trim().to_owned();
    if !url.starts_with("http://") {
        return Err(format!("vgashot ui printed no address ({url:?})"));
    }
    Ok((ui, url))
}

async fn wait_for_daemon(client: &Client) -> Result {
    let started = Instant::now();
    while client.request("GET", "/1.0", None).await.is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            return Err("the daemon did not answer on its socket".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Polls `name`'s screen until `complete` accepts its PNG, and saves that PNG in `target`.
async fn save_screen(
    client: &Client,
    name: &str,
    target: &Path,
    mut complete: impl FnMut(&[u8]) -> bool,
) -> Result {
    let path = format!("/1.0/instances/{name}/console?type=vga");
    let started = Instant::now();
    loop {
        let reply = client
            .request("GET", &path, None)
            .await
            .map_err(|error| describe(&error))?;
        if reply.status == 200 && complete(&reply.body) {
            std::fs::write(target, &reply.body)
                .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
            eprintln!(
                "xtask: {name}'s screen after {:.1} s: {}",
                started.elapsed().as_secs_f64(),
                target.display()
            );
            return Ok(());
        }
        if started.elapsed() > DRAW_BOUND {
            return Err(format!("{name} never showed its screen"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Saves `name`'s screen once two captures a second apart show the same pixels.
async fn save_settled_screen(client: &Client, name: &str, target: &Path) -> Result {
    let mut previous: Option<Vec<u8>> = None;
    save_screen(client, name, target, |png| {
        let pixels = decoded_rgb(png);
        let settled = pixels.is_some() && pixels == previous;
        previous = pixels;
        settled
    })
    .await
}

/// Polls `name`'s console log (its serial port) until it holds `line`.
async fn wait_for_console_line(client: &Client, name: &str, line: &str) -> Result {
    let path = format!("/1.0/instances/{name}/console");
    let started = Instant::now();
    loop {
        let reply = client
            .request("GET", &path, None)
            .await
            .map_err(|error| describe(&error))?;
        if reply.status == 200 && String::from_utf8_lossy(&reply.body).contains(line) {
            return Ok(());
        }
        if started.elapsed() > DRAW_BOUND {
            return Err(format!("{name} did not boot: no {line:?} on its console"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `--pictures`: the page in headless Chromium through a `vgashot ui` of its own (whose token
/// it spends) as `docs/ui.png`, and the Linux guest's screen as `docs/demo-screenshot.png`.
async fn remake_pictures(state: &Path, linux_png: &Path) -> Result {
    let docs = workspace_root().join("docs");
    let (mut ui, url) = start_ui(state, false).await?;
    let scripts = workspace_root().join("tests/ui");
    let status = tokio::process::Command::new("node")
        .arg(scripts.join("demo-pictures.mjs"))
        .current_dir(&scripts)
        .env("VGASHOT_UI_ENTRY", &url)
        .env("VGASHOT_UI_RUNNING", format!("{BARS},{LINUX}"))
        .env("VGASHOT_UI_SCREENSHOT", docs.join("ui.png"))
        .status()
        .await
        .map_err(|error| format!("cannot run node: {error}"));
    let _ = ui.kill().await;
    if !status?.success() {
        return Err("tests/ui/demo-pictures.mjs failed".into());
    }
    let picture = docs.join("demo-screenshot.png");
    std::fs::copy(linux_png, &picture)
        .map_err(|error| format!("cannot write {}: {error}", picture.display()))?;
    eprintln!(
        "xtask: saved {} and {}",
        docs.join("ui.png").display(),
        picture.display()
    );
    Ok(())
}

fn decoded_rgb(png_bytes: &[u8]) -> Option<Vec<u8>> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .ok()?;
    let mut rgb = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut rgb).ok()?;
    rgb.truncate(info.buffer_size());
    Some(rgb)
}

/// Stops `name` (forced) and deletes it, waiting for both; a VM that is not there is fine.
async fn remove_vm(client: &Client, name: &str) {
    // An already stopped or missing VM answers 400 or 404, which is fine here.
    let _ = client
        .change_state(name, &InstanceStatePut::forced_stop(), None)
        .await;
    let _ = client.delete_instance(name, None).await;
}

/// Stops the daemon with SIGTERM (it lets go of VMs and removes its socket) and reaps it.
fn stop_daemon(daemon: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = daemon.wait();
}
