//! The API over TCP with TLS, as incusd serves it on `core.https_address`.
//!
//! How the listener is set up and a connection admitted:
//! 1. The server's key and self-signed certificate (ECDSA P-384, as Incus's own) are made once,
//!    into `$VGASHOT_DIR/server.key` (mode 0600) and `server.crt`, and reused at every start:
//!    the `incus` client pins the certificate it accepted, so a new one would lock it out.
//!    The key is written first, each file through a temporary name and a rename, so a crash
//!    leaves either nothing or a key whose certificate is simply made again.
//! 2. TLS 1.3 only, as incusd (which allows 1.2 only under `INCUS_INSECURE_TLS`).
//! 3. A client certificate is asked for but optional, since an untrusted client must still reach
//!    `GET /1.0`. The TLS layer accepts any well-formed one, still checking the handshake
//!    signature so that the client proves it holds the key; whether the certificate is trusted
//!    is decided after the handshake, by fingerprint ([`crate::auth::trust`]), at every request.
//! 4. What `GET /1.0` tells trusted clients about the listener (certificate, fingerprint,
//!    addresses) is gathered at bind time into a [`NetworkIdentity`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vgashot_stdext::write_atomically;

use crate::auth::trust::{self, CertificatePem, SharedTrust, TrustStore};
use crate::context::NetworkIdentity;

/// Incus's default HTTPS port, used when the listen address has none.
pub use vgashot_incus_wire::DEFAULT_PORT;

/// Errors of setting up the TLS listener.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key file could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key or certificate file does not hold what it should.
    #[error("{} is not a valid {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `PEM private key` or `PEM certificate`.
        what: &'static str,
    },
    /// Making the key or certificate failed.
    #[error("cannot generate the server certificate")]
    Generate(#[source] rcgen::Error),
    /// rustls refused the configuration (for one, a key that does not match the certificate).
    #[error("cannot configure TLS with {}", dir.display())]
    Config {
        /// Where the key and certificate are.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address as given.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The server's TLS identity: its certificate and key.
#[derive(Debug)]
pub struct ServerCertificate {
    /// The certificate, DER.
    pub certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ServerCertificate {
    /// The file names in `$VGASHOT_DIR`, as incusd's `server.crt` and `server.key`.
    pub const CERTIFICATE_FILE: &str = "server.crt";
    /// See [`Self::CERTIFICATE_FILE`].
    pub const KEY_FILE: &str = "server.key";

    /// Loads the certificate and key from `dir`, making what is missing: a new key and
    /// certificate when there is no key, a new certificate for the key when only the
    /// certificate is missing.
    pub fn load_or_generate(dir: &Path) -> Result<Self, TlsError> {
        let key_path = dir.join(Self::KEY_FILE);
        let certificate_path = dir.join(Self::CERTIFICATE_FILE);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Io { path, source }
        };
        let key_pem = match std::fs::read_to_string(&key_path) {
            Ok(pem) => pem,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
                    .map_err(TlsError::Generate)?;
                let pem = key.serialize_pem();
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                write_atomically(&key_path, pem.as_bytes(), 0o600).map_err(io(&key_path))?;
                // A certificate without its key is of no use: it is made again below.
                let _ = std::fs::remove_file(&certificate_path);
                pem
            }
            Err(source) => return Err(io(&key_path)(source)),
        };
        let invalid_key = || TlsError::Invalid {
            path: key_path.clone(),
            what: "PEM private key",
        };
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| invalid_key())?;
        let certificate = match std::fs::read(&certificate_path) {
            Ok(pem) => CertificateDer::from_pem_slice(&pem).map_err(|_| TlsError::Invalid {
                path: certificate_path.clone(),
                what: "PEM certificate",
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key_pair = rcgen::KeyPair::from_pem(&key_pem).map_err(|_| invalid_key())?;
                let certificate = self_signed(&key_pair)?;
                let pem = CertificatePem(certificate.as_ref()).to_string();
                write_atomically(&certificate_path, pem.as_bytes(), 0o644)
                    .map_err(io(&certificate_path))?;
                tracing::info!(
                    fingerprint = trust::fingerprint(&certificate),
                    path = %certificate_path.display(),
                    "made the server certificate"
                );
                certificate
            }
            Err(source) => return Err(io(&certificate_path)(source)),
        };
        Ok(Self { certificate, key })
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> String {
        trust::fingerprint(&self.certificate)
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        CertificatePem(&self.certificate).to_string()
    }
}

/// A self-signed server certificate for `key`, in the shape of Incus's: organisation
/// `Linux Containers`, `root@HOST`, server authentication. The `incus` client checks the
/// certificate against the first DNS name it carries, so it carries the host name first.
fn self_signed(key: &rcgen::KeyPair) -> Result<CertificateDer<'static>, TlsError> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "vgashot".to_owned());
    let mut names = vec![host.clone()];
    if host != "localhost" {
        names.push("localhost".into());
    }
    names.extend(["127.0.0.1".into(), "::1".into()]);
    let mut params = rcgen::CertificateParams::new(names).map_err(TlsError::Generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Linux Containers");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("root@{host}"));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = params.self_signed(key).map_err(TlsError::Generate)?;
    Ok(certificate.der().clone())
}

/// Accepts any well-formed client certificate whose key signed the handshake; trust is decided
/// later, by fingerprint.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // An untrusted client must still reach `GET /1.0`.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client then offers whatever certificate it has (Go's does).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        trust::check_certificate(end_entity)
            .map(|()| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls configuration: TLS 1.3, the server certificate, any client certificate.
fn server_config(
    certificate: &ServerCertificate,
    dir: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    };
    let config_error = |source| TlsError::Config {
        dir: dir.to_owned(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![certificate.certificate.clone()],
            certificate.key.clone_key(),
        )
        .map_err(config_error)?;
    // The API is HTTP/1.1 (websockets upgrade from it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A bound TCP listener with its TLS configuration and trust store, ready to serve.
pub struct HttpsListener {
    pub(crate) listener: TcpListener,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) trust: SharedTrust,
    pub(crate) identity: NetworkIdentity,
}

impl std::fmt::Debug for HttpsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The acceptor holds the private key: it stays out of debug output.
        f.debug_struct("HttpsListener")
            .field("listener", &self.listener)
            .field("trust", &self.trust)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl HttpsListener {
    /// Binds `address` (`HOST:PORT`, `HOST`, `[IPV6]:PORT` or `:PORT`, as Incus's
    /// `core.https_address`; port 0 picks a free one) with the certificate of `dir`, made there
    /// if missing, and the trust store `dir/trust`.
    pub async fn bind(address: &str, dir: &Path) -> Result<Self, TlsError> {
        let certificate = ServerCertificate::load_or_generate(dir)?;
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&certificate, dir)?));
        let bind_error = |source| TlsError::Bind {
            address: address.to_owned(),
            source,
        };
        let listener = TcpListener::bind(with_port(address))
            .await
            .map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            acceptor,
            // A first reading of the store, at start.
            trust: SharedTrust::new(TrustStore::new(dir.join("trust"))),
            identity: NetworkIdentity {
                addresses: listen_addresses(local),
                certificate: certificate.pem(),
                certificate_fingerprint: certificate.fingerprint(),
            },
        })
    }

    /// The address bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What `GET /1.0` reports about this listener.
    pub fn identity(&self) -> &NetworkIdentity {
        &self.identity
    }
}

