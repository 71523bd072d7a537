//! A real Linux guest for tests, benchmarks and the demo: Debian 12's stock kernel and
//! busybox, booted directly by QEMU (`-kernel`, `-initrd`, `-append`), with no disk and no
//! network.
//!
//! How [`LinuxGuest::prepare`] makes one:
//! 1. It resolves, with the local package lists, the versioned kernel package behind
//!    `linux-image-amd64` and `busybox-static` ([`debian`]); each version has its own entry in
//!    the cache directory (by default `target/linux-guest/`), so a new version is fetched once
//!    and an unchanged one never again.
//! 2. For a version not cached yet it downloads the `.deb` with `apt-get download` (no root
//!    needed), unpacks it with `dpkg-deb -x` and keeps only what the guest needs (75 MB of the
//!    kernel package's 400): the bzImage `vmlinuz`, the kernel decompressed to its ELF `vmlinux`,
//!    the few modules of [`modules`], and `/bin/busybox`. The
//!    entry is assembled in a temporary directory and renamed into place, so a run that dies
//!    midway, or two running at once, leave no half entry.
//! 3. It writes the initramfs, an uncompressed newc cpio ([`cpio`]) with busybox, the modules
//!    and the `/init` of [`init`], at every call (a few milliseconds), so a change to the init
//!    takes effect without a new download.
//!
//! Two consoles, two kernels ([`Console`]):
//! - [`Console::Framebuffer`], the default: QEMU boots the uncompressed ELF `vmlinux` through
//!   PVH, skipping the real-mode setup and the kernel's own xz decompression. On this project's
//!   2-core machine (nested KVM there does not boot the kernel in 4 minutes, so TCG) that takes
//!   the boot to the ready line from about 7 s to about 3 s when the machine is quiet, and from
//!   about 23 s to 6-8 s when it is busy. PVH leaves no
//!   VGA text console (the kernel gets no `screen_info`), so the init loads the bochs DRM
//!   driver, and fbcon draws a 1280x800 framebuffer console on QEMU's std VGA. Its drawing
//!   reaches the screen through a kernel worker, which a panicked kernel never runs again: the
//!   screen keeps what it showed before the panic.
//! - [`Console::Text`]: Debian's bzImage, booted through its real-mode setup, so the kernel's
//!   built-in VGA text console (vgacon, 80x25, a 720x400 screen) writes straight into the
//!   adapter's memory, and a panic shows on the screen.
//!
//! What it needs on the host: `apt-cache`, `apt-get` and `dpkg-deb` (every Debian system), with
//! package lists present (`apt-get update` once, as root), and `xz` (package `xz-utils`).

pub mod cpio;
pub mod debian;
pub mod init;
pub mod modules;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use init::{BootOptions, Console, KERNEL_LINE_PREFIX, PANIC_LINE, POWEROFF_LINE, READY_LINE};

/// The least guest memory, in MiB, the guest boots with (both kernels; measured: 96 MiB boots,
/// 64 MiB prints nothing at all, the 66 MB kernel and its initramfs leaving no room).
pub const MIN_MEMORY_MIB: u32 = 96;

/// The metapackage that names Debian's current kernel, and the prefix of the package it pulls.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
const KERNEL_PACKAGE_PREFIX: &str = "linux-image-";
/// The package with a statically linked busybox.
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The version of what a cache entry holds, part of its name: bump it when that changes, so an
/// old entry is made again rather than found lacking.
const CACHE_LAYOUT: &str = "layout2";
/// The list of modules `/init` loads, `GROUP NAME` a line, in the initramfs's `lib/modules/`.
const LOAD_ORDER: &str = "load-order";
/// The start of an xz stream (the payload of Debian's bzImage).
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";

