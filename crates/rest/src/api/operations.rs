//! `/1.0/operations`: long-running actions, and waiting for their end.

use crate::context::Context;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::operations::{self, Operation};
use crate::request::Query;

/// List the operations
///
/// Grouped by status (`running`, `success`, `failure`): URLs, or with `recursion=1` the
/// operations themselves.
#[utoipa::path(
    get,
    path = "/1.0/operations",
    operation_id = "operations_get",
    tag = "operations",
    params(
        ("project" = Option<String>, Query, description = "Project name"),
        ("all-projects" = Option<bool>, Query, description = "List the operations of every project"),
        ("recursion" = Option<u8>, Query, description = "0: URLs, 1: operations"),
    ),
    responses(
        (status = 200, description = "Operations by status", body = crate::envelope::SyncEnvelope<std::collections::BTreeMap<String, Vec<Operation>>>),
        (status = 400, description = "Bad parameters", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn list(context: &Context, query: &Query) -> Result<ApiResponse, ApiError> {
    let all_projects = query.get("all-projects") == Some("true");
    let project = if all_projects {
        query.get("project")
    } else {
        Some(query.project()?)
    };
    let recursion = query.recursion()? > 0;
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
        ("timeout" = Option<i64>, Query, description = "Seconds to wait; -1 for no limit"),
    ),
    responses(
        (status = 200, description = "The ended operation, or an error envelope for a failure or a timeout", body = crate::envelope::SyncEnvelope<Operation>),
        (status = 400, description = "Bad timeout", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such operation", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn wait(context: &Context, id: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let timeout = operations::parse_wait_timeout(query.get("timeout"))?;
    operations::wait_operation(&context.operations, id, timeout).await
}
