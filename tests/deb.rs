//! The Debian package (`cargo xtask deb`, `crates/deb`), built from the binary under test,
//! checked, installed and used as an administrator would:
//! 1. `dpkg-deb --info` and `--contents` show the package's fields and every file it must have:
//!    the binary, the systemd unit, a man page per command, the bash, zsh and fish completions,
//!    the empty image directory;
//! 2. `systemd-analyze verify` accepts the unit (where systemd-analyze is installed), which runs
//!    `vgashot daemon` and stops only the daemon (`KillMode=process`), so VMs survive;
//! 3. `dpkg -i` installs it into a throwaway root (`--root`, with chrootless maintainer scripts
//!    and the dependencies not checked, since that root has no packages), whose postinst makes
//!    the `vgashot-qemu` user there;
//! 4. the installed binary runs as the daemon, starts a fixture VM and takes its screenshot
//!    with `vgashot screenshot`;
//! 5. `dpkg --purge` removes every file it installed.
//!
//! It needs root and dpkg; elsewhere it is skipped with a note, except under `cargo xtask test`
//! as root and on CI (`VGASHOT_REQUIRE_DEB`), where it fails.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::Daemon;
use vgashot_fixtures::Fixture;

/// Runs `program args`, asserting success; returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let done = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        done.status.success(),
        "{program} {args:?} failed ({}): {}",
        done.status,
        String::from_utf8_lossy(&done.stderr)
    );
    String::from_utf8_lossy(&done.stdout).into_owned()
}

/// A root with an empty dpkg database and this machine's user database, for `dpkg --root`.
fn throwaway_root(root: &Path) {
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    for file in ["passwd", "group", "shadow", "gshadow"] {
        let host = Path::new("/etc").join(file);
        if host.exists() {
            std::fs::copy(&host, root.join("etc").join(file)).unwrap();
        }
    }
    // A user made by the postinst must show there; remove the host's own, if it has one.
    for file in ["passwd", "group", "shadow", "gshadow"] {
        let path = root.join("etc").join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let kept: String = text
                .lines()
                .filter(|line| !line.starts_with("vgashot-qemu:"))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(&path, kept).unwrap();
        }
    }
}

/// `dpkg --root=ROOT` with the options a throwaway root needs, then `args`.
fn dpkg(root: &Path, args: &[&str]) -> String {
    let root_option = format!("--root={}", root.display());
    let mut all = vec![
        root_option.as_str(),
        "--force-script-chrootless",
        "--force-depends",
        "--log=/dev/null",
    ];
    all.extend(args);
    run("dpkg", &all)
}

#[tokio::test]
async fn the_package_installs_and_its_binary_serves_a_vm() {
    let root_user = nix::unistd::geteuid().is_root();
    let dpkg_there = support::on_path("dpkg").is_some() && support::on_path("dpkg-deb").is_some();
    if !root_user || !dpkg_there {
        support::skip_unless_required(
            "VGASHOT_REQUIRE_DEB",
            "root and dpkg, to build and install the Debian package",
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let deb = vgashot_deb::build(&support::daemon_binary(), out.path())
        .unwrap_or_else(|error| panic!("{}", vgashot_rest::describe(&error)));
    let deb_path = deb.display().to_string();

    // 1. The fields and the files.
    let info = run("dpkg-deb", &["--info", &deb_path]);
    for field in [
        "Package: vgashot",
        &format!("Version: {}", vgashot_deb::VERSION),
        "Depends: qemu-system-x86, passwd",
    ] {
        assert!(info.contains(field), "no {field:?} in\n{info}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "no {script} in\n{info}");
    }
    let contents = run("dpkg-deb", &["--contents", &deb_path]);
    for file in [
        "./usr/bin/vgashot",
        "./lib/systemd/system/vgashot.service",
        "./usr/share/man/man1/vgashot.1.gz",
        "./usr/share/man/man1/vgashot-daemon.1.gz",
        "./usr/share/man/man1/vgashot-ui.1.gz",
        "./usr/share/bash-completion/completions/vgashot",
        "./usr/share/zsh/vendor-completions/_vgashot",
        "./usr/share/fish/vendor_completions.d/vgashot.fish",
        "./srv/vgashot/images/",
        "./usr/share/doc/vgashot/copyright",
    ] {
        assert!(
            contents.lines().any(|line| line.ends_with(file)),
            "no {file} in\n{contents}"
        );
    }
    assert!(
        contents
            .lines()
            .any(|line| line.starts_with("-rwxr-xr-x root/root")
                && line.ends_with("./usr/bin/vgashot")),
        "{contents}"
    );

    // 3. Installed into a throwaway root, whose postinst makes the user there.
    let root = tempfile::tempdir().unwrap();
    throwaway_root(root.path());
    dpkg(root.path(), &["--install", &deb_path]);
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|line| line.starts_with("vgashot-qemu:")
            && line.ends_with(":/nonexistent:/usr/sbin/nologin")),
        "{passwd}"
    );
    let status = dpkg(root.path(), &["--status", "vgashot"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    let installed = root.path().join("usr/bin/vgashot");
    let unit = root.path().join("lib/systemd/system/vgashot.service");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "ExecStart=/usr/bin/vgashot daemon",
        "Restart=on-failure",
        "KillMode=process",
        "StateDirectory=vgashot",
    ] {
        assert!(
            unit_text.lines().any(|l| l == line),
            "no {line} in the unit"
        );
    }

    // 2. The unit, as systemd reads it: verified against this machine's units (the throwaway
    // root has none, not even sysinit.target), with its ExecStart pointing at the binary
    // installed in the throwaway root, since systemd-analyze checks that it exists.
    if support::on_path("systemd-analyze").is_some() {
        let units = tempfile::tempdir().unwrap();
        let copy = units.path().join("vgashot.service");
        let pointed = unit_text.replace(
            "ExecStart=/usr/bin/vgashot",
            &format!("ExecStart={}", installed.display()),
        );
        std::fs::write(&copy, pointed).unwrap();
        let verified = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&verified.stderr);
        assert!(
            verified.status.success() && !said.contains("vgashot.service"),
            "{said}"
        );
    } else {
        eprintln!("skipped the unit check: no systemd-analyze (Debian's systemd)");
    }

    // 4. The installed binary as the daemon, with a VM, and as the client.
    let Some(daemon) = Daemon::start_binary(&installed).await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    support::wait_for_picture(&daemon, "v1", fixture).await;
    let shot = out.path().join("v1.png");
    let screenshot = Command::new(&installed)
        .arg("--dir")
        .arg(daemon.dir.path())
        .args(["screenshot", "v1", "-o"])
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        screenshot.status.success(),
        "{}",
        String::from_utf8_lossy(&screenshot.stderr)
    );
    let (width, height, rgb) = support::decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((width, height), (640, 480));
    assert_eq!(rgb, fixture.expected_rgb().unwrap());
    drop(daemon);

    // 5. Purged: nothing of the package is left.
    dpkg(root.path(), &["--purge", "vgashot"]);
    for gone in [&installed, &unit] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    assert!(!root.path().join("usr/share/man/man1/vgashot.1.gz").exists());
}
