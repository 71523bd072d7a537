//! Instance definitions on disk, one JSON file per instance, the way libvirt keeps its domains.
//!
//! How the store works:
//! 1. [`Store::open`] creates `<root>/instances/` (mode 0700) and removes the temporary files of
//!    writes that a crash interrupted, so they never pile up.
//! 2. An instance lives at `instances/<project>/<name>.json` (pretty JSON, mode 0600). Both names
//!    are validated first ([`validate_project_name`], [`validate_instance_name`]): neither can
//!    hold a `/` or a `.`, so no name escapes the directory or looks like a temporary file.
//! 3. Every write goes to a new temporary file `.<name>.<pid>.<counter>.tmp` in the destination
//!    directory, which is written in full and fsynced before it gets its final name, so a crash
//!    leaves either the old definition or the new one, never half of one.
//! 4. [`Store::create`] gives it its name with link(2), which fails with `EEXIST` when the name
//!    is taken: of concurrent creates exactly one wins, and nothing is ever clobbered.
//!    [`Store::update`] renames it over the old file with rename(2), which replaces atomically.
//! 5. The directory is fsynced after every link, rename and unlink, so that the change itself
//!    (not only the file's contents) survives a power loss.
//! 6. [`Store::load_all`] reads every definition; a file that cannot be read or parsed, or whose
//!    contents name another instance than its path, is reported in [`Loaded::corrupt`] and does
//!    not hide the others.
//! 7. A delete has steps, so that a crash between them leaves nothing a new instance of the same
//!    name could inherit: [`Store::begin_delete`] renames the definition to a tombstone
//!    `<name>.deleted` (atomically: from then on the instance is gone for [`Store::load`] and
//!    [`Store::load_all`]); the caller removes what else belongs to the instance (its run-time
//!    files); [`Store::finish_delete`] removes the tombstone. A tombstone found later
//!    ([`Loaded::tombstones`]) is a delete a crash interrupted: the caller finishes it, in the
//!    same order, before it serves anything.
//! 8. A rename ([`Store::rename`]) is two steps: the file gets its new name with renameat2(2)
//!    and `RENAME_NOREPLACE` (atomic, never clobbering: from then on the instance has its new
//!    name), then its contents are rewritten with that name as an update. A file whose
//!    contents name an instance of its project that has no file of its own is a rename a crash
//!    interrupted between the two: [`Store::load_all`] finishes it and reports it in
//!    [`Loaded::renamed`], so the caller moves what else belongs to the instance. A copy of a
//!    file whose original is still there is no rename, and stays misplaced.
//!
//! One process owns a root at a time (a daemon holds [`crate::DirectoryLock`] on it):
//! [`Store::open`] removes every temporary file it finds, and
//! [`Store::update`] and [`Store::begin_delete`] of the same instance must not race (the caller
//! serialises operations per instance; creates are safe against each other without that).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags};

use crate::definition::{
    InstanceDefinition, NameError, validate_instance_name, validate_project_name,
};

/// The subdirectory of the root that holds one directory per project.
const INSTANCES_DIR: &str = "instances";
/// The extension of a definition file.
const EXTENSION: &str = "json";
/// The suffix of a temporary file; with its leading `.` no valid instance file name has it.
const TEMP_SUFFIX: &str = ".tmp";
/// The extension of a tombstone, a definition whose delete has begun; no instance name holds a
/// `.`, so a tombstone is never a definition.
const TOMBSTONE_EXTENSION: &str = "deleted";
/// Mode of the store's directories: definitions may hold secrets (`user.*` keys).
const DIR_MODE: u32 = 0o700;
/// Mode of a definition file.
const FILE_MODE: u32 = 0o600;

