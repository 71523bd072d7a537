//! Reading Incus's envelopes, and the calls that answer one.
//!
//! 1. Every JSON answer is an envelope ([`Envelope`]): `sync` carries the result in `metadata`,
//!    `async` (a 202) the operation it started, `error` the HTTP status in `error_code` and the
//!    message in `error`. A body that is no envelope is a [`ClientError::Json`].
//! 2. [`Client::call`] answers a sync envelope's `metadata`. An async one's operation is waited
//!    for (`GET /1.0/operations/ID/wait`, no timeout); its answer is the operation, whose
//!    `metadata` is the result once it succeeded. An operation that failed or was cancelled is
//!    a [`ClientError::Api`] with its `err`, as the `incus` client reports it: its wait answers
//!    a 200 like any other.

use serde::Deserialize;
use serde_json::Value;
use vgashot_incus_wire::{Operation, OperationStatus};

use crate::{Client, ClientError, Reply};

/// The status a failed operation is reported with: 400, the status code Incus gives the
/// `Failure` state.
const FAILED_OPERATION: u16 = 400;

/// What kind of answer an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Sync,
    Async,
    Error,
}

/// An envelope as the client reads it: the fields it needs.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    error_code: u16,
    #[serde(default)]
    error: String,
    #[serde(default)]
    metadata: Value,
}

impl Envelope {
    fn of(reply: &Reply) -> Result<Self, ClientError> {
        serde_json::from_slice(&reply.body).map_err(ClientError::Json)
    }

    /// The error it reports: its `error_code` (the HTTP status when it has none) and message.
    fn into_error(self, status: u16) -> ClientError {
        ClientError::Api {
            status: Some(self.error_code)
                .filter(|&code| code != 0)
                .unwrap_or(status),
            message: if self.error.is_empty() {
                "the daemon sent no error message".to_owned()
            } else {
                self.error
            },
        }
    }
}

/// The error `reply` reports, if its body is an error envelope.
pub(crate) fn error_of(reply: &Reply) -> Option<ClientError> {
    Envelope::of(reply)
        .ok()
        .filter(|envelope| envelope.kind == Kind::Error)
        .map(|envelope| envelope.into_error(reply.status))
}

impl Client {
    /// Sends a request that answers `metadata` in a sync envelope (or starts an operation, which
    /// is then waited for: its result); an error envelope, or an operation that did not succeed,
    /// becomes [`ClientError::Api`] (step 2).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let reply = self.request(method, path, body).await?;
        let envelope = Envelope::of(&reply)?;
        match envelope.kind {
            Kind::Sync => Ok(envelope.metadata),
            Kind::Error => Err(envelope.into_error(reply.status)),
            Kind::Async => {
                let wait = format!("{}/wait?timeout=-1", envelope.operation);
                let waited = self.request("GET", &wait, None).await?;
                let waited = Envelope::of(&waited)?;
                if waited.kind != Kind::Sync {
                    return Err(waited.into_error(reply.status));
                }
                let operation: Operation =
                    serde_json::from_value(waited.metadata).map_err(ClientError::Json)?;
                match operation.status {
                    OperationStatus::Success => Ok(operation.metadata.unwrap_or_default()),
                    _ => Err(ClientError::Api {
                        status: FAILED_OPERATION,
                        message: operation.err,
                    }),
                }
            }
        }
    }
}
