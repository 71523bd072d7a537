//! Who may use the API: the Unix socket is trusted, and over TLS a client is trusted when its
//! certificate is in the trust store, as with incusd's `incus config trust`.
//!
//! How a connection's caller is decided:
//! 1. A certificate is known by its fingerprint: the SHA-256 of its DER bytes in lowercase hex,
//!    as Incus writes it ([`fingerprint`]), so `incus config trust list` and `vgashot trust list`
//!    name a certificate alike.
//! 2. The trust store is a directory (`$VGASHOT_DIR/trust/`) of PEM files, one certificate each.
//!    `vgashot trust add` writes `FINGERPRINT.crt` through a temporary file and a rename, so a
//!    reader never sees half a certificate; a file put there by hand counts as well.
//! 3. The store's latest reading ([`TrustSnapshot`]) is shared by every open TLS connection
//!    ([`SharedTrust`]). It is read again when a TLS connection opens, so a certificate added or
//!    removed counts for the next connection at once, and every [`TRUST_REFRESH_INTERVAL`]
//!    besides, so it counts for connections already open too: a handful of small files, well
//!    under a millisecond, with no watcher and no stale cache (a directory's mtime ticks too
//!    coarsely to notice two changes in a row). A reading replaces the shared one only if it
//!    began later, so concurrent readings never go back in time, and a reading that fails
//!    keeps the last one (a store unreadable at start trusts nobody).
//! 4. Each request of a TLS connection is decided afresh from the latest reading and the
//!    presented certificate's validity period ([`ConnectionTrust::caller`]): a certificate
//!    outside it is not trusted, as upstream's `CheckTrustState`.
//! 5. [`ConnectionTrust::lost`] resolves when a connection that was trusted is trusted no
//!    longer (removed from the store, or expired), so the server can cut what runs on it: an
//!    events websocket, an MJPEG stream or an operation wait would otherwise outlive the trust.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;
use vgashot_stdext::write_atomically;

pub use vgashot_incus_wire::certificates::{CertificatePem, fingerprint};

/// How often the store is read again for the connections already open: a certificate removed,
/// or one that expired, stops counting on them within this time (plus a reading's time), which
/// is short next to a person running `vgashot trust remove`, and a reading a second costs
/// nothing.
pub const TRUST_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A client of the Unix socket: trusted, as incusd trusts its socket (file permissions
    /// decide who may connect).
    Unix,
    /// A TLS client whose certificate is in the trust store; the fingerprint names it.
    TrustedCertificate(String),
    /// A TLS client without a certificate, or with one the store does not hold.
    Untrusted,
}

impl Caller {
    /// Whether the caller may use the whole API.
    pub fn is_trusted(&self) -> bool {
        !matches!(self, Self::Untrusted)
    }
}

/// Errors of reading and changing the trust store.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file or the store's directory could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM `CERTIFICATE` block.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds more than one certificate: the store keeps one per file, so that removing
    /// one never removes another.
    #[error("{} holds {count} certificates; add them one file each", path.display())]
    SeveralCertificates {
        /// The file.
        path: PathBuf,
        /// How many it holds.
        count: usize,
    },
    /// The PEM block is not a well-formed X.509 certificate.
    #[error("{} is not a valid X.509 certificate: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        reason: String,
    },
    /// No trusted certificate has this fingerprint (or prefix).
    #[error("no trusted certificate has the fingerprint {0}")]
    UnknownFingerprint(String),
    /// More than one trusted certificate starts with this prefix.
    #[error("the fingerprint prefix {0} matches several certificates; give more of it")]
    AmbiguousFingerprint(String),
}

/// Checks that `der` is a well-formed X.509 certificate; the parser's words otherwise.
pub fn check_certificate(der: &[u8]) -> Result<(), String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(error) => Err(error.to_string()),
    }
}

/// A certificate of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCertificate {
    /// Its fingerprint.
    pub fingerprint: String,
    /// The file that holds it.
    pub path: PathBuf,
}

/// What [`TrustStore::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The certificate is now trusted.
    New(TrustedCertificate),
    /// The store held it already; nothing changed.
    AlreadyTrusted(TrustedCertificate),
}

/// The directory of trusted client certificates.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

/// The largest file the store reads: a PEM certificate is a few KiB, so anything much larger is
/// not one, and is not read at every connection.
const MAX_FILE: u64 = 64 * 1024;

/// The mode of a trusted certificate's file: a certificate is public, its key never stored.
const CERTIFICATE_MODE: u32 = 0o644;

