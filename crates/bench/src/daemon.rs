//! The release daemon as the benchmarks drive it: started over a directory of its own, VMs made
//! through its REST API on its Unix socket, the smallest HTTP client that does the job, and
//! what `/proc` says of its processes.
//!
//! How it is used:
//! 1. [`Daemon::start`] runs `target/release/vgashot daemon` over a new temporary `VGASHOT_DIR`
//!    (images allowed from a second temporary directory) and waits until `GET /1.0` answers.
//! 2. [`create_vm`] creates and starts a VM booting a fixture image, with the configuration
//!    keys a section asks for; [`wait_for_greeting`] waits for the fixture's line on the serial
//!    console, which tells the guest runs without asking for its screen.
//! 3. [`Connection`] is one keep-alive HTTP/1.1 connection: whole replies (`Content-Length` or
//!    chunked), or a streamed body read chunk by chunk ([`Connection::chunk`]).
//! 4. [`cpu_time`] and [`rss_kib`] read `/proc` for a process (the daemon, a QEMU), and
//!    [`Daemon::processes`] lists the daemon and every QEMU it runs.
//! 5. Whatever happens, [`Daemon`]'s `Drop` kills the daemon and every QEMU whose pid file lies
//!    under its directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use vgashot_fixtures::Fixture;

use crate::{Result, workspace_root};

/// The first bytes of every PNG, to tell a screenshot from an error envelope.
pub const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The daemon, over a directory of its own; dropping it kills the daemon and its VMs.
pub struct Daemon {
    pub dir: TempDir,
    /// The image directory the daemon allows, outside `dir`.
    pub images: TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts the release daemon over a new temporary `VGASHOT_DIR` and waits until it serves.
    pub async fn start() -> Result<Self> {
        let binary = daemon_binary();
        if !binary.is_file() {
            return Err(format!(
                "{} is missing: build it with `cargo build --release -p vgashot` \
                 (`cargo xtask bench` does)",
                binary.display()
            )
            .into());
        }
        let mut daemon = Self::spawn(&binary)?;
        daemon.wait_until_serving().await?;
        Ok(daemon)
    }

