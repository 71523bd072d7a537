//! Launching `qemu-system-x86_64` for vgashot.
//!
//! How a launch works:
//! 1. [`find_qemu`] locates the binary (`$VGASHOT_QEMU`, else `qemu-system-x86_64` on `PATH`) and,
//!    when it is missing, says exactly what to install.
//! 2. [`Accel::detect`] picks KVM when `/dev/kvm` opens read-write, TCG otherwise
//!    (`$VGASHOT_ACCEL=tcg|kvm` overrides, to reproduce a CI machine).
//! 3. [`Launch`] builds the command line: the caller's device arguments after a fixed prefix
//!    (`-nodefaults -no-user-config -display none`, the accelerator, and a QMP server socket in the
//!    runtime directory). QEMU's stderr goes to `qemu.log` in the same directory.
//! 4. [`Launch::spawn`] starts QEMU as a child and returns once the QMP socket exists, or with
//!    QEMU's own words when it exits first. With [`Launch::die_with_parent`] the kernel kills QEMU
//!    when the launching thread's process dies, so tests never leave an orphaned QEMU behind.
//! 5. [`Launch::spawn_detached`] starts a VM that outlives us (`-daemonize`, with a pid file), as
//!    a daemon needs: it can restart and find its VMs again by pid file and QMP socket.
//! 6. [`Launch::confine`] adds the sandbox and the user QEMU drops to ([`confine`]), chosen by
//!    the version of the binary found. [`Launch::inherit`] hands QEMU an open descriptor at a
//!    known number (3, 4, ...), so QEMU can be given files without ever resolving a host path:
//!    the descriptors are moved above the numbers they will take, then `dup2`'d into place in
//!    the child just before `exec`, the only moment they lose `O_CLOEXEC`.

pub mod confine;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub use confine::{Capabilities, Confinement, QemuUser};

/// The file name of the QMP socket inside the runtime directory.
pub const QMP_SOCKET: &str = "qmp.sock";
/// The file name of a detached QEMU's pid file inside the runtime directory.
pub const PID_FILE: &str = "qemu.pid";
/// The file name of QEMU's stderr log inside the runtime directory.
pub const QEMU_LOG: &str = "qemu.log";

/// The binary vgashot runs.
const QEMU_BINARY: &str = "qemu-system-x86_64";
/// How long [`Launch::spawn`] waits for the QMP socket to appear.
const SOCKET_WAIT: Duration = Duration::from_secs(20);
/// How much of QEMU's log goes into an error.
const LOG_TAIL_BYTES: usize = 2048;
/// The number of the first descriptor [`Launch::inherit`] hands over: after stdin, stdout and
/// stderr.
const FIRST_INHERITED_FD: RawFd = 3;

/// Errors of launching QEMU.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No QEMU binary was found.
    #[error(
        "{QEMU_BINARY} not found (looked at $VGASHOT_QEMU and PATH); on Debian install it with \
         `apt-get install qemu-system-x86`, or set VGASHOT_QEMU to the binary"
    )]
    NotFound,
    /// The runtime directory could not be prepared.
    #[error("cannot prepare the runtime directory {}", path.display())]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// QEMU exited before its QMP socket appeared; `log` holds the end of what it printed.
    #[error("QEMU exited during startup ({status}): {log}")]
    Exited {
        /// QEMU's exit status.
        status: ExitStatus,
        /// The end of QEMU's stderr.
        log: String,
    },
    /// QEMU ran but its QMP socket did not appear in time.
    #[error("QEMU's QMP socket {} did not appear within {after:?}", path.display())]
    SocketTimeout {
        /// The socket path.
        path: PathBuf,
        /// The bound.
        after: Duration,
    },
    /// Waiting on the child failed.
    #[error("cannot wait for QEMU")]
    Wait(#[source] io::Error),
    /// The user QEMU should run as cannot be found or made.
    #[error("cannot run QEMU as the user {name:?}: {reason}")]
    User {
        /// The user name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// `qemu-system-x86_64 -version` printed no version.
    #[error("cannot read the version of {}: it printed {output:?}", binary.display())]
    Version {
        /// The binary.
        binary: PathBuf,
        /// What it printed.
        output: String,
    },
    /// A descriptor for QEMU could not be duplicated.
    #[error("cannot hand a descriptor to QEMU")]
    Descriptor(#[source] io::Error),
}

/// Locates the QEMU binary: `$VGASHOT_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf, LaunchError> {
    if let Some(explicit) = std::env::var_os("VGASHOT_QEMU") {
        let explicit = PathBuf::from(explicit);
        return explicit
            .is_file()
            .then_some(explicit)
            .ok_or(LaunchError::NotFound);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(QEMU_BINARY))
        .find(|candidate| candidate.is_file())
        .ok_or(LaunchError::NotFound)
}

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation: slower, works everywhere.
    Tcg,
}