impl TrustStore {
    /// The store in `dir` (`$VGASHOT_DIR/trust`); the directory need not exist yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trusted certificates, sorted by fingerprint. A missing directory is an empty store;
    /// files that are not one certificate are skipped with a warning, so one bad file does not
    /// lock every client out.
    pub fn list(&self) -> Result<Vec<TrustedCertificate>, TrustError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(TrustError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut certificates = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            // Temporary files of `add` start with a dot; directories are not certificates.
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
                continue;
            }
            match read_certificate(&path) {
                Ok(der) => certificates.push(TrustedCertificate {
                    fingerprint: fingerprint(&der),
                    path,
                }),
                Err(error) => {
                    tracing::warn!(error = %crate::describe(&error), "trust store: skipped")
                }
            }
        }
        certificates.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        Ok(certificates)
    }

    /// Trusts the certificate in the PEM file `source`: it is checked, then copied to
    /// `FINGERPRINT.crt` in the store through a temporary file and a rename.
    pub fn add(&self, source: &Path) -> Result<Added, TrustError> {
        let der = read_certificate(source)?;
        let fingerprint = fingerprint(&der);
        if let Some(known) = self
            .list()?
            .into_iter()
            .find(|known| known.fingerprint == fingerprint)
        {
            return Ok(Added::AlreadyTrusted(known));
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TrustError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(format!("{fingerprint}.crt"));
        let pem = CertificatePem(&der).to_string();
        write_atomically(&path, pem.as_bytes(), CERTIFICATE_MODE).map_err(io(&path))?;
        Ok(Added::New(TrustedCertificate { fingerprint, path }))
    }

    /// Stops trusting the certificate whose fingerprint is `fingerprint`, or starts with it (as
    /// `incus config trust remove` takes a prefix); returns the certificate removed.
    pub fn remove(&self, fingerprint: &str) -> Result<TrustedCertificate, TrustError> {
        let wanted = fingerprint.to_ascii_lowercase();
        if wanted.is_empty() {
            return Err(TrustError::UnknownFingerprint(String::new()));
        }
        let mut matching: Vec<_> = self
            .list()?
            .into_iter()
            .filter(|known| known.fingerprint.starts_with(&wanted))
            .collect();
        let certificate = match matching.len() {
            0 => return Err(TrustError::UnknownFingerprint(wanted)),
            1 => matching.remove(0),
            _ => return Err(TrustError::AmbiguousFingerprint(wanted)),
        };
        std::fs::remove_file(&certificate.path).map_err(|source| TrustError::Io {
            path: certificate.path.clone(),
            source,
        })?;
        Ok(certificate)
    }

    /// The fingerprints of the trusted certificates.
    pub fn fingerprints(&self) -> Result<BTreeSet<String>, TrustError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|known| known.fingerprint)
            .collect())
    }
}

/// One reading of the store.
#[derive(Debug, Clone)]
pub struct TrustSnapshot {
    fingerprints: BTreeSet<String>,
    /// When the reading began.
    read_at: Instant,
}

/// The store and its latest reading, shared by every TLS connection (steps 3 to 5).
#[derive(Debug, Clone)]
pub struct SharedTrust {
    store: TrustStore,
    latest: Arc<watch::Sender<Arc<TrustSnapshot>>>,
}

impl SharedTrust {
    /// The store with a first reading of it (this reads the directory: call it off the async
    /// threads, or at start). A store that cannot be read trusts nobody.
    pub fn new(store: TrustStore) -> Self {
        let first = TrustSnapshot {
            read_at: Instant::now(),
            fingerprints: store.fingerprints().unwrap_or_else(|error| {
                tracing::error!(error = %crate::describe(&error), "trust store unreadable");
                BTreeSet::new()
            }),
        };
        Self {
            store,
            latest: Arc::new(watch::Sender::new(Arc::new(first))),
        }
    }

    /// Reads the store again and shares the reading, unless a later one is shared already.
    /// A reading that fails (the daemon out of descriptors, say) changes nothing: were it taken
    /// for an empty store, exhausting descriptors would cut every trusted connection.
    /// Blocking: it reads the directory.
    pub fn refresh(&self) {
        let read_at = Instant::now();
        let fingerprints = match self.store.fingerprints() {
            Ok(fingerprints) => fingerprints,
            Err(error) => {
                tracing::warn!(
                    error = %crate::describe(&error),
                    "trust store unreadable; keeping its last reading"
                );
                return;
            }
        };
        self.latest.send_if_modified(|latest| {
            let newer = read_at >= latest.read_at;
            let changed = latest.fingerprints != fingerprints;
            if newer {
                *latest = Arc::new(TrustSnapshot {
                    fingerprints,
                    read_at,
                });
            }
            // Only a change wakes the connections that watch.
            newer && changed
        });
    }

