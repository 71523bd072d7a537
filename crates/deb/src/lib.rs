//! The Debian package of vgashot, built with plain `dpkg-deb` (no tool outside Debian), for
//! `cargo xtask deb` and its test (`tests/deb.rs`).
//!
//! How the package is made ([`build`]):
//! 1. A staging tree in a fresh directory beside the output: the binary as `/usr/bin/vgashot`,
//!    stripped as Debian's `dh_strip` does;
//!    the systemd unit `/lib/systemd/system/vgashot.service` (`files/vgashot.service`: runs
//!    `vgashot daemon` over `/var/lib/vgashot`, restarts on failure, and with `KillMode=process`
//!    stops the daemon alone, so the VMs outlive it); the empty image directory
//!    `/srv/vgashot/images`, the daemon's default, which holds nothing until an administrator
//!    puts images there.
//! 2. Man pages and completions come from the binary itself, so they always match its clap
//!    definition: `vgashot manpage DIR` (`clap_mangen`, one page per command, gzipped with
//!    `gzip -9n` as Debian wants) and `vgashot completion bash|zsh|fish` (`clap_complete`), put
//!    where each shell looks for vendor completions.
//! 3. `DEBIAN/`: `control` (the version is the workspace's, the architecture `dpkg
//!    --print-architecture`'s, the dependencies Debian's QEMU), and the maintainer scripts
//!    (`files/postinst`, `prerm`, `postrm`): the `vgashot-qemu` system user is made at
//!    configure, and the service enabled and started where systemd runs; under `dpkg --root`
//!    with chrootless scripts they act inside that root only.
//! 4. `dpkg-deb --root-owner-group --build` writes `vgashot_VERSION_ARCH.deb`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The package's name.
pub const PACKAGE: &str = "vgashot";

/// The package's version: the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the unit is installed.
pub const UNIT_PATH: &str = "lib/systemd/system/vgashot.service";

/// The systemd unit.
pub const UNIT: &str = include_str!("../files/vgashot.service");

/// The maintainer scripts, by name.
const SCRIPTS: [(&str, &str); 3] = [
    ("postinst", include_str!("../files/postinst")),
    ("prerm", include_str!("../files/prerm")),
    ("postrm", include_str!("../files/postrm")),
];

/// Where each shell's completion goes, and its file name.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "usr/share/bash-completion/completions/vgashot"),
    ("zsh", "usr/share/zsh/vendor-completions/_vgashot"),
    ("fish", "usr/share/fish/vendor_completions.d/vgashot.fish"),
];

/// Errors of building the package.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// A file or directory of the staging tree could not be written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool could not be run.
    #[error("cannot run {tool} (install Debian's {package})")]
    Spawn {
        /// The tool.
        tool: String,
        /// The Debian package that has it.
        package: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed; its own words follow.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// Builds the package of `binary` (a release `vgashot`) into `out_dir`, and returns its path
/// (steps 1 to 4).
pub fn build(binary: &Path, out_dir: &Path) -> Result<PathBuf, DebError> {
    let architecture = output("dpkg", "dpkg", &["--print-architecture"])?;
    let architecture = architecture.trim();
    let stage = out_dir.join(format!("{PACKAGE}_{VERSION}_{architecture}"));
    match std::fs::remove_dir_all(&stage) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(DebError::Io {
                path: stage,
                source,
            });
        }
        _ => {}
    }
    let installed = stage.join("usr/bin/vgashot");
    copy(binary, &installed, 0o755)?;
    // As Debian's dh_strip: no debug sections or symbols not needed to run (a release build has
    // line tables, a debug build hundreds of MiB of debug information).
    run(
        Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
            ])
            .arg(&installed),
        "binutils",
    )?;
    write(&stage.join(UNIT_PATH), UNIT.as_bytes(), 0o644)?;
    make_dir(&stage.join("srv/vgashot/images"))?;
    man_pages(&installed, &stage.join("usr/share/man/man1"))?;
    for (shell, path) in COMPLETIONS {
        let script = output_of(&installed, &["completion", shell])?;
        write(&stage.join(path), script.as_bytes(), 0o644)?;
    }
    write(
        &stage.join(format!("usr/share/doc/{PACKAGE}/copyright")),
        COPYRIGHT.as_bytes(),
        0o644,
    )?;
    write(
        &stage.join("DEBIAN/control"),
        control(architecture, &stage)?.as_bytes(),
        0o644,
    )?;
    for (name, script) in SCRIPTS {
        write(&stage.join("DEBIAN").join(name), script.as_bytes(), 0o755)?;
    }
    let deb = out_dir.join(format!("{PACKAGE}_{VERSION}_{architecture}.deb"));
    run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
        "dpkg-deb",
    )?;
    Ok(deb)
}

