//! Making sure QEMU (and, for the end-to-end tests, the `incus` client, Chromium, node and
//! `playwright-core` for the web page, and the Linux guest) is there before anything needs it.

use std::path::Path;
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

/// Prepares the Linux guest of `tests/linux_guest.rs` in its cache under `target/` (the first
/// time, downloading Debian's kernel and busybox packages), so its tests must run: a failure
/// here fails `cargo xtask test` with apt's own words. Without package lists, as root, it runs
/// `apt-get update` first.
pub fn ensure_linux_guest() -> Result<vgashot_linux_guest::LinuxGuest> {
    use vgashot_linux_guest::{GuestError, LinuxGuest};
    let cache = LinuxGuest::default_cache_dir();
    let guest = match LinuxGuest::prepare(&cache) {
        Err(GuestError::Resolve { .. }) if nix::unistd::geteuid().is_root() => {
            eprintln!("xtask: apt knows no kernel package; updating its package lists");
            apt_get(&["update", "-q"])?;
            LinuxGuest::prepare(&cache)
        }
        prepared => prepared,
    }
    .map_err(|error| format!("cannot prepare the Linux guest: {}", error_chain(&error)))?;
    eprintln!(
        "xtask: Linux guest {} ready in {}",
        guest.release(),
        cache.display()
    );
    Ok(guest)
}

/// An error with its causes, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
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
    find_in_path("incus")
}

/// Where the web page test finds its browser: Debian's `chromium` package.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The web page test's npm project (`playwright-core`, pinned by its `package-lock.json`).
const UI_TESTS: &str = "tests/ui";

/// Makes sure the web page test (`tests/ui.rs`) can run: Debian's `chromium`, and `nodejs` and
/// `npm` if missing, installed with apt-get as root (one-off: later runs find them), then
/// `npm ci` in `tests/ui`. Without root it says what is missing, and that test skips.
pub fn ensure_ui_tools() -> Result {
    let missing: Vec<&str> = [
        ("chromium", Path::new(CHROMIUM).is_file()),
        ("nodejs", find_in_path("node")),
        ("npm", find_in_path("npm")),
    ]
    .into_iter()
    .filter_map(|(package, present)| (!present).then_some(package))
    .collect();
    if !missing.is_empty() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "xtask: the web page test will be skipped: install {} (`sudo apt-get install`)",
                missing.join(" ")
            );
            return Ok(());
        }
        eprintln!(
            "xtask: installing {} for the web page test",
            missing.join(" ")
        );
        apt_get(&["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        apt_get(&args)?;
    }
    // `npm ci` installs exactly the locked packages (no browser: Chromium is Debian's); with the
    // npm cache warm it needs no network.
    let dir = crate::workspace_root().join(UI_TESTS);
    eprintln!("xtask: npm ci in {UI_TESTS}");
    let status = Command::new("npm")
        .args([
            "ci",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--silent",
        ])
        .current_dir(&dir)
        .status()
        .map_err(|error| format!("cannot run npm: {error}"))?;
    if !status.success() {
        return Err(format!("`npm ci` in {UI_TESTS} failed ({status})"));
    }
    Ok(())
}

/// `VGASHOT_REQUIRE_UI=1` when the browser, node and the npm packages are all there, so the web
/// page test cannot skip.
pub fn ui_requirement() -> Vec<(&'static str, &'static str)> {
    let packages = crate::workspace_root()
        .join(UI_TESTS)
        .join("node_modules/playwright-core/package.json");
    if Path::new(CHROMIUM).is_file() && find_in_path("node") && packages.is_file() {
        vec![("VGASHOT_REQUIRE_UI", "1")]
    } else {
        Vec::new()
    }
}

fn find_in_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(name).is_file())
}
