//! `POST /1.0/instances/{name}`: renaming a stopped instance, as `incus rename` does.

use hyper::body::Incoming;
use serde::Deserialize;
use vgashot_instance_drivers::DriverError;
use vgashot_instance_drivers::definition::validate_instance_name;

use crate::api::lifecycle;
use crate::context::Context;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::events::{Lifecycle, action};
use crate::request::{self, ProjectQuery, Query};

/// The body of `POST /1.0/instances/{name}` (upstream's `InstancePost`): only a rename is
/// served; the fields of a migration are read and must be off.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct InstancePost {
    /// The new name.
    pub name: String,
    /// A migration (not served: must be false).
    #[serde(default)]
    pub migration: bool,
    /// A live migration (not served: must be false).
    #[serde(default)]
    pub live: bool,
}

/// Rename an instance
///
/// Renames a stopped instance with everything it owns (its definition, console log and screen
/// state), as an operation. A running instance is a 400 (`Renaming of running instance not
/// allowed`, upstream's words), a name in use a 409.
#[utoipa::path(
    post,
    path = "/1.0/instances/{name}",
    operation_id = "instance_post",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    request_body = InstancePost,
    responses(
        (status = 202, description = "Renaming", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "A bad name, a migration, or a running instance", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
        (status = 409, description = "The new name is taken", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn post(
    context: &Context,
    name: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    let project = query.typed::<ProjectQuery>()?.project.name()?.to_owned();
    let post: InstancePost = request::json_body(body).await?;
    if post.migration || post.live {
        return Err(ApiError::BadRequest(
            "Migration is not supported by this server".into(),
        ));
    }
    let instance = context.instance(&project, name)?;
    validate_instance_name(&post.name).map_err(DriverError::InvalidName)?;
    if instance.state().pid.is_some() {
        return Err(DriverError::RenameRunning.into());
    }
    if context.instance(&project, &post.name).is_ok() {
        return Err(DriverError::AlreadyExists { name: post.name }.into());
    }
    let driver = context.driver.clone();
    let events = context.events.clone();
    let (work_project, old, new) = (project.clone(), name.to_owned(), post.name);
    Ok(lifecycle::run(
        context,
        "Renaming instance",
        &project,
        name,
        async move {
            driver.rename(&work_project, &old, &new).await?;
            let renamed = Lifecycle::instance(action::INSTANCE_RENAMED, &new, &work_project)
                .with_context("old_name", old);
            events.publish_lifecycle_record(&work_project, &renamed);
            Ok(())
        },
    ))
}
