//! Instance drivers: the [`Instance`] trait and the qemu driver that runs real VMs.
//!
//! How the pieces fit:
//! 1. [`definition`] says what an instance is (Incus's vocabulary: name, project, type, config,
//!    devices) and validates names as Incus does; [`store`] persists definitions one file each,
//!    atomically.
//! 2. [`Driver`] and [`Instance`] are all the REST layer knows of instances: a driver creates,
//!    finds, lists and deletes them; an instance has a state, a life cycle, a console log, and
//!    is the frame source of its screens. Capabilities a driver lacks answer a typed
//!    [`DriverError::Unsupported`].
//! 3. [`qemu`] implements them for QEMU: [`qemu::cmdline`] turns config into a command line,
//!    [`QemuDriver`] owns the VMs (and re-attaches to running ones after a restart),
//!    [`QemuInstance`] runs one VM and supervises it.
//! 4. Every start and every end of an instance is a [`Transition`] (why it ended, and its last
//!    screen when QEMU still lived), published by [`QemuDriver::transitions`].
//! 5. [`serial`] shares an interactive serial console among several sessions, one of which
//!    types.
//! 6. [`DirectoryLock`] keeps a second daemon off a directory that one already uses.
//! 7. Every failure is a [`DriverError`] variant that says what went wrong; the REST layer maps
//!    them to HTTP statuses in one place.

pub mod definition;
mod error;
mod instance;
mod lock;
pub mod qemu;
pub mod serial;
pub mod store;
mod transition;

pub use definition::{InstanceDefinition, InstanceType};
pub use error::{DriverError, Result};
pub use instance::{
    Driver, Instance, InstanceState, InstanceStatus, PngEncoder, ResourceUsage, Screenshot,
    ScreenshotOptions,
};
pub use lock::DirectoryLock;
/// The instances' own display device and the most heads one may have: the screens a request
/// may name.
pub use qemu::cmdline::{DISPLAY_DEVICE_ID, HistorySettings, MAX_HEADS};
pub use qemu::{
    DEFAULT_MAX_SCREEN_PIXELS, DriverOptions, DriverPaths, HostFilePolicy, QemuDriver, QemuInstance,
};
pub use transition::{TRANSITION_CAPACITY, Transition, TransitionKind};
