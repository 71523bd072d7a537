//! `cargo xtask demo`: the main job. Starts the daemon in the foreground with a demo VM booted
//! from a fixture image, saves the VM's first screenshot, prints commands to try, and on Ctrl-C
//! stops the VM and the daemon cleanly.
//!
//! The daemon runs in a process group of its own, so a terminal's Ctrl-C reaches only this task,
//! which then stops the VM through the API before it stops the daemon.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;
use vgashot_client::Client;
use vgashot_fixtures::Fixture;
use vgashot_rest::describe;

use crate::{Result, workspace_root};

/// What the demo VM shows.
const FIXTURE: Fixture = Fixture::bars(1024, 768);
/// The demo VM's name.
const VM: &str = "demo";
/// How long the VM may take to draw its picture (TCG on a slow machine).
const DRAW_BOUND: Duration = Duration::from_secs(120);

pub fn run() -> Result {
    crate::qemu::ensure_installed()?;
    crate::cargo(&["build", "--quiet", "--package", "vgashot"])?;
    let output = workspace_root().join("demo-output");
    let state = output.join("vgashot");
    std::fs::create_dir_all(&state)
        .map_err(|error| format!("cannot create {}: {error}", state.display()))?;
    // The image lives in a directory the daemon is told to allow, outside its own.
    let images = output.join("images");
    std::fs::create_dir_all(&images)
        .map_err(|error| format!("cannot create {}: {error}", images.display()))?;
    let image = FIXTURE
        .write_image(&images)
        .map_err(|error| describe(&error))?;

    let mut daemon = Command::new(workspace_root().join("target/debug/vgashot"))
        .arg("daemon")
        .arg("--image-dir")
        .arg(&images)
        .env("VGASHOT_DIR", &state)
        .process_group(0)
        .spawn()
        .map_err(|error| format!("cannot start the daemon: {error}"))?;
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start tokio: {error}"))?
        .block_on(demo(&state, &image, &output));
    stop_daemon(&mut daemon);
    outcome
}

async fn demo(state: &Path, image: &Path, output: &Path) -> Result {
    let client = Client::new(state.join("unix.socket"));
    wait_for_daemon(&client).await?;
    // A demo VM left by an interrupted run is replaced.
    if client
        .call("GET", &format!("/1.0/instances/{VM}"), None)
        .await
        .is_ok()
    {
        stop_vm(&client).await;
        call(&client, "DELETE", &format!("/1.0/instances/{VM}"), None).await?;
    }
    let create = json!({
        "name": VM,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": {"limits.memory": "64MiB"},
        "devices": {"root": {"type": "disk", "path": "/", "source": image}},
        "start": true,
    });
    call(&client, "POST", "/1.0/instances", Some(&create)).await?;
    let screenshot = output.join("screenshot.png");
    save_first_screenshot(&client, &screenshot).await?;

    let socket = client.socket().display();
    println!(
        "\nvgashot is running with VM \"{VM}\"; its screen is saved in {}.\n\nTry:\n  \
         curl --unix-socket {socket} 'http://vgashot/1.0/instances/{VM}/console?type=vga' -o shot.png\n  \
         curl --unix-socket {socket} http://vgashot/1.0/instances?recursion=1\n  \
         INCUS_SOCKET={socket} incus list\n  \
         INCUS_SOCKET={socket} incus query '/1.0/instances/{VM}/console?type=vga' > shot.png\n\n\
         Press Ctrl-C to stop the VM and the daemon.",
        screenshot.display()
    );
    wait_for_interrupt().await;
    eprintln!("\nxtask: stopping the VM and the daemon");
    stop_vm(&client).await;
    call(&client, "DELETE", &format!("/1.0/instances/{VM}"), None).await?;
    Ok(())
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

/// Polls the screen until the fixture's picture is complete, and saves that PNG.
async fn save_first_screenshot(client: &Client, target: &Path) -> Result {
    let expected = FIXTURE.expected_rgb().expect("a static fixture");
    let path = format!("/1.0/instances/{VM}/console?type=vga");
    let started = Instant::now();
    loop {
        let reply = client
            .request("GET", &path, None)
            .await
            .map_err(|error| describe(&error))?;
        if reply.status == 200 && decoded_rgb(&reply.body).as_deref() == Some(expected.as_slice()) {
            std::fs::write(target, &reply.body)
                .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
            eprintln!(
                "xtask: first screenshot after {:.1} s: {}",
                started.elapsed().as_secs_f64(),
                target.display()
            );
            return Ok(());
        }
        if started.elapsed() > DRAW_BOUND {
            return Err("the demo VM never drew its picture".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

async fn stop_vm(client: &Client) {
    let stop = json!({"action": "stop", "force": true});
    // An already stopped VM answers 400, which is fine here.
    let _ = client
        .call("PUT", &format!("/1.0/instances/{VM}/state"), Some(&stop))
        .await;
}

async fn call(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result {
    client
        .call(method, path, body)
        .await
        .map(drop)
        .map_err(|error| format!("{method} {path}: {}", describe(&error)))
}

async fn wait_for_interrupt() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Stops the daemon with SIGTERM (it lets go of VMs and removes its socket) and reaps it.
fn stop_daemon(daemon: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = daemon.wait();
}
