//! The API over TCP with TLS, end to end: the real `vgashot daemon --listen 127.0.0.1:0` (a free
//! port, read back from `GET /1.0` on the Unix socket), clients with certificates made here, and
//! `vgashot trust` changing who is trusted while the daemon runs.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::Daemon;
use vgashot_client::{Client, ClientIdentity, RemoteAddress, ServerPin};
use vgashot_rest::auth::trust::fingerprint;

/// A client certificate and its key, made here.
struct Identity {
    certificate: CertificateDer<'static>,
    pem: String,
    key_pem: String,
}

impl Identity {
    /// A self-signed ECDSA P-384 client certificate, as the `incus` client makes.
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.self_signed(&key).unwrap();
        Self {
            certificate: certificate.der().clone(),
            pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }

    /// The identity as the project's client presents it (read from PEM files, as `--cert` and
    /// `--key` are).
    fn client_identity(&self) -> ClientIdentity {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
        std::fs::write(&certificate, &self.pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        ClientIdentity::load(&certificate, &key).unwrap()
    }

    /// Writes the certificate to `dir/NAME.crt` and returns the path.
    fn write(&self, dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// The TLS side of the daemon as `GET /1.0` on the (trusted) Unix socket reports it.
struct Server {
    address: SocketAddr,
    certificate_pem: String,
    fingerprint: String,
}

async fn server(daemon: &Daemon) -> Server {
    let reply = daemon.request("GET", "/1.0", None).await;
    let environment = support::json(&reply)["metadata"]["environment"].clone();
    let addresses = environment["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 1, "{environment}");
    Server {
        address: addresses[0].as_str().unwrap().parse().unwrap(),
        certificate_pem: environment["certificate"].as_str().unwrap().to_owned(),
        fingerprint: environment["certificate_fingerprint"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

/// One request over a new TLS connection with the project's own client, trusting exactly the
/// server certificate `GET /1.0` reported (as the `incus` client does with the one it accepted)
/// and presenting `identity` if given; the status and JSON.
async fn get(server: &Server, identity: Option<&Identity>, path: &str) -> (u16, Value) {
    let remote = RemoteAddress::parse(&format!("https://{}", server.address)).unwrap();
    let pin = ServerPin::Fingerprint(server.fingerprint.clone());
    let client = Client::tls(remote, identity.map(Identity::client_identity), pin).unwrap();
    let reply = client.request("GET", path, None).await.unwrap();
    let json = reply
        .json()
        .unwrap_or_else(|error| panic!("GET {path}: not JSON ({error}): {:?}", reply.body));
    (reply.status, json)
}

/// Runs `vgashot trust ARGS` over the daemon's directory; its standard output, trimmed.
fn vgashot_trust(daemon: &Daemon, args: &[&str]) -> String {
    let output = Command::new(support::daemon_binary())
        .arg("trust")
        .args(args)
        .env("VGASHOT_DIR", daemon.dir.path())
        .env("VGASHOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "vgashot trust {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// What an untrusted client must see: only `GET /` and the untrusted `GET /1.0`, and Incus's
/// 403 everywhere else (an unknown path stays a 404, as incusd's).
async fn assert_untrusted(server: &Server, identity: Option<&Identity>) {
    let (status, root) = get(server, identity, "/").await;
    assert_eq!((status, &root["metadata"]), (200, &json!(["/1.0"])));
    let (status, body) = get(server, identity, "/1.0").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["metadata"],
        json!({
            "config": {},
            "api_extensions": vgashot_rest::extensions::API_EXTENSIONS,
            "api_status": "stable",
            "api_version": "1.0",
            "auth": "untrusted",
            "public": false,
            "auth_methods": ["tls"],
        })
    );
    let forbidden = json!({"type": "error", "status": "", "status_code": 0, "operation": "",
        "error_code": 403, "error": "not authorized", "metadata": null});
    for path in [
        "/1.0/instances",
        "/1.0/instances/v1/console?type=vga",
        "/1.0/operations",
        "/1.0/events",
        "/1.0/profiles",
    ] {
        assert_eq!(
            get(server, identity, path).await,
            (403, forbidden.clone()),
            "{path}"
        );
    }
    assert_eq!(get(server, identity, "/1.0/nope").await.0, 404);
}

#[tokio::test]
async fn clients_are_trusted_by_certificate() {
    let Some(mut daemon) = Daemon::start_listening("127.0.0.1:0").await else {
        return;
    };
    let tls = server(&daemon).await;
    assert_eq!(tls.address.ip().to_string(), "127.0.0.1");
    assert_ne!(tls.address.port(), 0);
    let server_certificate =
        CertificateDer::from_pem_slice(tls.certificate_pem.as_bytes()).unwrap();
    assert_eq!(fingerprint(&server_certificate), tls.fingerprint);
    let key = daemon.dir.path().join("server.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&key.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Without a certificate, and with one the store does not hold: untrusted.
    let alice = Identity::new("alice");
    let mallory = Identity::new("mallory");
    assert_untrusted(&tls, None).await;
    assert_untrusted(&tls, Some(&alice)).await;

    // Trusted while the daemon runs: the next connection is.
    let file = alice.write(daemon.dir.path(), "alice");
    assert_eq!(
        vgashot_trust(&daemon, &["add", file.to_str().unwrap()]),
        alice.fingerprint()
    );
    assert_eq!(vgashot_trust(&daemon, &["list"]), alice.fingerprint());
    let (status, body) = get(&tls, Some(&alice), "/1.0").await;
    assert_eq!(status, 200);
    let metadata = &body["metadata"];
    assert_eq!(metadata["auth"], "trusted");
    assert_eq!(metadata["auth_user_name"], alice.fingerprint());
    assert_eq!(metadata["auth_user_method"], "tls");
    assert_eq!(metadata["environment"]["driver"], "qemu");
    assert_eq!(metadata["environment"]["certificate"], tls.certificate_pem);
    assert_eq!(
        metadata["environment"]["certificate_fingerprint"],
        tls.fingerprint
    );
    assert_eq!(
        metadata["environment"]["addresses"],
        json!([tls.address.to_string()])
    );
    let (status, instances) = get(&tls, Some(&alice), "/1.0/instances").await;
    assert_eq!((status, &instances["type"]), (200, &json!("sync")));
    assert_untrusted(&tls, Some(&mallory)).await;

    // Removed by a prefix of its fingerprint: the next connection is untrusted again.
    assert_eq!(
        vgashot_trust(&daemon, &["remove", &alice.fingerprint()[..16]]),
        alice.fingerprint()
    );
    assert_eq!(vgashot_trust(&daemon, &["list"]), "");
    assert_untrusted(&tls, Some(&alice)).await;

    // The certificate outlives the daemon: the same one after a restart (SIGTERM stops the TLS
    // listener too, and the daemon exits cleanly).
    vgashot_trust(&daemon, &["add", file.to_str().unwrap()]);
    daemon.terminate();
    daemon.spawn().await;
    let again = server(&daemon).await;
    assert_eq!(again.fingerprint, tls.fingerprint);
    assert_eq!(again.certificate_pem, tls.certificate_pem);
    let (status, body) = get(&again, Some(&alice), "/1.0").await;
    assert_eq!(
        (status, &body["metadata"]["auth"]),
        (200, &json!("trusted"))
    );
}

/// The Unix socket stays trusted, and reports the TLS listener's certificate.
#[tokio::test]
async fn the_unix_socket_sees_the_listener() {
    let Some(daemon) = Daemon::start_listening("127.0.0.1:0").await else {
        return;
    };
    let reply = daemon.request("GET", "/1.0", None).await;
    let metadata = &support::json(&reply)["metadata"];
    assert_eq!(metadata["auth"], "trusted");
    assert_eq!(metadata["auth_user_method"], "unix");
    assert!(
        metadata["environment"]["certificate"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert_eq!(
        metadata["environment"]["certificate_fingerprint"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
}

/// The `incus` client (Go's TLS stack) over the TLS listener: `remote add` with a certificate
/// the daemon already trusts, then `list` and `info` through the remote.
#[tokio::test]
async fn the_incus_client_connects_over_tls() {
    let Some(incus) = support::incus() else {
        return;
    };
    let Some(daemon) = Daemon::start_listening("127.0.0.1:0").await else {
        return;
    };
    let tls = server(&daemon).await;
    let home = daemon.dir.path().join("incus-home");
    let config = home.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let client = Identity::new("incus-client");
    std::fs::write(config.join("client.crt"), &client.pem).unwrap();
    std::fs::write(config.join("client.key"), &client.key_pem).unwrap();
    vgashot_trust(
        &daemon,
        &["add", config.join("client.crt").to_str().unwrap()],
    );
    let run = |args: &[&str]| {
        let output = Command::new(&incus)
            .args(args)
            .env("INCUS_CONF", &config)
            .env("HOME", &home)
            .env_remove("INCUS_DIR")
            .env_remove("INCUS_SOCKET")
            .env_remove("INCUS_PROJECT")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "incus {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let url = format!("https://{}", tls.address);
    run(&["remote", "add", "vg", &url, "--accept-certificate"]);
    let pinned = std::fs::read_to_string(config.join("servercerts/vg.crt")).unwrap();
    assert_eq!(pinned.trim(), tls.certificate_pem.trim());
    let list = run(&["list", "vg:", "--format", "csv"]);
    assert_eq!(list, "");
    let info = run(&["info", "vg:"]);
    assert!(info.contains("auth: trusted"), "{info}");
    assert!(info.contains(&tls.fingerprint), "{info}");
}
