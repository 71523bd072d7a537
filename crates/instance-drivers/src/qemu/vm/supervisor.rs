//! The supervisor of one running QEMU (step 2 of the [parent module](super)): it follows QMP
//! events and the console ring until QMP closes, ends a guest that powered off or panicked
//! once its last screen is kept, and records and publishes how the VM ended.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use nix::sys::signal::Signal;
use tokio::sync::{broadcast, watch};
use vgashot_qmp::Qmp;

use super::{CONSOLE_DRAIN_PERIOD, EXIT_GRACE, KILL_GRACE, QUIT_GRACE, QemuInstance};
use crate::instance::InstanceStatus;
use crate::qemu::ending::{Ending, FinalFrame, keep_final_frame, take_final_frame};
use crate::qemu::process;

/// Follows one running QEMU until it ends.
pub(super) struct Supervisor {
    pub(super) instance: Weak<QemuInstance>,
    pub(super) pid: i32,
    pub(super) events: broadcast::Receiver<vgashot_qmp::Event>,
    pub(super) qmp: Qmp,
    pub(super) stop_requested: Arc<AtomicBool>,
    pub(super) exited: watch::Sender<bool>,
    pub(super) final_frame: FinalFrame,
    /// What is known of the VM's end when the supervisor starts.
    pub(super) ending: Ending,
}

impl Supervisor {
    pub(super) async fn run(mut self) {
        let mut drain = tokio::time::interval(CONSOLE_DRAIN_PERIOD);
        let mut ending = std::mem::take(&mut self.ending);
        if ending.waits_to_be_ended() {
            self.end_stopped_guest().await;
        }
        let qmp = self.qmp.clone();
        let closed = qmp.closed();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => break,
                event = self.events.recv() => match event {
                    Ok(event) => {
                        if ending.observe(&event.name, &event.data) {
                            self.end_stopped_guest().await;
                        }
                        self.follow_run_state(&event.name, &ending);
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(pid = self.pid, missed, "missed QMP events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = drain.tick() => self.drain_console().await,
            }
        }
        // Events that arrived just before the end (a SHUTDOWN, then EOF) are still queued.
        while let Ok(event) = self.events.try_recv() {
            ending.observe(&event.name, &event.data);
        }
        self.finish(ending).await;
    }

    /// Follows a pause or resume of the vCPUs (a freeze, by us or another QMP client); a guest
    /// that powered off or panicked is not frozen, it is ending.
    fn follow_run_state(&self, name: &str, ending: &Ending) {
        let Some(instance) = self.instance.upgrade() else {
            return;
        };
        if ending.guest_stopped() {
            return;
        }
        match name {
            "STOP" => {
                let mut cell = instance.cell();
                if cell.status == InstanceStatus::Running {
                    cell.status = InstanceStatus::Frozen;
                }
            }
            "RESUME" => {
                let mut cell = instance.cell();
                if cell.status == InstanceStatus::Frozen {
                    cell.status = InstanceStatus::Running;
                }
            }
            _ => {}
        }
    }

    async fn drain_console(&self) {
        let Some(instance) = self.instance.upgrade() else {
            return;
        };
        if let Err(error) = instance.console.drain(&self.qmp).await {
            tracing::debug!(pid = self.pid, %error, "could not drain the console");
        }
    }

    /// The guest powered off or panicked and QEMU waits, paused: keeps what the guest printed
    /// and showed last, then ends QEMU, `quit` first and SIGKILL after [`QUIT_GRACE`]. The
    /// connection's end, which follows, finishes the VM.
    async fn end_stopped_guest(&self) {
        if let Some(instance) = self.instance.upgrade() {
            if let Err(error) = instance.console.drain(&self.qmp).await {
                tracing::debug!(pid = self.pid, %error, "could not drain the console");
            }
            keep_final_frame(&instance, &self.final_frame).await;
        }
        let quit = async {
            if let Err(error) = self.qmp.quit().await {
                tracing::debug!(pid = self.pid, %error, "quit failed");
            }
            self.qmp.closed().await;
        };
        if tokio::time::timeout(QUIT_GRACE, quit).await.is_err() {
            tracing::warn!(pid = self.pid, "QEMU ignored quit; killing it");
            process::signal(self.pid, Signal::SIGKILL);
        }
    }

    /// QMP is gone: make sure QEMU is too, then record how it ended.
    async fn finish(self, ending: Ending) {
        let mut lingering = !process::wait_gone(self.pid, EXIT_GRACE).await;
        if lingering {
            tracing::warn!(
                pid = self.pid,
                "QEMU closed QMP but did not exit; killing it"
            );
            process::signal(self.pid, Signal::SIGKILL);
            lingering = !process::wait_gone(self.pid, KILL_GRACE).await;
        }
        let requested = self.stop_requested.load(Ordering::SeqCst);
        let outcome = ending.outcome(self.pid, requested, lingering);
        let Some(instance) = self.instance.upgrade() else {
            let _ = self.exited.send(true);
            return;
        };
        let status = outcome.status;
        {
            let mut cell = instance.cell();
            cell.status = status;
            cell.reason = Some(outcome.reason.clone());
            cell.vm = None;
        }
        tracing::info!(instance = %instance.name, pid = self.pid, reason = %outcome.reason, "VM ended");
        // Published before the stop waiting for the end returns, so a subscriber hears of the
        // end before the stop's caller does.
        instance.publish(
            outcome.kind,
            status,
            outcome.reason,
            take_final_frame(&self.final_frame),
        );
        // Sent before the delete below takes the life-cycle lock, which a stop waiting for
        // this very signal may hold.
        let _ = self.exited.send(true);
        // A requested stop deletes an ephemeral instance itself (or keeps it, for a restart).
        if !requested && status == InstanceStatus::Stopped {
            instance.forget_after_guest_shutdown().await;
        }
    }
}
