//! Debian's packages, found with `apt-cache`, fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x`, none of which needs root or changes the machine's apt state.
//!
//! How a package gets into the cache:
//! 1. [`resolve`] asks `apt-cache` (the local package lists, no network) for the version that
//!    `apt-get` would fetch. The metapackage `linux-image-amd64` is followed to the versioned
//!    kernel package it depends on, so a kernel update means a new cache entry.
//! 2. [`fetch`] runs `apt-get download PACKAGE=VERSION` in a fresh directory of the cache and
//!    unpacks the `.deb` there with `dpkg-deb -x`; the caller keeps what it needs and drops the
//!    rest, so a cache entry is a few megabytes, not the kernel package's 70.
//!
//! `apt-get download` runs as any user; as root apt would rather fetch as `_apt`, cannot reach
//! a private directory as that user and says so in a warning, then fetches as root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::GuestError;

/// A package at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The package name.
    pub name: String,
    /// The version `apt-get` would fetch.
    pub version: String,
}

impl Package {
    /// A name for the package's cache entry: `NAME_VERSION`, with the epoch's `:` kept out.
    pub fn cache_key(&self) -> String {
        format!("{}_{}", self.name, self.version.replace(':', "%3a"))
    }
}

/// The version of `name` that `apt-get` would fetch; a package that only depends on another
/// of the prefix `follow` (a metapackage) resolves to that one.
pub fn resolve(name: &str, follow: Option<&str>) -> Result<Package, GuestError> {
    let output = run(
        "apt-cache",
        Command::new("apt-cache").args(["show", "--no-all-versions", name]),
        None,
    )
    .map_err(|error| match error {
        GuestError::Failed { output, .. } => GuestError::Resolve {
            package: name.to_owned(),
            output,
        },
        other => other,
    })?;
    let field = |key: &str| {
        output
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(str::trim)
    };
    let unknown = || GuestError::Resolve {
        package: name.to_owned(),
        output: output.clone(),
    };
    let Some(prefix) = follow else {
        let version = field("Version:").ok_or_else(unknown)?;
        return Ok(Package {
            name: name.to_owned(),
            version: version.to_owned(),
        });
    };
    // `Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)`
    let depends = field("Depends:").ok_or_else(unknown)?;
    let target = depends
        .split(',')
        .map(str::trim)
        .find(|dependency| dependency.starts_with(prefix))
        .ok_or_else(unknown)?;
    let (dependency, version) = target.split_once(" (= ").ok_or_else(unknown)?;
    Ok(Package {
        name: dependency.to_owned(),
        version: version.trim_end_matches(')').to_owned(),
    })
}

/// Downloads `package` into `dir` (which must be empty) and unpacks it into `dir/root`;
/// returns that root.
pub fn fetch(package: &Package, dir: &Path) -> Result<PathBuf, GuestError> {
    let wanted = format!("{}={}", package.name, package.version);
    run(
        "apt-get",
        Command::new("apt-get")
            .args(["download", "--quiet", &wanted])
            .current_dir(dir),
        None,
    )
    .map_err(|error| match error {
        GuestError::Failed { output, .. } => GuestError::Download {
            package: wanted.clone(),
            output,
        },
        other => other,
    })?;
    let deb = std::fs::read_dir(dir)
        .map_err(|source| GuestError::io(dir, source))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .ok_or_else(|| GuestError::Download {
            package: wanted.clone(),
            output: "apt-get download left no .deb".to_owned(),
        })?;
    let root = dir.join("root");
    run(
        "dpkg-deb",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        None,
    )?;
    std::fs::remove_file(&deb).map_err(|source| GuestError::io(&deb, source))?;
    Ok(root)
}

/// Runs `command` (the tool `tool`) with `stdin`, and returns its standard output; its
/// standard error goes into the error when it fails.
pub fn run(
    tool: &'static str,
    command: &mut Command,
    stdin: Option<&[u8]>,
) -> Result<String, GuestError> {
    let bytes = run_bytes(tool, command, stdin)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// [`run`], for a tool whose output is binary.
pub fn run_bytes(
    tool: &'static str,
    command: &mut Command,
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, GuestError> {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| GuestError::Tool { tool, source })?;
    let feeder = stdin.zip(child.stdin.take()).map(|(bytes, mut pipe)| {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || pipe.write_all(&bytes))
    });
    let output = child
        .wait_with_output()
        .map_err(|source| GuestError::Tool { tool, source })?;
    // A tool that stops reading early (xz after its one stream) breaks the pipe: not an error.
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    if !output.status.success() {
        return Err(GuestError::Failed {
            tool,
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_apt_does_not_know_is_a_resolve_error() {
        let error = resolve("vgashot-no-such-package", None).unwrap_err();
        let GuestError::Resolve { package, output } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(package, "vgashot-no-such-package");
        assert!(output.contains("No packages found"), "{output}");
    }

    #[test]
    fn an_epoch_stays_out_of_the_cache_key() {
        let package = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4+deb12u1+b1".into(),
        };
        assert_eq!(
            package.cache_key(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1"
        );
    }

    #[test]
    fn a_tool_that_fails_says_what_it_printed() {
        let error = run(
            "sh",
            Command::new("sh").args(["-c", "echo no such package >&2; exit 100"]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "sh failed (exit status: 100): no such package"
        );
    }

    #[test]
    fn a_missing_tool_is_named() {
        let error = run(
            "no-such-tool",
            &mut Command::new("/nonexistent/no-such-tool"),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                GuestError::Tool {
                    tool: "no-such-tool",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
