//! What the browser tests share: Debian's headless Chromium driven by a `tests/ui/*.mjs` script
//! through `playwright-core`, presenting a client certificate made here and trusted with
//! `vgashot trust add` to the daemon's TLS listener; and the project's own TLS client with that
//! same certificate.
//!
//! Without Chromium, node or `tests/ui/node_modules` (`npm ci` in `tests/ui`) a browser test
//! skips with a note, except where `CI` or `VGASHOT_REQUIRE_UI` is set (`cargo xtask test` sets
//! it when it installed them): there it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vgashot_client::{Client, ClientIdentity, RemoteAddress, ServerPin};

use super::Daemon;

/// How long a browser script may take; the web page's needs about 10 s on a machine with KVM.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// What the browser tests need, found on this machine.
pub struct Browser {
    chromium: PathBuf,
    node: PathBuf,
    scripts: PathBuf,
}

/// The repository's root (the test crate is `crates/vgashot`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Browser {
    /// The browser, node and the npm packages, or `None` where the test may be skipped.
    pub fn find() -> Option<Self> {
        let chromium = std::env::var_os("VGASHOT_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let node = super::on_path("node");
        let scripts = workspace_root().join("tests/ui");
        let mut missing = Vec::new();
        if !chromium.is_file() {
            missing.push("Debian's chromium (/usr/bin/chromium)");
        }
        if node.is_none() {
            missing.push("node");
        }
        if !scripts
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            missing.push("playwright-core (`npm ci` in tests/ui)");
        }
        if missing.is_empty() {
            return Some(Self {
                chromium,
                node: node?,
                scripts,
            });
        }
        super::skip_unless_required(
            "VGASHOT_REQUIRE_UI",
            &format!(
                "{} (`cargo xtask test` installs them as root)",
                missing.join(", ")
            ),
        );
        None
    }

    /// Runs `tests/ui/SCRIPT` against the daemon's TLS listener as `identity`, with `env` besides
    /// `VGASHOT_UI_URL`, `VGASHOT_UI_CERT`, `VGASHOT_UI_KEY` and `VGASHOT_CHROMIUM`; fails the
    /// test when it fails or outlives [`SCRIPT_TIMEOUT`]. Returns its report (standard output)
    /// and how long it ran.
    pub async fn run(
        &self,
        script: &str,
        identity: &TrustedIdentity,
        env: &[(&str, String)],
    ) -> (String, Duration) {
        let base = format!("https://{}", identity.address);
        self.run_at(script, &base, Some(identity), env).await
    }

    /// Runs `tests/ui/SCRIPT` against `base` (`VGASHOT_UI_URL`), presenting `identity` when
    /// given (without one, a browser with no certificate, as through `vgashot ui`); otherwise
    /// as [`Self::run`].
    pub async fn run_at(
        &self,
        script: &str,
        base: &str,
        identity: Option<&TrustedIdentity>,
        env: &[(&str, String)],
    ) -> (String, Duration) {
        let mut command = Command::new(&self.node);
        command
            .arg(self.scripts.join(script))
            .current_dir(&self.scripts)
            .env("VGASHOT_UI_URL", base)
            .env_remove("VGASHOT_UI_CERT")
            .env_remove("VGASHOT_UI_KEY");
        if let Some(identity) = identity {
            command
                .env("VGASHOT_UI_CERT", &identity.certificate)
                .env("VGASHOT_UI_KEY", &identity.key);
        }
        command
            .env("VGASHOT_CHROMIUM", &self.chromium)
            .env_remove("VGASHOT_UI_SCREENSHOT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let started = Instant::now();
        let mut child = command.spawn().unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > SCRIPT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{script} took longer than {SCRIPT_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut report = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut report).unwrap();
        assert!(status.success(), "{script} failed ({status}): {report}");
        (report.trim().to_owned(), started.elapsed())
    }
}

/// A client certificate the daemon trusts, as a user would import into a browser, and where the
/// daemon's TLS listener is.
pub struct TrustedIdentity {
    /// The certificate, PEM, in the daemon's test directory.
    pub certificate: PathBuf,
    /// Its key, PEM.
    pub key: PathBuf,
    /// The TLS listener, `HOST:PORT`.
    pub address: String,
    /// The listener's certificate fingerprint, to pin.
    pub server_fingerprint: String,
}

impl TrustedIdentity {
    /// Makes a self-signed ECDSA P-384 client certificate named `name` and trusts it with
    /// `vgashot trust add`, as a user would; the daemon must listen with TLS.
    pub async fn make(daemon: &Daemon, name: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.self_signed(&key).unwrap();
        let cert_path = daemon.dir.path().join(format!("{name}.crt"));
        let key_path = daemon.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let trusted = Command::new(super::daemon_binary())
            .args(["trust", "add"])
            .arg(&cert_path)
            .env("VGASHOT_DIR", daemon.dir.path())
            .env("VGASHOT_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            trusted.status.success(),
            "{}",
            String::from_utf8_lossy(&trusted.stderr)
        );
        let reply = daemon.request("GET", "/1.0", None).await;
        let environment = super::json(&reply)["metadata"]["environment"].clone();
        Self {
            certificate: cert_path,
            key: key_path,
            address: environment["addresses"][0].as_str().unwrap().to_owned(),
            server_fingerprint: environment["certificate_fingerprint"]
                .as_str()
                .unwrap()
                .to_owned(),
        }
    }

    /// The project's own client over TLS, presenting this certificate.
    pub fn client(&self) -> Client {
        let remote = RemoteAddress::parse(&format!("https://{}", self.address)).unwrap();
        let identity = ClientIdentity::load(&self.certificate, &self.key).unwrap();
        let pin = ServerPin::Fingerprint(self.server_fingerprint.clone());
        Client::tls(remote, Some(identity), pin).unwrap()
    }
}
