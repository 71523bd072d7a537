//! The qemu driver: virtual machines run by `qemu-system-x86_64`.
//!
//! How the driver keeps its VMs:
//! 1. Definitions live in the state directory, one file per instance ([`Store`]), written
//!    atomically; a VM's run-time files (QMP socket, pid file, QEMU's log, the console log) live
//!    in `<runtime>/<project>/<name>/`.
//! 2. [`QemuDriver::open`] loads every definition and, for each one whose pid file names a live
//!    QEMU serving that instance's QMP socket, re-attaches to it without stopping it: a daemon can
//!    restart under running VMs.
//! 3. [`QemuDriver::create`] validates a definition completely (names, config, devices, host
//!    files against the [`HostFilePolicy`], off the async workers) and records its disks'
//!    formats before storing it, so what is stored can be started.
//! 4. Each VM is a [`QemuInstance`], which implements [`crate::Instance`]. It starts QEMU
//!    confined ([`DriverOptions::confinement`]) and hands it its host files as descriptors.

pub mod cmdline;
mod console;
mod handover;
pub mod host_files;
mod process;
mod screenshot;
mod vm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

pub use host_files::HostFilePolicy;
pub use screenshot::DEFAULT_MAX_SCREEN_PIXELS;
use vgashot_qemu_process::Confinement;
pub use vm::QemuInstance;

use crate::definition::{
    InstanceDefinition, InstanceType, validate_instance_name, validate_project_name,
};
use crate::error::{DriverError, Result};
use crate::instance::Instance;
use crate::store::{Store, StoreError};
use cmdline::MachinePlan;
use handover::OpenedFiles;

/// Where the driver keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverPaths {
    /// Instance definitions; must survive reboots (e.g. `/var/lib/vgashot`).
    pub state_dir: PathBuf,
    /// Sockets, pid files and logs of running VMs. Unix socket paths are limited to 107 bytes,
    /// so keep this short (e.g. `/run/vgashot`).
    pub runtime_dir: PathBuf,
}

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
    pub(crate) options: DriverOptions,
    runtime_root: PathBuf,
    instances: Mutex<Registry>,
}

impl DriverShared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Every change of the map is a single insert or remove, so a poisoned lock is consistent.
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Removes a stopped instance's definition, run-time files and registry entry.
    pub(crate) fn remove(&self, instance: &QemuInstance) -> Result<()> {
        match self.store.delete(instance.project(), instance.name()) {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(error) => return Err(DriverError::Store(error)),
        }
        match std::fs::remove_dir_all(instance.runtime_dir()) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(DriverError::Io {
                    operation: "remove",
                    path: instance.runtime_dir().to_owned(),
                    source: error,
                });
            }
            _ => {}
        }
        self.registry()
            .remove(&(instance.project().to_owned(), instance.name().to_owned()));
        Ok(())
    }

    /// An ephemeral instance is deleted when it stops.
    pub(crate) fn forget_ephemeral(&self, instance: &QemuInstance) {
        if let Err(error) = self.remove(instance) {
            tracing::warn!(instance = instance.name(), %error, "could not delete an ephemeral instance");
        }
    }
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

    /// Opens the driver over `paths`: loads every stored definition and re-attaches to the VMs
    /// that still run. Definitions that cannot be read are logged and skipped.
    pub async fn open_with(paths: DriverPaths, mut options: DriverOptions) -> Result<Self> {
        // Compared as paths: the canonical form too, in case the given one has a link in it.
        for dir in [&paths.state_dir, &paths.runtime_dir] {
            let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            options.host_files.private_dirs.push(dir.clone());
            options.host_files.private_dirs.push(canonical);
        }
        let store = Store::open(&paths.state_dir).map_err(DriverError::Store)?;
        let loaded = store.load_all().map_err(DriverError::Store)?;
        for (path, error) in &loaded.corrupt {
            tracing::error!(path = %path.display(), %error, "skipping an unreadable instance definition");
        }
        let shared = Arc::new(DriverShared {
            store,
            options,
            runtime_root: paths.runtime_dir,
            instances: Mutex::new(BTreeMap::new()),
        });
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
        let key = (definition.project.clone(), definition.name.clone());
        let mut registry = self.shared.registry();
        if registry.contains_key(&key) {
            return Err(DriverError::AlreadyExists {
                name: definition.name,
            });
        }
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

    /// Lets go of every VM without stopping any (a daemon's clean shutdown): supervisors end and
    /// QMP connections close, so the next [`QemuDriver::open`] re-attaches to them.
    pub async fn detach(&self) {
        let instances: Vec<_> = self.shared.registry().values().cloned().collect();
        for instance in instances {
            instance.detach().await;
        }
    }

    /// Deletes a stopped instance: its definition and its run-time files.
    pub async fn delete(&self, project: &str, name: &str) -> Result<()> {
        self.get(project, name)?.delete().await
    }
}
