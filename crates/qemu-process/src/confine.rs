//! Confining QEMU: an unprivileged user and a seccomp sandbox, as far as this QEMU and this
//! daemon allow.
//!
//! How a confinement is decided:
//! 1. [`QemuUser::ensure`] (once, at the daemon's start) resolves the user QEMU runs as. A
//!    daemon running as root uses the configured user, creating it with `useradd --system` when
//!    it is missing; a daemon that is not root cannot change users, so QEMU runs as the daemon
//!    itself and the log says so.
//! 2. [`probe`] asks the QEMU binary, once per binary, for its version and whether it was built
//!    with seccomp (`-sandbox on -version` fails on a QEMU built without it).
//! 3. [`Confinement::args`] renders the options: `-sandbox` with the flags Incus uses
//!    ([`SANDBOX`]), and `-runas USER` (before QEMU 9.1) or `-run-with user=USER` (9.1 and
//!    later, where `-runas` is deprecated). What cannot be applied is logged as a warning once
//!    per binary, never silently skipped.
//!
//! QEMU opens its accelerator, the files of its command line and its QMP socket before it drops
//! to the user, and after the drop it is not dumpable, so processes of the same user cannot
//! ptrace it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vgashot_stdext::MutexExt;

use crate::LaunchError;

/// The seccomp sandbox, with Incus's flags: `spawn=deny` and `elevateprivileges=deny` kill a
/// QEMU started with `-daemonize` and `-runas` (SIGSYS) before it runs, so both stay allowed;
/// QEMU's own privilege drop is what `elevateprivileges` would otherwise forbid.
pub const SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny";
/// The first QEMU release with `-run-with user=`; `-runas` is deprecated from then on.
const RUN_WITH_USER_SINCE: (u32, u32) = (9, 1);

/// The user QEMU runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuUser {
    /// The user name, as `-runas` takes it.
    pub name: String,
    /// Its uid.
    pub uid: u32,
}

impl QemuUser {
    /// The user QEMU should run as: `name`, created as a system user if missing, when this
    /// process is root; `None` (QEMU runs as this process, which is logged) otherwise, or when
    /// `name` is `root` (which only an administrator asks for, to measure or debug).
    pub fn ensure(name: &str) -> Result<Option<QemuUser>, LaunchError> {
        if !nix::unistd::geteuid().is_root() {
            tracing::warn!(
                uid = nix::unistd::geteuid().as_raw(),
                "the daemon is not root, so it cannot drop QEMU's privileges: QEMU runs as the \
                 daemon's own user"
            );
            return Ok(None);
        }
        if name == "root" {
            tracing::warn!("QEMU runs as root, as configured: it is not confined to a user");
            return Ok(None);
        }
        if let Some(user) = Self::lookup(name)? {
            return Ok(Some(user));
        }
        let created = std::process::Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
            .args(["--comment", "vgashot's QEMU processes", name])
            .output()
            .map_err(|source| LaunchError::User {
                name: name.to_owned(),
                reason: format!("cannot run useradd: {source}"),
            })?;
        // Another daemon may have created it meanwhile: look again either way.
        match Self::lookup(name)? {
            Some(user) => {
                tracing::info!(
                    user = name,
                    uid = user.uid,
                    "created the system user for QEMU"
                );
                Ok(Some(user))
            }
            None => Err(LaunchError::User {
                name: name.to_owned(),
                reason: format!(
                    "useradd failed ({}): {}",
                    created.status,
                    String::from_utf8_lossy(&created.stderr).trim()
                ),
            }),
        }
    }

    fn lookup(name: &str) -> Result<Option<QemuUser>, LaunchError> {
        let user = nix::unistd::User::from_name(name).map_err(|error| LaunchError::User {
            name: name.to_owned(),
            reason: format!("cannot look it up: {error}"),
        })?;
        Ok(user.map(|user| QemuUser {
            name: user.name,
            uid: user.uid.as_raw(),
        }))
    }
}

/// How QEMU is confined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// The user QEMU drops to; `None` keeps the daemon's own.
    pub user: Option<QemuUser>,
    /// Whether to run QEMU in its seccomp sandbox (when the binary has one).
    pub sandbox: bool,
}

impl Confinement {
    /// The confinement a daemon wants: its QEMU user (see [`QemuUser::ensure`]) and the sandbox.
    pub fn confined(user: Option<QemuUser>) -> Self {
        Self {
            user,
            sandbox: true,
        }
    }