    /// Starts `binary daemon` over a new temporary `VGASHOT_DIR`.
    fn spawn(binary: &Path) -> Result<Self> {
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

    /// The daemon's pid and those of every QEMU it runs (their pid files).
    pub fn processes(&self) -> Result<Vec<i32>> {
        let mut pids = vec![i32::try_from(self.pid()?)?];
        qemu_pids(&self.dir.path().join("run"), &mut pids);
        Ok(pids)
    }

    /// Waits until `GET /1.0` answers (or the daemon exits, or 20 s pass).
    async fn wait_until_serving(&mut self) -> Result {
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

/// The release daemon binary, where `cargo build --release -p vgashot` puts it.
fn daemon_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("release").join("vgashot")
}

/// Creates and starts the VM `name` booting `fixture` (written into a directory of its own
/// in the daemon's image directory: QEMU locks a disk image for one VM; `None`: no disk, and
/// SeaBIOS's text console), with 64 MiB and the configuration keys `config`.
pub async fn create_vm(
    daemon: &Daemon,
    name: &str,
    fixture: Option<Fixture>,
    config: &[(&str, &str)],
) -> Result {
    let mut keys = json!({"limits.memory": "64MiB"});
    for (key, value) in config {
        keys[*key] = json!(value);
    }
    let devices = match fixture {
        Some(fixture) => {
            let dir = daemon.images.path().join(name);
            std::fs::create_dir_all(&dir)?;
            let image = fixture.write_image(&dir)?;
            json!({"root": {"type": "disk", "path": "/", "source": image}})
        }
        None => json!({}),
    };
    let body = json!({
        "name": name,
        "type": "virtual-machine",
        "source": {"type": "none"},
        "config": keys,
        "devices": devices,
        "start": true,
    });
    call(&daemon.socket(), "POST", "/1.0/instances", Some(&body)).await?;
    Ok(())
}

/// Waits until the VM's serial console log holds the fixtures' greeting: its guest runs, and
/// nothing has asked for its screen.
pub async fn wait_for_greeting(socket: &Path, name: &str) -> Result {
    let started = Instant::now();
    let path = format!("/1.0/instances/{name}/console");
    loop {
        let reply = Connection::open(socket)
            .await?
            .exchange("GET", &path, None)
            .await?;
        let greeting = vgashot_fixtures::SERIAL_GREETING.trim_end().as_bytes();
        if reply.status == 200 && reply.body.windows(greeting.len()).any(|w| w == greeting) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{name} never greeted on its serial console").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the VM's screenshot until it has `size` (QEMU shows a placeholder before the guest
/// sets its mode).
pub async fn wait_for_size(socket: &Path, name: &str, size: (u32, u32)) -> Result {
    let path = format!("/1.0/instances/{name}/console?type=vga");
    let started = Instant::now();
    loop {
        let reply = Connection::open(socket)
            .await?
            .exchange("GET", &path, None)
            .await?;
        if reply.status == 200 && png_size(&reply.body) == Some(size) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("{name} never showed a {}x{} screen", size.0, size.1).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets the VM's configuration key `key` to `value`, keeping the rest of its configuration.
pub async fn set_config(socket: &Path, name: &str, key: &str, value: &str) -> Result {
    let path = format!("/1.0/instances/{name}");
    let instance = call(socket, "GET", &path, None).await?;
    let mut config = instance["config"].clone();
    config[key] = json!(value);
    call(socket, "PATCH", &path, Some(&json!({"config": config}))).await?;
    Ok(())
}

/// The sum of `family`'s lines (a counter's name with its `_total`) in `GET /1.0/metrics`
/// whose labels hold every one of `labels` (e.g. `name="vm1"`, `source="mirror"`): one
/// instance's value, or all instances' together with no name given; 0 for lines not there yet
/// (an instance has them once its screen was first asked for).
pub async fn metric(socket: &Path, family: &str, labels: &[&str]) -> Result<u64> {
    let reply = Connection::open(socket)
        .await?
        .exchange("GET", "/1.0/metrics", None)
        .await?;
    let text = String::from_utf8(reply.body)?;
    let mut sum = 0;
    for line in text.lines() {
        let Some((labelled, value)) = line
            .strip_prefix(family)
            .and_then(|rest| rest.strip_prefix('{'))
            .and_then(|rest| rest.split_once("} "))
        else {
            continue;
        };
        if labels.iter().all(|label| labelled.contains(label)) {
            sum += value.trim().parse::<u64>()?;
        }
    }
    Ok(sum)
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
    pub status: u16,
    /// The `ETag` header, quotes included.
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

/// A reply's status line and headers.
pub struct Head {
    pub status: u16,
    pub etag: Option<String>,
    length: Option<usize>,
    chunked: bool,
}

/// One HTTP/1.1 keep-alive connection to the daemon's Unix socket: the smallest client that
/// does the job, so the load generator spends the shared cores on requests rather than on
/// itself. Errors are `io::Error` (`Send`, unlike the crate's `Result`), for spawned clients.
pub struct Connection {
    stream: BufReader<UnixStream>,
}

impl Connection {
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
        self.send(method, path, &[], body).await?;
        self.reply().await
    }

    /// `GET path` with the header `If-None-Match: etag` when there is one; reads its reply.
    pub async fn get_if_none_match(&mut self, path: &str, etag: Option<&str>) -> io::Result<Reply> {
        let headers: Vec<(&str, &str)> = etag
            .map(|etag| ("If-None-Match", etag))
            .into_iter()
            .collect();
        self.send("GET", path, &headers, None).await?;
        self.reply().await
    }

    /// Sends one request with `headers`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> io::Result<()> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: vgashot\r\n");
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.get_mut().write_all(request.as_bytes()).await
    }

    /// Reads a whole reply: its head, then its body.
    async fn reply(&mut self) -> io::Result<Reply> {
        let head = self.head().await?;
        let mut body = Vec::new();
        if head.chunked {
            while let Some(chunk) = self.chunk().await? {
                body.extend_from_slice(&chunk);
            }
        } else {
            body.resize(head.length.unwrap_or(0), 0);
            self.stream.read_exact(&mut body).await?;
        }
        Ok(Reply {
            status: head.status,
            etag: head.etag,
            body,
        })
    }

    /// Reads a reply's status line and headers.
    pub async fn head(&mut self) -> io::Result<Head> {
        let status_line = self.line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| io::Error::other(format!("a bad status line: {status_line:?}")))?;
        let mut head = Head {
            status,
            etag: None,
            length: None,
            chunked: false,
        };
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok(head);
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("etag") {
                head.etag = Some(value.to_owned());
            }
        }
    }

    /// The next chunk of a chunked body; `None` after the last.
    pub async fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size = self.line().await?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::other(format!("a bad chunk size: {size:?}")))?;
        if size == 0 {
            while !self.line().await?.is_empty() {}
            return Ok(None);
        }
        let mut chunk = vec![0; size];
        self.stream.read_exact(&mut chunk).await?;
        self.line().await?;
        Ok(Some(chunk))
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

/// A PNG's width and height, from its `IHDR` chunk.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if !png.starts_with(PNG_MAGIC) || png.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let number = |at: usize| Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?));
    Some((number(16)?, number(20)?))
}

/// Process `pid`'s resident memory, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Process `pid`'s CPU time, user and system, all threads (`utime + stime` of
/// `/proc/PID/stat`, which keeps the time of threads that ended): for QEMU, the time it spends
/// outside the guest, `screendump` included.
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

/// The CPU time of all of `pids` together.
pub fn total_cpu_time(pids: &[i32]) -> Result<Duration> {
    pids.iter().map(|&pid| cpu_time(pid)).sum()
}

/// The pid of the QEMU whose pid file lies under `dir`.
pub fn find_qemu_pid(dir: &Path) -> Option<i32> {
    let mut pids = Vec::new();
    qemu_pids(dir, &mut pids);
    pids.first().copied()
}

/// Adds the pid of every QEMU whose pid file lies under `dir` to `pids`.
fn qemu_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Some(pid) = vgashot_qemu_process::read_pid_file(dir) {
        pids.push(pid);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|entry| entry.path()) {
        if path.is_dir() {
            qemu_pids(&path, pids);
        }
    }
}
