//! Attacks on the life cycle: restarts, stops, deletes and starts that race or are cut short, a
//! daemon killed between the steps of a delete, a second daemon, permissions, and paths that
//! could not be bound or could inject QEMU options. Each shows the attack failing, that no QEMU
//! outlives its instance, and that a bystander VM is served meanwhile.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vgashot_fixtures::Fixture;

use crate::support::bystander::{self, Bystander};
use crate::support::{self, Daemon};

/// How long a forced stop may take, even behind a clean shutdown waiting for the guest.
const FORCED_STOP_BOUND: Duration = Duration::from_secs(10);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// A VM booting the Mode13 fixture (which ignores the ACPI power button) from a disk image of
/// its own (QEMU locks an image for its writer).
fn vm_body(daemon: &Daemon, name: &str, ephemeral: bool, start: bool) -> Value {
    let image = daemon.images.path().join(format!("{name}.img"));
    std::fs::copy(daemon.image(Fixture::Mode13), &image).unwrap();
    json!({
        "name": name,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "ephemeral": ephemeral,
        "config": {"limits.memory": "64MiB"},
        "devices": {"root": {"type": "disk", "path": "/", "source": image}},
        "start": start,
    })
}

/// Sends a request that must start an operation; returns the operation's URL.
async fn begin(daemon: &Daemon, method: &str, path: &str, body: Option<Value>) -> String {
    let reply = daemon.request(method, path, body).await;
    assert_eq!(
        reply.status,
        202,
        "{method} {path}: {:?}",
        support::json(&reply)
    );
    support::json(&reply)["operation"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for an operation's end: `Ok` with it when it succeeded, `Err` with its error text when
/// it failed.
async fn finished(daemon: &Daemon, url: &str) -> Result<Value, String> {
    let reply = daemon
        .request("GET", &format!("{url}/wait?timeout=60"), None)
        .await;
    let reply = support::json(&reply);
    if reply["type"] == "error" {
        return Err(reply["error"].as_str().unwrap().to_owned());
    }
    let operation = reply["metadata"].clone();
    assert_eq!(operation["status"], "Success", "{url}: {reply}");
    Ok(operation)
}

/// The pids of the QEMUs serving instance `name` of the daemon over `dir` (any QEMU whose
/// command line names that instance's QMP socket, as it is or with its commas doubled).
fn qemus_of(dir: &Path, name: &str) -> Vec<i32> {
    let socket = dir.join("run/default").join(name).join("qmp.sock");
    let plain = socket.as_os_str().as_encoded_bytes().to_vec();
    let escaped = String::from_utf8_lossy(&plain)
        .replace(',', ",,")
        .into_bytes();
    let mut pids = qemus_naming(&plain);
    pids.extend(
        qemus_naming(&escaped)
            .into_iter()
            .filter(|pid| !pids.contains(pid))
            .collect::<Vec<_>>(),
    );
    pids
}

/// The pids of the QEMUs whose command line holds `needle`.
fn qemus_naming(needle: &[u8]) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|pid| pid.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|&byte| byte == 0);
        let is_qemu = args
            .next()
            .is_some_and(|binary| binary.windows(4).any(|window| window == b"qemu"));
        if is_qemu
            && args.any(|arg| arg.windows(needle.len()).any(|window| window == needle))
            && !is_zombie(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(')')?;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// An instance's status, or `None` when it does not exist (404).
async fn status(daemon: &Daemon, name: &str) -> Option<String> {
    let reply = daemon
        .request("GET", &format!("/1.0/instances/{name}"), None)
        .await;
    match reply.status {
        404 => None,
        200 => Some(
            support::json(&reply)["metadata"]["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
        other => panic!("GET {name}: {other} {:?}", support::json(&reply)),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn an_ephemeral_restart_keeps_the_instance_and_a_stop_deletes_it() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    daemon
        .operation(
            "POST",
            "/1.0/instances",
            Some(vm_body(&daemon, "e1", true, true)),
        )
        .await;
    let first = qemus_of(daemon.dir.path(), "e1");
    assert_eq!(first.len(), 1, "{first:?}");

    let restart = json!({"action": "restart", "force": true});
    daemon
        .operation("PUT", "/1.0/instances/e1/state", Some(restart))
        .await;
    // Still listed, running, on one new QEMU (Incus deletes an ephemeral instance when it
    // stops, not when it restarts).
    assert_eq!(status(&daemon, "e1").await.as_deref(), Some("Running"));
    let listed = support::json(&daemon.request("GET", "/1.0/instances", None).await);
    assert!(
        listed["metadata"]
            .as_array()
            .unwrap()
            .contains(&json!("/1.0/instances/e1")),
        "{listed}"
    );
    let second = qemus_of(daemon.dir.path(), "e1");
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second, "the restart started a new QEMU");

    let stop = json!({"action": "stop", "force": true});
    daemon
        .operation("PUT", "/1.0/instances/e1/state", Some(stop))
        .await;
    // The stop deleted it before it answered, and no QEMU remains for it.
    assert_eq!(status(&daemon, "e1").await, None);
    assert_eq!(qemus_of(daemon.dir.path(), "e1"), Vec::<i32>::new());
    assert!(!daemon.dir.path().join("run/default/e1").exists());
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_forced_stop_cuts_a_clean_shutdown_short_and_a_delete_follows() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    daemon
        .operation(
            "POST",
            "/1.0/instances",
            Some(vm_body(&daemon, "v1", false, true)),
        )
        .await;
    // The guest ignores ACPI: this stop would wait for ever (the timeout is capped at 5 min).
    let clean = begin(
        &daemon,
        "PUT",
        "/1.0/instances/v1/state",
        Some(json!({"action": "stop", "timeout": 100_000})),
    )
    .await;
    // The clean stop holds the instance now; a PATCH waits behind it (until the forced stop).
    let operation = daemon.request("GET", &clean, None).await;
    assert_eq!(support::json(&operation)["metadata"]["status"], "Running");
    let patcher = daemon.client();
    let patch = tokio::spawn(async move {
        let body = json!({"description": "patched behind a clean stop"});
        patcher
            .request("PATCH", "/1.0/instances/v1", Some(&body))
            .await
            .map(|reply| reply.status)
    });

    let started = Instant::now();
    let forced = begin(
        &daemon,
        "PUT",
        "/1.0/instances/v1/state",
        Some(json!({"action": "stop", "force": true})),
    )
    .await;
    finished(&daemon, &forced).await.unwrap();
    let took = started.elapsed();
    eprintln!("the forced stop behind a clean one took {took:?}");
    assert!(took < FORCED_STOP_BOUND, "the forced stop took {took:?}");
    finished(&daemon, &clean).await.unwrap();
    assert_eq!(patch.await.unwrap().unwrap(), 202);
    assert_eq!(status(&daemon, "v1").await.as_deref(), Some("Stopped"));
    assert!(qemus_of(daemon.dir.path(), "v1").is_empty());

    daemon.operation("DELETE", "/1.0/instances/v1", None).await;
    assert_eq!(status(&daemon, "v1").await, None);
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_start_racing_a_delete_never_leaves_a_qemu_without_its_instance() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let (mut deleted_first, mut started_first) = (0, 0);
    for round in 0..15 {
        daemon
            .operation(
                "POST",
                "/1.0/instances",
                Some(vm_body(&daemon, "r1", false, false)),
            )
            .await;
        let start = daemon.request(
            "PUT",
            "/1.0/instances/r1/state",
            Some(json!({"action": "start"})),
        );
        let delete = daemon.request("DELETE", "/1.0/instances/r1", None);
        let (start, delete) = tokio::join!(start, delete);
        // Each request either started an operation or was refused at once (the instance had
        // gone, or was running); the operations end, with Incus's words when they fail.
        let gone = [
            "Failed to fetch instance \"r1\" in project \"default\": Instance not found",
            // The delete came between the request and its operation's start.
            "Instance not found",
        ];
        let running = ["The instance is currently running, stop it first"];
        for (reply, refusals) in [(&start, &gone[..]), (&delete, &running[..])] {
            let outcome = if reply.status == 202 {
                let url = support::json(reply)["operation"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                finished(&daemon, &url).await.map(drop)
            } else {
                assert!(
                    [400, 404].contains(&reply.status),
                    "round {round}: {}",
                    reply.status
                );
                Err(support::json(reply)["error"].as_str().unwrap().to_owned())
            };
            if let Err(error) = outcome {
                assert!(refusals.contains(&error.as_str()), "round {round}: {error}");
            }
        }
        let qemus = qemus_of(daemon.dir.path(), "r1");
        match status(&daemon, "r1").await {
            // The delete won: nothing runs for it, nothing of it is left.
            None => {
                assert!(
                    qemus.is_empty(),
                    "round {round}: a QEMU outlived r1: {qemus:?}"
                );
                assert!(!daemon.dir.path().join("run/default/r1").exists());
                deleted_first += 1;
            }
            // The start won: the delete was refused, the VM runs on exactly one QEMU.
            Some(status) => {
                assert_eq!(status, "Running", "round {round}");
                assert_eq!(qemus.len(), 1, "round {round}: {qemus:?}");
                let stop = json!({"action": "stop", "force": true});
                daemon
                    .operation("PUT", "/1.0/instances/r1/state", Some(stop))
                    .await;
                daemon.operation("DELETE", "/1.0/instances/r1", None).await;
                started_first += 1;
            }
        }
    }
    eprintln!("deleted first {deleted_first} times, started first {started_first} times");
    assert!(qemus_of(daemon.dir.path(), "r1").is_empty());
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_directory_refuses_to_start() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let socket_before = std::fs::symlink_metadata(daemon.socket()).unwrap();
    let second = Command::new(support::daemon_binary())
        .arg("daemon")
        .env("VGASHOT_DIR", daemon.dir.path())
        .env("VGASHOT_LOG", "warn")
        .env_remove("VGASHOT_HTTPS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || second.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "another vgashot daemon (pid {}) is using {}",
        daemon.pid(),
        daemon.dir.path().display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // It touched nothing: the first daemon's socket is the same file, and serves.
    let socket_after = std::fs::symlink_metadata(daemon.socket()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(socket_before.ino(), socket_after.ino());
    assert_eq!(
        status(&daemon, "bystander").await.as_deref(),
        Some("Running")
    );
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn the_socket_and_the_run_time_files_are_private_even_under_an_open_umask() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let dir = daemon.dir.path();
    assert_eq!(mode(&daemon.socket()), 0o660);
    for private in ["run", "run/default", "run/default/bystander"] {
        assert_eq!(mode(&dir.join(private)), 0o700, "{private}");
    }
    // The guest printed to its serial console; reading the log writes the file.
    let log = daemon
        .request("GET", "/1.0/instances/bystander/console", None)
        .await;
    assert_eq!(log.status, 200);
    assert!(!log.body.is_empty(), "the fixture prints to its console");
    assert_eq!(mode(&dir.join("run/default/bystander/console.log")), 0o600);

    // A daemon started with umask 0 (bind(2) would make its socket 0777): watch its directory
    // while it binds, and never see a socket wider than 0660 or a bind directory wider than
    // 0700.
    let other = tempfile::tempdir().unwrap();
    let socket = other.path().join("unix.socket");
    let mut child = Command::new("sh")
        .args(["-c", "umask 0; exec \"$0\" daemon"])
        .arg(support::daemon_binary())
        .env("VGASHOT_DIR", other.path())
        .env("VGASHOT_LOG", "warn")
        .env_remove("VGASHOT_HTTPS_ADDRESS")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let watched = other.path().to_owned();
    let watcher = std::thread::spawn(move || watch_modes(&watched, &watched.join("unix.socket")));
    let client = vgashot_client::Client::new(&socket);
    let started = Instant::now();
    while client.request("GET", "/1.0", None).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon never answered"
        );
        tokio::time::sleep(POLL).await;
    }
    let seen = watcher.join().unwrap();
    assert!(seen.is_empty(), "wider than allowed: {seen:?}");
    assert_eq!(mode(&socket), 0o660);
    let _ = child.kill();
    let _ = child.wait();
    bystander.finish(bystander::BOUND).await;
}

/// Polls `dir` until `socket` is there: every socket and directory found and too wide.
fn watch_modes(dir: &Path, socket: &Path) -> Vec<(PathBuf, u32)> {
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o777;
            let too_wide = if metadata.file_type().is_socket() {
                mode & !0o660 != 0
            } else {
                metadata.is_dir()
                    && entry.file_name().to_string_lossy().starts_with(".b")
                    && mode != 0o700
            };
            if too_wide {
                seen.push((entry.path(), mode));
            }
        }
        if std::fs::symlink_metadata(socket).is_ok_and(|metadata| metadata.file_type().is_socket())
        {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn a_name_too_long_for_its_qmp_socket_is_refused_at_create() {
    // A directory long enough that a short name overflows sun_path, short enough for the
    // daemon's own socket.
    let prefix = "vgashot-a-long-directory-name-for-sockets-";
    let Some(daemon) =
        Daemon::start_in(tempfile::Builder::new().prefix(prefix).tempdir().unwrap()).await
    else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let dir_length = daemon.dir.path().as_os_str().len();
    // <dir>/run/default/<name>/qmp.sock
    let fixed = dir_length + "/run/default/".len() + "/qmp.sock".len();
    let longest = 107 - fixed;
    assert!((2..60).contains(&longest), "{dir_length}");

    let too_long = "x".repeat(longest + 1);
    let reply = daemon
        .request(
            "POST",
            "/1.0/instances",
            Some(vm_body(&daemon, &too_long, false, false)),
        )
        .await;
    assert_eq!(reply.status, 400, "{:?}", support::json(&reply));
    assert_eq!(
        support::json(&reply)["error"],
        "The instance's QMP socket path would be 108 bytes long, more than the 107 bytes a \
         Unix socket path may have: use a shorter instance name or VGASHOT_DIR"
    );
    assert_eq!(status(&daemon, &too_long).await, None);
    assert!(
        !daemon
            .dir
            .path()
            .join("run/default")
            .join(&too_long)
            .exists()
    );

    // One byte shorter fits, and runs.
    let fits = "x".repeat(longest);
    daemon
        .operation(
            "POST",
            "/1.0/instances",
            Some(vm_body(&daemon, &fits, false, true)),
        )
        .await;
    assert_eq!(status(&daemon, &fits).await.as_deref(), Some("Running"));
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_crash_mid_delete_leaves_a_reusable_name_with_an_empty_console_log() {
    let Some(mut daemon) = Daemon::start().await else {
        return;
    };
    // The bystander VM keeps running across the daemon's restart.
    daemon
        .create_vm(
            "bystander",
            Some(Fixture::Mode13),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    daemon
        .operation(
            "POST",
            "/1.0/instances",
            Some(vm_body(&daemon, "v1", false, true)),
        )
        .await;
    let log_url = "/1.0/instances/v1/console";
    let started = Instant::now();
    while daemon.request("GET", log_url, None).await.body.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "v1 printed nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = json!({"action": "stop", "force": true});
    daemon
        .operation("PUT", "/1.0/instances/v1/state", Some(stop))
        .await;
    let dir = daemon.dir.path().to_owned();
    assert!(dir.join("run/default/v1/console.log").exists());

    // What a daemon killed right after the delete's first step leaves: the definition is a
    // tombstone, the run-time directory (with its console log) is still there.
    daemon.terminate();
    std::fs::rename(
        dir.join("instances/default/v1.json"),
        dir.join("instances/default/v1.deleted"),
    )
    .unwrap();
    // And a run-time directory that no definition owns (a definition removed by hand).
    std::fs::create_dir_all(dir.join("run/default/v2")).unwrap();
    std::fs::write(
        dir.join("run/default/v2/console.log"),
        "someone else's secrets",
    )
    .unwrap();
    daemon.spawn().await;
    let bystander = Bystander::start(daemon.client(), "bystander");

    // The next daemon finished the delete: nothing of v1 is left.
    assert_eq!(status(&daemon, "v1").await, None);
    assert!(!dir.join("run/default/v1").exists());
    assert!(!dir.join("instances/default/v1.deleted").exists());
    // Both names are free, and their new instances inherit no console log.
    for name in ["v1", "v2"] {
        daemon
            .operation(
                "POST",
                "/1.0/instances",
                Some(vm_body(&daemon, name, false, false)),
            )
            .await;
        assert_eq!(status(&daemon, name).await.as_deref(), Some("Stopped"));
        let log = daemon
            .request("GET", &format!("/1.0/instances/{name}/console"), None)
            .await;
        assert_eq!(log.status, 200);
        assert!(log.body.is_empty(), "{name} inherited {:?}", log.body);
        assert_eq!(
            std::fs::read_dir(dir.join("run/default").join(name))
                .unwrap()
                .count(),
            0
        );
    }
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn commas_in_paths_cannot_inject_qemu_options() {
    // The daemon's own directory holds a comma too: QMP socket, pid file and log live under it.
    let Some(daemon) = Daemon::start_in(
        tempfile::Builder::new()
            .prefix("vg,x=y-")
            .tempdir()
            .unwrap(),
    )
    .await
    else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    // A disk path that, were commas not escaped, would end the `file=` option and add another:
    // `file=<dir>/evil,file=<bars image>` boots the bars instead of the Mode13 picture.
    let bars = Fixture::Bars {
        width: 640,
        height: 480,
    };
    let decoy = daemon.image(bars);
    let evil = PathBuf::from(format!(
        "{}/evil,file={}",
        daemon.images.path().display(),
        decoy.display()
    ));
    std::fs::create_dir_all(evil.parent().unwrap()).unwrap();
    std::fs::copy(daemon.image(Fixture::Mode13), &evil).unwrap();
    let body = json!({
        "name": "c1",
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": {"limits.memory": "64MiB", "console.screenshot.min_interval": "0"},
        "devices": {"root": {"type": "disk", "path": "/", "source": evil}},
        "start": true,
    });
    daemon.operation("POST", "/1.0/instances", Some(body)).await;
    support::wait_for_picture(&daemon, "c1", Fixture::Mode13).await;
    assert_eq!(qemus_of(daemon.dir.path(), "c1").len(), 1);
    bystander.finish(bystander::BOUND).await;
}