    /// The options that apply this confinement with a QEMU of `capabilities`.
    pub fn args(&self, binary: &Path, capabilities: &Capabilities) -> Vec<OsString> {
        let mut args = Vec::new();
        if self.sandbox {
            if capabilities.seccomp {
                args.extend(["-sandbox".into(), SANDBOX.into()]);
            } else {
                warn_once(
                    binary,
                    "no seccomp",
                    "this QEMU was built without seccomp support (-sandbox): VMs run without a \
                     system call filter",
                );
            }
        }
        if let Some(user) = &self.user {
            if capabilities.version >= RUN_WITH_USER_SINCE {
                args.extend(["-run-with".into(), format!("user={}", user.name).into()]);
            } else {
                args.extend(["-runas".into(), user.name.clone().into()]);
            }
        }
        args
    }
}

/// What a QEMU binary supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Its (major, minor) version.
    pub version: (u32, u32),
    /// Whether it was built with seccomp (`-sandbox`).
    pub seccomp: bool,
}

/// Probed capabilities by binary: QEMU is asked once per daemon.
static PROBED: Mutex<Option<HashMap<PathBuf, Capabilities>>> = Mutex::new(None);

/// What `binary` supports, asked once (two short runs of `-version`) and remembered. Blocking:
/// call it off the async workers.
pub fn probe(binary: &Path) -> Result<Capabilities, LaunchError> {
    let remembered = |probed: &mut Option<HashMap<PathBuf, Capabilities>>| {
        probed.as_ref().and_then(|map| map.get(binary).copied())
    };
    if let Some(known) = remembered(&mut PROBED.lock_unpoisoned()) {
        return Ok(known);
    }
    let run = |args: &[&str]| {
        std::process::Command::new(binary)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| LaunchError::Spawn {
                binary: binary.to_owned(),
                source,
            })
    };
    // -sandbox is parsed before -version exits: a QEMU without seccomp refuses the option.
    let sandboxed = run(&["-sandbox", "on", "-version"])?;
    let output = if sandboxed.status.success() {
        sandboxed.clone()
    } else {
        run(&["-version"])?
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text).ok_or_else(|| LaunchError::Version {
        binary: binary.to_owned(),
        output: text.trim().to_owned(),
    })?;
    let capabilities = Capabilities {
        version,
        seccomp: sandboxed.status.success(),
    };
    tracing::debug!(binary = %binary.display(), ?capabilities, "probed QEMU");
    PROBED
        .lock_unpoisoned()
        .get_or_insert_with(HashMap::new)
        .insert(binary.to_owned(), capabilities);
    Ok(capabilities)
}

/// The (major, minor) of `QEMU emulator version 7.2.22 (...)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .map(|number| number.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Warnings already given, by (binary, topic).
static WARNED: Mutex<Vec<(PathBuf, &'static str)>> = Mutex::new(Vec::new());

/// Logs `message` once per binary and topic.
fn warn_once(binary: &Path, topic: &'static str, message: &str) {
    let mut warned = WARNED.lock_unpoisoned();
    let key = (binary.to_owned(), topic);
    if !warned.contains(&key) {
        tracing::warn!(binary = %binary.display(), "{message}");
        warned.push(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn versions_are_read_from_qemus_banner() {
        let banner = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright";
        assert_eq!(parse_version(banner), Some((7, 2)));
        assert_eq!(parse_version("QEMU emulator version 10.0.0"), Some((10, 0)));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn the_user_option_follows_the_version() {
        let confinement = Confinement::confined(Some(QemuUser {
            name: "vgashot-qemu".into(),
            uid: 990,
        }));
        let binary = Path::new("/usr/bin/qemu-system-x86_64");
        let old = Capabilities {
            version: (9, 0),
            seccomp: true,
        };
        assert_eq!(
            strings(confinement.args(binary, &old)),
            ["-sandbox", SANDBOX, "-runas", "vgashot-qemu"]
        );
        let new = Capabilities {
            version: (9, 1),
            seccomp: false,
        };
        assert_eq!(
            strings(confinement.args(binary, &new)),
            ["-run-with", "user=vgashot-qemu"]
        );
        assert!(Confinement::default().args(binary, &old).is_empty());
    }

    #[test]
    fn this_qemu_is_probed() {
        let Ok(binary) = crate::find_qemu() else {
            return;
        };
        let capabilities = probe(&binary).unwrap();
        assert!(capabilities.version >= (4, 0), "{capabilities:?}");
        assert_eq!(probe(&binary).unwrap(), capabilities);
    }
}
