//! A small client of the API, for tools and tests that talk to a daemon: over its Unix socket
//! (trusted, as incusd's), or over TLS to a remote daemon with a client certificate and a pinned
//! server certificate, as the `incus` client talks to a remote.
//!
//! How a request travels:
//! 1. [`Client`] holds a transport, the only thing that differs between the two: it opens a
//!    fresh stream per request (a `UnixStream`, or a `TcpStream` wrapped in TLS 1.3), as the
//!    `incus` client does for its one-shot commands.
//! 2. Everything above the stream is shared: hyper's HTTP/1 handshake, the request, and either
//!    the whole reply ([`Client::request`], [`Client::call`]) or the streaming response
//!    ([`Client::send`]) for callers that read a body piecemeal or drop it early.
//! 3. Over TLS the server is trusted by pinning, never by a certificate authority: Incus servers
//!    present self-signed certificates, so the client compares the presented certificate's
//!    SHA-256 fingerprint with the one it recorded when the user first accepted it
//!    ([`ServerPin`]). The handshake signature is still verified, so a server must hold the
//!    pinned certificate's key.

mod calls;
mod envelope;

pub use calls::{HistoryFilter, instance_path};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use vgashot_stdext::MutexExt;

use vgashot_incus_wire::DEFAULT_PORT;
use vgashot_incus_wire::certificates::{CertificatePem, fingerprint};

/// Errors of talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket or address does not accept connections: no daemon runs there.
    #[error("no daemon answers on {address}")]
    Connect {
        /// The socket's path, or `HOST:PORT`.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed for a reason other than the server's certificate.
    #[error("the TLS handshake with {address} failed")]
    Handshake {
        /// `HOST:PORT`.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server presented a certificate nobody accepted yet: the user must compare its
    /// fingerprint and accept it once, as with `incus remote add`.
    #[error(
        "the certificate of {address} is not known yet; its fingerprint is {fingerprint}: \
         if that is the server's, accept it with --accept-certificate"
    )]
    UnknownServer {
        /// `HOST:PORT`.
        address: String,
        /// The fingerprint of the certificate presented.
        fingerprint: String,
    },
    /// The server presented another certificate than the one pinned: either the server was
    /// reinstalled or someone is in the middle, and only the user can tell which.
    #[error(
        "the certificate of {address} changed: its fingerprint is {found}, but {expected} was \
         accepted before; if the server really got a new certificate, remove the old one and \
         accept the new"
    )]
    ChangedServer {
        /// `HOST:PORT`.
        address: String,
        /// The pinned fingerprint.
        expected: String,
        /// The fingerprint of the certificate presented.
        found: String,
    },
    /// A remote address that is not `https://HOST[:PORT]`.
    #[error("invalid remote address {0:?}: expected https://HOST[:PORT]")]
    InvalidRemote(String),
    /// A client certificate or key file could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold the PEM certificate or key it should.
    #[error("{} is not a valid {what}", path.display())]
    InvalidPem {
        /// The file.
        path: PathBuf,
        /// `PEM certificate` or `PEM private key`.
        what: &'static str,
    },
    /// Making a client certificate failed.
    #[error("cannot generate a client certificate")]
    Generate(#[source] rcgen::Error),
    /// rustls refused the client configuration (for one, a key that does not match the
    /// certificate).
    #[error("cannot configure TLS with the client certificate")]
    Tls(#[source] rustls::Error),
    /// The HTTP exchange failed.
    #[error("the request failed")]
    Http(#[source] hyper::Error),
    /// The reply is not the JSON expected.
    #[error("the daemon's reply is not JSON")]
    Json(#[source] serde_json::Error),
    /// The daemon answered with an error envelope (or an operation that failed).
    #[error("{message}")]
    Api {
        /// The HTTP status (or the envelope's `error_code`).
        status: u16,
        /// The envelope's `error`.
        message: String,
    },
}

/// A reply, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(ClientError::Json)
    }

    /// The error this reply reports: the envelope's message, or the HTTP status's reason when
    /// the body is no envelope. Meant for replies that are not 2xx, of endpoints whose success
    /// is not an envelope (screenshots).
    pub fn error(&self) -> ClientError {
        match envelope::error_of(self) {
            Some(error) => error,
            None => ClientError::Api {
                status: self.status,
                message: http::StatusCode::from_u16(self.status)
                    .ok()
                    .and_then(|status| status.canonical_reason())
                    .unwrap_or("unexpected reply")
                    .to_owned(),
            },
        }
    }

    /// A header's value, when present and text.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// How the client decides whether to trust a remote server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPin {
    /// Only the certificate with this SHA-256 fingerprint (lowercase hex, as Incus writes it).
    Fingerprint(String),
    /// Whatever certificate the server presents, recorded for the caller to pin
    /// ([`Client::server_certificate`]): the user said `--accept-certificate`.
    AcceptAny,
    /// None: the handshake fails with [`ClientError::UnknownServer`], which carries the
    /// fingerprint for the user to compare.
    Unknown,
}

/// A client certificate with its key, presented to remote servers.
pub struct ClientIdentity {
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            certificate: self.certificate.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("ClientIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Reads a PEM certificate and its PEM private key (PKCS#8, SEC1 or PKCS#1, as `incus`
    /// and openssl write them).
    pub fn load(certificate: &Path, key: &Path) -> Result<Self, ClientError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ClientError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let certificate_pem = read(certificate)?;
        let key_pem = read(key)?;
        Ok(Self {
            certificate: CertificateDer::from_pem_slice(&certificate_pem).map_err(|_| {
                ClientError::InvalidPem {
                    path: certificate.to_owned(),
                    what: "PEM certificate",
                }
            })?,
            key: PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| ClientError::InvalidPem {
                path: key.to_owned(),
                what: "PEM private key",
            })?,
        })
    }

    /// Makes a self-signed client certificate as the `incus` client does (ECDSA P-384, client
    /// authentication, named `user@host`) and writes it to `certificate` and its key to `key`
    /// (mode 0600), creating their directories. Existing files are replaced.
    pub fn generate(certificate: &Path, key: &Path, name: &str) -> Result<Self, ClientError> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .map_err(ClientError::Generate)?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(ClientError::Generate)?;
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Linux Containers");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let signed = params
            .self_signed(&key_pair)
            .map_err(ClientError::Generate)?;
        write_private(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_private(certificate, signed.pem().as_bytes(), 0o644)?;
        Ok(Self {
            certificate: signed.der().clone(),
            key: PrivateKeyDer::Pkcs8(key_pair.serialize_der().into()),
        })
    }

    /// The certificate's SHA-256 fingerprint, as `vgashot trust list` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }
}

