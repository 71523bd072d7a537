//! The OpenAPI document as a contract, checked against a live release daemon (a step of
//! `cargo xtask test`, after the Rust tests).
//!
//! 1. Tools: schemathesis and openapi-python-client, pinned ([`SCHEMATHESIS`],
//!    [`PYTHON_CLIENT`]), are installed from PyPI into the virtualenv under `target/` that
//!    `swagger --check` uses ([`crate::swagger::ensure_package`]).
//! 2. The daemon: the release build over a temporary `VGASHOT_DIR`, listening on
//!    `127.0.0.1:PORT`, with a client certificate made by `vgashot remote
//!    generate-certificate` (in a temporary `VGASHOT_CONF`) and trusted with `vgashot trust
//!    add`. Its QEMU is [`QEMU_WRAPPER`], which runs the machine's QEMU with every VM cut down
//!    to one vCPU and 64 MiB, disks opened with `-snapshot` (a guest's writes never reach the
//!    image) and at the lowest CPU priority: whatever schemathesis creates and starts cannot
//!    harm the machine.
//! 3. The Python client: generated from `swagger/rest-api.json` into `target/contract/`; any
//!    warning of the generator fails the step. `tests/contract/drive_vm.py` then drives a VM
//!    booting a fixture through it: create, start, list at recursion 0, 1 and 2, state,
//!    console PNG and log, operation wait, metrics, stop, delete.
//! 4. schemathesis: every check and every phase, [`MAX_EXAMPLES`] examples per operation, TLS
//!    verified against the daemon's certificate, with the client certificate; any failure
//!    fails the step. `tests/contract/schemathesis.toml` holds its configuration, with the
//!    reason for each setting.
//! 5. Cleanup, whatever happened: once no operation runs (at most [`OPERATIONS_BOUND`]), every
//!    instance is stopped by force and deleted through the API, the daemon gets SIGTERM, and
//!    any QEMU left under the directory is killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vgashot_client::{Client, ClientError};
use vgashot_fixtures::Fixture;
use vgashot_incus_wire::InstanceStatePut;

use crate::swagger::{ensure_package, venv_bin};
use crate::{Result, workspace_root};

/// schemathesis, pinned: its checks change between releases.
const SCHEMATHESIS: (&str, &str) = ("schemathesis", "schemathesis==4.32.5");
/// openapi-python-client, pinned: its warnings change between releases.
const PYTHON_CLIENT: (&str, &str) = ("openapi_python_client", "openapi-python-client==0.29.1");
/// Examples per operation and phase: enough to find a drift, few enough for a few minutes on
/// two cores.
const MAX_EXAMPLES: &str = "30";
/// How long operations still running at the end may take to finish before cleaning up.
const OPERATIONS_BOUND: Duration = Duration::from_secs(30);
/// How long the daemon may take to answer after it starts.
const START_BOUND: Duration = Duration::from_secs(20);
/// The QEMU every VM of the run is started with (step 2).
const QEMU_WRAPPER: &str = "#!/bin/sh
# vgashot's contract test: any VM the fuzzer creates gets one vCPU, 64 MiB and
# disks in snapshot mode, at the lowest priority (later -smp and -m win).
exec nice -n 19 qemu-system-x86_64 \"$@\" -smp 1 -m 64M -snapshot
";
/// The fixture the Python client's VM boots.
const FIXTURE: Fixture = Fixture::bars(320, 200);

/// Runs the contract checks (steps 1-5).
pub fn run() -> Result {
    ensure_package(SCHEMATHESIS.0, SCHEMATHESIS.1)?;
    ensure_package(PYTHON_CLIENT.0, PYTHON_CLIENT.1)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start tokio: {error}"))?;
    let work = tempfile::tempdir().map_err(|error| format!("cannot make a directory: {error}"))?;
    let daemon = Daemon::start(work.path())?;
    let outcome = runtime
        .block_on(daemon.wait_until_answering())
        .and_then(|()| generate_client())
        .and_then(|client| drive_vm(&daemon, &client))
        .and_then(|()| fuzz(&daemon));
    runtime.block_on(daemon.clean_up());
    outcome
}

