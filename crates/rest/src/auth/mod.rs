//! Who may use the API, and over what: the TLS listener and the trust store, in one place.
//!
//! 1. [`tls`] binds the TCP listener with the server's own certificate (made once, reused at
//!    every start) and accepts TLS 1.3 connections with an optional client certificate.
//! 2. [`trust`] decides, from the trust store `$VGASHOT_DIR/trust/`, whether a connection's
//!    certificate is trusted, at every request and every second while the connection lasts; the
//!    Unix socket is trusted as it is.
//! 3. The result of both is a [`Caller`], which the router and the handlers see; nothing else
//!    in the crate looks at certificates.

pub mod tls;
pub mod trust;

pub use tls::{HttpsListener, TlsError};
pub use trust::{Caller, TrustStore};
