//! One QEMU virtual machine: its life cycle, its [`supervisor`], and the [`Instance`] trait.
//!
//! How a VM lives:
//! 1. `start` plans the machine from the definition, launches QEMU detached (it outlives the
//!    daemon), connects QMP and hands the connection to a supervisor task.
//! 2. The supervisor follows QMP events (`SHUTDOWN` with its reason, `STOP`/`RESUME`,
//!    `GUEST_PANICKED`) and drains the console ring now and then. A guest that powered off or
//!    panicked leaves QEMU paused ([`super::ending`]): the supervisor drains the console, keeps
//!    the last screen, and ends QEMU (`quit`, SIGKILL after [`QUIT_GRACE`]). When the QMP
//!    connection ends it makes sure the process is gone (SIGKILL if it lingers), records the
//!    status (`Stopped`, or `Error` for a panic or an unkillable QEMU) with the reason, in
//!    words, and publishes the [`Transition`], with the last screen when one was kept.
//! 3. `stop` asks the guest (ACPI power button), keeps the last screen, then asks QEMU
//!    (`quit`), then the kernel (SIGKILL), each after its own bound, and returns when the
//!    supervisor has seen the end. `start` publishes a [`TransitionKind::Started`].
//! 4. Life-cycle changes are serialised by one async lock per VM; reads of the state and
//!    screenshots never wait for it. A forced stop does not queue behind a clean shutdown that
//!    waits for the guest: before it asks for the lock it tells the running VM
//!    ([`RunningVm::forced`]), and the waiting stop goes on at once to `quit` and SIGKILL, so a
//!    forced stop ends the VM within seconds whatever the clean shutdown's timeout.
//! 5. A delete marks the instance deleted under the lock ([`QemuInstance::deleted`]) as soon as
//!    its definition is a tombstone; `start` and `update` check the mark under the same lock, so
//!    a handle to the instance obtained before the delete can never start a QEMU afterwards.
//! 6. An ephemeral instance is deleted when it stops (by `stop`, under its lock, before `stop`
//!    returns; or by the supervisor, taking the lock, when the guest shut down by itself), and
//!    not when it restarts: `restart` stops it keeping the definition, then starts it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::sync::watch;
use vgashot_qemu_process::Launch;
use vgashot_qmp::{Config, Qmp, RunState};
use vgashot_stdext::{MutexExt, RwLockExt};

use crate::definition::{InstanceDefinition, InstanceType};
use crate::error::{DriverError, Result};
use crate::instance::{
    Instance, InstanceState, InstanceStatus, ResourceUsage, Screenshot, ScreenshotOptions,
};
use crate::qemu::cmdline::{carry_formats, screenshot_min_interval};
use crate::qemu::console::{ConsoleLog, RING_BYTES};
use crate::qemu::ending::{Ending, FinalFrame, keep_final_frame};
use crate::qemu::serial::SerialConsole;
use crate::qemu::{DriverShared, input, process, screenshot};
use crate::serial::SerialSession;
use crate::transition::{Transition, TransitionKind};

mod supervisor;
use supervisor::Supervisor;

/// How long QEMU has to exit after `quit` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(5);
/// How long the kernel has to end QEMU after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long a QEMU that closed its QMP socket has to exit by itself.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// How often the supervisor moves the console ring into the log file.
const CONSOLE_DRAIN_PERIOD: Duration = Duration::from_secs(2);

/// What a running VM is reached by.
#[derive(Clone)]
struct RunningVm {
    pid: i32,
    qmp: Qmp,
    /// Becomes `true` once the supervisor has seen QEMU end.
    exited: watch::Receiver<bool>,
    /// Set by `stop`, so the supervisor reports a requested stop as such (and leaves deleting an
    /// ephemeral instance to the stop).
    stop_requested: Arc<AtomicBool>,
    /// Set by a forced stop before it waits for the life-cycle lock: a clean shutdown waiting
    /// for the guest gives up at once and ends QEMU.
    forced: Arc<watch::Sender<bool>>,
    /// Ends the supervisor when the driver lets go of the VM without stopping it.
    supervisor: tokio::task::AbortHandle,
    /// The last screen, once captured before QEMU is ended.
    final_frame: FinalFrame,
}