impl Accel {
    /// KVM when `/dev/kvm` opens read-write, TCG otherwise; `$VGASHOT_ACCEL` (`kvm` or `tcg`)
    /// overrides.
    pub fn detect() -> Self {
        match std::env::var("VGASHOT_ACCEL").as_deref() {
            Ok("tcg") => return Self::Tcg,
            Ok("kvm") => return Self::Kvm,
            _ => {}
        }
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm");
        if kvm.is_ok() { Self::Kvm } else { Self::Tcg }
    }

    /// The name QEMU's `-accel` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// A QEMU command line being built, with its runtime directory.
#[derive(Debug)]
pub struct Launch {
    binary: PathBuf,
    accel: Accel,
    runtime_dir: PathBuf,
    args: Vec<OsString>,
    die_with_parent: bool,
    confinement: Confinement,
    /// Descriptors QEMU inherits, at `FIRST_INHERITED_FD + index`.
    inherited: Vec<OwnedFd>,
}

impl Launch {
    /// Starts a command line for the QEMU [`find_qemu`] finds, with the accelerator
    /// [`Accel::detect`] picks, keeping its socket and log in `runtime_dir`.
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Result<Self, LaunchError> {
        Ok(Self {
            binary: find_qemu()?,
            accel: Accel::detect(),
            runtime_dir: runtime_dir.into(),
            args: Vec::new(),
            die_with_parent: false,
            confinement: Confinement::default(),
            inherited: Vec::new(),
        })
    }

    /// Runs QEMU confined as `confinement` says (none by default).
    pub fn confine(mut self, confinement: Confinement) -> Self {
        self.confinement = confinement;
        self
    }

    /// Hands `fd` to QEMU: it inherits it at the returned number (name it in `-add-fd fd=N`
    /// or `/proc/self/fd/N`). Our copy keeps `O_CLOEXEC` and is closed once QEMU has started.
    pub fn inherit(&mut self, fd: OwnedFd) -> RawFd {
        self.inherited.push(fd);
        FIRST_INHERITED_FD + self.inherited.len() as RawFd - 1
    }

    /// Appends one argument after the fixed prefix.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments after the fixed prefix.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Chooses the accelerator instead of detecting it.
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = accel;
        self
    }

    /// Whether QEMU is killed when this process dies (tests, demos), rather than outliving it (a
    /// daemon that restarts and re-attaches to its VMs).
    pub fn die_with_parent(mut self, die: bool) -> Self {
        self.die_with_parent = die;
        self
    }

    /// The accelerator QEMU will run with.
    pub fn accelerator(&self) -> Accel {
        self.accel
    }

    /// Where QEMU's QMP socket will be.
    pub fn qmp_socket(&self) -> PathBuf {
        self.runtime_dir.join(QMP_SOCKET)
    }

