//! The qemu driver: virtual machines run by `qemu-system-x86_64`.
//!
//! How the driver keeps its VMs:
//! 1. Definitions live in the state directory, one file per instance ([`Store`]), written
//!    atomically; a VM's run-time files (QMP socket, pid file, QEMU's log, the console log) live
//!    in `<runtime>/<project>/<name>/`. Every run-time directory is private (mode 0700): the
//!    daemon (root) creates them, and QEMU creates its QMP socket and pid file in them before it
//!    drops privileges, gets its log as a descriptor, and opens nothing there afterwards.
//! 2. [`QemuDriver::open`] first finishes the deletes a crash interrupted (a tombstone in the
//!    store: the run-time directory goes, then the tombstone), then loads every definition and,
//!    for each one whose pid file names a live QEMU serving that instance's QMP socket,
//!    re-attaches to it without stopping it: a daemon can restart under running VMs.
//! 3. [`QemuDriver::create`] validates a definition completely (names, config, devices, host
//!    files against the [`HostFilePolicy`], off the async workers, and that its QMP socket path
//!    fits a `sockaddr_un`) and records its disks' formats before storing it, so what is stored
//!    can be started, and gives it an empty run-time directory, so nothing of an earlier
//!    instance of the same name (its console log) is inherited.
//! 4. A delete is done in the store's steps ([`crate::store`], step 7): tombstone, run-time
//!    directory, tombstone removed, then the registry entry; a crash anywhere in between is
//!    finished by the next open (step 2).
//! 5. Each VM is a [`QemuInstance`], which implements [`crate::Instance`]. It starts QEMU
//!    confined ([`DriverOptions::confinement`]) and hands it its host files as descriptors.
//! 6. Each start and each end of a VM is a [`Transition`] on one channel for the whole driver
//!    ([`QemuDriver::transitions`]).

pub mod cmdline;
mod console;
mod driver;
mod ending;
mod frames;
mod handover;
pub mod host_files;
mod input;
mod mirror;
mod process;
mod screenshot;
mod serial;
mod vm;

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::Signal;
use tokio::sync::broadcast;
use vgashot_qemu_process::Confinement;

pub use host_files::HostFilePolicy;
pub use mirror::{LINGER as MIRROR_LINGER, MirrorError};
pub use screenshot::DEFAULT_MAX_SCREEN_PIXELS;
pub use vm::QemuInstance;

use crate::definition::{
    InstanceDefinition, InstanceType, validate_instance_name, validate_project_name,
};
use crate::error::{DriverError, Result};
use crate::instance::Instance;
use crate::store::{Store, StoreError};
use crate::transition::{TRANSITION_CAPACITY, Transition};
use cmdline::MachinePlan;
use handover::OpenedFiles;
use vgashot_stdext::MutexExt;

/// Where the driver keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverPaths {
    /// Instance definitions; must survive reboots (e.g. `/var/lib/vgashot`).
    pub state_dir: PathBuf,
    /// Sockets, pid files and logs of running VMs. Unix socket paths are limited to
    /// [`MAX_SOCKET_PATH`] bytes, so keep this short (e.g. `/run/vgashot`).
    pub runtime_dir: PathBuf,
}

/// The longest path a Unix socket can be bound at: `sockaddr_un.sun_path` holds 108 bytes on
/// Linux, the terminating NUL included. An instance whose QMP socket path would be longer is
/// refused at create ([`DriverError::SocketPathTooLong`]).
pub const MAX_SOCKET_PATH: usize = 107;
/// Mode of every run-time directory: they hold the VMs' control sockets and console logs.
const RUNTIME_DIR_MODE: u32 = 0o700;
/// How long a leftover QEMU of a deleted instance has to die after SIGKILL.
const LEFTOVER_KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How the driver treats the host: which files VMs may be given, how QEMU is confined, and how
/// large a guest's screen may be captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOptions {
    /// Which host files may be disks, kernels and initrds. The driver adds its own state and
    /// runtime directories to [`HostFilePolicy::private_dirs`].
    pub host_files: HostFilePolicy,
    /// The user and sandbox QEMU runs with.
    pub confinement: Confinement,
    /// The most pixels a screen may have to be captured ([`DEFAULT_MAX_SCREEN_PIXELS`]).
    pub max_screen_pixels: u64,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            host_files: HostFilePolicy::default(),
            confinement: Confinement::default(),
            max_screen_pixels: DEFAULT_MAX_SCREEN_PIXELS,
        }
    }
}

/// Instances by (project, name).
type Registry = BTreeMap<(String, String), Arc<QemuInstance>>;

