//! Making sure QEMU (and, for the end-to-end test, the `incus` client) is there before anything
//! needs it.

use std::process::Command;

use vgashot_qemu_process::find_qemu;

use crate::Result;

/// The Debian package that ships `qemu-system-x86_64`.
const PACKAGE: &str = "qemu-system-x86";

/// Finds QEMU; when it is missing, installs Debian's package as root, or says what to install.
pub fn ensure_installed() -> Result {
    if let Ok(path) = find_qemu() {
        eprintln!("xtask: QEMU found at {}", path.display());
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "qemu-system-x86_64 is not installed; install it with `sudo apt-get install {PACKAGE}` \
             (or set VGASHOT_QEMU to a QEMU binary), then run this again"
        ));
    }
    eprintln!("xtask: qemu-system-x86_64 missing; installing Debian's {PACKAGE}");
    apt_get(&["update", "-q"])?;
    apt_get(&["install", "-y", "-q", "--no-install-recommends", PACKAGE])?;
    let path = find_qemu().map_err(|error| error.to_string())?;
    eprintln!("xtask: QEMU installed at {}", path.display());
    Ok(())
}

fn apt_get(args: &[&str]) -> Result {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|error| format!("cannot run apt-get (is this Debian?): {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
    }
}

/// The script in the shared material that installs Debian's `incus` client (6.0.4) without
/// touching the machine's apt sources.
const INCUS_INSTALLER: &str = "../shared/tools/install-incus-client.sh";

/// Installs the `incus` client for the end-to-end test when it is missing, as root and where
/// the installer is present; otherwise that test skips, and says so.
pub fn ensure_incus_client() -> Result {
    if find_incus() {
        return Ok(());
    }
    let installer = crate::workspace_root().join(INCUS_INSTALLER);
    if !nix::unistd::geteuid().is_root() || !installer.is_file() {
        eprintln!(
            "xtask: no incus client; the test that drives the daemon with it will be skipped \
             (install Debian's incus-client 6.0.4 to run it)"
        );
        return Ok(());
    }
    eprintln!(
        "xtask: installing the incus client with {}",
        installer.display()
    );
    let status = Command::new("bash")
        .arg(&installer)
        .status()
        .map_err(|error| format!("cannot run {}: {error}", installer.display()))?;
    if status.success() && find_incus() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", installer.display()))
    }
}

/// `VGASHOT_REQUIRE_INCUS=1` when the client is installed, so its test cannot skip.
pub fn incus_requirement() -> Vec<(&'static str, &'static str)> {
    if find_incus() {
        vec![("VGASHOT_REQUIRE_INCUS", "1")]
    } else {
        Vec::new()
    }
}

fn find_incus() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join("incus").is_file())
}