    /// The full argument list, prefix included.
    pub fn command_line(&self) -> Vec<OsString> {
        // The path sits in an option list: a comma in it (from the runtime directory's name)
        // would end the path and start an option of its own, so commas are doubled.
        let mut qmp = OsString::from("unix:");
        qmp.push(escape_commas(self.qmp_socket().as_os_str()));
        qmp.push(",server=on,wait=off");
        let prefix = [
            OsString::from("-nodefaults"),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-accel".into(),
            self.accel.as_str().into(),
            "-qmp".into(),
            qmp,
        ];
        prefix
            .into_iter()
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// Prepares the runtime directory (stale socket and pid file removed, a fresh log) and the
    /// command with `extra` arguments after the rest, the confinement's options last, and the
    /// inherited descriptors (which it takes: later launches of `self` inherit none).
    async fn prepare(&mut self, extra: &[OsString]) -> Result<Command, LaunchError> {
        let confinement = if self.confinement == Confinement::default() {
            Vec::new()
        } else {
            let binary = self.binary.clone();
            let capabilities = tokio::task::spawn_blocking(move || confine::probe(&binary))
                .await
                .map_err(|error| LaunchError::Wait(io::Error::other(error)))??;
            self.confinement.args(&self.binary, &capabilities)
        };
        let inherited = self.take_inherited()?;
        let runtime_error = |source| LaunchError::RuntimeDir {
            path: self.runtime_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.runtime_dir).map_err(runtime_error)?;
        for stale in [self.qmp_socket(), self.pid_file()] {
            match std::fs::remove_file(&stale) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(runtime_error(error));
                }
                _ => {}
            }
        }
        let log = std::fs::File::create(self.runtime_dir.join(QEMU_LOG)).map_err(runtime_error)?;

        let mut command = Command::new(&self.binary);
        command
            .args(self.command_line())
            .args(extra)
            .args(confinement)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(self.die_with_parent);
        if self.die_with_parent {
            // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
            // which is async-signal-safe; it touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(io::Error::from)
                });
            }
        }
        if !inherited.is_empty() {
            // SAFETY: runs in the forked child before exec and only calls dup2(2), which is
            // async-signal-safe, on descriptors the closure owns; every source lies above every
            // target (see `take_inherited`), so no dup2 overwrites a source still needed.
            unsafe {
                command.pre_exec(move || {
                    for (target, source) in (FIRST_INHERITED_FD..).zip(&inherited) {
                        if libc::dup2(source.as_raw_fd(), target) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        Ok(command)
    }

    /// The inherited descriptors, each duplicated (with `O_CLOEXEC`) to a number above all the
    /// numbers QEMU will see them at.
    fn take_inherited(&mut self) -> Result<Vec<OwnedFd>, LaunchError> {
        let above = FIRST_INHERITED_FD + self.inherited.len() as RawFd;
        std::mem::take(&mut self.inherited)
            .into_iter()
            .map(|fd| {
                let raised = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above))
                    .map_err(|errno| LaunchError::Descriptor(errno.into()))?;
                // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
                Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raised) })
            })
            .collect()
    }

    fn spawn_error(&self) -> impl FnOnce(io::Error) -> LaunchError + '_ {
        |source| LaunchError::Spawn {
            binary: self.binary.clone(),
            source,
        }
    }

    /// Where a detached QEMU writes its pid.
    fn pid_file(&self) -> PathBuf {
        self.runtime_dir.join(PID_FILE)
    }

    /// Starts QEMU as our child and waits until it listens on its QMP socket.
    pub async fn spawn(mut self) -> Result<QemuProcess, LaunchError> {
        let child = self
            .prepare(&[])
            .await?
            .spawn()
            .map_err(self.spawn_error())?;
        let mut process = QemuProcess {
            child,
            qmp_socket: self.qmp_socket(),
            log_path: self.runtime_dir.join(QEMU_LOG),
            accel: self.accel,
        };
        process.wait_for_socket(SOCKET_WAIT).await?;
        tracing::debug!(
            pid = process.pid(),
            accel = self.accel.as_str(),
            "QEMU started"
        );
        Ok(process)
    }

    /// Starts QEMU detached (`-daemonize`): in a session of its own, not our child, so it
    /// outlives this process and a terminal's Ctrl-C. Returns once QEMU has finished starting
    /// (its first process exits then, leaving the VM running) with the VM's pid, read from the pid
    /// file QEMU wrote in the runtime directory.
    pub async fn spawn_detached(mut self) -> Result<Detached, LaunchError> {
        let extra = [
            OsString::from("-daemonize"),
            "-pidfile".into(),
            self.pid_file().into_os_string(),
        ];
        let mut starter = self
            .prepare(&extra)
            .await?
            .spawn()
            .map_err(self.spawn_error())?;
        let log_tail = || read_log_tail(&self.runtime_dir.join(QEMU_LOG));
        let status = match tokio::time::timeout(SOCKET_WAIT, starter.wait()).await {
            Ok(status) => status.map_err(LaunchError::Wait)?,
            Err(_) => {
                let _ = starter.kill().await;
                return Err(LaunchError::SocketTimeout {
                    path: self.qmp_socket(),
                    after: SOCKET_WAIT,
                });
            }
        };
        if !status.success() {
            return Err(LaunchError::Exited {
                status,
                log: log_tail(),
            });
        }
        let pid = read_pid_file(&self.runtime_dir).ok_or_else(|| LaunchError::Exited {
            status,
            log: format!("QEMU wrote no pid file; {}", log_tail()),
        })?;
        tracing::debug!(pid, accel = self.accel.as_str(), "QEMU started detached");
        Ok(Detached {
            pid,
            qmp_socket: self.qmp_socket(),
        })
    }
}

