//! The `Driver` and `Instance` traits: what the REST layer asks of instances, whatever runs them.
//!
//! How the REST layer sees a driver:
//! 1. It holds one `Arc<dyn Driver>`, which creates, finds, lists and deletes instances and says
//!    what it is (`GET /1.0`'s `driver` and `driver_version`).
//! 2. Each instance is an `Arc<dyn Instance>`: its definition, state, life cycle and console log.
//! 3. Every instance is also a [`FrameSource`] of the screens engine (its frames and displays);
//!    [`Instance::frame_source`] hands the same object to the engine as one, so the engine's weak
//!    pointer goes when the driver lets go of the instance.
//! 4. Both traits are object-safe, so the REST layer is tested against a fake driver without
//!    QEMU, and another driver plugs in without the REST layer changing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::broadcast;
use vgashot_framebuffer::Frame;
use vgashot_screens::FrameSource;

use crate::definition::{InstanceDefinition, InstanceType};
use crate::error::{DriverError, Result};
use crate::qemu::cmdline::{HistorySettings, history_settings, screenshot_min_interval};
use crate::serial::SerialSession;
use crate::transition::Transition;

/// An instance's status, as Incus names it (with its numeric code on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum InstanceStatus {
    /// QEMU runs and the vCPUs execute.
    Running,
    /// No QEMU process.
    Stopped,
    /// QEMU runs with its vCPUs paused.
    Frozen,
    /// Something went wrong that needs a person: see [`InstanceState::reason`].
    Error,
}

impl InstanceStatus {
    /// Incus's status code: 103 Running, 102 Stopped, 110 Frozen, 112 Error.
    pub fn code(self) -> u16 {
        match self {
            Self::Running => 103,
            Self::Stopped => 102,
            Self::Frozen => 110,
            Self::Error => 112,
        }
    }

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Frozen => "Frozen",
            Self::Error => "Error",
        }
    }
}

/// A snapshot of an instance's run-time state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// The status.
    pub status: InstanceStatus,
    /// Why the instance last stopped or failed, when it did (e.g. "killed from outside").
    pub reason: Option<String>,
    /// QEMU's process id while it runs.
    pub pid: Option<i32>,
}

/// What a running instance uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Resident memory of the VM's process (QEMU's, guest memory it touched included).
    pub memory_bytes: u64,
    /// CPU time used since it started.
    pub cpu_nanoseconds: u64,
    /// When it started.
    pub started_at: SystemTime,
}

/// Who encodes the PNG of a screenshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PngEncoder {
    /// QEMU writes a PPM (its cheapest format) into memory we own and we encode the PNG, off
    /// QEMU's main loop. Faster end to end, and the guest stalls for less time.
    #[default]
    Vgashot,
    /// QEMU encodes the PNG itself with libpng (QEMU 7.1 and later), holding its main loop (and
    /// so the guest) meanwhile. The fallback; older QEMU gets the PPM path instead.
    Qemu,
}

/// What to capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenshotOptions {
    /// The display device's id (`video0` for the instance's own display); the primary
    /// console when `None`.
    pub device: Option<String>,
    /// The head of a multi-head device; needs `device`.
    pub head: Option<u32>,
    /// Who encodes the PNG.
    pub encoder: PngEncoder,
}

/// A captured screen.
#[derive(Debug, Clone)]
pub struct Screenshot {
    /// The PNG file.
    pub png: Vec<u8>,
    /// The pixels, when they passed through our hands (always with [`PngEncoder::Vgashot`]).
    pub frame: Option<Frame>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// When QEMU answered the capture.
    pub captured_at: SystemTime,
}