/// Errors of preparing the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A host tool could not be run (most likely not installed).
    #[error(
        "cannot run {tool} (on Debian: apt-cache, apt-get and dpkg-deb come with apt and dpkg, xz with xz-utils)"
    )]
    Tool {
        /// The tool.
        tool: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A host tool ran and failed; `output` is what it printed on stderr.
    #[error("{tool} failed ({status}): {output}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// Its exit status.
        status: String,
        /// Its standard error.
        output: String,
    },
    /// `apt-cache` does not know the package, or not in the expected shape (are the package
    /// lists there? `apt-get update`).
    #[error(
        "apt-cache cannot tell which {package} to fetch (run `apt-get update` once?): {output}"
    )]
    Resolve {
        /// The package asked for.
        package: String,
        /// What `apt-cache show` printed.
        output: String,
    },
    /// `apt-get download` failed; `output` is what it printed.
    #[error("cannot download {package}: {output}")]
    Download {
        /// `NAME=VERSION`.
        package: String,
        /// What `apt-get` printed on stderr.
        output: String,
    },
    /// An unpacked package lacks a file the guest needs.
    #[error("{package} has no {path}")]
    NotInPackage {
        /// The package.
        package: String,
        /// The path looked for inside it.
        path: String,
    },
    /// The kernel image is not the xz-compressed bzImage with an ELF inside that was expected.
    #[error("cannot take the ELF kernel out of {}: {reason}", path.display())]
    KernelImage {
        /// The image.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// A module the guest loads, or one it depends on, is not in the kernel package.
    #[error("the kernel package has no module {name}")]
    MissingModule {
        /// The module's name.
        name: String,
    },
    /// A file or directory of the cache could not be read or written.
    #[error("cannot use {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl GuestError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A prepared guest: a kernel and an initramfs in the cache, ready for direct kernel boot.
#[derive(Debug, Clone)]
pub struct LinuxGuest {
    /// The directory holding both kernels, named by [`Console::kernel_file`].
    kernels: PathBuf,
    initrd: PathBuf,
    release: String,
}

impl LinuxGuest {
    /// The default cache: `linux-guest` in the workspace's `target/` (`$CARGO_TARGET_DIR` when
    /// set at run time).
    pub fn default_cache_dir() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("linux-guest")
    }

    /// Finds the guest in `cache_dir`, or downloads and unpacks what is missing, and writes the
    /// initramfs (see the module documentation).
    pub fn prepare(cache_dir: &Path) -> Result<Self, GuestError> {
        std::fs::create_dir_all(cache_dir).map_err(|source| GuestError::io(cache_dir, source))?;
        let kernel_package = debian::resolve(KERNEL_METAPACKAGE, Some(KERNEL_PACKAGE_PREFIX))?;
        let busybox_package = debian::resolve(BUSYBOX_PACKAGE, None)?;
        let kernel_dir = cached(cache_dir, &kernel_package, unpack_kernel)?;
        let busybox_dir = cached(cache_dir, &busybox_package, unpack_busybox)?;
        let release = read(&kernel_dir.join("release"))?;
        let initrd = kernel_dir.join("initrd.cpio");
        write_atomically(&initrd, &initramfs(&kernel_dir, &busybox_dir)?)?;
        Ok(Self {
            kernels: kernel_dir,
            initrd,
            release: String::from_utf8_lossy(&release).trim().to_owned(),
        })
    }

    /// The kernel that gives `console`, for `vgashot.boot.kernel`: the uncompressed ELF
    /// `vmlinux` for [`Console::Framebuffer`], Debian's bzImage `vmlinuz` for [`Console::Text`].
    pub fn kernel(&self, console: Console) -> PathBuf {
        self.kernels.join(console.kernel_file())
    }

    /// The initramfs, for `vgashot.boot.initrd`.
    pub fn initrd(&self) -> &Path {
        &self.initrd
    }

    /// The kernel release (`uname -r`, e.g. `6.1.0-57-amd64`), which the guest prints after
    /// [`KERNEL_LINE_PREFIX`].
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The kernel command line for `options`, for `vgashot.boot.cmdline`.
    pub fn cmdline(&self, options: &BootOptions) -> String {
        options.cmdline()
    }

    /// Copies the kernel for `console` and the initramfs into `dir` (which a daemon may be
    /// allowed to read where it may not read the cache), and returns the guest as found there:
    /// its [`Self::kernel`] for another console names a file that was not copied.
    pub fn copy_to(&self, dir: &Path, console: Console) -> Result<Self, GuestError> {
        let copy = |from: &Path, to: PathBuf| {
            std::fs::copy(from, &to).map_err(|source| GuestError::io(&to, source))?;
            Ok::<_, GuestError>(to)
        };
        let kernel = console.kernel_file();
        copy(&self.kernel(console), dir.join(kernel))?;
        Ok(Self {
            kernels: dir.to_owned(),
            initrd: copy(&self.initrd, dir.join("initrd.cpio"))?,
            release: self.release.clone(),
        })
    }
}

/// The workspace's root: two levels above this crate.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_owned()
}

/// The cache entry of `package`, made by `unpack(unpacked package root, entry)` if missing.
fn cached(
    cache_dir: &Path,
    package: &debian::Package,
    unpack: fn(&Path, &Path) -> Result<(), GuestError>,
) -> Result<PathBuf, GuestError> {
    let entry = cache_dir.join(format!("{}.{CACHE_LAYOUT}", package.cache_key()));
    if entry.is_dir() {
        return Ok(entry);
    }
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(cache_dir)
        .map_err(|source| GuestError::io(cache_dir, source))?;
    let download = work.path().join("download");
    let assembled = work.path().join("entry");
    for dir in [&download, &assembled] {
        std::fs::create_dir(dir).map_err(|source| GuestError::io(dir, source))?;
    }
    let result = debian::fetch(package, &download)
        .and_then(|root| unpack(&root, &assembled))
        .and_then(|()| match std::fs::rename(&assembled, &entry) {
            Ok(()) => Ok(()),
            // Another process finished the same entry first: use theirs.
            Err(_) if entry.is_dir() => Ok(()),
            Err(source) => Err(GuestError::io(&entry, source)),
        });
    result.map(|()| entry)
}