    /// Reads the store every [`TRUST_REFRESH_INTERVAL`], off the async threads, for as long as
    /// the returned future is polled.
    pub async fn keep_fresh(self) {
        let mut ticks = tokio::time::interval(TRUST_REFRESH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let shared = self.clone();
            let _ = tokio::task::spawn_blocking(move || shared.refresh()).await;
        }
    }

    /// Reads the store (blocking, as [`Self::refresh`]) and returns the trust of a connection
    /// that presented `presented` (DER), which follows every later reading.
    pub fn connection(&self, presented: Option<&[u8]>) -> ConnectionTrust {
        self.refresh();
        ConnectionTrust {
            presented: presented.and_then(PresentedCertificate::parse),
            latest: self.latest.subscribe(),
        }
    }
}

/// What the trust of a presented certificate depends on.
#[derive(Debug, Clone)]
struct PresentedCertificate {
    fingerprint: String,
    /// Its validity period, in seconds since the epoch.
    not_before: i64,
    not_after: i64,
}

impl PresentedCertificate {
    /// The certificate's fingerprint and validity period; `None` when it is malformed.
    fn parse(der: &[u8]) -> Option<Self> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let validity = certificate.validity();
        Some(Self {
            fingerprint: fingerprint(der),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Whether the certificate is trusted by `snapshot` at `now` (seconds since the epoch).
    fn trusted(&self, snapshot: &TrustSnapshot, now: i64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
            && snapshot.fingerprints.contains(&self.fingerprint)
    }
}

/// Seconds since the epoch, now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The trust of one TLS connection, decided afresh for each of its requests (step 4).
#[derive(Debug, Clone)]
pub struct ConnectionTrust {
    presented: Option<PresentedCertificate>,
    latest: watch::Receiver<Arc<TrustSnapshot>>,
}

impl ConnectionTrust {
    /// Who sends a request on this connection now: the presented certificate's fingerprint if
    /// the latest reading holds it and it is within its validity period, else untrusted.
    pub fn caller(&self) -> Caller {
        match &self.presented {
            Some(presented) if presented.trusted(&self.latest.borrow(), unix_now()) => {
                Caller::TrustedCertificate(presented.fingerprint.clone())
            }
            _ => Caller::Untrusted,
        }
    }

    /// Resolves once this connection, having been trusted, is trusted no longer: its
    /// certificate left the store or expired (step 5). Never resolves for a connection that
    /// was never trusted.
    pub async fn lost(mut self) {
        let mut was_trusted = false;
        // Whether readings may still come (the store's sharer is alive).
        let mut watching = true;
        loop {
            let trusted = self.caller().is_trusted();
            if was_trusted && !trusted {
                return;
            }
            was_trusted = trusted;
            // A trusted certificate also stops counting the second after its `notAfter`.
            let expiry = self
                .presented
                .as_ref()
                .filter(|_| trusted)
                .map(|presented| presented.not_after.saturating_sub(unix_now()) + 1)
                .map(|seconds| Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
            tokio::select! {
                changed = self.latest.changed(), if watching => watching = changed.is_ok(),
                () = tokio::time::sleep(expiry.unwrap_or_default()), if expiry.is_some() => {}
                // Neither a reading nor an expiry can come: the trust never changes.
                else => return std::future::pending().await,
            }
        }
    }
}

/// Reads the one certificate of a PEM file, checked to be well-formed.
fn read_certificate(path: &Path) -> Result<Vec<u8>, TrustError> {
    let io = |source| TrustError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut pem = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_FILE + 1), &mut pem)
        .map_err(io)?;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    let der = match certificates.as_slice() {
        [] => {
            return Err(TrustError::NoCertificate {
                path: path.to_owned(),
            });
        }
        [one] => one.as_ref().to_vec(),
        several => {
            return Err(TrustError::SeveralCertificates {
                path: path.to_owned(),
                count: several.len(),
            });
        }
    };
    check_certificate(&der).map_err(|reason| TrustError::Malformed {
        path: path.to_owned(),
        reason,
    })?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate, DER and PEM.
    fn certificate(name: &str) -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (certificate.der().to_vec(), certificate.pem())
    }