/// A QEMU started with [`Launch::spawn_detached`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The VM's process id.
    pub pid: i32,
    /// Its QMP socket.
    pub qmp_socket: PathBuf,
}

/// `value` with every comma doubled: QEMU's escape inside a `key=value,...` option list.
pub fn escape_commas(value: &OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut escaped = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        escaped.push(byte);
        if byte == b',' {
            escaped.push(b',');
        }
    }
    OsString::from_vec(escaped)
}

/// The pid a detached QEMU wrote into `runtime_dir`, if the file is there and holds one.
pub fn read_pid_file(runtime_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(runtime_dir.join(PID_FILE)).ok()?;
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

fn read_log_tail(path: &Path) -> String {
    let log = std::fs::read(path).unwrap_or_default();
    let start = log.len().saturating_sub(LOG_TAIL_BYTES);
    String::from_utf8_lossy(&log[start..]).trim().to_owned()
}

#[cfg(any(test, feature = "test-support"))]
impl Launch {
    /// A launch for a test that needs QEMU, killed when the test process dies.
    ///
    /// Without QEMU the test is skipped (`None`, with a note on stderr) on a developer's machine,
    /// but fails where QEMU must be present: on CI (`CI` set) or when `VGASHOT_REQUIRE_QEMU` is
    /// set, as `cargo xtask test` does after installing QEMU.
    pub fn for_tests(runtime_dir: impl Into<PathBuf>) -> Option<Self> {
        match Self::new(runtime_dir) {
            Ok(launch) => Some(launch.die_with_parent(true)),
            Err(error) => {
                let required = ["CI", "VGASHOT_REQUIRE_QEMU"]
                    .iter()
                    .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
                assert!(!required, "this test needs QEMU: {error}");
                eprintln!("skipped: {error}");
                None
            }
        }
    }
}

/// Helpers for the test suites of other crates (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    use std::path::Path;

    /// SIGKILLs every detached QEMU whose pid file lies anywhere under `dir`, so a test that
    /// ends (or panics) leaves no VM behind.
    pub fn kill_detached_under(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                kill_detached_under(&path);
            } else if path.file_name() == Some(super::PID_FILE.as_ref()) {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.trim().parse::<i32>().ok());
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }

    /// How many descriptors process `pid` (a number, or `self`) has open, for leak checks.
    pub fn open_descriptors(pid: impl std::fmt::Display) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

/// A running QEMU child.
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    qmp_socket: PathBuf,
    log_path: PathBuf,
    accel: Accel,
}

impl QemuProcess {
    /// QEMU's process id (0 once it has been reaped).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Where QEMU's QMP socket is.
    pub fn qmp_socket(&self) -> &Path {
        &self.qmp_socket
    }

    /// The accelerator QEMU runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The end of what QEMU printed on stderr.
    pub fn log_tail(&self) -> String {
        read_log_tail(&self.log_path)
    }

