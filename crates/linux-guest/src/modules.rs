//! The few kernel modules the initramfs carries, with their dependencies, in load order.
//!
//! Debian's kernel has the VGA text console and the serial console built in, but QEMU's direct
//! boot of the uncompressed kernel (PVH) leaves the text console to a dummy, and pvpanic's
//! drivers are modules. So:
//! 1. [`GROUPS`] names the drivers, in groups that `/init` loads or skips as a whole:
//!    `framebuffer` is `bochs` (a framebuffer console on the std VGA, fbcon being built in),
//!    `panic` is pvpanic's two front ends.
//! 2. Each module's dependencies are read from its own `.modinfo` section (the `depends=`
//!    string, as `modinfo` shows it), since the package ships no `modules.dep`.
//! 3. A depth-first walk orders each group so each module comes after what it needs, which is
//!    the order `/init` loads them in with busybox `insmod`. A module that two groups need is in
//!    both; `/init` skips one already loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::GuestError;

/// The drivers the guest loads, by group (module names, `-` and `_` alike).
pub const GROUPS: &[(&str, &[&str])] = &[
    (FRAMEBUFFER_GROUP, &["bochs"]),
    ("panic", &["pvpanic-mmio", "pvpanic-pci"]),
];
/// The group `/init` skips for a text console (`vgashot.framebuffer=0`).
pub const FRAMEBUFFER_GROUP: &str = "framebuffer";

/// A module to carry: its group, its name and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The group of [`GROUPS`] that needs it.
    pub group: &'static str,
    /// The module's name as its file has it, without `.ko`.
    pub name: String,
    /// The `.ko` file.
    pub path: PathBuf,
}

/// The modules of [`GROUPS`] and their dependencies under `tree` (a `lib/modules/RELEASE`),
/// group by group, each after what it depends on.
pub fn load_order(tree: &Path) -> Result<Vec<Module>, GuestError> {
    let mut files = HashMap::new();
    index(tree, &mut files)?;
    let mut all = Vec::new();
    for (group, names) in GROUPS {
        let mut ordered = Vec::new();
        for name in *names {
            visit(group, name, &files, &mut ordered, &mut Vec::new())?;
        }
        all.append(&mut ordered);
    }
    Ok(all)
}

/// Module names (with `_` for `-`, as the kernel compares them) to their files.
fn index(dir: &Path, files: &mut HashMap<String, PathBuf>) -> Result<(), GuestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| GuestError::io(dir, source))?;
    for entry in entries {
        let path = entry.map_err(|source| GuestError::io(dir, source))?.path();
        if path.is_dir() {
            index(&path, files)?;
        } else if let Some(name) = path.file_name().and_then(|name| name.to_str()) {
            if let Some(stem) = name.strip_suffix(".ko") {
                files.insert(canonical(stem), path);
            }
        }
    }
    Ok(())
}

fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

fn visit(
    group: &'static str,
    name: &str,
    files: &HashMap<String, PathBuf>,
    ordered: &mut Vec<Module>,
    path: &mut Vec<String>,
) -> Result<(), GuestError> {
    let key = canonical(name);
    if ordered.iter().any(|module| canonical(&module.name) == key) || path.contains(&key) {
        return Ok(());
    }
    let file = files
        .get(&key)
        .ok_or_else(|| GuestError::MissingModule { name: key.clone() })?;
    let bytes = std::fs::read(file).map_err(|source| GuestError::io(file, source))?;
    path.push(key);
    for dependency in dependencies(&bytes) {
        visit(group, &dependency, files, ordered, path)?;
    }
    path.pop();
    let stem = file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(name);
    ordered.push(Module {
        group,
        name: stem.to_owned(),
        path: file.clone(),
    });
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` strings (`key=value`, NUL-separated).
fn dependencies(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(start) = module
        .windows(KEY.len())
        .position(|window| window == KEY)
        .map(|at| at + KEY.len())
    else {
        return Vec::new();
    };
    let end = module[start..]
        .iter()
        .position(|&byte| byte == 0)
        .map_or(module.len(), |length| start + length);
    String::from_utf8_lossy(&module[start..end])
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(dir: &Path, name: &str, depends: &str) {
        let bytes = format!("\x7fELF junk\0license=GPL\0depends={depends}\0name={name}\0");
        std::fs::write(dir.join(format!("{name}.ko")), bytes).unwrap();
    }

    #[test]
    fn dependencies_come_first_once_per_group() {
        let tree = tempfile::tempdir().unwrap();
        let nested = tree.path().join("kernel/drivers");
        std::fs::create_dir_all(&nested).unwrap();
        module(&nested, "bochs", "drm_kms_helper,drm");
        module(&nested, "drm_kms_helper", "drm");
        module(&nested, "drm", "");
        module(&nested, "pvpanic", "");
        module(&nested, "pvpanic-mmio", "pvpanic");
        module(tree.path(), "pvpanic-pci", "pvpanic");
        let names: Vec<String> = load_order(tree.path())
            .unwrap()
            .into_iter()
            .map(|module| module.name)
            .collect();
        assert_eq!(
            names,
            [
                "drm",
                "drm_kms_helper",
                "bochs",
                "pvpanic",
                "pvpanic-mmio",
                "pvpanic-pci"
            ]
        );
    }

    #[test]
    fn a_missing_dependency_is_named() {
        let tree = tempfile::tempdir().unwrap();
        module(tree.path(), "bochs", "drm");
        let error = load_order(tree.path()).unwrap_err();
        assert_eq!(error.to_string(), "the kernel package has no module drm");
    }
}