/// Makes temporary file names unique within this process (the pid makes them unique across).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Errors of the instance store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A project or instance name that Incus would refuse (and that could escape the store).
    #[error("invalid {kind} name {name:?}")]
    InvalidName {
        /// `"project"` or `"instance"`.
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        #[source]
        source: NameError,
    },
    /// [`Store::create`] of an instance that exists.
    #[error("Instance {name:?} already exists in project {project:?}")]
    AlreadyExists {
        /// The project.
        project: String,
        /// The instance.
        name: String,
    },
    /// The instance does not exist.
    #[error("Instance {name:?} not found in project {project:?}")]
    NotFound {
        /// The project.
        project: String,
        /// The instance.
        name: String,
    },
    /// A file system operation failed.
    #[error("cannot {operation} {}", path.display())]
    Io {
        /// What was being done, e.g. `"read"`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A definition could not be encoded as JSON (a bug rather than a user error).
    #[error("cannot encode the definition of instance {name:?}")]
    Encode {
        /// The instance.
        name: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A stored file is not a valid definition.
    #[error("{} is not a valid instance definition", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A stored file holds another instance than its path says (edited or copied by hand).
    #[error(
        "{} holds instance {name:?} of project {project:?}, which belongs elsewhere",
        path.display()
    )]
    Misplaced {
        /// The file.
        path: PathBuf,
        /// The project named inside the file.
        project: String,
        /// The instance named inside the file.
        name: String,
    },
}

/// What [`Store::load_all`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The valid definitions, sorted by project, then name.
    pub definitions: Vec<InstanceDefinition>,
    /// The files that could not be loaded, sorted by path, each with why.
    pub corrupt: Vec<(PathBuf, StoreError)>,
    /// The deletes a crash interrupted, as (project, name), sorted: the caller finishes each
    /// ([`Store::finish_delete`]) after removing the instance's other files.
    pub tombstones: Vec<(String, String)>,
    /// The renames a crash interrupted, finished by the load, as (project, old name, new
    /// name): the caller moves the instance's other files.
    pub renamed: Vec<(String, String, String)>,
}

/// The instance definitions under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// `<root>/instances`.
    instances: PathBuf,
}