/// What the driver and its instances share.
pub(crate) struct DriverShared {
    pub(crate) store: Store,
    runtime_root: PathBuf,
    instances: Mutex<Registry>,
    pub(crate) options: DriverOptions,
    /// Every instance's starts and ends ([`QemuDriver::transitions`]).
    pub(crate) transitions: broadcast::Sender<Transition>,
}

impl DriverShared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Every change of the map is a single insert or remove, so a poisoned lock is consistent.
        self.instances.lock_unpoisoned()
    }

    fn runtime_dir(&self, project: &str, name: &str) -> PathBuf {
        self.runtime_root.join(project).join(name)
    }

    /// Plans `definition` off the async workers (its host files checked, see
    /// [`MachinePlan::from_definition`]) and records its disks' formats in it.
    pub(crate) async fn plan(
        &self,
        mut definition: InstanceDefinition,
    ) -> Result<(InstanceDefinition, MachinePlan)> {
        let policy = self.options.host_files.clone();
        blocking(move || {
            let plan =
                MachinePlan::from_definition(&definition, &policy).map_err(DriverError::Config)?;
            plan.record_formats(&mut definition);
            Ok((definition, plan))
        })
        .await
    }

    /// Opens `plan`'s host files for QEMU, off the async workers.
    pub(crate) async fn open_host_files(&self, plan: MachinePlan) -> Result<OpenedFiles> {
        let policy = self.options.host_files.clone();
        blocking(move || OpenedFiles::open(&plan, &policy).map_err(DriverError::Config)).await
    }

    /// Begins the delete of a stopped instance (step 4): its definition becomes a tombstone,
    /// so from here on the instance is gone, even across a crash. The caller holds the
    /// instance's life-cycle lock and continues with [`DriverShared::end_remove`].
    pub(crate) fn begin_remove(&self, instance: &QemuInstance) -> Result<()> {
        match self.store.begin_delete(instance.project(), instance.name()) {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(error) => Err(DriverError::Store(error)),
        }
    }

    /// Ends the delete of an instance (step 4): its run-time files, its tombstone, its registry
    /// entry. When it fails, the instance stays listed, deleted, and a retry (or the next open)
    /// finishes.
    pub(crate) fn end_remove(&self, instance: &QemuInstance) -> Result<()> {
        let (project, name) = (instance.project(), instance.name());
        self.finish_delete(project, name)?;
        self.registry()
            .remove(&(project.to_owned(), name.to_owned()));
        Ok(())
    }

    /// Moves the run-time directory of a renamed instance to its new name (logged when it
    /// cannot be: the instance then starts with an empty one).
    fn move_runtime_dir(&self, project: &str, old: &str, new: &str) {
        let (from, to) = (
            self.runtime_dir(project, old),
            self.runtime_dir(project, new),
        );
        match std::fs::rename(&from, &to) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(from = %from.display(), %error, "cannot move a renamed instance's run-time files");
            }
            _ => {}
        }
    }

    /// The steps of a delete after its tombstone: the run-time directory, then the tombstone.
    /// Harmless when there is nothing to delete.
    fn finish_delete(&self, project: &str, name: &str) -> Result<()> {
        let runtime_dir = self.runtime_dir(project, name);
        match std::fs::remove_dir_all(&runtime_dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(DriverError::Io {
                    operation: "remove",
                    path: runtime_dir,
                    source: error,
                });
            }
            _ => {}
        }
        self.store
            .finish_delete(project, name)
            .map_err(DriverError::Store)
    }

    /// Finishes a delete that a crash interrupted. A QEMU still serving the deleted instance's
    /// socket (which a delete never leaves, but a hand-made state might) is killed first: no
    /// QEMU outlives its definition.
    async fn finish_interrupted_delete(&self, project: &str, name: &str) -> Result<()> {
        let runtime_dir = self.runtime_dir(project, name);
        if let Some(pid) = vgashot_qemu_process::read_pid_file(&runtime_dir) {
            let socket = runtime_dir.join(vgashot_qemu_process::QMP_SOCKET);
            if process::alive(pid) && process::is_qemu_serving(pid, &socket) {
                tracing::warn!(
                    instance = name,
                    pid,
                    "killing the QEMU of a deleted instance"
                );
                process::signal(pid, Signal::SIGKILL);
                if !process::wait_gone(pid, LEFTOVER_KILL_GRACE).await {
                    return Err(DriverError::StopFailed { pid });
                }
            }
        }
        self.finish_delete(project, name)?;
        tracing::info!(
            project,
            instance = name,
            "finished a delete that a crash interrupted"
        );
        Ok(())
    }

    /// Gives a new instance an empty, private run-time directory.
    fn fresh_runtime_dir(&self, project: &str, name: &str) -> Result<()> {
        let runtime_dir = self.runtime_dir(project, name);
        let io_error = |operation, source| DriverError::Io {
            operation,
            path: runtime_dir.clone(),
            source,
        };
        match std::fs::remove_dir_all(&runtime_dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("remove", error));
            }
            _ => {}
        }
        private_dir(&runtime_dir).map_err(|source| io_error("create", source))
    }
}

