//! The release daemon as the daemon-level sections drive it: started over a directory of its
//! own, spoken to over its Unix socket with the smallest HTTP client that does the job, and
//! killed with its VMs whatever happens.
//!
//! 1. [`release_binary`] finds `target/release/vgashot` (or says how to build it), and
//!    [`Daemon::spawn`] starts `vgashot daemon` over a temporary `VGASHOT_DIR`, with a temporary
//!    image directory allowed; [`Daemon::wait_until_serving`] polls `GET /1.0`.
//! 2. [`create_vm`] makes and starts a VM booting an image (or nothing: SeaBIOS's text
//!    console), [`wait_for_size`] polls its screenshot until the guest's screen is up, and
//!    [`set_config`] changes one key of its configuration.
//! 3. [`call`] sends one request over a [`Connection`] and waits for the operation it may
//!    start; [`Connection`] is also what load-generating clients loop on.
//! 4. [`cpu_time`] reads a process's CPU time from `/proc`, and [`find_qemu_pid`] finds a VM's
//!    QEMU by its pid file.
//! 5. Dropping a [`Daemon`] kills it and every QEMU whose pid file lies under its directory, so
//!    no exit path (an error, a panic) leaves a VM running.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::{Result, workspace_root};

/// The first bytes of every PNG, to tell a screenshot from an error envelope.
pub const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Process `pid`'s CPU time, user and system, all threads (`utime + stime` of
/// `/proc/PID/stat`): the time QEMU spends outside the guest, `screendump` included.
pub fn cpu_time(pid: i32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces; the fields after it may not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("a /proc stat line without a command name")?
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3) at index 0.
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|&ticks| ticks > 0)
        .ok_or("no clock tick rate")?;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The pid of the QEMU whose pid file lies under `dir`.