/// The SHA-256 fingerprint of the first certificate of a PEM file's contents, as
/// [`fingerprint`] computes it; `None` when there is no certificate.
pub fn pem_fingerprint(pem: &[u8]) -> Option<String> {
    CertificateDer::from_pem_slice(pem)
        .ok()
        .map(|der| fingerprint(&der))
}

/// Writes `bytes` to `path` with `mode`, creating the parent directory; the file is created
/// with its final mode, so a key is never readable by others, not even for a moment.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ClientError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)
}

/// A remote daemon's address: `https://HOST[:PORT]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAddress {
    /// The host name or IP address, without brackets.
    pub host: String,
    /// The port (8443, Incus's, when the URL has none).
    pub port: u16,
}

impl RemoteAddress {
    /// Parses `https://HOST[:PORT]` (a trailing `/` allowed; IPv6 hosts in brackets). A bare
    /// `HOST[:PORT]` is taken as `https://`, since nothing else is spoken.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = || ClientError::InvalidRemote(url.to_owned());
        let rest = match url.split_once("://") {
            Some(("https", rest)) => rest,
            Some(_) => return Err(invalid()),
            None => url,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            return Err(invalid());
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                Some(_) => (authority, None), // A bare IPv6 address.
                None => (authority, None),
            }
        };
        let port = match port {
            Some(port) => port
                .parse()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(invalid)?,
            None => DEFAULT_PORT,
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// `HOST:PORT`, with an IPv6 host in brackets: what to connect to and send as `Host`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `https://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.authority())
    }
}

