//! Project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! 1. `test`: every check CI runs. Makes sure QEMU is installed (installing Debian's
//!    `qemu-system-x86` when running as root), then `cargo fmt --check`,
//!    `cargo clippy --all-targets -- -D warnings` and the whole test suite, with QEMU required so no
//!    test that needs it can skip. It also installs Debian's `chromium` (and `nodejs`/`npm` if
//!    missing) as root and runs `npm ci` in `tests/ui`, for the web page test, which must then
//!    run (`VGASHOT_REQUIRE_UI`). It prepares the Linux guest (`crates/linux-guest`, Debian's
//!    kernel and busybox fetched once into `target/linux-guest/`), whose tests must then run
//!    (`VGASHOT_REQUIRE_LINUX_GUEST`).
//! 2. `demo`: the main job: the daemon with two VMs (colour bars, a real Linux guest) and the web
//!    page through `vgashot ui`, whose address it prints first; Ctrl-C stops everything.
//!    `demo --pictures` remakes the README's pictures from it.
//! 3. `bench`: the benchmark (`crates/bench`, built in release, with the release daemon it
//!    starts for the many-viewers section), which rewrites `BENCHMARKS.md`.
//! 4. `contract`: only the contract step of `test`, on the release daemon it builds.
//! 5. `swagger`: regenerates `swagger/rest-api.{yaml,json}` from the handlers' annotations;
//!    `swagger --check` fails when the committed files are stale, and validates the document
//!    with `openapi-spec-validator` (from PyPI, in a virtualenv under `target/`). `test` then
//!    checks the document as a contract against the release daemon (`contract.rs`):
//!    schemathesis with every check, and a Python client generated from it that drives a VM.
//! 6. `deb`: the Debian package of the release build (`crates/deb`), with plain `dpkg-deb`, in
//!    `target/debian/`; `test` builds, installs and uses one too (`tests/deb.rs`, which must run
//!    there as root: `VGASHOT_REQUIRE_DEB`).

mod contract;
mod demo;
mod qemu;
mod swagger;

use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str =
    "usage: cargo xtask <test|demo [--pictures]|bench|swagger [--check]|contract|deb>
  test     install QEMU if needed, then fmt --check, clippy -D warnings, all tests, swagger --check,
           and the API contract (schemathesis, a generated Python client)
  demo     run the daemon with two VMs and the web page (`vgashot ui`), print its address; Ctrl-C
           stops all; --pictures remakes docs/ui.png and docs/demo-screenshot.png
  bench    measure screenshot latency and rewrite BENCHMARKS.md
  swagger  regenerate swagger/rest-api.{yaml,json}; --check fails when they are stale
  contract only the API contract step of `test` (schemathesis, the generated Python client)
  deb      build the Debian package (target/debian/vgashot_VERSION_ARCH.deb) with dpkg-deb";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo::run(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("swagger") => swagger::run(args.get(1).map(String::as_str) == Some("--check")),
        Some("contract") => contract(),
        Some("deb") => deb(),
        _ => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo` with `args` in the workspace root, failing when it fails.
fn cargo(args: &[&str]) -> Result {
    cargo_with(args, &[])
}

/// Runs `cargo` with `args` and the environment variables `envs` in the workspace root.
fn cargo_with(args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Result {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .env("VGASHOT_REQUIRE_QEMU", "1")
        .envs(qemu::incus_requirement())
        .envs(qemu::ui_requirement())
        .envs(envs.iter().copied())
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The workspace root: this crate's parent directory.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn test() -> Result {
    qemu::ensure_installed()?;
    qemu::ensure_incus_client()?;
    qemu::ensure_ui_tools()?;
    qemu::ensure_linux_guest()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The end-to-end tests (the attack suite among them) drive the release daemon, the build
    // people run next to their VMs.
    cargo(&["build", "--release", "--package", "vgashot"])?;
    let release = workspace_root().join("target/release/vgashot");
    cargo_with(
        &["test", "--workspace"],
        &[
            ("VGASHOT_TEST_BINARY", release.as_os_str()),
            ("VGASHOT_REQUIRE_LINUX_GUEST", "1".as_ref()),
            // The package test installs into a throwaway root, which needs root.
            ("VGASHOT_REQUIRE_DEB", deb_requirement().as_ref()),
        ],
    )?;
    swagger::run(true)?;
    // The document as a contract: schemathesis and a generated Python client against the
    // release daemon.
    contract::run()
}

/// The Debian package of the release build, in `target/debian/`.
fn deb() -> Result {
    cargo(&["build", "--release", "--package", "vgashot"])?;
    let root = workspace_root();
    let out = root.join("target/debian");
    std::fs::create_dir_all(&out)
        .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
    let deb = vgashot_deb::build(&root.join("target/release/vgashot"), &out)
        .map_err(|error| vgashot_rest::describe(&error))?;
    println!("{}", deb.display());
    Ok(())
}

/// `1` where the Debian package test must run (as root), empty (skip allowed) elsewhere.
fn deb_requirement() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        "1"
    } else {
        ""
    }
}

/// The contract step alone, on the release daemon it builds first.
fn contract() -> Result {
    qemu::ensure_installed()?;
    cargo(&["build", "--release", "--package", "vgashot"])?;
    contract::run()
}

fn bench(args: &[String]) -> Result {
    qemu::ensure_installed()?;
    // The many-viewers section runs the real daemon binary, which `cargo run` of the bench
    // would not build: build it first, in release as the bench.
    cargo(&["build", "--release", "--quiet", "--package", "vgashot"])?;
    let mut command = vec![
        "run",
        "--release",
        "--quiet",
        "--package",
        "vgashot-bench",
        "--",
    ];
    command.extend(args.iter().map(String::as_str));
    cargo(&command)
}