/// A release daemon over a temporary directory, reached over TLS with a trusted certificate.
struct Daemon {
    child: Child,
    dir: PathBuf,
    /// The image directory the daemon allows (`--image-dir`), outside its own directory.
    images: PathBuf,
    url: String,
    server_certificate: PathBuf,
    client_certificate: PathBuf,
    client_key: PathBuf,
}

impl Daemon {
    fn start(work: &Path) -> Result<Self> {
        let binary = workspace_root().join("target/release/vgashot");
        let dir = work.join("vgashot");
        let conf = work.join("conf");
        let bin = work.join("bin");
        let images = work.join("images");
        for path in [&dir, &conf, &bin, &images] {
            std::fs::create_dir_all(path)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        }
        let qemu = bin.join("qemu-system-x86_64");
        write_executable(&qemu, QEMU_WRAPPER)?;
        run_quiet(
            Command::new(&binary)
                .args(["remote", "generate-certificate"])
                .env("VGASHOT_CONF", &conf),
            "vgashot remote generate-certificate",
        )?;
        let client_certificate = conf.join("client.crt");
        run_quiet(
            Command::new(&binary)
                .args(["trust", "add"])
                .arg(&client_certificate)
                .env("VGASHOT_DIR", &dir),
            "vgashot trust add",
        )?;
        let port = free_port()?;
        let child = Command::new(&binary)
            .args(["daemon", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--image-dir")
            .arg(&images)
            .env("VGASHOT_DIR", &dir)
            .env("VGASHOT_QEMU", &qemu)
            .env("VGASHOT_LOG", "warn")
            .env_remove("VGASHOT_HTTPS_ADDRESS")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let daemon = Self {
            child,
            server_certificate: dir.join("server.crt"),
            dir,
            images,
            url: format!("https://127.0.0.1:{port}"),
            client_key: conf.join("client.key"),
            client_certificate,
        };
        Ok(daemon)
    }

    /// The daemon's Unix socket, trusted, for setting up and cleaning up.
    fn local(&self) -> Client {
        Client::new(self.dir.join("unix.socket"))
    }

    /// Polls `GET /1.0` on the Unix socket until the daemon answers, for [`START_BOUND`].
    async fn wait_until_answering(&self) -> Result {
        let started = Instant::now();
        while self.local().request("GET", "/1.0", None).await.is_err()
            || !self.server_certificate.exists()
        {
            if started.elapsed() > START_BOUND {
                return Err(format!("the daemon did not answer at {}", self.url));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// What the Python script needs to reach the daemon.
    fn tls_env(&self) -> [(&'static str, &Path); 3] {
        [
            ("VGASHOT_CA", &self.server_certificate),
            ("VGASHOT_CERT", &self.client_certificate),
            ("VGASHOT_KEY", &self.client_key),
        ]
    }

    /// Step 5: stops (by force) and deletes every instance, stops the daemon with SIGTERM,
    /// and kills any QEMU still running under its directory.
    async fn clean_up(mut self) {
        let client = self.local();
        // An operation still running (a start) could launch a QEMU after the listing below.
        let started = Instant::now();
        while started.elapsed() < OPERATIONS_BOUND {
            // `GET /1.0/operations`: the operations' URLs by their state.
            let operations: BTreeMap<String, Vec<String>> = client
                .call_typed("GET", "/1.0/operations", None::<&()>)
                .await
                .unwrap_or_default();
            if !operations.contains_key("running") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let instances = client.instances(None).await.unwrap_or_default();
        for instance in instances {
            // A stopped instance answers 400 to the stop, which is fine here.
            let _ = client
                .change_state(&instance.name, &InstanceStatePut::forced_stop(), None)
                .await;
            // An ephemeral instance is gone once stopped: a 404 is fine here.
            match client.delete_instance(&instance.name, None).await {
                Ok(()) | Err(ClientError::Api { status: 404, .. }) => {}
                Err(error) => eprintln!(
                    "xtask: cannot delete {}: {}",
                    instance.name,
                    vgashot_rest::describe(&error)
                ),
            }
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        vgashot_qemu_process::testing::kill_detached_under(&self.dir.join("run"));
        kill_processes_using(&self.dir);
    }
}

/// SIGKILLs every process whose command line names `dir` (a QEMU whose pid file went away with
/// a deleted instance while it was being started still has its QMP socket there).
fn kill_processes_using(dir: &Path) {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let named = std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|part| part == needle));
        if named {
            eprintln!(
                "xtask: killing process {pid}, left running under {}",
                dir.display()
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Step 3: generates the Python client, failing on any warning; the directory holding it.
fn generate_client() -> Result<PathBuf> {
    let root = workspace_root();
    let output = root.join("target/contract/vgashot_client");
    let _ = std::fs::remove_dir_all(&output);
    eprintln!("xtask: openapi-python-client generate");
    let generated = Command::new(venv_bin("openapi-python-client"))
        .args(["generate", "--meta", "none", "--config"])
        .arg(root.join("tests/contract/python-client.yaml"))
        .arg("--path")
        .arg(root.join("swagger/rest-api.json"))
        .arg("--output-path")
        .arg(&output)
        .output()
        .map_err(|error| format!("cannot run openapi-python-client: {error}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    eprint!("{said}");
    if !generated.status.success() {
        return Err(format!(
            "openapi-python-client failed ({})",
            generated.status
        ));
    }
    if said.to_lowercase().contains("warning") {
        return Err("openapi-python-client warned about the document (see above)".into());
    }
    Ok(root.join("target/contract"))
}

/// Step 3: drives a VM through the generated client.
fn drive_vm(daemon: &Daemon, client: &Path) -> Result {
    let image = FIXTURE
        .write_image(&daemon.images)
        .map_err(|error| vgashot_rest::describe(&error))?;
    eprintln!("xtask: tests/contract/drive_vm.py");
    crate::swagger::run_command(
        Command::new(venv_bin("python"))
            .arg(workspace_root().join("tests/contract/drive_vm.py"))
            .arg(&daemon.url)
            .arg(&image)
            .env("PYTHONPATH", client)
            .envs(daemon.tls_env()),
        "tests/contract/drive_vm.py",
    )
}

/// Step 4: schemathesis against the daemon.
fn fuzz(daemon: &Daemon) -> Result {
    let root = workspace_root();
    eprintln!("xtask: schemathesis run ({MAX_EXAMPLES} examples per operation)");
    let started = Instant::now();
    let outcome = crate::swagger::run_command(
        Command::new(venv_bin("st"))
            // Its example cache (`.schemathesis/`) lands under `target/`.
            .current_dir(root.join("target/contract"))
            .arg("--config-file")
            .arg(root.join("tests/contract/schemathesis.toml"))
            .arg("run")
            .arg(root.join("swagger/rest-api.yaml"))
            .args(["--url", &daemon.url])
            .args(["--checks", "all"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", MAX_EXAMPLES])
            .arg("--tls-verify")
            .arg(&daemon.server_certificate)
            .arg("--request-cert")
            .arg(&daemon.client_certificate)
            .arg("--request-cert-key")
            .arg(&daemon.client_key)
            .args(["--seed", "1", "--no-color"]),
        "schemathesis",
    );
    eprintln!(
        "xtask: schemathesis took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    outcome
}

/// A TCP port nobody listens on now.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port: {error}"))
}

fn write_executable(path: &Path, script: &str) -> Result {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)))
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn run_quiet(command: &mut Command, what: &str) -> Result {
    crate::swagger::run_command(command.stdout(Stdio::null()), what)
}