/// A client of the daemon, over its Unix socket or over TLS; one connection per request, as the
/// `incus` client does.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<Transport>,
}

/// Where requests go: the only thing that differs between a local and a remote daemon.
#[derive(Debug)]
enum Transport {
    Unix(PathBuf),
    Tls {
        remote: RemoteAddress,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
        verifier: Arc<PinnedServer>,
    },
}

/// A byte stream to the daemon, whichever the transport.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            transport: Arc::new(Transport::Unix(socket.into())),
        }
    }

    /// A client of the remote daemon at `remote`, presenting `identity` (if any: without one,
    /// a daemon answers only `GET /` and `GET /1.0`) and trusting the server as `pin` says.
    pub fn tls(
        remote: RemoteAddress,
        identity: Option<ClientIdentity>,
        pin: ServerPin,
    ) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedServer {
            pin,
            algorithms: provider.signature_verification_algorithms,
            presented: Mutex::default(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ClientError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(vec![identity.certificate], identity.key)
                .map_err(ClientError::Tls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(remote.host.clone())
            .map_err(|_| ClientError::InvalidRemote(remote.url()))?;
        Ok(Self {
            transport: Arc::new(Transport::Tls {
                remote,
                server_name,
                config: Arc::new(config),
                verifier,
            }),
        })
    }

    /// The Unix socket; empty for a client of a remote daemon (see [`Client::remote`]).
    pub fn socket(&self) -> &Path {
        match &*self.transport {
            Transport::Unix(path) => path,
            Transport::Tls { .. } => Path::new(""),
        }
    }

    /// The remote daemon's address, for a client over TLS.
    pub fn remote(&self) -> Option<&RemoteAddress> {
        match &*self.transport {
            Transport::Unix(_) => None,
            Transport::Tls { remote, .. } => Some(remote),
        }
    }

    /// The certificate the remote server presented at the last handshake, PEM: what to pin
    /// after connecting with [`ServerPin::AcceptAny`].
    pub fn server_certificate(&self) -> Option<String> {
        match &*self.transport {
            Transport::Unix(_) => None,
            Transport::Tls { verifier, .. } => verifier
                .last_presented()
                .map(|der| CertificatePem(&der).to_string()),
        }
    }

    /// Opens a stream to the daemon.
    async fn connect(&self) -> Result<Box<dyn Stream>, ClientError> {
        match &*self.transport {
            Transport::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|source| ClientError::Connect {
                        address: path.display().to_string(),
                        source,
                    })?;
                Ok(Box::new(stream))
            }
            Transport::Tls {
                remote,
                server_name,
                config,
                verifier,
            } => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let address = remote.authority();
                let tcp = tokio::net::TcpStream::connect((remote.host.as_str(), remote.port))
                    .await
                    .map_err(|source| ClientError::Connect {
                        address: address.clone(),
                        source,
                    })?;
                let _ = tcp.set_nodelay(true);
                match connector.connect(server_name.clone(), tcp).await {
                    Ok(tls) => Ok(Box::new(tls)),
                    // The verifier knows why it refused the certificate; say that rather than
                    // rustls's generic words.
                    Err(source) => {
                        Err(verifier
                            .refusal(&address)
                            .unwrap_or(ClientError::Handshake {
                                address: address.clone(),
                                source,
                            }))
                    }
                }
            }
        }
    }

    /// The `Host` header: what incusd expects over the socket, the authority over TLS.
    fn host(&self) -> String {
        match &*self.transport {
            Transport::Unix(_) => "unix.socket".to_owned(),
            Transport::Tls { remote, .. } => remote.authority(),
        }
    }

    /// Sends one request with extra headers and returns the response as soon as its head
    /// arrives, whatever its status; the body streams, and dropping it closes the connection.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(http::HeaderName, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.host());
        // Bodies are JSON, unless the caller names another type (tests of the refusal do).
        let typed = headers
            .iter()
            .any(|(name, _)| name == http::header::CONTENT_TYPE);
        if body.is_some() && !typed {
            request = request.header(http::header::CONTENT_TYPE, vgashot_incus_wire::JSON);
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| ClientError::Api {
                status: 400,
                message: format!("invalid request {method} {path}: {error}"),
            })?;
        sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)
    }

    /// Sends one request with extra headers and an optional raw body and reads the whole reply.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(http::HeaderName, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let response = self.send(method, path, headers, body).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends one request with an optional JSON body and reads the whole reply, whatever its
    /// status.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let body = body.map(|body| body.to_string().into_bytes());
        self.request_bytes(method, path, body).await
    }

    /// Sends one request with an optional raw body and reads the whole reply.
    pub async fn request_bytes(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        self.request_with(method, path, &[], body).await
    }
}

