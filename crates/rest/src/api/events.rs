//! `/1.0/events`: operation, life-cycle, logging and screen-change events over a websocket.

use hyper::Request;
use hyper::body::Incoming;

use crate::context::Context;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::events::{self, EventType};
use crate::request::{AllProjects, Project, Query};

/// The query of `GET /1.0/events`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated event types (`operation`, `lifecycle`, `logging`, `network-acl`, and
    /// ours, `screen`: a running VM's screen changed, with its new `ETag`, width and height, at
    /// most once per instance per second; `instance_console_screen_events`); all when absent or
    /// empty.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// Events of every project.
    #[serde(default, rename = "all-projects")]
    #[param(value_type = Option<bool>)]
    pub all_projects: AllProjects,
}

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
        EventsQuery,
        ("Connection" = String, Header, description = "`Upgrade` (a websocket handshake)"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The handshake's nonce, base64"),
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
    let query: EventsQuery = query.typed()?;
    let all_projects = query.all_projects.0;
    let project = if all_projects {
        query.project.given().map(str::to_owned)
    } else {
        Some(query.project.name()?.to_owned())
    };
    let types = EventType::parse_list(query.kind.as_deref())?;
    events::events_websocket(&context.events, request, types, project, all_projects).await
}
