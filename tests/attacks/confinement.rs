//! Attacks on the host through QEMU: disks, kernels and initrds that name host files a VM must not
//! get (`/etc/shadow`, the daemon's own TLS key, a FIFO, device nodes, symbolic links, files outside
//! the image directories), a guest that turns its raw disk into a qcow2 between starts, and a guest
//! that picks a screen larger than the daemon captures; and QEMU itself running as an unprivileged
//! user under seccomp. Each attack runs while a bystander keeps getting screenshots of another VM.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::stat::{Mode, SFlag};
use serde_json::json;
use vgashot_fixtures::Fixture;

use crate::support::bystander::{self, Bystander};
use crate::support::{self, Daemon, Reply};

/// The picture the attacked VMs boot.
const PICTURE: Fixture = Fixture::bars(640, 480);

/// `POST /1.0/instances` of a stopped VM whose root disk is `source`.
async fn create_with_disk(daemon: &Daemon, name: &str, source: &Path) -> Reply {
    let body = json!({
        "name": name,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": {"limits.memory": "64MiB"},
        "devices": {"root": {"type": "disk", "path": "/", "source": source}},
    });
    daemon.request("POST", "/1.0/instances", Some(body)).await
}

/// Asserts an Incus error envelope of `status` with exactly `message`.
fn assert_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(
        reply.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = support::json(reply);
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error_code"], status, "{body}");
    assert_eq!(body["error"], message, "{body}");
}

/// Asserts that a disk of `source` is refused at create with `reason` (after `Disk device
/// "root": `).
async fn assert_disk_refused(daemon: &Daemon, source: &Path, reason: &str) {
    let reply = create_with_disk(daemon, "attacker", source).await;
    assert_error(&reply, 400, &format!("Disk device \"root\": {reason}"));
    let missing = daemon.request("GET", "/1.0/instances/attacker", None).await;
    assert_eq!(missing.status, 404, "a refused VM was stored");
}

