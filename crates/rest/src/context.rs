//! What every handler works with: the driver, operations, events, and who this server is.

use std::sync::Arc;

use vgashot_instance_drivers::{Driver, DriverError, Instance};

use crate::error::ApiError;
use crate::events::EventHub;
use crate::history::ScreenHistory;
use crate::operations::Operations;
use crate::screens::Screens;

/// Facts about this server that `GET /1.0` reports, gathered once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// The driver's name (`qemu`).
    pub driver: String,
    /// The host name.
    pub server_name: String,
    /// This process's pid.
    pub server_pid: u32,
    /// QEMU's version, e.g. `7.2.22`.
    pub driver_version: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// From `/etc/os-release`.
    pub os_name: String,
    /// From `/etc/os-release`.
    pub os_version: String,
}

impl ServerIdentity {
    /// Reads the facts from this machine and `driver`; what cannot be read is left empty.
    pub fn gather(driver: &dyn Driver) -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .unwrap_or_default()
        };
        let os_release = read("/etc/os-release");
        let os_field = |key: &str| {
            os_release
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(|value| value.trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        Self {
            driver: driver.name().to_owned(),
            server_name: read("/proc/sys/kernel/hostname"),
            server_pid: std::process::id(),
            driver_version: driver.version().unwrap_or_default(),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_name: os_field("NAME"),
            os_version: os_field("VERSION_ID"),
        }
    }
}

/// What `GET /1.0` tells trusted clients about the TLS listener, gathered when it is bound.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkIdentity {
    /// Where clients reach the listener (`HOST:PORT` each).
    pub addresses: Vec<String>,
    /// The server's certificate, PEM.
    pub certificate: String,
    /// Its SHA-256 fingerprint, lowercase hex.
    pub certificate_fingerprint: String,
}

/// The state shared by every request.
#[derive(Debug, Clone)]
pub struct Context {
    /// The VMs, through the driver's trait only.
    pub driver: Arc<dyn Driver>,
    /// Long-running requests.
    pub operations: Operations,
    /// Listeners of `/1.0/events`.
    pub events: EventHub,
    /// What `GET /1.0` says about this server.
    pub identity: Arc<ServerIdentity>,
    /// The TLS listener's certificate and addresses; `None` when only the Unix socket serves.
    pub network: Option<Arc<NetworkIdentity>>,
    /// The VMs' screens, shared by every viewer.
    pub screens: Arc<Screens>,
    /// The screen history, when the daemon keeps one ([`crate::history`]).
    pub history: Option<Arc<ScreenHistory>>,
}

impl Context {
    /// The instance `name` of `project`, or Incus's 404.
    pub fn instance(&self, project: &str, name: &str) -> Result<Arc<dyn Instance>, ApiError> {
        self.driver.get(project, name).map_err(|error| match error {
            DriverError::NotFound => ApiError::InstanceNotFound {
                name: name.to_owned(),
                project: project.to_owned(),
            },
            other => ApiError::Driver(other),
        })
    }
}
