//! `/1.0/events`: operation, life-cycle and logging events over a websocket.

use hyper::Request;
use hyper::body::Incoming;

use crate::context::Context;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::events::{self, EventType};
use crate::request::Query;

/// Listen to events
///
/// Upgrades to a websocket on which each event is a JSON text frame. The `incus` client opens
/// it before every asynchronous request and waits there for the operation's end.
#[utoipa::path(
    get,
    path = "/1.0/events",
    operation_id = "events_get",
    tag = "events",
    params(
        ("type" = Option<String>, Query, description = "Comma-separated event types (`operation`, `lifecycle`, `logging`); all when absent"),
        ("project" = Option<String>, Query, description = "Project name"),
        ("all-projects" = Option<bool>, Query, description = "Events of every project"),
    ),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 400, description = "Not a websocket request, or an unknown type", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(
    context: &Context,
    query: &Query,
    request: Request<Incoming>,
) -> Result<ApiResponse, ApiError> {
    let all_projects = query.get("all-projects") == Some("true");
    let project = if all_projects {
        query.get("project").map(str::to_owned)
    } else {
        Some(query.project()?.to_owned())
    };
    let types = EventType::parse_list(query.get("type"))?;
    events::events_websocket(&context.events, request, types, project, all_projects).await
}