impl Store {
    /// Opens the store under `root`, creating `<root>/instances/` (mode 0700) when missing, and
    /// removes leftover temporary files of interrupted writes.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let instances = root.into().join(INSTANCES_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&instances)
            .map_err(io_error("create", &instances))?;
        let store = Store { instances };
        for project_dir in store.project_dirs()? {
            for entry in read_dir(&project_dir)? {
                if is_temp_file(&entry) {
                    fs::remove_file(&entry).map_err(io_error("remove", &entry))?;
                    tracing::info!(path = %entry.display(), "removed the temporary file of an interrupted write");
                }
            }
        }
        Ok(store)
    }

    /// Stores a new definition; [`StoreError::AlreadyExists`] if its project already has an
    /// instance of that name.
    pub fn create(&self, definition: &InstanceDefinition) -> Result<(), StoreError> {
        let target = self.path(&definition.project, &definition.name)?;
        let dir = self.project_dir(&definition.project);
        match DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => sync_dir(&self.instances)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("create", &dir)(error)),
        }
        let temp = write_temp(&dir, definition)?;
        // link(2) never replaces an existing name, which rename(2) would.
        let linked = fs::hard_link(&temp, &target);
        fs::remove_file(&temp).map_err(io_error("remove", &temp))?;
        match linked {
            Ok(()) => sync_dir(&dir),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists {
                    project: definition.project.clone(),
                    name: definition.name.clone(),
                })
            }
            Err(error) => Err(io_error("create", &target)(error)),
        }
    }

    /// Replaces an existing definition atomically; [`StoreError::NotFound`] if there is none.
    pub fn update(&self, definition: &InstanceDefinition) -> Result<(), StoreError> {
        let target = self.path(&definition.project, &definition.name)?;
        match fs::symlink_metadata(&target) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    project: definition.project.clone(),
                    name: definition.name.clone(),
                });
            }
            Err(error) => return Err(io_error("read", &target)(error)),
        }
        let dir = self.project_dir(&definition.project);
        let temp = write_temp(&dir, definition)?;
        if let Err(error) = fs::rename(&temp, &target) {
            // The rename failed, so the temporary file is still there; the rename's error is the
            // one worth reporting.
            let _ = fs::remove_file(&temp);
            return Err(io_error("replace", &target)(error));
        }
        sync_dir(&dir)
    }

    /// Reads one definition; [`StoreError::NotFound`] if there is none.
    pub fn load(&self, project: &str, name: &str) -> Result<InstanceDefinition, StoreError> {
        let path = self.path(project, name)?;
        read_definition(&path, project, name).map_err(|error| match error {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                StoreError::NotFound {
                    project: project.to_owned(),
                    name: name.to_owned(),
                }
            }
            error => error,
        })
    }

    /// Reads every stored definition, sorted by (project, name). A file that cannot be loaded
    /// does not stop the others: it is logged and returned in [`Loaded::corrupt`].
    ///
    /// Fails only when a directory of the store cannot be listed.
    pub fn load_all(&self) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        for project_dir in self.project_dirs()? {
            for path in read_dir(&project_dir)? {
                if let Some(tombstone) = tombstone_of(&path) {
                    loaded.tombstones.push(tombstone);
                    continue;
                }
                if path
                    .extension()
                    .is_none_or(|extension| extension != EXTENSION)
                    || is_temp_file(&path)
                {
                    continue;
                }
                match read_stored(&path).or_else(|error| self.finish_rename(error, &mut loaded)) {
                    Ok(definition) => loaded.definitions.push(definition),
                    Err(error) => {
                        tracing::warn!(
                            path = %path.display(),
                            error = &error as &dyn std::error::Error,
                            "skipping an instance definition that cannot be loaded"
                        );
                        loaded.corrupt.push((path, error));
                    }
                }
            }
        }
        loaded
            .definitions
            .sort_by(|a, b| (&a.project, &a.name).cmp(&(&b.project, &b.name)));
        loaded.corrupt.sort_by(|a, b| a.0.cmp(&b.0));
        loaded.tombstones.sort();
        Ok(loaded)
    }

    /// Renames instance `old` of `project` to `new` (step 8) and returns its definition under
    /// the new name: [`StoreError::NotFound`] without `old`, [`StoreError::AlreadyExists`] when
    /// `new` is taken.
    pub fn rename(
        &self,
        project: &str,
        old: &str,
        new: &str,
    ) -> Result<InstanceDefinition, StoreError> {
        let mut definition = self.load(project, old)?;
        let (from, to) = (self.path(project, old)?, self.path(project, new)?);
        match nix::fcntl::renameat2(
            AT_FDCWD,
            &from,
            AT_FDCWD,
            &to,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => sync_dir(&self.project_dir(project))?,
            Err(Errno::EEXIST) => {
                return Err(StoreError::AlreadyExists {
                    project: project.to_owned(),
                    name: new.to_owned(),
                });
            }
            Err(errno) => return Err(io_error("rename", &from)(io::Error::from(errno))),
        }
        definition.name = new.to_owned();
        self.update(&definition)?;
        Ok(definition)
    }

    /// Step 8's recovery: a misplaced file of a rename a crash interrupted is finished (its
    /// contents take the name of its path); any other error stands.
    fn finish_rename(
        &self,
        error: StoreError,
        loaded: &mut Loaded,
    ) -> Result<InstanceDefinition, StoreError> {
        let StoreError::Misplaced {
            path,
            project,
            name: old,
        } = &error
        else {
            return Err(error);
        };
        let new = path.file_stem().and_then(OsStr::to_str).unwrap_or_default();
        let in_project = path.parent() == Some(self.project_dir(project).as_path());
        if !in_project
            || self
                .path(project, old)
                .is_ok_and(|original| original.exists())
        {
            return Err(error);
        }
        let mut definition = read_stored_unchecked(path)?;
        definition.name = new.to_owned();
        self.update(&definition)?;
        loaded
            .renamed
            .push((project.clone(), old.clone(), new.to_owned()));
        Ok(definition)
    }

    /// Begins a delete (step 7): renames the definition to its tombstone, so the instance is
    /// gone at once and for good, even if a crash comes before [`Store::finish_delete`];
    /// [`StoreError::NotFound`] if there is none.
    ///
    /// The project's directory stays, even when empty: removing it would race with a
    /// concurrent [`Store::create`] in the same project.
    pub fn begin_delete(&self, project: &str, name: &str) -> Result<(), StoreError> {
        let path = self.path(project, name)?;
        let tombstone = self.tombstone(project, name)?;
        match fs::rename(&path, &tombstone) {
            Ok(()) => sync_dir(&self.project_dir(project)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound {
                project: project.to_owned(),
                name: name.to_owned(),
            }),
            Err(error) => Err(io_error("remove", &path)(error)),
        }
    }

    /// Ends a delete (step 7): removes the tombstone, once everything else of the instance is
    /// gone. Without a tombstone there is nothing to do.
    pub fn finish_delete(&self, project: &str, name: &str) -> Result<(), StoreError> {
        let tombstone = self.tombstone(project, name)?;
        match fs::remove_file(&tombstone) {
            Ok(()) => sync_dir(&self.project_dir(project)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", &tombstone)(error)),
        }
    }

    /// The file of an instance, after checking both names.
    fn path(&self, project: &str, name: &str) -> Result<PathBuf, StoreError> {
        check_name("project", project, validate_project_name)?;
        check_name("instance", name, validate_instance_name)?;
        Ok(self
            .project_dir(project)
            .join(format!("{name}.{EXTENSION}")))
    }

    /// The tombstone of an instance, after checking both names.
    fn tombstone(&self, project: &str, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .path(project, name)?
            .with_extension(TOMBSTONE_EXTENSION))
    }

    /// The directory of a project whose name has been checked.
    fn project_dir(&self, project: &str) -> PathBuf {
        self.instances.join(project)
    }

    /// The project directories (anything else in `instances/` is not the store's).
    fn project_dirs(&self) -> Result<Vec<PathBuf>, StoreError> {
        Ok(read_dir(&self.instances)?
            .into_iter()
            .filter(|path| path.is_dir())
            .collect())
    }
}