/// Creates `dir` and its missing parents with mode 0700; an existing `dir` is made 0700 too
/// (it may come from a version that made it 0755).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(RUNTIME_DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(RUNTIME_DIR_MODE))
}

/// Refuses a QMP socket path that cannot be bound, so the error comes at create, in words,
/// rather than from QEMU at every start.
fn check_socket_path(socket: &Path) -> Result<()> {
    let length = socket.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        return Err(DriverError::SocketPathTooLong {
            length,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// Runs blocking file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(DriverError::Task)?
}

/// The qemu driver: creates, finds and deletes QEMU VMs.
#[derive(Clone)]
pub struct QemuDriver {
    shared: Arc<DriverShared>,
}

impl std::fmt::Debug for QemuDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuDriver")
            .field("runtime_root", &self.shared.runtime_root)
            .finish_non_exhaustive()
    }
}

impl QemuDriver {
    /// Opens the driver over `paths` with the default [`DriverOptions`] (images from
    /// [`host_files::DEFAULT_IMAGE_DIR`], QEMU not confined): see [`QemuDriver::open_with`].
    pub async fn open(paths: DriverPaths) -> Result<Self> {
        Self::open_with(paths, DriverOptions::default()).await
    }

    /// Opens the driver over `paths` with `options`: finishes interrupted deletes, loads every stored
    /// definition and re-attaches to the VMs that still run. Definitions that cannot be read are
    /// logged and skipped.
    ///
    /// One driver at a time may own `paths`; a daemon makes sure of it with
    /// [`crate::DirectoryLock`] before it opens the driver.
    pub async fn open_with(paths: DriverPaths, mut options: DriverOptions) -> Result<Self> {
        // Compared as paths: the canonical form too, in case the given one has a link in it.
        for dir in [&paths.state_dir, &paths.runtime_dir] {
            let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            options.host_files.private_dirs.push(dir.clone());
            options.host_files.private_dirs.push(canonical);
        }
        let store = Store::open(&paths.state_dir).map_err(DriverError::Store)?;
        private_dir(&paths.runtime_dir).map_err(|source| DriverError::Io {
            operation: "create",
            path: paths.runtime_dir.clone(),
            source,
        })?;
        let loaded = store.load_all().map_err(DriverError::Store)?;
        for (path, error) in &loaded.corrupt {
            tracing::error!(path = %path.display(), %error, "skipping an unreadable instance definition");
        }
        let shared = Arc::new(DriverShared {
            store,
            runtime_root: paths.runtime_dir,
            instances: Mutex::new(BTreeMap::new()),
            options,
            transitions: broadcast::Sender::new(TRANSITION_CAPACITY),
        });
        for (project, name) in &loaded.tombstones {
            // The instance is gone either way; what is left is retried by the next create of
            // the name (or the next open), and must not keep the daemon from serving the others.
            if let Err(error) = shared.finish_interrupted_delete(project, name).await {
                tracing::error!(project, instance = name, %error, "cannot finish an interrupted delete");
            }
        }
        for (project, old, new) in &loaded.renamed {
            shared.move_runtime_dir(project, old, new);
        }
        for definition in loaded.definitions {
            let key = (definition.project.clone(), definition.name.clone());
            let instance = QemuInstance::new(shared.clone(), definition);
            instance.reattach().await;
            shared.registry().insert(key, instance);
        }
        Ok(Self { shared })
    }

