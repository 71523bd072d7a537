//! Errors of the QMP client, one enum per layer.
//!
//! [`Error`] is what callers see. It keeps apart the four things a caller reacts to differently:
//! QEMU said no ([`Error::Command`], with QEMU's own class and text), QEMU did not answer in time
//! ([`Error::Timeout`]), the connection is gone ([`Error::Disconnected`], with why), and the peer
//! broke the protocol ([`ProtocolError`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The `class` of a QMP error object, as QEMU's QAPI schema (`qapi/error.json`) defines it.
///
/// QEMU reports almost everything as [`ErrorClass::GenericError`]; the other classes exist for
/// compatibility with old clients and are worth matching on (a missing device, a command this
/// QEMU does not have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Any error that has no class of its own.
    GenericError,
    /// The command does not exist in this QEMU (too old, or compiled out).
    CommandNotFound,
    /// A device named in the arguments does not exist.
    DeviceNotFound,
    /// A device exists but is not active.
    DeviceNotActive,
    /// KVM lacks a capability the command needs.
    KvmMissingCap,
    /// A class this client does not know, kept verbatim.
    Other(String),
}

impl<'de> Deserialize<'de> for ErrorClass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let class = String::deserialize(deserializer)?;
        Ok(match class.as_str() {
            "GenericError" => Self::GenericError,
            "CommandNotFound" => Self::CommandNotFound,
            "DeviceNotFound" => Self::DeviceNotFound,
            "DeviceNotActive" => Self::DeviceNotActive,
            "KVMMissingCap" => Self::KvmMissingCap,
            _ => Self::Other(class),
        })
    }
}

/// An `error` object from a QMP reply: QEMU refused or failed the command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("{desc} ({class:?})")]
pub struct QmpError {
    /// The error class, for matching.
    pub class: ErrorClass,
    /// QEMU's human-readable description, verbatim.
    pub desc: String,
}

/// The peer sent something that is not QMP as this client understands it.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A line was not valid JSON (or not valid UTF-8).
    #[error("malformed JSON from QEMU")]
    Json(#[source] serde_json::Error),
    /// A JSON object that is neither a greeting, a reply nor an event.
    #[error("message is neither a greeting, a reply nor an event: {snippet}")]
    Unrecognized {
        /// The start of the offending message, for the log.
        snippet: String,
    },
    /// The first message after connecting was not the `{"QMP": ...}` greeting.
    #[error("expected the QMP greeting, got: {snippet}")]
    ExpectedGreeting {
        /// The start of the offending message, for the log.
        snippet: String,
    },
    /// A reply carries an id this client never sent, so replies can no longer be routed.
    #[error("reply carries id {id}, which no command was sent with")]
    UnexpectedId {
        /// The id as it appeared on the wire.
        id: String,
    },
    /// A reply carries no id; every command this client sends has one.
    #[error("reply without an id: {snippet}")]
    MissingId {
        /// The start of the offending message, for the log.
        snippet: String,
    },
    /// A line grew beyond the configured bound without a newline.
    #[error("line exceeds {limit} bytes without a newline")]
    LineTooLong {
        /// The configured bound, [`crate::Config::max_line_bytes`].
        limit: usize,
    },
}

/// Why a connection is no longer usable; shared by every call that was waiting on it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionLost {
    /// QEMU closed the socket (it exited, was killed, or executed `quit`).
    #[error("QEMU closed the QMP socket")]
    Eof,
    /// Reading from the socket failed.
    #[error("reading from the QMP socket failed")]
    Read(#[source] io::Error),
    /// Writing to the socket failed, so the stream is in an unknown state.
    #[error("writing to the QMP socket failed")]
    Write(#[source] io::Error),
    /// The peer broke the protocol; nothing it says can be trusted after that.
    #[error("QMP protocol violation")]
    Protocol(#[source] ProtocolError),
}

/// Every error the QMP client returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The QMP socket could not be connected to.
    #[error("cannot connect to the QMP socket {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The greeting and capability negotiation did not finish in time.
    #[error("QMP handshake did not finish within {after:?}")]
    HandshakeTimeout {
        /// The bound that was exceeded, [`crate::Config::handshake_timeout`].
        after: Duration,
    },
    /// The peer broke the protocol during the handshake.
    #[error("QMP handshake failed")]
    Handshake(#[source] Box<Error>),
    /// The peer broke the protocol.
    #[error("QMP protocol violation")]
    Protocol(#[source] ProtocolError),
    /// QEMU answered the command with an error object.
    #[error("QEMU refused `{command}`: {}", source.desc)]
    Command {
        /// The command that failed.
        command: String,
        /// QEMU's error, with its class.
        #[source]
        source: QmpError,
    },
    /// QEMU did not answer the command in time. The connection stays usable; a late reply is
    /// discarded.
    #[error("QEMU did not answer `{command}` within {after:?}")]
    Timeout {
        /// The command that timed out.
        command: String,
        /// The bound that was exceeded.
        after: Duration,
    },
    /// The connection is gone; every pending and later call fails with this at once.
    #[error("the QMP connection is closed")]
    Disconnected(#[source] Arc<ConnectionLost>),
    /// The command's arguments could not be serialised.
    #[error("cannot encode the arguments of `{command}`")]
    Encode {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// QEMU's reply did not have the shape this binding expects.
    #[error("unexpected reply to `{command}`")]
    Decode {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor could not be made ready to pass (duplicated), or its registration could not
    /// run to its end because the runtime is stopping.
    #[error("cannot pass a descriptor to QEMU: cannot {operation}")]
    PassDescriptor {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The memory file that receives a screendump could not be created, read or reset.
    #[error("screendump memory file: cannot {operation}")]
    CaptureFile {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The image QEMU wrote is larger than the caller allows (the guest chose a larger screen):
    /// it was not read.
    #[error("the screen image is {bytes} bytes, more than the {limit} allowed")]
    ImageTooLarge {
        /// The image's size.
        bytes: u64,
        /// The bound.
        limit: u64,
    },
}

impl Error {
    /// QEMU's error object, when QEMU itself refused the command.
    pub fn qmp_error(&self) -> Option<&QmpError> {
        match self {
            Self::Command { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the connection is gone (QEMU exited, the socket broke, or the peer misbehaved).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }

    /// A registration task ended before its round trip did: the runtime is shutting down.
    pub(crate) fn runtime_stopping() -> Self {
        Self::PassDescriptor {
            operation: "finish registering it (the runtime is stopping)",
            source: io::ErrorKind::Interrupted.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
