//! The real daemon binary over a temporary `VGASHOT_DIR`, an HTTP client over its Unix socket,
//! and cleanup that kills the daemon and every VM it started when the test ends (even by a
//! panic), so no test leaves an orphaned QEMU.

#![allow(dead_code)] // Each test binary uses its own part of this module.

pub mod browser;
pub mod bystander;
pub mod lifecycle;
pub mod screen_events;
pub mod terminal;
pub mod ui_proxy;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use vgashot_client::Client;
use vgashot_incus_wire::{InstanceState, Operation};

/// A running daemon.
pub struct Daemon {
    pub dir: TempDir,
    /// The image directory the daemon allows (`--image-dir`), outside `dir`.
    pub images: TempDir,
    child: Option<Child>,
    /// The `--listen` address, kept for restarts.
    listen: Option<String>,
    /// More arguments of `vgashot daemon`, kept for restarts.
    extra_args: Vec<String>,
    /// Extra environment variables of the daemon, kept for restarts.
    env: Vec<(String, String)>,
    /// The `vgashot` binary that runs as the daemon.
    binary: PathBuf,
}

/// A reply of the daemon.
pub use vgashot_client::Reply;

/// The body of a reply as JSON.
pub fn json(reply: &Reply) -> Value {
    reply
        .json()
        .unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", reply.body))
}

impl Daemon {
    /// Starts the daemon, or returns `None` when QEMU is missing and the test may be skipped.
    pub async fn start() -> Option<Self> {
        Self::start_with(None, &[]).await
    }

    /// Starts the daemon over `dir` (a directory with a name of its own: long, or with a comma),
    /// or returns `None` as [`Self::start`].
    pub async fn start_in(dir: TempDir) -> Option<Self> {
        Self::start_configured(dir, None, &[], &[]).await
    }

    /// Starts the daemon with extra environment variables (`VGASHOT_ACCEL`, say), or `None` as
    /// [`Self::start`].
    pub async fn start_with_env(env: &[(&str, &str)]) -> Option<Self> {
        Self::start_configured(tempfile::tempdir().unwrap(), None, &[], env).await
    }

    /// Starts the daemon also listening with TLS on `address` (`127.0.0.1:0` picks a free port,
    /// which `GET /1.0` then reports in `environment.addresses`), or `None` as [`Self::start`].
    pub async fn start_listening(address: &str) -> Option<Self> {
        Self::start_with(Some(address), &[]).await
    }

    /// Starts the daemon listening with TLS on `address`, with extra environment variables, or
    /// `None` as [`Self::start`].
    pub async fn start_listening_with_env(address: &str, env: &[(&str, &str)]) -> Option<Self> {
        Self::start_configured(tempfile::tempdir().unwrap(), Some(address), &[], env).await
    }

    /// Starts the daemon, listening with TLS on `listen` if given, with `extra_args` after the
    /// test's own (`--image-dir` of [`Self::images`]), or `None` as [`Self::start`].
    pub async fn start_with(listen: Option<&str>, extra_args: &[&str]) -> Option<Self> {
        Self::start_configured(tempfile::tempdir().unwrap(), listen, extra_args, &[]).await
    }

