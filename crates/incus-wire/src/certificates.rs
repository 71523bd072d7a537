//! Certificates as Incus names them: by the SHA-256 fingerprint of their DER bytes in lowercase
//! hex ([`fingerprint`], what `incus config trust list` and `GET /1.0`'s
//! `certificate_fingerprint` show), and written as PEM ([`CertificatePem`]).

/// The SHA-256 fingerprint of a certificate's DER bytes, lowercase hex (Incus's
/// `CertFingerprint`).
pub fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A DER certificate written as PEM, 64 base64 characters a line.
pub struct CertificatePem<'a>(pub &'a [u8]);

impl std::fmt::Display for CertificatePem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.0);
        writeln!(f, "-----BEGIN CERTIFICATE-----")?;
        for line in encoded.as_bytes().chunks(64) {
            writeln!(f, "{}", String::from_utf8_lossy(line))?;
        }
        writeln!(f, "-----END CERTIFICATE-----")
    }
}
