//! Making sure QEMU is there before anything needs it.

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