    /// Creates an instance from a complete, validated definition (stopped).
    pub async fn create(&self, definition: InstanceDefinition) -> Result<Arc<QemuInstance>> {
        validate_project_name(&definition.project).map_err(DriverError::InvalidName)?;
        validate_instance_name(&definition.name).map_err(DriverError::InvalidName)?;
        if definition.instance_type != InstanceType::VirtualMachine {
            return Err(DriverError::UnsupportedType(definition.instance_type));
        }
        let (definition, _) = self.shared.plan(definition).await?;
        let (project, name) = (definition.project.clone(), definition.name.clone());
        check_socket_path(
            &self
                .shared
                .runtime_dir(&project, &name)
                .join(vgashot_qemu_process::QMP_SOCKET),
        )?;
        let key = (project.clone(), name.clone());
        let mut registry = self.shared.registry();
        if registry.contains_key(&key) {
            return Err(DriverError::AlreadyExists { name });
        }
        // A file of that name that did not load (a corrupt definition) is an instance too; its
        // run-time files must not be touched.
        match self.shared.store.load(&project, &name) {
            Err(StoreError::NotFound { .. }) => {}
            Ok(_) | Err(StoreError::Parse { .. } | StoreError::Misplaced { .. }) => {
                return Err(DriverError::AlreadyExists { name });
            }
            Err(other) => return Err(DriverError::Store(other)),
        }
        // A delete of this name that did not finish is finished, and anything else left in the
        // run-time directory goes, before the definition is stored: a crash in between leaves
        // no definition, only an empty directory that the next create replaces.
        self.shared.finish_delete(&project, &name)?;
        self.shared.fresh_runtime_dir(&project, &name)?;
        self.shared
            .store
            .create(&definition)
            .map_err(|error| match error {
                StoreError::AlreadyExists { .. } => DriverError::AlreadyExists {
                    name: definition.name.clone(),
                },
                other => DriverError::Store(other),
            })?;
        let instance = QemuInstance::new(self.shared.clone(), definition);
        registry.insert(key, instance.clone());
        Ok(instance)
    }

    /// The instance `name` in `project`.
    pub fn get(&self, project: &str, name: &str) -> Result<Arc<QemuInstance>> {
        self.shared
            .registry()
            .get(&(project.to_owned(), name.to_owned()))
            .cloned()
            .ok_or(DriverError::NotFound)
    }

    /// Every instance of `project`, by name.
    pub fn list(&self, project: &str) -> Vec<Arc<QemuInstance>> {
        self.shared
            .registry()
            .iter()
            .filter(|((instance_project, _), _)| instance_project == project)
            .map(|(_, instance)| instance.clone())
            .collect()
    }

    /// Every instance's starts and ends from now on, as they happen (see [`Transition`]
    /// for what each carries and how far a subscriber may fall behind).
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        self.shared.transitions.subscribe()
    }

    /// Lets go of every VM without stopping any (a daemon's clean shutdown): supervisors end and
    /// QMP connections close, so the next [`QemuDriver::open`] re-attaches to them.
    pub async fn detach(&self) {
        let instances: Vec<_> = self.shared.registry().values().cloned().collect();
        for instance in instances {
            instance.detach().await;
        }
    }

    /// Renames a stopped instance of `project` from `old` to `new`, with everything it owns:
    /// its definition (crash-safely, [`crate::store`] step 8), then its run-time directory
    /// (console log included). The old instance is retired and a new one serves the name.
    pub async fn rename(&self, project: &str, old: &str, new: &str) -> Result<Arc<QemuInstance>> {
        validate_instance_name(new).map_err(DriverError::InvalidName)?;
        check_socket_path(
            &self
                .shared
                .runtime_dir(project, new)
                .join(vgashot_qemu_process::QMP_SOCKET),
        )?;
        let instance = self.get(project, old)?;
        if old == new {
            return Err(DriverError::AlreadyExists {
                name: new.to_owned(),
            });
        }
        let _lifecycle = instance.retire_for_rename().await?;
        let renamed = self.rename_retired(project, old, new);
        if renamed.is_err() {
            // Nothing was moved: the instance keeps its name.
            instance.unretire();
        }
        renamed
    }

    fn rename_retired(&self, project: &str, old: &str, new: &str) -> Result<Arc<QemuInstance>> {
        let mut registry = self.shared.registry();
        let taken = DriverError::AlreadyExists {
            name: new.to_owned(),
        };
        if registry.contains_key(&(project.to_owned(), new.to_owned())) {
            return Err(taken);
        }
        // What an unfinished delete of the new name left goes first, as for a create.
        self.shared.finish_delete(project, new)?;
        let definition =
            self.shared
                .store
                .rename(project, old, new)
                .map_err(|error| match error {
                    StoreError::AlreadyExists { .. } => taken,
                    other => DriverError::Store(other),
                })?;
        // The definition has its new name: from here on the rename stands, and a run-time
        // directory that cannot be moved only costs the console log.
        self.shared.move_runtime_dir(project, old, new);
        registry.remove(&(project.to_owned(), old.to_owned()));
        let instance = QemuInstance::new(self.shared.clone(), definition);
        registry.insert((project.to_owned(), new.to_owned()), instance.clone());
        Ok(instance)
    }

    /// Deletes a stopped instance: its definition and its run-time files.
    pub async fn delete(&self, project: &str, name: &str) -> Result<()> {
        self.get(project, name)?.delete().await
    }
}