/// Runs a name validator, naming the kind of name in the error.
fn check_name(
    kind: &'static str,
    name: &str,
    validate: fn(&str) -> Result<(), NameError>,
) -> Result<(), StoreError> {
    validate(name).map_err(|source| StoreError::InvalidName {
        kind,
        name: name.to_owned(),
        source,
    })
}

/// Reads a file found by listing the store: its project and name come from its path, and must
/// be valid names (a file the store did not write may have any name).
fn read_stored(path: &Path) -> Result<InstanceDefinition, StoreError> {
    let lossy = |name: Option<&OsStr>| {
        name.map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let project = lossy(path.parent().and_then(Path::file_name));
    let name = lossy(path.file_stem());
    check_name("project", &project, validate_project_name)?;
    check_name("instance", &name, validate_instance_name)?;
    read_definition(path, &project, &name)
}

/// Reads and parses a definition file, whatever instance it names.
fn read_stored_unchecked(path: &Path) -> Result<InstanceDefinition, StoreError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Reads and parses a definition file, checking that it holds the instance its path names.
fn read_definition(
    path: &Path,
    project: &str,
    name: &str,
) -> Result<InstanceDefinition, StoreError> {
    let definition = read_stored_unchecked(path)?;
    if definition.project != project || definition.name != name {
        return Err(StoreError::Misplaced {
            path: path.to_owned(),
            project: definition.project,
            name: definition.name,
        });
    }
    Ok(definition)
}

/// Writes `definition` to a new temporary file in `dir` and fsyncs it; returns its path. On
/// failure the file is removed again.
fn write_temp(dir: &Path, definition: &InstanceDefinition) -> Result<PathBuf, StoreError> {
    let mut json = serde_json::to_vec_pretty(definition).map_err(|source| StoreError::Encode {
        name: definition.name.clone(),
        source,
    })?;
    json.push(b'\n');
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(
        ".{}.{}.{counter}{TEMP_SUFFIX}",
        definition.name,
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        });
    match written {
        Ok(()) => Ok(path),
        Err(error) => {
            // The write's error is the one worth reporting; the file may not even exist.
            let _ = fs::remove_file(&path);
            Err(io_error("write", &path)(error))
        }
    }
}

/// Whether a path is a temporary file of this store (`.<anything>.tmp`).
fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with('.') && name.ends_with(TEMP_SUFFIX))
}

/// The (project, name) a tombstone found by listing the store stands for, if `path` is one
/// with valid names.
fn tombstone_of(path: &Path) -> Option<(String, String)> {
    if path.extension()? != TOMBSTONE_EXTENSION {
        return None;
    }
    let project = path.parent()?.file_name()?.to_str()?;
    let name = path.file_stem()?.to_str()?;
    (validate_project_name(project).is_ok() && validate_instance_name(name).is_ok())
        .then(|| (project.to_owned(), name.to_owned()))
}

/// The entries of a directory, as paths.
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|entry| entry.path()))
                .collect()
        })
        .map_err(io_error("list", dir))
}

/// Makes a directory's entries durable: after a link, rename or unlink, the file's own fsync
/// does not cover its name.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("sync", dir))
}

/// Builds the [`StoreError::Io`] for `operation` on `path`.
fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

#[cfg(test)]
mod tests;
