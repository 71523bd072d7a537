//! State transitions: what a driver tells the rest of the daemon when an instance starts or ends.
//!
//! How they are made and read:
//! 1. A driver publishes one [`Transition`] each time an instance starts, and one each time it
//!    ends, whatever ended it: a stop through the API, the guest powering itself off, the guest
//!    kernel panicking, QEMU dying. The [`TransitionKind`] says which; `reason` says it in words
//!    (the same words as [`crate::InstanceState::reason`]), `status` is the status the instance
//!    has from then on.
//! 2. When QEMU still lived as the instance ended (a guest that powered off or panicked leaves
//!    QEMU paused; a stop through the API captures before it ends QEMU), the transition carries
//!    the instance's last screen, `final_frame`, taken from its primary console before the
//!    process ended. A capture that failed or took too long leaves it `None`: it never holds up
//!    the end of the instance. A QEMU that died by itself leaves nothing to capture.
//! 3. Subscribers get them through a [`tokio::sync::broadcast`] channel
//!    ([`crate::QemuDriver::transitions`]) of [`TRANSITION_CAPACITY`]: publishing never waits,
//!    and a subscriber that falls further behind loses the oldest (`RecvError::Lagged`).

use std::sync::Arc;
use std::time::SystemTime;

use vgashot_screens::TimedFrame;

use crate::instance::InstanceStatus;

/// How many transitions a subscriber may fall behind before it loses some: far more than a
/// host's VMs start and stop in the time a subscriber (the REST layer's event bridge, which
/// only serialises them) needs to read them.
pub const TRANSITION_CAPACITY: usize = 256;

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// It started, on request.
    Started,
    /// It stopped because it was asked to: through the driver (a stop, a restart's first half),
    /// or by an orderly end of QEMU from the host (a signal, another QMP client's `quit`).
    Stopped,
    /// Its guest powered the machine off by itself.
    GuestShutdown,
    /// Its guest kernel panicked (reported through the pvpanic device); the status is `Error`.
    GuestPanicked,
    /// QEMU ended without shutting down (killed from outside, or it crashed), or could not be
    /// ended at all (the status is then `Error`).
    Crashed,
}

/// One state transition of one instance.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The instance's project.
    pub project: String,
    /// The instance's name.
    pub name: String,
    /// What happened.
    pub kind: TransitionKind,
    /// The instance's status from now on.
    pub status: InstanceStatus,
    /// Why, in words (e.g. `the guest kernel panicked`).
    pub reason: String,
    /// When the driver saw it happen.
    pub at: SystemTime,
    /// The primary console's last screen, captured before QEMU ended, when it could be.
    pub final_frame: Option<Arc<TimedFrame>>,
}