/// The mutable run-time state.
struct RunCell {
    status: InstanceStatus,
    reason: Option<String>,
    vm: Option<RunningVm>,
    /// A QEMU found running whose QMP does not answer: kept so `stop` can still end it.
    unreachable_pid: Option<i32>,
}

/// A QEMU virtual machine.
pub struct QemuInstance {
    me: Weak<QemuInstance>,
    shared: Arc<DriverShared>,
    project: String,
    name: String,
    definition: RwLock<InstanceDefinition>,
    runtime_dir: PathBuf,
    console: Arc<ConsoleLog>,
    serial: SerialConsole,
    lifecycle: tokio::sync::Mutex<()>,
    run: Mutex<RunCell>,
    /// Set, under the life-cycle lock, once the definition is a tombstone: nothing starts it
    /// again.
    deleted: AtomicBool,
    /// The VNC mirror of its primary screen ([`crate::qemu::mirror`]).
    pub(crate) mirror: crate::qemu::mirror::Mirror,
}

/// What a stop does with an ephemeral instance once QEMU has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// Delete it (a stop).
    DeleteEphemeral,
    /// Keep it (the first half of a restart).
    Keep,
}

/// How a clean shutdown's wait for the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuestShutdown {
    /// QEMU ended.
    Exited,
    /// A forced stop cut the wait short.
    Forced,
    /// The guest did not shut down in time.
    TimedOut,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// As asked.
    AsAsked,
    /// A forced stop cut its clean shutdown short, or ended the VM before this stop got to it.
    PreEmpted,
}

