//! `POST /1.0/instances/{name}/console`: an interactive serial console, as `incus console NAME`
//! opens it (the websockets and who types: [`crate::console`]).

use std::sync::Arc;

use hyper::body::Incoming;
use serde::Deserialize;
use vgashot_instance_drivers::InstanceStatus;

use crate::auth::trust::Caller;
use crate::console::{self, ConsoleWebsockets};
use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::request::{self, ProjectQuery, Query};

/// The body of `POST /1.0/instances/{name}/console` (upstream's `InstanceConsolePost`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsolePost {
    /// The terminal's width in characters (a serial line has no size: read and ignored).
    #[serde(default)]
    pub width: i64,
    /// The terminal's height in characters (read and ignored).
    #[serde(default)]
    pub height: i64,
    /// `console` (the default when empty): the serial console. Upstream's `vga` (SPICE) is
    /// not served; screenshots are `GET` with `type=vga`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Take the keyboard: this session types, the others watch (`console_force`).
    #[serde(default)]
    pub force: bool,
}

/// Attach to the serial console
///
/// Answers a `websocket` operation whose metadata names two websockets, `fds["0"]` (data) and
/// `fds["control"]`, which the client connects with `GET /1.0/operations/{id}/websocket?secret=`
/// within 10 s. Several sessions may watch one console (at most 8 per instance, a 503 beyond);
/// one types: the latest opened with `force` while it stays, otherwise the oldest.
#[utoipa::path(
    post,
    path = "/1.0/instances/{name}/console",
    operation_id = "instance_console_post",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    request_body = ConsolePost,
    responses(
        (status = 202, description = "The console operation", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "A bad body, an unknown type, or an instance that is not running", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
        (status = 503, description = "The instance's console has as many sessions as it may", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn post(
    context: &Context,
    caller: &Caller,
    name: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    let project = query.typed::<ProjectQuery>()?.project.name()?.to_owned();
    let post: ConsolePost = request::json_body(body).await?;
    match post.kind.as_str() {
        "" | "console" => {}
        "vga" => {
            return Err(ApiError::BadRequest(
                "The vga console (SPICE) is not served: take screenshots with GET \
                 /1.0/instances/NAME/console?type=vga"
                    .into(),
            ));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "Unknown console type {other:?}"
            )));
        }
    }
    let instance = context.instance(&project, name)?;
    if instance.state().status == InstanceStatus::Frozen {
        return Err(ApiError::BadRequest("Instance is frozen".into()));
    }
    let session = instance.serial_console(post.force).await?;
    let (websockets, metadata, connections) = ConsoleWebsockets::new(caller.clone())?;
    let resources = [(
        "instances".to_owned(),
        vec![super::instances::instance_url(name)],
    )]
    .into_iter()
    .collect();
    let result = metadata.clone();
    let operation = context.operations.start_websocket(
        "Showing console",
        resources,
        &project,
        (metadata, Arc::new(websockets)),
        async move {
            console::serve(session, connections)
                .await
                .map(|()| Some(result))
        },
    );
    Ok(envelope::accepted(operation.url(), operation))
}
