//! Operations (`shared/api/operation.go`): the background work behind every 202.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kind of an operation, as Incus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationClass {
    /// Background work that ends by itself (`task`).
    Task,
    /// Work driven through websockets the client connects to (`websocket`): exec, console.
    Websocket,
    /// A token the client redeems later (`token`).
    Token,
}

/// The states an operation of ours goes through. Upstream also has `Pending` (105) before
/// `Running` and `Cancelling` (104); we start work at once and cannot cancel it, so neither
/// is ever shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OperationStatus {
    /// The work is under way (103).
    Running,
    /// The work ended well (200).
    Success,
    /// The work failed; `err` says why (400).
    Failure,
    /// The work was cancelled (401).
    Cancelled,
}

impl OperationStatus {
    /// Incus's numeric status code, sent beside the name as `status_code`.
    pub fn code(self) -> u16 {
        match self {
            Self::Running => 103,
            Self::Success => 200,
            Self::Failure => 400,
            Self::Cancelled => 401,
        }
    }

    /// Whether the operation has ended. Clients test `status_code >= 200`, as this does.
    pub fn is_final(self) -> bool {
        self.code() >= 200
    }

    /// The lower-case name that keys `GET /1.0/operations` (`running`, `success`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An operation as Incus sends it: fields in upstream's order and with its names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// The operation's UUID.
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: OperationClass,
    /// What the work is, e.g. `Creating instance`.
    pub description: String,
    /// When it was created, RFC 3339 with nanoseconds.
    pub created_at: String,
    /// When it last changed, RFC 3339 with nanoseconds.
    pub updated_at: String,
    /// The state's name (`Running`, `Success`, ...).
    pub status: OperationStatus,
    /// The state's code (103, 200, 400, 401).
    pub status_code: u16,
    /// The objects the work touches, by kind: `{"instances": ["/1.0/instances/v1"]}`.
    pub resources: BTreeMap<String, Vec<String>>,
    /// The work's result; `null` until there is one. Upstream clients expect an object here.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Whether `DELETE /1.0/operations/{id}` can cancel it (never, for ours).
    pub may_cancel: bool,
    /// Why the work failed; empty otherwise.
    pub err: String,
    /// The cluster member that runs it: `none` on a standalone server.
    pub location: String,
}

impl Operation {
    /// The operation's URL, the `operation` of the async envelope and the `Location` header.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }
}