impl std::fmt::Debug for QemuInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuInstance")
            .field("project", &self.project)
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl QemuInstance {
    pub(crate) fn new(shared: Arc<DriverShared>, definition: InstanceDefinition) -> Arc<Self> {
        let runtime_dir = shared.runtime_dir(&definition.project, &definition.name);
        let console = Arc::new(ConsoleLog::new(runtime_dir.join("console.log")));
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            project: definition.project.clone(),
            name: definition.name.clone(),
            serial: SerialConsole::new(Arc::clone(&console)),
            console,
            runtime_dir,
            definition: RwLock::new(definition),
            shared,
            lifecycle: tokio::sync::Mutex::new(()),
            deleted: AtomicBool::new(false),
            mirror: Default::default(),
            run: Mutex::new(RunCell {
                status: InstanceStatus::Stopped,
                reason: None,
                vm: None,
                unreachable_pid: None,
            }),
        })
    }

    /// The directory with QEMU's QMP socket, pid file, logs.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    fn cell(&self) -> MutexGuard<'_, RunCell> {
        // Every update of the cell is a few field assignments; a poisoned lock is consistent.
        self.run.lock_unpoisoned()
    }

    fn running_vm(&self) -> Option<RunningVm> {
        self.cell().vm.clone()
    }

    /// The QMP connection of the running VM, if it runs (for its frame source).
    pub(crate) fn running_qmp(&self) -> Option<Qmp> {
        self.running_vm().map(|vm| vm.qmp)
    }

    /// The most pixels a screen of this VM may have to be captured.
    pub(crate) fn max_screen_pixels(&self) -> u64 {
        self.shared.options.max_screen_pixels
    }

    fn qmp_config(&self) -> Config {
        Config::default()
    }

    /// Finds a QEMU left running by an earlier daemon and takes it over, without stopping it.
    pub(crate) async fn reattach(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        let Some(pid) = vgashot_qemu_process::read_pid_file(&self.runtime_dir) else {
            return;
        };
        let socket = self.runtime_dir.join(vgashot_qemu_process::QMP_SOCKET);
        if !process::alive(pid) || !process::is_qemu_serving(pid, &socket) {
            tracing::debug!(instance = %self.name, pid, "stale pid file; the VM is stopped");
            return;
        }
        let connected = Qmp::connect(&socket, self.qmp_config()).await;
        let attached = match connected {
            Ok(qmp) => match qmp.query_status().await {
                Ok(status) => {
                    let run_state = status.status;
                    self.serial.restore_ring(&qmp).await;
                    let paused = !status.running && status.status == RunState::Paused;
                    let status = if paused {
                        InstanceStatus::Frozen
                    } else {
                        InstanceStatus::Running
                    };
                    // A guest that stopped while no daemon ran is ended now, as it would have been.
                    self.attach(pid, qmp, status, Ending::found(run_state));
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match attached {
            Ok(()) => tracing::info!(instance = %self.name, pid, "re-attached to a running VM"),
            Err(error) => {
                tracing::warn!(instance = %self.name, pid, %error, "VM runs but QMP does not answer");
                let mut cell = self.cell();
                cell.status = InstanceStatus::Error;
                cell.reason = Some(format!(
                    "QEMU runs (pid {pid}) but its QMP socket does not answer: {error}"
                ));
                cell.unreachable_pid = Some(pid);
            }
        }
    }

    /// Records a running QEMU and starts its supervisor, which knows `ending` already.
    fn attach(&self, pid: i32, qmp: Qmp, status: InstanceStatus, ending: Ending) {
        let (exited_sender, exited) = watch::channel(false);
        let stop_requested = Arc::new(AtomicBool::new(false));
        let (forced, _) = watch::channel(false);
        let final_frame = FinalFrame::default();
        let supervisor = Supervisor {
            instance: self.me.clone(),
            pid,
            // Subscribed now, not when the task first runs, so no event is missed in between.
            events: qmp.events(),
            qmp: qmp.clone(),
            stop_requested: stop_requested.clone(),
            exited: exited_sender,
            final_frame: final_frame.clone(),
            ending,
        };
        let mut cell = self.cell();
        // Spawned under the lock, so the supervisor cannot record an end before `vm` is set.
        let supervisor = tokio::spawn(supervisor.run()).abort_handle();
        cell.status = status;
        cell.reason = None;
        cell.unreachable_pid = None;
        cell.vm = Some(RunningVm {
            pid,
            qmp,
            exited,
            stop_requested,
            forced: Arc::new(forced),
            supervisor,
            final_frame,
        });
    }

    /// Publishes a transition of this instance; nobody listening is no error.
    fn publish(
        &self,
        kind: TransitionKind,
        status: InstanceStatus,
        reason: String,
        final_frame: Option<Arc<vgashot_screens::TimedFrame>>,
    ) {
        let _ = self.shared.transitions.send(Transition {
            project: self.project.clone(),
            name: self.name.clone(),
            kind,
            status,
            reason,
            at: SystemTime::now(),
            final_frame,
        });
    }

    /// Lets go of a running VM without stopping it: the supervisor ends and the QMP connection
    /// closes, so another driver (a restarted daemon) can attach.
    pub(crate) async fn detach(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        if let Some(vm) = self.cell().vm.take() {
            vm.supervisor.abort();
        }
    }

    /// Waits until the supervisor has seen QEMU end, up to `bound`.
    async fn wait_exited(exited: &mut watch::Receiver<bool>, bound: Duration) -> bool {
        tokio::time::timeout(bound, exited.wait_for(|&gone| gone))
            .await
            .is_ok()
    }

    /// Stores when the instance was last started; a failure is logged, not fatal to the start.
    fn record_last_use(&self) {
        let mut definition = self.definition();
        definition.last_used_at = vgashot_stdext::now_rfc3339();
        match self.shared.store.update(&definition) {
            Ok(()) => {
                *self.definition.write_unpoisoned() = definition;
            }
            Err(error) => {
                tracing::warn!(instance = %self.name, %error, "cannot record the start time")
            }
        }
    }

    /// Deletes the instance if it is stopped, holding the life-cycle lock so it cannot start
    /// meanwhile.
    pub(crate) async fn delete(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.is_deleted() {
            // An earlier delete failed half-way: finish it.
            return self.shared.end_remove(self);
        }
        if self.state().pid.is_some() {
            return Err(DriverError::Running);
        }
        self.remove_locked()
    }

    /// Takes the life-cycle lock of a stopped instance for a rename, and retires this instance:
    /// nothing starts it again, as its definition goes to another name (the driver's
    /// [`crate::QemuDriver::rename`]).
    pub(crate) async fn retire_for_rename(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        let lifecycle = self.lifecycle.lock().await;
        if self.is_deleted() {
            return Err(DriverError::NotFound);
        }
        if self.state().pid.is_some() {
            return Err(DriverError::RenameRunning);
        }
        self.deleted.store(true, Ordering::SeqCst);
        Ok(lifecycle)
    }

    /// Undoes [`Self::retire_for_rename`] after a rename that moved nothing; the caller still
    /// holds the life-cycle lock it returned.
    pub(crate) fn unretire(&self) {
        self.deleted.store(false, Ordering::SeqCst);
    }

    /// Whether the instance was deleted; read under the life-cycle lock, it stays true.
    fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    /// Deletes the stopped instance; the caller holds the life-cycle lock.
    fn remove_locked(&self) -> Result<()> {
        self.shared.begin_remove(self)?;
        self.deleted.store(true, Ordering::SeqCst);
        self.shared.end_remove(self)
    }

    /// Deletes the instance if it is ephemeral and stopped (not in error); the caller holds the
    /// life-cycle lock.
    fn delete_if_stopped_ephemeral(&self) -> Result<()> {
        let stopped = {
            let cell = self.cell();
            cell.vm.is_none()
                && cell.unreachable_pid.is_none()
                && cell.status == InstanceStatus::Stopped
        };
        if stopped && !self.is_deleted() && self.definition().ephemeral {
            self.remove_locked()?;
            tracing::info!(instance = %self.name, "deleted the ephemeral instance as it stopped");
        }
        Ok(())
    }

    /// Tells a clean shutdown in progress to give up waiting for the guest; whether a VM was
    /// running to be told.
    fn pre_empt_clean_shutdown(&self) -> bool {
        match self.running_vm() {
            Some(vm) => {
                vm.forced.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Waits up to `timeout` for the guest to shut down, or less if a forced stop comes.
    async fn wait_for_guest(vm: &RunningVm, timeout: Duration) -> GuestShutdown {
        let mut exited = vm.exited.clone();
        let mut forced = vm.forced.subscribe();
        tokio::select! {
            biased;
            // An error means the supervisor is gone, which it is only once QEMU ended.
            _ = exited.wait_for(|&gone| gone) => GuestShutdown::Exited,
            _ = forced.wait_for(|&forced| forced) => GuestShutdown::Forced,
            () = tokio::time::sleep(timeout) => GuestShutdown::TimedOut,
        }
    }

    /// Stops the VM as [`Instance::stop`] says, then does `after` with an ephemeral instance.
    async fn stop_then(&self, force: bool, timeout: Duration, after: AfterStop) -> Result<Stopped> {
        let pre_empting = force && self.pre_empt_clean_shutdown();
        let _lifecycle = self.lifecycle.lock().await;
        let stopped = match self.running_vm() {
            Some(vm) => self.end_vm(&vm, force, timeout).await?,
            None => {
                let unreachable = self.cell().unreachable_pid;
                match unreachable {
                    Some(pid) => {
                        self.kill_unreachable(pid).await?;
                        Stopped::AsAsked
                    }
                    // The stop this one pre-empted ended the VM: stopped, as asked.
                    None if pre_empting => return Ok(Stopped::PreEmpted),
                    None => return Err(DriverError::AlreadyStopped),
                }
            }
        };
        if after == AfterStop::DeleteEphemeral {
            self.delete_if_stopped_ephemeral()?;
        }
        Ok(stopped)
    }

    /// Ends a running VM: the guest's clean shutdown unless `force`, then `quit`, then SIGKILL.
    /// The caller holds the life-cycle lock.
    async fn end_vm(&self, vm: &RunningVm, force: bool, timeout: Duration) -> Result<Stopped> {
        vm.stop_requested.store(true, Ordering::SeqCst);
        // Keep what the guest printed last; the ring dies with QEMU.
        if let Err(error) = self.console.drain(&vm.qmp).await {
            tracing::debug!(instance = %self.name, %error, "could not drain the console before stopping");
        }
        let mut stopped = Stopped::AsAsked;
        // The ACPI power button; a guest without ACPI support ignores it.
        if !force && vm.qmp.system_powerdown().await.is_ok() {
            match Self::wait_for_guest(vm, timeout).await {
                GuestShutdown::Exited => return Ok(stopped),
                GuestShutdown::Forced => {
                    tracing::info!(instance = %self.name, "a forced stop cut the clean shutdown short");
                    stopped = Stopped::PreEmpted;
                }
                GuestShutdown::TimedOut => {}
            }
        }
        keep_final_frame(self, &vm.final_frame).await;
        let mut exited = vm.exited.clone();
        if vm.qmp.quit().await.is_ok() && Self::wait_exited(&mut exited, QUIT_GRACE).await {
            return Ok(stopped);
        }
        tracing::warn!(instance = %self.name, pid = vm.pid, "QEMU ignored quit; killing it");
        process::signal(vm.pid, Signal::SIGKILL);
        if Self::wait_exited(&mut exited, KILL_GRACE + EXIT_GRACE).await {
            return Ok(stopped);
        }
        Err(DriverError::StopFailed { pid: vm.pid })
    }

    /// Deletes the instance if it is ephemeral and the guest stopped it by itself; taken by the
    /// supervisor, after it has recorded the end.
    async fn forget_after_guest_shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        if let Err(error) = self.delete_if_stopped_ephemeral() {
            tracing::warn!(instance = %self.name, %error, "could not delete an ephemeral instance");
        }
    }

    /// Ends a QEMU that is known only by its pid.
    async fn kill_unreachable(&self, pid: i32) -> Result<()> {
        process::signal(pid, Signal::SIGKILL);
        if !process::wait_gone(pid, KILL_GRACE).await {
            return Err(DriverError::StopFailed { pid });
        }
        let reason = "killed: its QMP socket did not answer";
        {
            let mut cell = self.cell();
            cell.status = InstanceStatus::Stopped;
            cell.reason = Some(reason.into());
            cell.unreachable_pid = None;
        }
        self.publish(
            TransitionKind::Stopped,
            InstanceStatus::Stopped,
            reason.into(),
            None,
        );
        Ok(())
    }
}

#[async_trait]
impl Instance for QemuInstance {
    fn name(&self) -> &str {
        &self.name
    }

    fn project(&self) -> &str {
        &self.project
    }

    fn instance_type(&self) -> InstanceType {
        InstanceType::VirtualMachine
    }

    fn definition(&self) -> InstanceDefinition {
        self.definition.read_unpoisoned().clone()
    }

    fn state(&self) -> InstanceState {
        let cell = self.cell();
        InstanceState {
            status: cell.status,
            reason: cell.reason.clone(),
            pid: cell.vm.as_ref().map(|vm| vm.pid).or(cell.unreachable_pid),
        }
    }

    fn usage(&self) -> Option<ResourceUsage> {
        let pid = self.cell().vm.as_ref()?.pid;
        process::usage(pid)
    }

    async fn update(&self, definition: InstanceDefinition) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.is_deleted() {
            return Err(DriverError::NotFound);
        }
        let mut updated = self.definition();
        updated.description = definition.description;
        updated.config = definition.config;
        updated.devices = definition.devices;
        updated.profiles = definition.profiles;
        updated.ephemeral = definition.ephemeral;
        carry_formats(&self.definition(), &mut updated);
        let (updated, _) = self.shared.plan(updated).await?;
        self.shared
            .store
            .update(&updated)
            .map_err(DriverError::Store)?;
        if let Ok(period) = screenshot_min_interval(&updated) {
            self.mirror.set_period(period);
        }
        *self.definition.write_unpoisoned() = updated;
        Ok(())
    }

    async fn start(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.is_deleted() {
            return Err(DriverError::NotFound);
        }
        if self.cell().vm.is_some() || self.cell().unreachable_pid.is_some() {
            return Err(DriverError::AlreadyRunning);
        }
        let stored = self.definition();
        let (planned, plan) = self.shared.plan(stored.clone()).await?;
        if planned.config != stored.config {
            // Formats recorded now for a definition stored without them; persisted with the
            // start time below.
            *self.definition.write_unpoisoned() = planned;
        }
        let files = self.shared.open_host_files(plan.clone()).await?;
        let mut launch = Launch::new(&self.runtime_dir)
            .map_err(DriverError::Launch)?
            .confine(self.shared.options.confinement.clone());
        let descriptors = files.hand_to(&mut launch);
        let launch = launch.args(plan.qemu_args(&self.name, RING_BYTES, &descriptors));
        let detached = launch.spawn_detached().await.map_err(DriverError::Launch)?;
        let qmp = match Qmp::connect(&detached.qmp_socket, self.qmp_config()).await {
            Ok(qmp) => qmp,
            Err(source) => {
                process::signal(detached.pid, Signal::SIGKILL);
                return Err(DriverError::Qmp {
                    operation: "answer on its QMP socket",
                    source,
                });
            }
        };
        self.attach(
            detached.pid,
            qmp,
            InstanceStatus::Running,
            Ending::default(),
        );
        tracing::info!(instance = %self.name, pid = detached.pid, "started");
        self.publish(
            TransitionKind::Started,
            InstanceStatus::Running,
            "started on request".into(),
            None,
        );
        self.record_last_use();
        Ok(())
    }

    async fn stop(&self, force: bool, timeout: Duration) -> Result<()> {
        self.stop_then(force, timeout, AfterStop::DeleteEphemeral)
            .await
            .map(drop)
    }

    /// Stops the VM keeping its definition (an ephemeral instance is not deleted by a restart,
    /// as in Incus), then starts it, unless a forced stop cut the shutdown short or a delete
    /// came in between (which `start` refuses).
    async fn restart(&self, force: bool, timeout: Duration) -> Result<()> {
        match self.stop_then(force, timeout, AfterStop::Keep).await? {
            Stopped::AsAsked => self.start().await,
            Stopped::PreEmpted => Err(DriverError::RestartInterrupted),
        }
    }

    async fn freeze(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let vm = self.running_vm().ok_or(DriverError::NotRunning)?;
        vm.qmp.stop().await.map_err(|source| DriverError::Qmp {
            operation: "pause the vCPUs",
            source,
        })?;
        self.cell().status = InstanceStatus::Frozen;
        Ok(())
    }

    async fn unfreeze(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let vm = self.running_vm().ok_or(DriverError::NotRunning)?;
        if self.cell().status != InstanceStatus::Frozen {
            return Err(DriverError::NotFrozen);
        }
        vm.qmp.cont().await.map_err(|source| DriverError::Qmp {
            operation: "resume the vCPUs",
            source,
        })?;
        self.cell().status = InstanceStatus::Running;
        Ok(())
    }

    async fn console_log(&self) -> Result<Vec<u8>> {
        if let Some(vm) = self.running_vm() {
            match self.console.drain(&vm.qmp).await {
                Ok(()) => {}
                // QEMU ended meanwhile (a guest that powered off or panicked is ended by the
                // supervisor, which drained the ring first): the log is all there is.
                Err(_) if vm.qmp.lost().is_some() => {}
                Err(error) => return Err(error),
            }
        }
        self.console.read().await
    }

    async fn clear_console_log(&self) -> Result<()> {
        let vm = self.running_vm();
        self.console.clear(vm.as_ref().map(|vm| &vm.qmp)).await
    }

    async fn serial_console(&self, force: bool) -> Result<SerialSession> {
        let vm = self.running_vm().ok_or(DriverError::NotRunning)?;
        self.serial.open(&vm.qmp, force).await
    }

    async fn wake_screen(&self) -> Result<()> {
        let vm = self.running_vm().ok_or(DriverError::NotRunning)?;
        input::press_wake_key(&vm.qmp).await
    }

    async fn console_screenshot(&self, options: &ScreenshotOptions) -> Result<Screenshot> {
        let vm = self.running_vm().ok_or(DriverError::NotRunning)?;
        screenshot::capture(&vm.qmp, options, self.max_screen_pixels()).await
    }
}
