//! `vgashot daemon` and `vgashot trust`:
//! 0. lock `$VGASHOT_DIR` ([`DirectoryLock`]) before touching anything in it, held until the
//!    daemon exits, so a second daemon on the same directory refuses to start; then raise the
//!    open-file soft limit to the hard one, since every connection, VM and QMP socket is a
//!    descriptor (the connection caps of `vgashot_rest::server` stay well below it);
//! 1. open the screen history (`$VGASHOT_DIR/history.sqlite`, bounded by
//!    `--history-max-bytes`) and the qemu driver over `$VGASHOT_DIR` (re-attaching to VMs that still run), with the
//!    host's policy ([`HostArgs`]): the image directories, whether block devices may be disks,
//!    the user QEMU runs as (made when missing) and the largest screen captured;
//! 2. with `--listen` (or `VGASHOT_HTTPS_ADDRESS`, as Incus's `core.https_address`), bind the
//!    TLS listener with the certificate of `$VGASHOT_DIR` (made on first use) before serving, so
//!    a bad address fails the start rather than a later request;
//! 3. serve the REST API on `$VGASHOT_DIR/unix.socket` (and the TLS listener) until SIGTERM or
//!    SIGINT, which stop both;
//! 4. let go of the VMs without stopping them, so a restarted daemon finds them again.
//!
//! `vgashot trust add|list|remove` edit the trust store `$VGASHOT_DIR/trust/` directly; a running
//! daemon reads it at every new TLS connection and every second for the connections already
//! open, so no restart is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use vgashot_instance_drivers::qemu::host_files::DEFAULT_IMAGE_DIR;
use vgashot_instance_drivers::{
    DEFAULT_MAX_SCREEN_PIXELS, DirectoryLock, DriverOptions, DriverPaths, HostFilePolicy,
    QemuDriver,
};
use vgashot_qemu_process::{Confinement, QemuUser};
use vgashot_rest::auth::trust::Added;
use vgashot_rest::{Daemon, HttpsListener, TrustStore};

/// `vgashot trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust the client certificate in a PEM file.
    Add {
        /// The certificate (PEM); only the certificate is copied, never a key beside it.
        file: PathBuf,
    },
    /// Print the fingerprints of the trusted certificates, one a line.
    List,
    /// Stop trusting a certificate, named by its fingerprint or a unique prefix of it.
    Remove {
        /// The SHA-256 fingerprint, as `list` prints it.
        fingerprint: String,
    },
}

/// The user QEMU runs as unless told otherwise: one of its own, not `nobody`, which other
/// daemons share (a QEMU escaped as `nobody` could signal them, and they it).
const DEFAULT_QEMU_USER: &str = "vgashot-qemu";

/// What the daemon lets VMs touch on the host, and how QEMU is confined.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// A directory whose files (at any depth) may be disks, kernels and initrds; repeat it for
    /// more (in the variable, separate them with `:`). Paths with symbolic links are refused.
    #[arg(
        long = "image-dir",
        env = "VGASHOT_IMAGE_DIRS",
        value_name = "DIR",
        value_delimiter = ':',
        default_value = DEFAULT_IMAGE_DIR
    )]
    image_dirs: Vec<PathBuf>,
    /// Also accept block devices (inside an image directory) as disks.
    #[arg(long, env = "VGASHOT_ALLOW_BLOCK_DEVICES")]
    allow_block_devices: bool,
    /// The user QEMU drops to when the daemon runs as root; created as a system user if missing.
    #[arg(long, env = "VGASHOT_QEMU_USER", value_name = "USER", default_value = DEFAULT_QEMU_USER)]
    qemu_user: String,
    /// Run QEMU as the daemon's own user and without its seccomp sandbox (to measure what the
    /// confinement costs, or to debug QEMU; never on a host that serves others).
    #[arg(long, env = "VGASHOT_QEMU_UNCONFINED")]
    qemu_unconfined: bool,
    /// The most pixels a guest's screen may have to be captured; a larger screen gets a 400.
    #[arg(long, env = "VGASHOT_MAX_SCREEN_PIXELS", value_name = "PIXELS", default_value_t = DEFAULT_MAX_SCREEN_PIXELS)]
    max_screen_pixels: u64,
    /// The most bytes of stored screens in the screen history (`$VGASHOT_DIR/history.sqlite`),
    /// all VMs together; past it the oldest unpinned screenshots go.
    #[arg(long, env = "VGASHOT_HISTORY_MAX_BYTES", value_name = "BYTES", default_value_t = DEFAULT_HISTORY_MAX_BYTES)]
    history_max_bytes: u64,
}

