//! The driver layer's errors. The REST layer maps each variant to an HTTP status in one place.

use std::path::PathBuf;

use crate::definition::{InstanceType, NameError};
use crate::qemu::cmdline::ConfigError;
use crate::store::StoreError;

/// Every error of an instance driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An instance or project name that Incus would refuse.
    #[error("Invalid instance name: {0}")]
    InvalidName(#[source] NameError),
    /// The instance's config or devices cannot be honoured.
    #[error("{0}")]
    Config(#[source] ConfigError),
    /// An instance type this driver does not run.
    #[error("Instance type \"{}\" is not supported by this driver", .0.as_str())]
    UnsupportedType(InstanceType),
    /// The driver cannot do this at all (e.g. a screenshot of an instance without a display).
    #[error("{operation} is not supported for this instance")]
    Unsupported {
        /// What was asked.
        operation: &'static str,
    },
    /// No such instance in that project.
    #[error("Instance not found")]
    NotFound,
    /// An instance of that name already exists in the project.
    #[error("Instance \"{name}\" already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// The operation needs a running instance (screenshot, freeze, console input).
    #[error("Instance is not running")]
    NotRunning,
    /// Start of an instance that runs (Incus's wording).
    #[error("The instance is already running")]
    AlreadyRunning,
    /// Stop of an instance that is stopped (Incus's wording).
    #[error("The instance is already stopped")]
    AlreadyStopped,
    /// Delete of an instance that runs (Incus's wording).
    #[error("The instance is currently running, stop it first")]
    Running,
    /// Rename of an instance that runs (Incus's wording).
    #[error("Renaming of running instance not allowed")]
    RenameRunning,
    /// A restart whose clean shutdown a forced stop cut short: the instance stays stopped.
    #[error("The restart was interrupted by a forced stop")]
    RestartInterrupted,
    /// The operation needs a frozen instance (unfreeze).
    #[error("Instance is not frozen")]
    NotFrozen,
    /// Persisting or loading the definition failed.
    #[error("instance state store")]
    Store(#[source] StoreError),
    /// QEMU could not be started.
    #[error("cannot start QEMU")]
    Launch(#[source] vgashot_qemu_process::LaunchError),
    /// A QMP command failed for a reason other than those below.
    #[error("QEMU failed to {operation}")]
    Qmp {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: vgashot_qmp::Error,
    },
    /// The display device named for a screenshot does not exist.
    #[error("Display device \"{device}\" not found")]
    DisplayNotFound {
        /// The device id asked for.
        device: String,
    },
    /// The device exists but that head is not a console.
    #[error("Display device \"{device}\" has no head {head}")]
    HeadNotFound {
        /// The device id.
        device: String,
        /// The head asked for.
        head: u32,
    },
    /// A head was asked for without naming the device it belongs to.
    #[error("A screenshot head needs a display device")]
    HeadWithoutDevice,
    /// The instance's serial console has as many sessions as it may have.
    #[error("Too many console sessions open on this instance (at most {limit}); try again later")]
    ConsoleSessions {
        /// The bound ([`crate::serial::MAX_CONSOLE_SESSIONS`]).
        limit: usize,
    },
    /// The VM has no display to take a screenshot of (`vgashot.vga=none`).
    #[error("Instance has no display")]
    NoDisplay,
    /// The guest's screen has more pixels than the daemon captures.
    #[error(
        "The screen is larger than the {limit} pixels this daemon captures (its image is {bytes} \
         bytes); the limit is set with `vgashot daemon --max-screen-pixels`"
    )]
    ScreenTooLarge {
        /// The size of the image QEMU wrote.
        bytes: u64,
        /// The bound, in pixels.
        limit: u64,
    },
    /// QEMU's image could not be decoded or ours could not be encoded.
    #[error("cannot process the screen image")]
    Image(#[source] vgashot_framebuffer::FrameError),
    /// QEMU's own PNG could not be read.
    #[error("QEMU wrote an unreadable PNG")]
    QemuPng(#[source] png::DecodingError),
    /// QEMU's console ring buffer answered with something that is not base64.
    #[error("QEMU sent console output that is not valid base64")]
    ConsoleEncoding(#[source] base64::DecodeError),
    /// Stopping did not end QEMU, even with SIGKILL.
    #[error("QEMU (pid {pid}) did not exit")]
    StopFailed {
        /// QEMU's pid.
        pid: i32,
    },
    /// Another process (a second daemon) holds the lock of the daemon's directory.
    #[error(
        "another vgashot daemon{} is using {}",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        dir.display()
    )]
    DirectoryInUse {
        /// The directory.
        dir: PathBuf,
        /// The pid the holder wrote into the lock file, when readable.
        holder: Option<u32>,
    },
    /// The instance's QMP socket path would not fit a `sockaddr_un`, so QEMU could never listen.
    #[error(
        "The instance's QMP socket path would be {length} bytes long, more than the {max} bytes \
         a Unix socket path may have: use a shorter instance name or VGASHOT_DIR"
    )]
    SocketPathTooLong {
        /// The path's length in bytes.
        length: usize,
        /// The longest path a Unix socket can be bound at.
        max: usize,
    },
    /// A task run off the async workers (file-system checks) ended without an answer.
    #[error("a blocking task of the driver failed")]
    Task(#[source] tokio::task::JoinError),
    /// A file of the instance's runtime directory could not be used.
    #[error("cannot {operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