/// What runs instances: creates, finds, lists and deletes them.
#[async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The driver's name, as `GET /1.0` reports it (`qemu`).
    fn name(&self) -> &'static str;

    /// The version of what runs the instances (QEMU's, e.g. `7.2.22`), when it can be told.
    fn version(&self) -> Option<String>;

    /// Creates an instance from a complete definition (stopped); the definition is validated
    /// first, so a bad one is refused before anything is stored.
    async fn create(&self, definition: InstanceDefinition) -> Result<Arc<dyn Instance>>;

    /// The instance `name` of `project`, or [`DriverError::NotFound`].
    fn get(&self, project: &str, name: &str) -> Result<Arc<dyn Instance>>;

    /// Every instance of `project`, by name.
    fn list(&self, project: &str) -> Vec<Arc<dyn Instance>>;

    /// Deletes a stopped instance with everything it keeps.
    async fn delete(&self, project: &str, name: &str) -> Result<()>;

    /// Renames the stopped instance `old` of `project` to `new`, with everything it owns, and
    /// answers the instance under its new name.
    async fn rename(&self, project: &str, old: &str, new: &str) -> Result<Arc<dyn Instance>>;

    /// Every start and end of an instance from now on, as it happens (a subscriber that falls
    /// behind loses the oldest).
    fn transitions(&self) -> broadcast::Receiver<Transition>;
}

/// An instance: a virtual machine run by a driver, and the source of its screens' frames.
///
/// Capabilities a driver does not have answer [`DriverError::Unsupported`] through the default
/// methods, so a caller can always ask and get a typed answer.
#[async_trait]
pub trait Instance: FrameSource + Send + Sync {
    /// The instance's name.
    fn name(&self) -> &str;

    /// Its project.
    fn project(&self) -> &str;

    /// Container or virtual machine.
    fn instance_type(&self) -> InstanceType;

    /// Its stored definition (config, devices, ...).
    fn definition(&self) -> InstanceDefinition;

    /// Its run-time state now.
    fn state(&self) -> InstanceState;

    /// How long viewers share one capture of a screen: the definition's
    /// `console.screenshot.min_interval`, or its default.
    fn screenshot_min_interval(&self) -> Result<Duration> {
        screenshot_min_interval(&self.definition()).map_err(DriverError::Config)
    }

    /// How its screen is recorded into the history: the definition's `console.history.*`, or
    /// their defaults.
    fn history_settings(&self) -> Result<HistorySettings> {
        history_settings(&self.definition()).map_err(DriverError::Config)
    }

    /// What the instance uses while it runs; `None` when it does not.
    fn usage(&self) -> Option<ResourceUsage> {
        None
    }

    /// Replaces the definition's description, config and devices (validated first); takes effect
    /// at the next start.
    async fn update(&self, definition: InstanceDefinition) -> Result<()>;

    /// Starts the instance; returns once it runs.
    async fn start(&self) -> Result<()>;

    /// Stops the instance: a clean shutdown asked of the guest first unless `force`, escalating
    /// after `timeout`. Returns once it is stopped.
    async fn stop(&self, force: bool, timeout: Duration) -> Result<()>;

    /// Stops then starts the instance.
    async fn restart(&self, force: bool, timeout: Duration) -> Result<()> {
        self.stop(force, timeout).await?;
        self.start().await
    }

    /// Pauses the instance's vCPUs.
    async fn freeze(&self) -> Result<()> {
        Err(DriverError::Unsupported {
            operation: "freezing",
        })
    }

    /// Resumes paused vCPUs.
    async fn unfreeze(&self) -> Result<()> {
        Err(DriverError::Unsupported {
            operation: "unfreezing",
        })
    }

    /// The console log (the serial console's output), oldest first.
    async fn console_log(&self) -> Result<Vec<u8>>;

    /// Empties the console log.
    async fn clear_console_log(&self) -> Result<()>;

    /// Opens a session on the instance's interactive serial console, as its typist when
    /// `force` (see [`crate::serial`] for who types).
    async fn serial_console(&self, force: bool) -> Result<SerialSession> {
        let _ = force;
        Err(DriverError::Unsupported {
            operation: "An interactive console",
        })
    }

    /// Sends a harmless key event (a modifier pressed and released) so a guest that blanked
    /// its screen shows it again.
    async fn wake_screen(&self) -> Result<()> {
        Err(DriverError::Unsupported {
            operation: "Waking the screen",
        })
    }

    /// A PNG of the instance's screen.
    async fn console_screenshot(&self, options: &ScreenshotOptions) -> Result<Screenshot> {
        let _ = options;
        Err(DriverError::Unsupported {
            operation: "A console screenshot",
        })
    }
}