    /// Kills QEMU with SIGKILL and reaps it.
    pub async fn kill(&mut self) -> Result<ExitStatus, LaunchError> {
        // An already exited child makes start_kill fail; wait() still reaps it.
        let _ = self.child.start_kill();
        self.wait().await
    }

    /// Waits for QEMU to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus, LaunchError> {
        self.child.wait().await.map_err(LaunchError::Wait)
    }

    /// QEMU's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, LaunchError> {
        self.child.try_wait().map_err(LaunchError::Wait)
    }

    /// Waits until QEMU listens on its QMP socket. The file exists from QEMU's `bind`, a moment
    /// before its `listen`, when a connection is still refused: so the socket is listening once
    /// a connection is accepted. That probe is QMP's first client, which leaves at once; QEMU
    /// then takes the next.
    async fn wait_for_socket(&mut self, bound: Duration) -> Result<(), LaunchError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Err(LaunchError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if tokio::net::UnixStream::connect(&self.qmp_socket)
                .await
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > bound {
                let _ = self.kill().await;
                return Err(LaunchError::SocketTimeout {
                    path: self.qmp_socket.clone(),
                    after: bound,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_comes_before_the_callers_arguments() {
        let launch = Launch {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            runtime_dir: "/run/vm1".into(),
            args: Vec::new(),
            die_with_parent: false,
            confinement: Confinement::default(),
            inherited: Vec::new(),
        }
        .args(["-vga", "std"]);
        let line: Vec<_> = launch
            .command_line()
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect();
        assert_eq!(
            line,
            [
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-accel",
                "tcg",
                "-qmp",
                "unix:/run/vm1/qmp.sock,server=on,wait=off",
                "-vga",
                "std"
            ]
        );
    }

    #[test]
    fn a_comma_in_the_runtime_directory_cannot_add_a_qmp_option() {
        let launch = Launch {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            runtime_dir: "/run/a,server=off,x".into(),
            args: Vec::new(),
            die_with_parent: false,
            confinement: Confinement::default(),
            inherited: Vec::new(),
        };
        let line = launch.command_line();
        assert_eq!(
            line[7],
            "unix:/run/a,,server=off,,x/qmp.sock,server=on,wait=off"
        );
        assert_eq!(escape_commas(OsStr::new(",a,,")), ",,a,,,,");
    }

    #[tokio::test]
    async fn a_qemu_that_exits_at_once_reports_its_own_words() {
        let dir = tempfile::tempdir().unwrap();
        let Some(launch) = Launch::for_tests(dir.path()) else {
            return;
        };
        let error = launch
            .die_with_parent(true)
            .arg("-no-such-option")
            .spawn()
            .await
            .unwrap_err();
        let LaunchError::Exited { log, .. } = error else {
            panic!("unexpected error: {error}");
        };
        assert!(log.contains("no-such-option"), "log: {log}");
    }

    #[tokio::test]
    async fn an_inherited_descriptor_is_read_by_qemus_kernel_loader() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut launch) = Launch::for_tests(dir.path()) else {
            return;
        };
        // Not a kernel: QEMU can only say so after reading it through the descriptor (a path it
        // cannot open would be "could not open kernel file").
        let kernel = dir.path().join("not-a-kernel");
        std::fs::write(&kernel, vec![0xff; 4096]).unwrap();
        let fd = launch.inherit(std::fs::File::open(&kernel).unwrap().into());
        assert_eq!(fd, FIRST_INHERITED_FD);
        let launched = launch
            .args(["-machine", "pc", "-kernel", &format!("/proc/self/fd/{fd}")])
            .spawn()
            .await;
        // QEMU may exit before or after its QMP socket appears.
        let log = match launched {
            Ok(mut process) => {
                let status = tokio::time::timeout(Duration::from_secs(20), process.wait())
                    .await
                    .expect("QEMU kept running with no kernel")
                    .unwrap();
                assert!(!status.success());
                process.log_tail()
            }
            Err(LaunchError::Exited { log, .. }) => log,
            Err(error) => panic!("unexpected error: {error}"),
        };
        assert!(log.contains("invalid kernel header"), "log: {log}");
    }
}
