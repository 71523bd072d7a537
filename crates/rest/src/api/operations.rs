//! `/1.0/operations`: long-running actions, and waiting for their end.

use crate::auth::trust::Caller;
use crate::context::Context;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::operations::{self, Operation};
use crate::request::{AllProjects, Project, Query, Recursion};

/// The query of `GET /1.0/operations`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Project name (only `default` exists; absent or empty means it). With `all-projects`, a
    /// project is a 400.
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// List the operations of every project.
    #[serde(default, rename = "all-projects")]
    #[param(value_type = Option<bool>)]
    pub all_projects: AllProjects,
    /// 0: URLs, 1 or 2: operations.
    #[serde(default)]
    #[param(value_type = Option<u8>, minimum = 0, maximum = 2)]
    pub recursion: Recursion,
}

/// The query of `GET /1.0/operations/{id}/wait`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait; -1 (any negative number) or none for no limit.
    #[serde(default, deserialize_with = "operations::wait_timeout")]
    #[param(value_type = Option<i64>)]
    pub timeout: Option<std::time::Duration>,
}

/// List the operations
///
/// Grouped by status (`running`, `success`, `failure`): URLs, or with `recursion=1` the
/// operations themselves.
#[utoipa::path(
    get,
    path = "/1.0/operations",
    operation_id = "operations_get",
    tag = "operations",
    params(ListQuery),
    responses(
        (status = 200, description = "Operations by status", body = crate::envelope::SyncEnvelope<crate::openapi::OperationList>),
        (status = 400, description = "Bad parameters", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn list(context: &Context, query: &Query) -> Result<ApiResponse, ApiError> {
    let query: ListQuery = query.typed()?;
    let all_projects = query.all_projects.0;
    let project = if all_projects {
        query.project.given()
    } else {
        Some(query.project.name()?)
    };
    let recursion = query.recursion > Recursion(0);
    operations::get_operations(&context.operations, project, all_projects, recursion).await
}

/// Get an operation
#[utoipa::path(
    get,
    path = "/1.0/operations/{id}",
    operation_id = "operation_get",
    tag = "operations",
    params(("id" = String, Path, description = "Operation UUID")),
    responses(
        (status = 200, description = "The operation", body = crate::envelope::SyncEnvelope<Operation>),
        (status = 404, description = "No such operation", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(context: &Context, id: &str) -> Result<ApiResponse, ApiError> {
    operations::get_operation(&context.operations, id).await
}

/// Wait for an operation to end
///
/// Answers when the operation ends, or after `timeout` seconds (`-1` or none: no limit). As
/// upstream, a failed or timed-out wait is an error envelope (`error_code` 500) sent with HTTP
/// 200, since the wait has begun answering.
#[utoipa::path(
    get,
    path = "/1.0/operations/{id}/wait",
    operation_id = "operation_wait_get",
    tag = "operations",
    params(
        ("id" = String, Path, description = "Operation UUID"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The ended operation, or an error envelope for a failure or a timeout", body = crate::openapi::WaitAnswer),
        (status = 400, description = "Bad timeout", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such operation", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn wait(context: &Context, id: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let timeout = query.typed::<WaitQuery>()?.timeout;
    operations::wait_operation(&context.operations, id, timeout).await
}

/// The query of `GET /1.0/operations/{id}/websocket`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebsocketQuery {
    /// The secret of the websocket to connect, from the operation's `metadata.fds`.
    #[serde(default)]
    pub secret: String,
}

/// Connect a websocket of an operation
///
/// Upgrades to one of a `websocket` operation's websockets (a console's data or control), named
/// by its secret. A wrong secret is a 403; each websocket connects once.
#[utoipa::path(
    get,
    path = "/1.0/operations/{id}/websocket",
    operation_id = "operation_websocket_get",
    tag = "operations",
    params(
        ("id" = String, Path, description = "Operation UUID"),
        WebsocketQuery,
        ("Connection" = String, Header, description = "`Upgrade` (a websocket handshake)"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The handshake's nonce, base64"),
    ),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 400, description = "Not a websocket request, not a websocket operation, or connected already", body = crate::envelope::ErrorEnvelope),
        (status = 403, description = "A wrong secret", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such operation", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub fn websocket(
    context: &Context,
    caller: &Caller,
    id: &str,
    query: &Query,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<ApiResponse, ApiError> {
    let secret = query.typed::<WebsocketQuery>()?.secret;
    if secret.is_empty() {
        return Err(ApiError::BadRequest("missing secret".into()));
    }
    let websockets = context
        .operations
        .websockets(id)?
        .ok_or_else(|| ApiError::BadRequest("Only websocket operations can be connected".into()))?;
    websockets.connect(caller, &secret, request)
}