/// Keeps the kernel's `vmlinux`, its release and the modules the guest loads.
fn unpack_kernel(root: &Path, entry: &Path) -> Result<(), GuestError> {
    let boot = root.join("boot");
    let image = std::fs::read_dir(&boot)
        .map_err(|source| GuestError::io(&boot, source))?
        .filter_map(|dir_entry| dir_entry.ok().map(|dir_entry| dir_entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| GuestError::NotInPackage {
            package: KERNEL_METAPACKAGE.to_owned(),
            path: "/boot/vmlinuz-*".to_owned(),
        })?;
    let name = image
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let release = name.trim_start_matches("vmlinuz-").to_owned();
    let vmlinux = decompress_kernel(&image)?;
    write(&entry.join(Console::Framebuffer.kernel_file()), &vmlinux)?;
    let bzimage = entry.join(Console::Text.kernel_file());
    std::fs::copy(&image, &bzimage).map_err(|source| GuestError::io(&bzimage, source))?;
    write(&entry.join("release"), format!("{release}\n").as_bytes())?;

    let tree = root.join("lib/modules").join(&release);
    let modules_dir = entry.join("modules");
    std::fs::create_dir(&modules_dir).map_err(|source| GuestError::io(&modules_dir, source))?;
    let mut order = String::new();
    for module in modules::load_order(&tree)? {
        let to = modules_dir.join(format!("{}.ko", module.name));
        std::fs::copy(&module.path, &to).map_err(|source| GuestError::io(&to, source))?;
        order.push_str(&format!("{} {}\n", module.group, module.name));
    }
    write(&modules_dir.join(LOAD_ORDER), order.as_bytes())
}

/// The ELF kernel inside a bzImage: its xz payload, decompressed with `xz` (the payload is
/// followed by the rest of the image, so `--single-stream`).
fn decompress_kernel(image: &Path) -> Result<Vec<u8>, GuestError> {
    let bytes = read(image)?;
    let start = bytes
        .windows(XZ_MAGIC.len())
        .position(|window| window == XZ_MAGIC)
        .ok_or_else(|| GuestError::KernelImage {
            path: image.to_owned(),
            reason: "no xz stream in it",
        })?;
    let elf = debian::run_bytes(
        "xz",
        Command::new("xz").args(["--decompress", "--stdout", "--single-stream"]),
        Some(&bytes[start..]),
    )?;
    if !elf.starts_with(b"\x7fELF") {
        return Err(GuestError::KernelImage {
            path: image.to_owned(),
            reason: "its xz stream holds no ELF file",
        });
    }
    Ok(elf)
}

/// Keeps `/bin/busybox`.
fn unpack_busybox(root: &Path, entry: &Path) -> Result<(), GuestError> {
    let busybox = root.join("bin/busybox");
    if !busybox.is_file() {
        return Err(GuestError::NotInPackage {
            package: BUSYBOX_PACKAGE.to_owned(),
            path: "/bin/busybox".to_owned(),
        });
    }
    std::fs::copy(&busybox, entry.join("busybox"))
        .map(drop)
        .map_err(|source| GuestError::io(&busybox, source))
}

/// The initramfs: busybox, the modules with their load order, `/init` and `/dev/console`.
fn initramfs(kernel_dir: &Path, busybox_dir: &Path) -> Result<Vec<u8>, GuestError> {
    let mut archive = cpio::Archive::new();
    for dir in ["bin", "dev", "proc", "sys", "lib", "lib/modules"] {
        archive.directory(dir, 0o755);
    }
    // The kernel opens /dev/console for init's standard streams before anything is mounted.
    archive.character_device("dev/console", 0o600, (5, 1));
    archive.file("bin/busybox", 0o755, &read(&busybox_dir.join("busybox"))?);
    let modules_dir = kernel_dir.join("modules");
    let order = read(&modules_dir.join(LOAD_ORDER))?;
    let mut carried = Vec::new();
    for line in String::from_utf8_lossy(&order).lines() {
        let name = line.split_once(' ').map_or(line, |(_, name)| name);
        if carried.contains(&name) {
            continue;
        }
        let file = format!("{name}.ko");
        archive.file(
            &format!("lib/modules/{file}"),
            0o644,
            &read(&modules_dir.join(&file))?,
        );
        carried.push(name);
    }
    archive.file(&format!("lib/modules/{LOAD_ORDER}"), 0o644, &order);
    archive.file("init", 0o755, init::INIT_SCRIPT.as_bytes());
    Ok(archive.finish())
}

fn read(path: &Path) -> Result<Vec<u8>, GuestError> {
    std::fs::read(path).map_err(|source| GuestError::io(path, source))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    std::fs::write(path, bytes).map_err(|source| GuestError::io(path, source))
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    vgashot_stdext::write_atomically(path, bytes, 0o644)
        .map_err(|source| GuestError::io(path, source))
}