/// The `copyright` file Debian policy wants in every package.
const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vgashot
Source: https://github.com/vgashot/vgashot

Files: *
License: Apache-2.0
 On Debian systems the full text of the license is in /usr/share/common-licenses/Apache-2.0.
";

/// `DEBIAN/control`, with the installed size of `stage` in KiB.
fn control(architecture: &str, stage: &Path) -> Result<String, DebError> {
    let size = output("du", "coreutils", &["-sk", &stage.display().to_string()])?;
    let kib = size.split_whitespace().next().unwrap_or("0");
    Ok(format!(
        "Package: {PACKAGE}\n\
         Version: {VERSION}\n\
         Architecture: {architecture}\n\
         Maintainer: vgashot developers <vgashot@users.noreply.github.com>\n\
         Installed-Size: {kib}\n\
         Depends: qemu-system-x86, passwd\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: https://github.com/vgashot/vgashot\n\
         Description: QEMU VMs behind an Incus-compatible REST API, with VGA screenshots\n \
         A daemon that runs QEMU virtual machines behind Incus's REST API (the incus\n \
         client drives it) and shows what is on their screens to many viewers at once:\n \
         screenshots, thumbnails, a live MJPEG stream and a web page (vgashot ui).\n"
    ))
}

/// Step 2's man pages: written by the binary, then gzipped.
fn man_pages(binary: &Path, dir: &Path) -> Result<(), DebError> {
    make_dir(dir)?;
    run(Command::new(binary).arg("manpage").arg(dir), "vgashot")?;
    let io = |source| DebError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        run(Command::new("gzip").arg("-9n").arg(&path), "gzip")?;
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), DebError> {
    std::fs::create_dir_all(dir).map_err(|source| DebError::Io {
        path: dir.to_owned(),
        source,
    })?;
    set_mode(dir, 0o755)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DebError> {
    if let Some(parent) = path.parent() {
        make_dir(parent)?;
    }
    std::fs::write(path, bytes).map_err(|source| DebError::Io {
        path: path.to_owned(),
        source,
    })?;
    set_mode(path, mode)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), DebError> {
    if let Some(parent) = to.parent() {
        make_dir(parent)?;
    }
    std::fs::copy(from, to).map_err(|source| DebError::Io {
        path: to.to_owned(),
        source,
    })?;
    set_mode(to, mode)
}

/// Gives `path` exactly `mode`, whatever the umask made of it.
fn set_mode(path: &Path, mode: u32) -> Result<(), DebError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        DebError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

/// Runs `command` (from Debian's `package`), failing with its stderr when it fails; returns its
/// stdout.
fn run(command: &mut Command, package: &'static str) -> Result<String, DebError> {
    let line = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let done = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DebError::Spawn {
            tool: command.get_program().to_string_lossy().into_owned(),
            package,
            source,
        })?;
    if !done.status.success() {
        return Err(DebError::Failed {
            command: line,
            status: done.status,
            stderr: String::from_utf8_lossy(&done.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&done.stdout).into_owned())
}

/// The stdout of `tool args` (from Debian's `package`).
fn output(tool: &str, package: &'static str, args: &[&str]) -> Result<String, DebError> {
    run(Command::new(tool).args(args), package)
}

/// The stdout of the binary being packaged, run with `args`.
fn output_of(binary: &Path, args: &[&str]) -> Result<String, DebError> {
    run(Command::new(binary).args(args), "vgashot")
}