pub fn find_qemu_pid(dir: &Path) -> Option<i32> {
    if let Some(pid) = vgashot_qemu_process::read_pid_file(dir) {
        return Some(pid);
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .find_map(|path| find_qemu_pid(&path))
}

/// The release daemon binary, where `cargo build --release -p vgashot` puts it; an error that
/// says so when it is missing.
pub fn release_binary() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("release").join("vgashot");
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p vgashot` \
             (`cargo xtask bench` does)",
            binary.display()
        )
        .into());
    }
    Ok(binary)
}

/// The daemon, over a directory of its own; dropping it kills the daemon and its VMs.
pub struct Daemon {
    /// Its `VGASHOT_DIR`.
    pub dir: TempDir,
    /// The image directory the daemon allows, outside `dir`.
    pub images: TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `binary daemon` over a new temporary `VGASHOT_DIR`.
    pub fn spawn(binary: &Path) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let images = tempfile::tempdir()?;
        let child = Command::new(binary)
            .arg("daemon")
            .arg("--image-dir")
            .arg(images.path())
            .env("VGASHOT_DIR", dir.path())
            .env("VGASHOT_LOG", "warn")
            .env_remove("VGASHOT_HTTPS_ADDRESS")
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Self {
            dir,
            images,
            child: Some(child),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("unix.socket")
    }

    pub fn pid(&self) -> Result<u32> {
        Ok(self.child.as_ref().ok_or("the daemon is not running")?.id())
    }

    /// Waits until `GET /1.0` answers (or the daemon exits, or 20 s pass).
    pub async fn wait_until_serving(&mut self) -> Result {
        let started = Instant::now();
        loop {
            if call(&self.socket(), "GET", "/1.0", None).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("the daemon exited: {status}").into());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("the daemon never answered on its socket".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the daemon with SIGTERM, which leaves its VMs running, and waits for it.
    pub async fn terminate(&mut self) -> Result {
        let mut child = self.child.take().ok_or("the daemon is not running")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return match status.success() {
                    true => Ok(()),
                    false => Err(format!("the daemon exited with {status}").into()),
                };
            }
            if started.elapsed() > Duration::from_secs(20) {
                self.child = Some(child);
                return Err("the daemon did not stop within 20 s of SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        vgashot_qemu_process::testing::kill_detached_under(&self.dir.path().join("run"));
    }
}

/// Makes the VM `name` with `config` (besides 64 MiB of memory) booting `image` (`None`: no
/// disk, SeaBIOS's text console), and starts it.
pub async fn create_vm(
    socket: &Path,
    name: &str,
    config: &[(&str, &str)],
    image: Option<&Path>,
) -> Result {
    let mut settings = json!({"limits.memory": "64MiB"});
    for (key, value) in config {
        settings[*key] = json!(value);
    }
    let devices = match image {
        Some(image) => json!({"root": {"type": "disk", "path": "/", "source": image}}),
        None => json!({}),
    };
    let body = json!({
        "name": name,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": settings,
        "devices": devices,
        "start": true,
    });
    call(socket, "POST", "/1.0/instances", Some(&body)).await?;
    Ok(())
}

/// Polls the VM's screenshot until it has `size` (QEMU shows a placeholder before the guest
/// sets its mode).
pub async fn wait_for_size(socket: &Path, vm: &str, size: (u32, u32)) -> Result {
    let path = format!("/1.0/instances/{vm}/console?type=vga");
    let started = Instant::now();
    loop {
        let mut connection = Connection::open(socket).await?;
        let reply = connection.exchange("GET", &path, None).await?;
        if reply.status == 200 && png_size(&reply.body) == Some(size) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("{vm} never showed a {}x{} screen", size.0, size.1).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PNG's width and height, from its `IHDR` chunk.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if !png.starts_with(PNG_MAGIC) || png.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let number = |at: usize| Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?));
    Some((number(16)?, number(20)?))
}

/// Sets the VM's `key` to `value`, keeping the rest of its configuration.
pub async fn set_config(socket: &Path, vm: &str, key: &str, value: &str) -> Result {
    let path = format!("/1.0/instances/{vm}");
    let instance = call(socket, "GET", &path, None).await?;
    let mut config = instance["config"].clone();
    config[key] = json!(value);
    call(socket, "PATCH", &path, Some(&json!({"config": config}))).await?;
    Ok(())
}

/// Sends a request that answers a sync envelope, or an operation which is then waited for;
/// answers the metadata.
pub async fn call(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let reply = Connection::open(socket)
        .await?
        .exchange(method, path, body)
        .await?;
    let mut envelope: Value = serde_json::from_slice(&reply.body)?;
    if envelope["type"] == "async" {
        let operation = envelope["operation"].as_str().unwrap_or_default();
        let wait = format!("{operation}/wait?timeout=120");
        let reply = Connection::open(socket)
            .await?
            .exchange("GET", &wait, None)
            .await?;
        envelope = serde_json::from_slice(&reply.body)?;
    }
    match envelope["type"].as_str() {
        Some("sync") if envelope["status_code"] == 200 || envelope["status_code"].is_null() => {
            Ok(envelope["metadata"].clone())
        }
        _ => Err(format!("{method} {path} failed: {envelope}").into()),
    }
}

/// A reply read whole.
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

/// One HTTP/1.1 keep-alive connection to the daemon's Unix socket: the smallest client that
/// does the job, so the load generator spends the shared cores on requests rather than on
/// itself. Errors are `io::Error` (`Send`, unlike the crate's `Result`), for spawned clients.
pub struct Connection {
    stream: BufReader<UnixStream>,
}

impl Connection {
    /// Connects to the daemon's socket.
    pub async fn open(socket: &Path) -> io::Result<Self> {
        Ok(Self {
            stream: BufReader::new(UnixStream::connect(socket).await?),
        })
    }

    /// Sends one request and reads its reply (`Content-Length` or chunked).
    pub async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> io::Result<Reply> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: vgashot\r\n");
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.get_mut().write_all(request.as_bytes()).await?;

        let status_line = self.line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| io::Error::other(format!("a bad status line: {status_line:?}")))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = self.line().await?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io::Error::other(format!("a bad chunk size: {size:?}")))?;
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                self.stream.read_exact(&mut body[at..]).await?;
                self.line().await?;
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.stream.read_exact(&mut body).await?;
        }
        Ok(Reply { status, body })
    }

    /// One line of the reply's head, without its line ending.
    async fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