    /// Starts `binary` (an installed `vgashot`) as the daemon, or `None` as [`Self::start`].
    pub async fn start_binary(binary: &std::path::Path) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        vgashot_qemu_process::Launch::for_tests(dir.path())?;
        let mut daemon = Self::unstarted(dir, None, &[], &[]);
        daemon.binary = binary.to_owned();
        daemon.spawn().await;
        Some(daemon)
    }

    /// Starts the daemon over `dir` with all of the above, or `None` as [`Self::start`].
    async fn start_configured(
        dir: TempDir,
        listen: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Self> {
        vgashot_qemu_process::Launch::for_tests(dir.path())?;
        let mut daemon = Self::unstarted(dir, listen, extra_args, env);
        daemon.spawn().await;
        Some(daemon)
    }

    /// The daemon of [`Self::start_configured`] before its process starts.
    fn unstarted(
        dir: TempDir,
        listen: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self {
            dir,
            images: tempfile::tempdir().unwrap(),
            child: None,
            listen: listen.map(str::to_owned),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            binary: daemon_binary(),
        }
    }

    /// Starts (again) the daemon process over the same directory.
    pub async fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        command.arg("daemon");
        if let Some(address) = &self.listen {
            command.args(["--listen", address]);
        }
        command
            .arg("--image-dir")
            .arg(self.images.path())
            .args(&self.extra_args);
        let child = command
            .env("VGASHOT_DIR", self.dir.path())
            .env("VGASHOT_LOG", "warn")
            .env_remove("VGASHOT_HTTPS_ADDRESS")
            .env_remove("VGASHOT_IMAGE_DIRS")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while self.get("/1.0").await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the daemon never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the daemon with SIGTERM (VMs keep running) and waits for it.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("the daemon runs");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "the daemon exited with {status}");
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("unix.socket")
    }

    /// A client of the daemon.
    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }

    async fn get(&self, path: &str) -> Option<Reply> {
        self.client().request("GET", path, None).await.ok()
    }

    /// Sends a request and reads the whole reply.
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.client()
            .request(method, path, body.as_ref())
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// Sends a request with a raw body.
    pub async fn request_raw(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        self.client()
            .request_bytes(method, path, Some(body.to_vec()))
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// Sends a request that starts an operation and waits for the operation's end; returns it.
    pub async fn operation(&self, method: &str, path: &str, body: Option<Value>) -> Operation {
        let reply = self.request(method, path, body).await;
        assert_eq!(reply.status, 202, "{method} {path}: {:?}", json(&reply));
        let url = reply.header(http::header::LOCATION).unwrap();
        self.client()
            .call_typed("GET", &format!("{url}/wait?timeout=60"), None::<&()>)
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// The state of the instance `name` of the default project.
    pub async fn state(&self, name: &str) -> InstanceState {
        self.client()
            .instance_state(name, None)
            .await
            .unwrap_or_else(|error| panic!("GET the state of {name}: {error}"))
    }

    /// Creates a VM with 64 MiB and `config` that boots `fixture` (or nothing), started or not;
    /// returns the finished operation.
    pub async fn create_vm(
        &self,
        name: &str,
        fixture: Option<vgashot_fixtures::Fixture>,
        mut config: Value,
        start: bool,
    ) -> Operation {
        let mut devices = json!({});
        if let Some(fixture) = fixture {
            let image = self.image(fixture);
            devices["root"] = json!({"type": "disk", "path": "/", "source": image});
        }
        config["limits.memory"] = json!("64MiB");
        let body = json!({
            "name": name,
            "type": "virtual-machine",
            "source": {"type": "none"},
            "config": config,
            "devices": devices,
            "start": start,
        });
        self.operation("POST", "/1.0/instances", Some(body)).await
    }

    /// Writes `fixture`'s disk image into the image directory the daemon allows.
    pub fn image(&self, fixture: vgashot_fixtures::Fixture) -> PathBuf {
        fixture.write_image(self.images.path()).unwrap()
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

/// The `vgashot` binary under test: `VGASHOT_TEST_BINARY` when set (`cargo xtask test` points
/// the attack suite at the release build with it), else the one cargo built for this test.
pub fn daemon_binary() -> PathBuf {
    std::env::var_os("VGASHOT_TEST_BINARY")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vgashot")))
}

/// Decodes a PNG into (width, height, RGB).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let frame = vgashot_framebuffer::Frame::from_png(bytes).unwrap();
    (frame.width(), frame.height(), frame.rgb().to_vec())
}

/// A counter of the metrics text, for instance `name`.
pub async fn metric(daemon: &Daemon, family: &str, name: &str) -> u64 {
    let reply = daemon.request("GET", "/1.0/metrics", None).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let prefix = format!("{family}{{project=\"default\",name=\"{name}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

/// `GET /1.0/instances/NAME/console?type=vga`: the screenshot of `name` as it is.
pub async fn screenshot(daemon: &Daemon, name: &str) -> Reply {
    let path = format!("/1.0/instances/{name}/console?type=vga");
    daemon.request("GET", &path, None).await
}

/// Polls `GET .../console?type=vga` until the screen shows `fixture`'s whole picture.
pub async fn wait_for_picture(daemon: &Daemon, name: &str, fixture: vgashot_fixtures::Fixture) {
    let expected = fixture.expected_rgb().unwrap();
    let started = Instant::now();
    loop {
        let reply = screenshot(daemon, name).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let (_, _, rgb) = decode_png(&reply.body);
        if rgb == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{fixture} never appeared on {name}'s screen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An executable of that name on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Says that `missing` keeps a test from running: it fails where the test must run (`CI`, or
/// `requirement`, which `cargo xtask test` sets after installing it), and is skipped, with a
/// note, elsewhere.
pub fn skip_unless_required(requirement: &str, missing: &str) {
    let required = ["CI", requirement]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    assert!(!required, "missing: {missing}");
    eprintln!("skipped: missing {missing}");
}

/// The `incus` client, or `None` where its test may be skipped.
pub fn incus() -> Option<PathBuf> {
    let found = on_path("incus");
    if found.is_none() {
        skip_unless_required(
            "VGASHOT_REQUIRE_INCUS",
            "the incus client (run ../shared/tools/install-incus-client.sh)",
        );
    }
    found
}
