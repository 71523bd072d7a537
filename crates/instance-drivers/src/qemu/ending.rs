//! How a VM ends: what the supervisor learns from QEMU's events, the last screen, and the words
//! and [`TransitionKind`] of the end.
//!
//! 1. QEMU runs with `-action panic=pause` and `-action shutdown=pause` (`-no-shutdown`), so a
//!    guest that panics (`GUEST_PANICKED`) or powers off (`SHUTDOWN` with `guest: true`) leaves
//!    QEMU alive and paused. [`Ending::observe`] records those events and says when QEMU waits
//!    like that for the daemon to end it, once.
//! 2. Before QEMU is ended (by the supervisor then, or by a stop through the API),
//!    [`keep_final_frame`] captures the primary console into the VM's [`FinalFrame`] slot,
//!    within [`FINAL_FRAME_TIMEOUT`]; a capture that fails or times out is logged and the end goes
//!    on without it. The first capture kept is the one the transition carries.
//! 3. Once QEMU is gone, [`Ending::outcome`] decides the instance's status, the transition's
//!    kind and the reason, in this order: a QEMU that could not be killed, a guest panic, a stop
//!    that was asked for, a guest's or the host's shutdown, and otherwise a QEMU that ended
//!    without any shutdown: killed from outside, or crashed. QEMU is not the daemon's child (it
//!    runs detached, to outlive a daemon restart), so its exit status cannot be read: the reason
//!    says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vgashot_qmp::RunState;
use vgashot_screens::{FrameSource, ScreenId, TimedFrame};

use crate::instance::{Instance, InstanceStatus};
use crate::qemu::QemuInstance;
use crate::transition::TransitionKind;

/// How long the last screen's capture may take before QEMU is ended without it. A capture takes
/// tens of milliseconds on an idle machine, and some hundreds under TCG on a loaded 2-core one;
/// three seconds is ample, yet keeps a forced stop within seconds.
pub(crate) const FINAL_FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// The last screen of a running VM, once captured; shared by the supervisor and a stop.
pub(crate) type FinalFrame = Arc<Mutex<Option<Arc<TimedFrame>>>>;

/// Captures `instance`'s primary console into `slot` unless a capture is there already. Bounded
/// by [`FINAL_FRAME_TIMEOUT`]; a failure leaves the slot empty.
pub(crate) async fn keep_final_frame(instance: &QemuInstance, slot: &FinalFrame) {
    if lock(slot).is_some() || instance.displays().devices.is_empty() {
        return;
    }
    let captured = tokio::time::timeout(
        FINAL_FRAME_TIMEOUT,
        instance.screendump(&ScreenId::default()),
    )
    .await;
    match captured {
        Ok(Ok(frame)) => {
            lock(slot).get_or_insert_with(|| Arc::new(frame));
        }
        Ok(Err(error)) => {
            tracing::warn!(instance = instance.name(), %error, "cannot capture the last screen");
        }
        Err(_) => tracing::warn!(
            instance = instance.name(),
            after = ?FINAL_FRAME_TIMEOUT,
            "the last screen's capture took too long; ending the VM without it"
        ),
    }
}

/// Takes the captured last screen out of `slot`.
pub(crate) fn take_final_frame(slot: &FinalFrame) -> Option<Arc<TimedFrame>> {
    lock(slot).take()
}

fn lock(slot: &FinalFrame) -> std::sync::MutexGuard<'_, Option<Arc<TimedFrame>>> {
    // The slot is only ever set or taken whole: a poisoned lock is consistent.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// QEMU's `SHUTDOWN` event.
struct Shutdown {
    /// Whether the guest asked for it (`guest: true`).
    by_guest: bool,
    /// Its reason, in words.
    reason: String,
}

/// What the supervisor learnt of a VM's end before QEMU ended.
#[derive(Default)]
pub(crate) struct Ending {
    shutdown: Option<Shutdown>,
    panicked: bool,
    /// Whether [`Ending::observe`] already said that QEMU waits to be ended.
    waiting_told: bool,
}

/// How a VM ended: its status from now on, the transition, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) status: InstanceStatus,
    pub(crate) kind: TransitionKind,
    pub(crate) reason: String,
}

impl Ending {
    /// Records QEMU event `name` with `data`; true, once, when the guest has stopped (it powered
    /// off or panicked) and QEMU now waits, paused, to be ended.
    pub(crate) fn observe(&mut self, name: &str, data: &Value) -> bool {
        match name {
            // The first one says why: the `quit` that ends a powered-off guest's QEMU makes
            // a second.
            "SHUTDOWN" => {
                self.shutdown.get_or_insert_with(|| Shutdown {
                    by_guest: data["guest"].as_bool().unwrap_or(false),
                    reason: shutdown_reason(data),
                });
            }
            "GUEST_PANICKED" => self.panicked = true,
            _ => return false,
        }
        self.waits_to_be_ended()
    }

    /// What a VM found in run state `state` (by a daemon that re-attaches to it) has told:
    /// a guest that panicked or powered off before the daemon that ran it could end its QEMU.
    pub(crate) fn found(state: RunState) -> Self {
        Self {
            panicked: state == RunState::GuestPanicked,
            // With `-action shutdown=pause` only a guest's shutdown leaves QEMU in this state.
            shutdown: (state == RunState::Shutdown).then(|| Shutdown {
                by_guest: true,
                reason: "the guest shut down".to_owned(),
            }),
            waiting_told: false,
        }
    }

    /// True, once, when the guest has stopped (it powered off or panicked) and QEMU waits,
    /// paused, to be ended.
    pub(crate) fn waits_to_be_ended(&mut self) -> bool {
        let waiting = self.guest_stopped() && !self.waiting_told;
        self.waiting_told |= waiting;
        waiting
    }