    #[test]
    fn fingerprints_are_lowercase_hex_sha256_of_the_der() {
        // SHA-256 test vectors (FIPS 180-2): the empty input and "abc".
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // A certificate's fingerprint is that of its DER bytes, whatever the PEM around them.
        let (der, pem) = certificate("client");
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(fingerprint(parsed.as_ref()), fingerprint(&der));
        assert_eq!(
            CertificatePem(&der).to_string().replace('\n', ""),
            pem.replace(['\n', '\r'], "")
        );
    }

    #[test]
    fn add_list_remove_and_decide() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trust"));
        assert_eq!(store.list().unwrap(), []);
        let (der, pem) = certificate("client");
        let file = dir.path().join("client.crt");
        std::fs::write(&file, &pem).unwrap();
        let shared = SharedTrust::new(store.clone());
        assert_eq!(shared.connection(Some(&der)).caller(), Caller::Untrusted);
        assert_eq!(shared.connection(None).caller(), Caller::Untrusted);

        let Added::New(added) = store.add(&file).unwrap() else {
            panic!("the certificate was new");
        };
        assert_eq!(added.fingerprint, fingerprint(&der));
        assert!(matches!(
            store.add(&file).unwrap(),
            Added::AlreadyTrusted(_)
        ));
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&added));
        // A new connection reads the store: trusted at once.
        let open = shared.connection(Some(&der));
        assert_eq!(
            open.caller(),
            Caller::TrustedCertificate(added.fingerprint.clone())
        );

        // Junk in the store is skipped, not fatal.
        std::fs::write(store.dir().join("junk.crt"), "not a certificate").unwrap();
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&added));

        assert!(matches!(
            store.remove("zz"),
            Err(TrustError::UnknownFingerprint(_))
        ));
        assert_eq!(store.remove(&added.fingerprint[..12]).unwrap(), added);
        // The open connection keeps the last reading until the next one.
        assert!(open.caller().is_trusted());
        shared.refresh();
        assert_eq!(open.caller(), Caller::Untrusted);
        assert_eq!(shared.connection(Some(&der)).caller(), Caller::Untrusted);

        std::fs::write(&file, "nothing").unwrap();
        assert!(matches!(
            store.add(&file),
            Err(TrustError::NoCertificate { .. })
        ));
        let (_, other) = certificate("other");
        std::fs::write(&file, format!("{pem}{other}")).unwrap();
        assert!(matches!(
            store.add(&file),
            Err(TrustError::SeveralCertificates { count: 2, .. })
        ));
    }

    #[test]
    fn an_expired_certificate_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trust"));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let certificate = params.self_signed(&key).unwrap();
        let file = dir.path().join("old.crt");
        std::fs::write(&file, certificate.pem()).unwrap();
        store.add(&file).unwrap();
        let shared = SharedTrust::new(store);
        let trust = shared.connection(Some(certificate.der()));
        assert_eq!(trust.caller(), Caller::Untrusted);
    }

    #[tokio::test]
    async fn an_open_connection_learns_that_its_trust_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trust"));
        let (der, pem) = certificate("client");
        let file = dir.path().join("client.crt");
        std::fs::write(&file, &pem).unwrap();
        store.add(&file).unwrap();
        let shared = SharedTrust::new(store.clone());
        let trust = shared.connection(Some(&der));
        let never_trusted = shared.connection(None);
        let lost = tokio::spawn(trust.lost());
        let untouched = tokio::spawn(never_trusted.lost());
        tokio::task::yield_now().await;
        assert!(!lost.is_finished());
        store.remove(&fingerprint(&der)).unwrap();
        shared.refresh();
        tokio::time::timeout(Duration::from_secs(5), lost)
            .await
            .expect("the loss is seen")
            .unwrap();
        assert!(
            !untouched.is_finished(),
            "an untrusted connection loses nothing"
        );
        untouched.abort();
    }

    #[tokio::test]
    async fn an_open_connection_learns_that_its_certificate_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path().join("trust"));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["brief".to_owned()]).unwrap();
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch + Duration::from_secs(2);
        let certificate = params.self_signed(&key).unwrap();
        let file = dir.path().join("brief.crt");
        std::fs::write(&file, certificate.pem()).unwrap();
        store.add(&file).unwrap();
        let trust = SharedTrust::new(store).connection(Some(certificate.der()));
        assert!(trust.caller().is_trusted());
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(6), trust.clone().lost())
            .await
            .expect("the expiry is seen");
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(trust.caller(), Caller::Untrusted);
    }
}