/// The daemon-wide bound of the screen history: 1 GiB, sixteen VMs at their default
/// `console.history.size` (64 MiB), small beside the disks the VMs themselves use.
const DEFAULT_HISTORY_MAX_BYTES: u64 = 1 << 30;

impl HostArgs {
    /// The driver's options: the QEMU user resolved (and made) now, and each image directory
    /// that does not exist named in the log.
    fn driver_options(self) -> Result<DriverOptions, String> {
        for dir in &self.image_dirs {
            match std::fs::canonicalize(dir) {
                Ok(real) if real != *dir => tracing::warn!(
                    dir = %dir.display(), real = %real.display(),
                    "this image directory's path has a symbolic link, so its files are refused: \
                     give the real path"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    dir = %dir.display(), %error,
                    "an image directory is missing: VMs can use no file from it until it exists"
                ),
            }
        }
        let confinement = if self.qemu_unconfined {
            tracing::warn!("QEMU runs unconfined, as asked: as the daemon's user, without seccomp");
            Confinement::default()
        } else {
            let user = QemuUser::ensure(&self.qemu_user)
                .map_err(|error| vgashot_rest::describe(&error))?;
            Confinement::confined(user)
        };
        Ok(DriverOptions {
            host_files: HostFilePolicy {
                image_dirs: self.image_dirs,
                private_dirs: Vec::new(),
                allow_block_devices: self.allow_block_devices,
            },
            confinement,
            max_screen_pixels: self.max_screen_pixels,
        })
    }
}

/// Runs the daemon over `dir` until SIGTERM or SIGINT.
pub async fn daemon(dir: PathBuf, listen: Option<String>, host: HostArgs) -> Result<(), String> {
    let _lock = DirectoryLock::acquire(&dir).map_err(|error| vgashot_rest::describe(&error))?;
    raise_open_file_limit();
    let paths = DriverPaths {
        state_dir: dir.clone(),
        runtime_dir: dir.join("run"),
    };
    let history_limits = vgashot_history::Limits {
        max_frame_pixels: host.max_screen_pixels,
        max_total_bytes: host.history_max_bytes,
    };
    let history_path = dir.join("history.sqlite");
    let history = tokio::task::spawn_blocking(move || {
        vgashot_history::History::open(&history_path, history_limits)
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| vgashot_rest::describe(&error))?;
    let options = tokio::task::spawn_blocking(move || host.driver_options())
        .await
        .map_err(|error| error.to_string())??;
    let driver = QemuDriver::open_with(paths, options)
        .await
        .map_err(|error| vgashot_rest::describe(&error))?;
    let https = match listen.as_deref().filter(|address| !address.is_empty()) {
        Some(address) => {
            let listener = HttpsListener::bind(address, &dir)
                .await
                .map_err(|error| vgashot_rest::describe(&error))?;
            tracing::info!(
                addresses = ?listener.identity().addresses,
                fingerprint = listener.identity().certificate_fingerprint,
                "vgashot daemon listening with TLS"
            );
            Some(listener)
        }
        None => None,
    };
    let daemon = Daemon::new(Arc::new(driver.clone()))
        .with_history(Arc::new(vgashot_rest::ScreenHistory::new(history)));
    let socket = dir.join("unix.socket");
    tracing::info!(socket = %socket.display(), "vgashot daemon listening");
    daemon
        .serve(&socket, https, shutdown_signal())
        .await
        .map_err(|error| vgashot_rest::describe(&error))?;
    tracing::info!("shutting down; VMs keep running");
    driver.detach().await;
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (often 1024 soft against 524288 hard), and
/// logs the figure; a failure is logged and the daemon runs with the limit it has.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(error) => tracing::warn!(%error, soft, hard, "cannot raise the open-file limit"),
        },
        Ok((soft, _)) => tracing::info!(limit = soft, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot read the open-file limit"),
    }
}

/// `vgashot trust ...` over `dir/trust`: results on stdout, one a line, for scripts.
pub fn trust(dir: &Path, command: TrustCommand) -> Result<(), String> {
    let store = TrustStore::new(dir.join("trust"));
    let describe = |error: vgashot_rest::auth::trust::TrustError| vgashot_rest::describe(&error);
    match command {
        TrustCommand::Add { file } => match store.add(&file).map_err(describe)? {
            Added::New(certificate) => println!("{}", certificate.fingerprint),
            Added::AlreadyTrusted(certificate) => {
                eprintln!("already trusted");
                println!("{}", certificate.fingerprint);
            }
        },
        TrustCommand::List => {
            for certificate in store.list().map_err(describe)? {
                println!("{}", certificate.fingerprint);
            }
        }
        TrustCommand::Remove { fingerprint } => {
            let removed = store.remove(&fingerprint).map_err(describe)?;
            println!("{}", removed.fingerprint);
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