/// Completes a listen address as Incus does: a bare host gets [`DEFAULT_PORT`], a bare `:PORT`
/// listens on every address.
fn with_port(address: &str) -> String {
    let unwrapped = address.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = unwrapped.parse::<IpAddr>() {
        SocketAddr::new(ip, DEFAULT_PORT).to_string()
    } else if let Some(port) = address.strip_prefix(':') {
        format!("[::]:{port}")
    } else if !address.contains(':') {
        format!("{address}:{DEFAULT_PORT}")
    } else {
        address.to_owned()
    }
}

/// The addresses clients can reach the listener at, for `environment.addresses`: the bound
/// address itself, or for a wildcard every global unicast address of the machine's interfaces
/// (only IPv4 ones for `0.0.0.0`), as Incus's `ListenAddresses`. Read once, at bind time.
fn listen_addresses(local: SocketAddr) -> Vec<String> {
    if !local.ip().is_unspecified() {
        return vec![local.to_string()];
    }
    let only_v4 = local.is_ipv4();
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut addresses: Vec<String> = Vec::new();
    for interface in interfaces {
        let Some(address) = interface.address else {
            continue;
        };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !global_unicast(ip) || (only_v4 && !ip.is_ipv4()) {
            continue;
        }
        let address = SocketAddr::new(ip, local.port()).to_string();
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    addresses
}

/// Go's `IP.IsGlobalUnicast`: not unspecified, loopback, link-local, multicast or broadcast
/// (private ranges count).
fn global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || link_local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_completed_as_incus_does() {
        assert_eq!(with_port("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(with_port("127.0.0.1"), "127.0.0.1:8443");
        assert_eq!(with_port("[::1]"), "[::1]:8443");
        assert_eq!(with_port("::1"), "[::1]:8443");
        assert_eq!(with_port("[::1]:9000"), "[::1]:9000");
        assert_eq!(with_port(":9000"), "[::]:9000");
        assert_eq!(with_port("localhost"), "localhost:8443");
        assert_eq!(
            listen_addresses("127.0.0.1:9000".parse().unwrap()),
            ["127.0.0.1:9000"]
        );
        assert!(
            listen_addresses("0.0.0.0:9000".parse().unwrap())
                .iter()
                .all(|address| !address.starts_with("127.") && !address.starts_with('['))
        );
    }

    #[test]
    fn the_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerCertificate::load_or_generate(dir.path()).unwrap();
        let key = dir.path().join(ServerCertificate::KEY_FILE);
        let mode = std::os::unix::fs::PermissionsExt::mode(&key.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let again = ServerCertificate::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        server_config(&again, dir.path()).unwrap();

        // Without its certificate, the key gets a new one (and keeps serving).
        std::fs::remove_file(dir.path().join(ServerCertificate::CERTIFICATE_FILE)).unwrap();
        let remade = ServerCertificate::load_or_generate(dir.path()).unwrap();
        server_config(&remade, dir.path()).unwrap();
    }
}