/// Trusts the server's certificate by fingerprint ([`ServerPin`]), remembering what the server
/// presented so that a refusal can say which fingerprint it saw.
#[derive(Debug)]
struct PinnedServer {
    pin: ServerPin,
    algorithms: WebPkiSupportedAlgorithms,
    /// The certificate of the last handshake.
    presented: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedServer {
    fn last_presented(&self) -> Option<CertificateDer<'static>> {
        self.presented.lock_unpoisoned().clone()
    }

    /// Why the last handshake's certificate was refused, if it was.
    fn refusal(&self, address: &str) -> Option<ClientError> {
        let found = fingerprint(&self.last_presented()?);
        match &self.pin {
            ServerPin::AcceptAny => None,
            ServerPin::Unknown => Some(ClientError::UnknownServer {
                address: address.to_owned(),
                fingerprint: found,
            }),
            ServerPin::Fingerprint(expected) if *expected != found => {
                Some(ClientError::ChangedServer {
                    address: address.to_owned(),
                    expected: expected.clone(),
                    found,
                })
            }
            ServerPin::Fingerprint(_) => None,
        }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock_unpoisoned() = Some(end_entity.clone().into_owned());
        let accepted = match &self.pin {
            ServerPin::AcceptAny => true,
            ServerPin::Unknown => false,
            ServerPin::Fingerprint(expected) => fingerprint(end_entity) == *expected,
        };
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses() {
        let parse = |url| RemoteAddress::parse(url).map(|remote| remote.authority());
        assert_eq!(parse("https://host:9000").unwrap(), "host:9000");
        assert_eq!(parse("https://host/").unwrap(), "host:8443");
        assert_eq!(parse("host").unwrap(), "host:8443");
        assert_eq!(parse("https://127.0.0.1:1").unwrap(), "127.0.0.1:1");
        assert_eq!(parse("https://[::1]:9000").unwrap(), "[::1]:9000");
        assert_eq!(parse("https://[::1]").unwrap(), "[::1]:8443");
        assert_eq!(RemoteAddress::parse("[::1]").unwrap().host, "::1");
        for bad in [
            "http://host",
            "https://",
            "https://host:0",
            "https://host:x",
            "https://host/1.0",
            "https://[::1",
            "https://u@host",
        ] {
            assert!(RemoteAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_identities_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = (dir.path().join("a/client.crt"), dir.path().join("a/key"));
        let made = ClientIdentity::generate(&certificate, &key, "me@here").unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&key.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let loaded = ClientIdentity::load(&certificate, &key).unwrap();
        assert_eq!(loaded.fingerprint(), made.fingerprint());
        assert!(x509_parser::parse_x509_certificate(&loaded.certificate).is_ok());
        Client::tls(
            RemoteAddress::parse("https://localhost").unwrap(),
            Some(loaded),
            ServerPin::Unknown,
        )
        .unwrap();
        assert!(matches!(
            ClientIdentity::load(&key, &key),
            Err(ClientError::InvalidPem { .. })
        ));
    }

    #[test]
    fn error_replies_read_as_incus_errors() {
        let reply = |status, body: &str| Reply {
            status,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        };
        let envelope = r#"{"type":"error","error":"Instance is not running","error_code":400}"#;
        let error = reply(400, envelope).error();
        assert!(matches!(&error, ClientError::Api { status: 400, .. }));
        assert_eq!(error.to_string(), "Instance is not running");
        assert_eq!(reply(502, "").error().to_string(), "Bad Gateway");
    }
}
