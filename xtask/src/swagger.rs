//! `cargo xtask swagger [--check]`: the OpenAPI files under `swagger/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, workspace_root};

/// Where the validator (and the contract test's tools) are installed, so the machine's Python
/// stays untouched.
const VENV: &str = "target/swagger-venv";
/// The validator, from PyPI.
const VALIDATOR: &str = "openapi-spec-validator";

/// Writes the files, or with `check` fails when the committed ones differ and validates them.
pub fn run(check: bool) -> Result {
    let root = workspace_root();
    let files = [
        ("swagger/rest-api.yaml", vgashot_rest::openapi::yaml()),
        ("swagger/rest-api.json", vgashot_rest::openapi::json()),
    ];
    for (name, generated) in &files {
        let path = root.join(name);
        if check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if &committed != generated {
                return Err(format!(
                    "{name} is stale: run `cargo xtask swagger` and commit the result"
                ));
            }
        } else {
            std::fs::create_dir_all(path.parent().expect("a file in swagger/"))
                .and_then(|()| std::fs::write(&path, generated))
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            eprintln!("xtask: wrote {name}");
        }
    }
    if check {
        validate(&root.join(files[0].0))?;
        eprintln!("xtask: swagger files are current and valid");
    }
    Ok(())
}

/// Validates the document with openapi-spec-validator, installing it into the virtualenv first.
fn validate(document: &Path) -> Result {
    ensure_package("openapi_spec_validator", VALIDATOR)?;
    run_command(
        Command::new(venv_bin("python"))
            .args(["-m", "openapi_spec_validator"])
            .arg(document),
        "openapi-spec-validator",
    )
}

/// A program of the virtualenv (`python`, or one a package installed).
pub fn venv_bin(name: &str) -> PathBuf {
    workspace_root().join(VENV).join("bin").join(name)
}

/// Makes sure the virtualenv exists and `module` imports in it, installing `requirement`
/// (`name==version`, or a bare name) from PyPI when it does not.
pub fn ensure_package(module: &str, requirement: &str) -> Result {
    let python = venv_bin("python");
    if !python.exists() {
        run_command(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(workspace_root().join(VENV)),
            "python3 -m venv (on Debian: apt-get install python3-venv)",
        )?;
    }
    let installed = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let pinned = requirement.split_once("==").is_none_or(|(name, version)| {
        Command::new(&python)
            .args(["-m", "pip", "show", name])
            .output()
            .is_ok_and(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .any(|line| line == format!("Version: {version}"))
            })
    });
    if installed && pinned {
        return Ok(());
    }
    run_command(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", requirement]),
        &format!("pip install {requirement}"),
    )
}

/// Runs `command`, failing with `what` when it cannot start or does not succeed.
pub fn run_command(command: &mut Command, what: &str) -> Result {
    let status = command
        .status()
        .map_err(|error| format!("cannot run {what}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
