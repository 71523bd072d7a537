//! The client side of the connection attacks: a TLS client of the daemon bound to any loopback
//! address, a certificate the daemon trusts, raw HTTP/1.1 exchanges and websockets, and the set-up
//! every connection attack starts from.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use vgashot_client::{Client, ClientIdentity, RemoteAddress, ServerPin};
use vgashot_fixtures::Fixture;

use crate::support::bystander;
use crate::support::{self, Daemon};

/// A loopback address other than 127.0.0.1: `127.0.0.N`.
pub(crate) fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// Accepts the daemon's self-signed certificate without looking (these tests attack the daemon;
/// `tests/tls.rs` checks pinning).
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client certificate the daemon trusts, made here and added with `vgashot trust add`.
pub(crate) struct Trusted {
    certificate_pem: String,
    key_pem: String,
    /// Its fingerprint, as `vgashot trust` prints it.
    pub(crate) fingerprint: String,
    dir: tempfile::TempDir,
}

impl Trusted {
    /// Makes a client certificate and trusts it with `vgashot trust add`.
    pub(crate) fn add(daemon: &Daemon) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.crt");
        std::fs::write(&path, certificate.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), key.serialize_pem()).unwrap();
        let fingerprint = vgashot_trust(daemon, &["add", path.to_str().unwrap()]);
        Self {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            fingerprint,
            dir,
        }
    }
}

/// Runs `vgashot trust ARGS` over the daemon's directory; its output, trimmed.
pub(crate) fn vgashot_trust(daemon: &Daemon, args: &[&str]) -> String {
    let output = std::process::Command::new(support::daemon_binary())
        .arg("trust")
        .args(args)
        .env("VGASHOT_DIR", daemon.dir.path())
        .env("VGASHOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "vgashot trust {args:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The daemon's TLS listener, and ways to reach it.
pub(crate) struct Tls {
    /// Where the listener is.
    pub(crate) address: SocketAddr,
    fingerprint: String,
    /// The trusted client certificate.
    pub(crate) trusted: Trusted,
}

impl Tls {
    pub(crate) async fn new(daemon: &Daemon) -> Self {
        let reply = daemon.request("GET", "/1.0", None).await;
        let environment = support::json(&reply)["metadata"]["environment"].clone();
        Self {
            address: environment["addresses"][0]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            fingerprint: environment["certificate_fingerprint"]
                .as_str()
                .unwrap()
                .to_owned(),
            trusted: Trusted::add(daemon),
        }
    }

    /// The project's client, presenting the trusted certificate (from 127.0.0.1).
    pub(crate) fn client(&self) -> Client {
        let remote = RemoteAddress::parse(&format!("https://{}", self.address)).unwrap();
        let dir = self.trusted.dir.path();
        let identity =
            ClientIdentity::load(&dir.join("client.crt"), &dir.join("client.key")).unwrap();
        let pin = ServerPin::Fingerprint(self.fingerprint.clone());
        Client::tls(remote, Some(identity), pin).unwrap()
    }

    /// A raw TLS connection from `from`, with the trusted certificate or none.
    pub(crate) async fn connect(&self, from: Ipv4Addr, trusted: bool) -> TlsStream<TcpStream> {
        self.try_connect(from, trusted)
            .await
            .unwrap_or_else(|error| panic!("TLS connection from {from}: {error}"))
    }

    pub(crate) async fn try_connect(
        &self,
        from: Ipv4Addr,
        trusted: bool,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
        let config = if trusted {
            let chain = vec![
                CertificateDer::from_pem_slice(self.trusted.certificate_pem.as_bytes()).unwrap(),
            ];
            let key = PrivateKeyDer::from_pem_slice(self.trusted.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from.into(), 0))?;
        let tcp = socket.connect(self.address).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }
}

/// Sends `GET path` on a kept-alive connection and reads the reply: status and JSON body.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> (u16, Value) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let read = stream.read(&mut byte).await.unwrap();
        assert_eq!(
            read, 1,
            "the connection closed inside a reply head: {head:?}"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Incus's error envelope.
pub(crate) fn envelope(code: u16, error: &str) -> Value {
    json!({"type": "error", "status": "", "status_code": 0, "operation": "",
        "error_code": code, "error": error, "metadata": null})
}

/// Waits until the peer closes `stream` (end of file or an error), at most `bound`; how long it
/// took.
pub(crate) async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = bound.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after {bound:?}"),
        }
    }
}

/// A daemon listening with TLS, a running VM for the bystanders (`bystander`, captured on every
/// request) and the TLS side; `None` when QEMU is missing.
pub(crate) async fn setup() -> Option<(Daemon, Tls)> {
    let daemon = Daemon::start_listening("127.0.0.1:0").await?;
    bystander::create_vm(&daemon, Fixture::bars(640, 480)).await;
    let tls = Tls::new(&daemon).await;
    Some((daemon, tls))
}

/// A websocket of `/1.0/events` on `stream`.
pub(crate) async fn events<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
) -> tokio_tungstenite::WebSocketStream<S> {
    let (socket, response) = tokio_tungstenite::client_async("ws://127.0.0.1/1.0/events", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// Pings a websocket and waits for its pong: the listener is alive.
pub(crate) async fn pong<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
) {
    socket
        .send(Message::Ping(b"alive".to_vec().into()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Pong(payload))) if payload.as_ref() == b"alive" => return,
                Some(Ok(_)) => {}
                other => panic!("the listener ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a pong in time");
}