/// Starts `name` and returns the operation's error text: the start must fail, as an operation
/// whose status is `Failure` with Incus's code 400.
async fn start_error(daemon: &Daemon, name: &str) -> String {
    let reply = daemon
        .request(
            "PUT",
            &format!("/1.0/instances/{name}/state"),
            Some(json!({"action": "start"})),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    let url = support::json(&reply)["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    // A failed wait answers an error envelope, as upstream's; the operation keeps the details.
    daemon
        .request("GET", &format!("{url}/wait?timeout=60"), None)
        .await;
    let done = daemon.request("GET", &url, None).await;
    let done = support::json(&done);
    assert_eq!(done["metadata"]["status"], "Failure", "{done}");
    assert_eq!(done["metadata"]["status_code"], 400, "{done}");
    done["metadata"]["err"].as_str().unwrap().to_owned()
}

async fn start(daemon: &Daemon, name: &str) {
    daemon
        .operation(
            "PUT",
            &format!("/1.0/instances/{name}/state"),
            Some(json!({"action": "start"})),
        )
        .await;
}

/// The pid of a running VM's QEMU.
async fn qemu_pid(daemon: &Daemon, name: &str) -> i32 {
    let state = daemon
        .request("GET", &format!("/1.0/instances/{name}/state"), None)
        .await;
    let pid = support::json(&state)["metadata"]["pid"].as_i64().unwrap();
    i32::try_from(pid).unwrap()
}

/// QEMU's command line, one argument per element.
fn cmdline(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    raw.split(|&byte| byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The value of a `/proc/PID/status` field.
fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn not_allowed(path: &Path, daemon: &Daemon) -> String {
    format!(
        "{} is not inside an image directory ({}); start the daemon with --image-dir DIR (or \
         VGASHOT_IMAGE_DIRS=DIR:DIR) to allow another directory",
        path.display(),
        daemon.images.path().display()
    )
}

#[tokio::test]
async fn etc_shadow_and_files_outside_the_image_directories_are_refused() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let shadow = Path::new("/etc/shadow");
    assert_disk_refused(&daemon, shadow, &not_allowed(shadow, &daemon)).await;
    // A good image, but in a directory the daemon was not told to allow.
    let elsewhere = tempfile::tempdir().unwrap();
    let image = PICTURE.write_image(elsewhere.path()).unwrap();
    assert_disk_refused(&daemon, &image, &not_allowed(&image, &daemon)).await;
    // `..` cannot climb out of an image directory.
    let climbing = daemon.images.path().join("../../etc/shadow");
    let reason = format!(
        "{} is not a plain absolute path (no \".\" or \"..\" components)",
        climbing.display()
    );
    assert_disk_refused(&daemon, &climbing, &reason).await;
    // Nor can an update, nor a device added later.
    let image = daemon.image(PICTURE);
    let reply = create_with_disk(&daemon, "updated", &image).await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    for method in ["PATCH", "PUT"] {
        let body = json!({"devices": {
            "root": {"type": "disk", "path": "/", "source": image},
            "data": {"type": "disk", "source": "/etc/shadow"},
        }});
        let reply = daemon
            .request(method, "/1.0/instances/updated", Some(body))
            .await;
        assert_error(
            &reply,
            400,
            &format!("Disk device \"data\": {}", not_allowed(shadow, &daemon)),
        );
    }
    let stored = daemon.request("GET", "/1.0/instances/updated", None).await;
    assert!(support::json(&stored)["metadata"]["devices"]["data"].is_null());
    // Nor can a kernel.
    let body = json!({
        "name": "kernel", "type": "virtual-machine", "source": {"type": "none"},
        "config": {"vgashot.boot.kernel": "/etc/shadow"},
    });
    let reply = daemon.request("POST", "/1.0/instances", Some(body)).await;
    assert_error(
        &reply,
        400,
        &format!(
            "Invalid value for config key \"vgashot.boot.kernel\": {}",
            not_allowed(shadow, &daemon)
        ),
    );
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn the_daemons_own_key_is_refused_even_inside_an_image_directory() {
    // The whole temporary directory is an image directory, and the daemon's own is inside it.
    let temp = std::env::temp_dir().canonicalize().unwrap();
    let temp = temp.to_str().unwrap();
    let Some(daemon) = Daemon::start_with(Some("127.0.0.1:0"), &["--image-dir", temp]).await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let dir = daemon.dir.path();
    let key = dir.join("server.key");
    assert!(key.is_file(), "the TLS listener made no key");
    let reason = format!(
        "{} is inside the daemon's own directory {}, which VMs may not use",
        key.display(),
        dir.display()
    );
    assert_disk_refused(&daemon, &key, &reason).await;
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_fifo_is_refused_at_once_and_the_daemon_stays_responsive() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let fifo = daemon.images.path().join("disk.fifo");
    nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    // Three at once used to block three async workers in open(2) and hang the daemon.
    let attack = |index: usize| {
        let (daemon, fifo) = (&daemon, &fifo);
        async move { create_with_disk(daemon, &format!("fifo{index}"), fifo).await }
    };
    let started = Instant::now();
    let (first, second, third) = tokio::time::timeout(bystander::BOUND, async {
        tokio::join!(attack(0), attack(1), attack(2))
    })
    .await
    .expect("creating VMs on a FIFO hung");
    let replies = [first, second, third];
    for reply in &replies {
        assert_error(
            reply,
            400,
            &format!(
                "Disk device \"root\": {} is a FIFO, not a regular file",
                fifo.display()
            ),
        );
    }
    let answered = Instant::now();
    let server = daemon.request("GET", "/1.0", None).await;
    assert_eq!(server.status, 200);
    assert!(
        answered.elapsed() < Duration::from_secs(1),
        "GET /1.0 was slow"
    );
    assert!(started.elapsed() < bystander::BOUND);
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn device_nodes_are_refused_and_block_devices_only_when_allowed() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let null = Path::new("/dev/null");
    assert_disk_refused(&daemon, null, &not_allowed(null, &daemon)).await;
    // The same character device, as a node inside the image directory.
    let char_node = daemon.images.path().join("null");
    mknod(
        &char_node,
        SFlag::S_IFCHR,
        std::fs::metadata(null).unwrap().rdev(),
    );
    let reason = format!(
        "{} is a character device, not a regular file",
        char_node.display()
    );
    assert_disk_refused(&daemon, &char_node, &reason).await;

    // A loop device that holds the picture's image, as a node inside the image directory.
    let backing = PICTURE.write_image(daemon.images.path()).unwrap();
    let Some(loop_device) = LoopDevice::attach(&backing) else {
        support::skip_unless_required("VGASHOT_REQUIRE_LOOP", "a loop device (losetup)");
        bystander.finish(bystander::BOUND).await;
        return;
    };
    let block_node = daemon.images.path().join("loop");
    mknod(&block_node, SFlag::S_IFBLK, loop_device.rdev());
    let reason = format!(
        "{} is a block device; start the daemon with --allow-block-devices to use devices as disks",
        block_node.display()
    );
    assert_disk_refused(&daemon, &block_node, &reason).await;
    bystander.finish(bystander::BOUND).await;

    let Some(allowing) = Daemon::start_with(None, &["--allow-block-devices"]).await else {
        return;
    };
    let block_node = allowing.images.path().join("loop");
    mknod(&block_node, SFlag::S_IFBLK, loop_device.rdev());
    let reply = create_with_disk(&allowing, "device", &block_node).await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    start(&allowing, "device").await;
    support::wait_for_picture(&allowing, "device", PICTURE).await;
}

#[tokio::test]
async fn symbolic_links_are_refused_at_create_and_when_swapped_in_before_a_start() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let images = daemon.images.path();
    let image = daemon.image(PICTURE);
    let link = images.join("link.img");
    std::os::unix::fs::symlink(&image, &link).unwrap();
    let reason = format!(
        "{} is a symbolic link, which vgashot does not follow; name the file itself",
        link.display()
    );
    assert_disk_refused(&daemon, &link, &reason).await;
    // A link in a directory component, to a directory outside.
    std::os::unix::fs::symlink("/etc", images.join("etc")).unwrap();
    let through = images.join("etc/shadow");
    let reason = format!(
        "{} is a symbolic link, which vgashot does not follow; name the file itself",
        images.join("etc").display()
    );
    assert_disk_refused(&daemon, &through, &reason).await;

    // Created with a real file, which is then replaced by a link to /etc/shadow.
    let swapped = images.join("swapped.img");
    std::fs::copy(&image, &swapped).unwrap();
    let reply = create_with_disk(&daemon, "swapped", &swapped).await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    std::fs::remove_file(&swapped).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", &swapped).unwrap();
    assert_eq!(
        start_error(&daemon, "swapped").await,
        format!(
            "Disk device \"root\": {} is a symbolic link, which vgashot does not follow; name \
             the file itself",
            swapped.display()
        )
    );
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_raw_disk_whose_guest_wrote_a_qcow2_header_is_still_opened_raw() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let image = daemon.image(PICTURE);
    let reply = create_with_disk(&daemon, "forger", &image).await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    let instance = daemon.request("GET", "/1.0/instances/forger", None).await;
    assert_eq!(
        support::json(&instance)["metadata"]["config"]["volatile.root.format"],
        "raw"
    );
    start(&daemon, "forger").await;
    support::wait_for_picture(&daemon, "forger", PICTURE).await;
    daemon
        .operation(
            "PUT",
            "/1.0/instances/forger/state",
            Some(json!({"action": "stop", "force": true})),
        )
        .await;
    // What the guest could write into its first sector: a qcow2 header whose backing file is
    // /etc/shadow.
    let mut header = vec![0u8; 512];
    header[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
    header[8..16].copy_from_slice(&0x100u64.to_be_bytes()); // backing_file_offset
    header[16..20].copy_from_slice(&11u32.to_be_bytes()); // backing_file_size
    header[0x100..0x10b].copy_from_slice(b"/etc/shadow");
    let mut disk = std::fs::read(&image).unwrap();
    disk[..512].copy_from_slice(&header);
    std::fs::write(&image, disk).unwrap();

    start(&daemon, "forger").await;
    let pid = qemu_pid(&daemon, "forger").await;
    let drive = cmdline(pid)
        .into_iter()
        .find(|arg| arg.contains("id=disk-root"))
        .unwrap();
    assert_eq!(drive, "file=/dev/fdset/1,format=raw,if=none,id=disk-root");
    let instance = daemon.request("GET", "/1.0/instances/forger", None).await;
    assert_eq!(
        support::json(&instance)["metadata"]["config"]["volatile.root.format"],
        "raw"
    );
    // A fresh VM on the forged file sees the qcow2 header, and refuses its backing file.
    let reply = create_with_disk(&daemon, "fresh", &image).await;
    assert_error(
        &reply,
        400,
        &format!(
            "Disk device \"root\": {} is a qcow2 image with a backing file, which vgashot does \
             not open",
            image.display()
        ),
    );
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_guest_screen_above_the_pixel_limit_is_a_clear_error() {
    // 1 Mi pixels: the bystander's 320x200 fits, a 1280x1024 screen does not.
    let Some(daemon) = Daemon::start_with(None, &["--max-screen-pixels", "1048576"]).await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    daemon
        .create_vm("large", Some(Fixture::bars(1280, 1024)), json!({}), true)
        .await;
    let path = "/1.0/instances/large/console?type=vga";
    let started = Instant::now();
    let refused = loop {
        let reply = daemon.request("GET", path, None).await;
        if reply.status != 200 {
            break reply;
        }
        // The firmware's text screen comes first; the guest then sets its mode.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the mode never changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ppm_bytes = 1280 * 1024 * 3 + "P6\n1280 1024\n255\n".len();
    assert_error(
        &refused,
        400,
        &format!(
            "The screen is larger than the 1048576 pixels this daemon captures (its image is \
             {ppm_bytes} bytes); the limit is set with `vgashot daemon --max-screen-pixels`"
        ),
    );
    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn qemu_runs_as_an_unprivileged_user_under_seccomp_and_opens_no_host_path() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let pid = qemu_pid(&daemon, "bystander").await;
    let uids = status_field(pid, "Uid");
    assert!(
        uids.split_whitespace().all(|uid| uid != "0"),
        "QEMU's uids: {uids}"
    );
    assert_eq!(status_field(pid, "Seccomp"), "2");
    let ps = Command::new("ps")
        .args(["-o", "user=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "vgashot-qemu");
    let images = daemon.images.path().to_str().unwrap().to_owned();
    let line = cmdline(pid);
    assert!(!line.iter().any(|arg| arg.contains(&images)), "{line:?}");

    // A kernel given by descriptor, from a file only root may read: QEMU reads it (and finds it
    // is no kernel) although it never opens its path.
    let garbage = daemon.images.path().join("garbage-kernel");
    std::fs::write(&garbage, vec![0xffu8; 4096]).unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let kernel_vm = |name: &str, kernel: &Path| {
        json!({
            "name": name, "type": "virtual-machine", "source": {"type": "none"},
            "config": {"limits.memory": "64MiB", "vgashot.boot.kernel": kernel},
        })
    };
    let reply = daemon
        .request(
            "POST",
            "/1.0/instances",
            Some(kernel_vm("garbage", &garbage)),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    let error = start_error(&daemon, "garbage").await;
    assert!(error.contains("invalid kernel header"), "{error}");
    // A zero-filled one passes the loader's checks: the VM runs, its kernel by descriptor.
    let zeros = daemon.images.path().join("zero-kernel");
    std::fs::write(&zeros, vec![0u8; 64 * 1024]).unwrap();
    std::fs::set_permissions(&zeros, std::fs::Permissions::from_mode(0o600)).unwrap();
    let reply = daemon
        .request("POST", "/1.0/instances", Some(kernel_vm("zeros", &zeros)))
        .await;
    assert_eq!(reply.status, 202, "{:?}", support::json(&reply));
    start(&daemon, "zeros").await;
    let line = cmdline(qemu_pid(&daemon, "zeros").await);
    let kernel = line.iter().position(|arg| arg == "-kernel").unwrap();
    assert!(line[kernel + 1].starts_with("/proc/self/fd/"), "{line:?}");
    bystander.finish(bystander::BOUND).await;
}

/// Makes a device node (root only).
fn mknod(path: &Path, kind: SFlag, rdev: u64) {
    nix::sys::stat::mknod(path, kind, Mode::S_IRUSR | Mode::S_IWUSR, rdev).unwrap();
}

/// A loop device over a file, detached when dropped.
struct LoopDevice(PathBuf);

impl LoopDevice {
    fn attach(file: &Path) -> Option<Self> {
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        let device = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let is_block =
            std::fs::metadata(&device).is_ok_and(|meta| meta.file_type().is_block_device());
        (output.status.success() && is_block).then_some(Self(device))
    }

    fn rdev(&self) -> u64 {
        std::fs::metadata(&self.0).unwrap().rdev()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("--detach")
            .arg(&self.0)
            .status();
    }
}