    /// Whether the guest powered off or panicked: its vCPUs are stopped for good, and a `STOP`
    /// event then is no freeze.
    pub(crate) fn guest_stopped(&self) -> bool {
        self.panicked
            || self
                .shutdown
                .as_ref()
                .is_some_and(|shutdown| shutdown.by_guest)
    }

    /// How the VM of `pid` ended, once QEMU is gone (or could not be killed: `lingering`);
    /// `requested` when a stop asked for it.
    pub(crate) fn outcome(&self, pid: i32, requested: bool, lingering: bool) -> Outcome {
        let outcome = |status, kind, reason: String| Outcome {
            status,
            kind,
            reason,
        };
        if lingering {
            return outcome(
                InstanceStatus::Error,
                TransitionKind::Crashed,
                format!("QEMU (pid {pid}) could not be killed"),
            );
        }
        if self.panicked {
            return outcome(
                InstanceStatus::Error,
                TransitionKind::GuestPanicked,
                "the guest kernel panicked".to_owned(),
            );
        }
        if requested {
            return outcome(
                InstanceStatus::Stopped,
                TransitionKind::Stopped,
                "stopped on request".to_owned(),
            );
        }
        match &self.shutdown {
            Some(shutdown) if shutdown.by_guest => outcome(
                InstanceStatus::Stopped,
                TransitionKind::GuestShutdown,
                shutdown.reason.clone(),
            ),
            Some(shutdown) => outcome(
                InstanceStatus::Stopped,
                TransitionKind::Stopped,
                shutdown.reason.clone(),
            ),
            None => outcome(
                InstanceStatus::Stopped,
                TransitionKind::Crashed,
                format!(
                    "QEMU (pid {pid}) exited without shutting down (killed from outside, or \
                     crashed; its exit status is unknown: it is not the daemon's child)"
                ),
            ),
        }
    }
}

/// QEMU's `SHUTDOWN` event data in words.
fn shutdown_reason(data: &Value) -> String {
    let reason = data["reason"].as_str().unwrap_or("unknown");
    match reason {
        "guest-shutdown" => "the guest shut down".into(),
        "guest-reset" => "the guest reset".into(),
        "guest-panic" => "the guest panicked".into(),
        "host-qmp-quit" => "QEMU was told to quit".into(),
        "host-signal" => "QEMU was stopped by a signal on the host".into(),
        "host-ui" => "QEMU's window was closed".into(),
        other => format!("QEMU shut down ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_guest_that_powers_off_waits_to_be_ended_once() {
        let mut ending = Ending::default();
        let shutdown = json!({"guest": true, "reason": "guest-shutdown"});
        assert!(ending.observe("SHUTDOWN", &shutdown));
        assert!(!ending.observe("SHUTDOWN", &shutdown));
        // The `quit` that ends QEMU then does not change why it ended.
        let quit = json!({"guest": false, "reason": "host-qmp-quit"});
        assert!(!ending.observe("SHUTDOWN", &quit));
        assert!(!ending.observe("STOP", &Value::Null));
        assert!(ending.guest_stopped());
        assert_eq!(
            ending.outcome(7, false, false),
            Outcome {
                status: InstanceStatus::Stopped,
                kind: TransitionKind::GuestShutdown,
                reason: "the guest shut down".into(),
            }
        );
        // The stop that pressed the power button asked for it.
        assert_eq!(ending.outcome(7, true, false).kind, TransitionKind::Stopped);
    }

    #[test]
    fn a_vm_found_paused_after_its_guest_stopped_is_ended() {
        let mut panicked = Ending::found(RunState::GuestPanicked);
        assert!(panicked.waits_to_be_ended());
        assert!(!panicked.waits_to_be_ended());
        assert_eq!(
            panicked.outcome(7, false, false).kind,
            TransitionKind::GuestPanicked
        );
        let mut shut_down = Ending::found(RunState::Shutdown);
        assert!(shut_down.waits_to_be_ended());
        assert_eq!(
            shut_down.outcome(7, false, false).kind,
            TransitionKind::GuestShutdown
        );
        assert!(!Ending::found(RunState::Running).waits_to_be_ended());
        assert!(!Ending::found(RunState::Paused).guest_stopped());
    }

    #[test]
    fn a_panic_is_an_error_even_during_a_stop() {
        let mut ending = Ending::default();
        assert!(ending.observe("GUEST_PANICKED", &json!({"action": "pause"})));
        let outcome = ending.outcome(7, true, false);
        assert_eq!(outcome.status, InstanceStatus::Error);
        assert_eq!(outcome.kind, TransitionKind::GuestPanicked);
        assert_eq!(outcome.reason, "the guest kernel panicked");
    }

    #[test]
    fn the_host_ending_qemu_is_a_stop_and_no_shutdown_a_crash() {
        let mut ending = Ending::default();
        let signal = json!({"guest": false, "reason": "host-signal"});
        assert!(!ending.observe("SHUTDOWN", &signal));
        assert!(!ending.guest_stopped());
        let outcome = ending.outcome(7, false, false);
        assert_eq!(
            (outcome.kind, outcome.reason.as_str()),
            (
                TransitionKind::Stopped,
                "QEMU was stopped by a signal on the host"
            )
        );

        let crashed = Ending::default().outcome(7, false, false);
        assert_eq!(crashed.status, InstanceStatus::Stopped);
        assert_eq!(crashed.kind, TransitionKind::Crashed);
        assert!(
            crashed
                .reason
                .starts_with("QEMU (pid 7) exited without shutting down (killed from outside"),
            "{}",
            crashed.reason
        );

        let stuck = Ending::default().outcome(7, true, true);
        assert_eq!(
            (stuck.status, stuck.kind),
            (InstanceStatus::Error, TransitionKind::Crashed)
        );
    }
}
