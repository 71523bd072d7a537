//! `/1.0/instances` and `/1.0/instances/{name}`: list, create, read, update and delete VMs.
//!
//! Requests are checked completely before anything happens (name, type, source, profiles,
//! config and devices through the driver), so a bad request is a 400 at once, never a failed
//! operation later. What changes an instance then runs as an operation, as in Incus.

use hyper::body::Incoming;
use vgashot_instance_drivers::{
    DriverError, Instance as DriverInstance, InstanceDefinition, InstanceType, definition,
};

use crate::api::profiles::DEFAULT_PROFILE;
use crate::api::{instance_state, lifecycle};
use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::filter::Filter;
use crate::model::{Instance, InstanceFull, InstancePut, InstancesPost, ZERO_TIME};
use crate::request::{Project, ProjectQuery, Query, Recursion, RecursionQuery, json_body};

/// The query of `GET /1.0/instances`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// 0: URLs, 1: instances, 2: instances with state.
    #[serde(default)]
    #[param(value_type = Option<u8>, minimum = 0, maximum = 2)]
    pub recursion: Recursion,
    /// Keep the instances that match, e.g. `status eq Running`: clauses `[not] FIELD eq|ne
    /// VALUE` joined by `and` or `or` (values may also be double-quoted to hold spaces), words
    /// separated by whitespace as Rust's `char::is_whitespace` has it.
    #[param(
        pattern = r#"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(([Nn][Oo][Tt][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)?[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"]+[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+([Ee][Qq]|[Nn][Ee])[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"]+([\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+([Aa][Nn][Dd]|[Oo][Rr])[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+([Nn][Oo][Tt][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)?[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"]+[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+([Ee][Qq]|[Nn][Ee])[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"]+)*)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"#
    )]
    pub filter: Option<String>,
}

/// The wire form of an instance.
pub fn instance(instance: &dyn DriverInstance) -> Instance {
    let definition = instance.definition();
    let state = instance.state();
    let last_used_at = if definition.last_used_at.is_empty() {
        ZERO_TIME.to_owned()
    } else {
        definition.last_used_at
    };
    Instance {
        architecture: "x86_64".into(),
        expanded_config: definition.config.clone(),
        expanded_devices: definition.devices.clone(),
        config: definition.config,
        devices: definition.devices,
        ephemeral: definition.ephemeral,
        profiles: definition.profiles,
        stateful: false,
        description: definition.description,
        created_at: definition.created_at,
        name: definition.name,
        status: state.status.as_str().into(),
        status_code: i32::from(state.status.code()),
        last_used_at,
        location: "none".into(),
        kind: definition.instance_type.as_str().into(),
        project: definition.project,
    }
}

/// The wire form of an instance with its state.
pub fn instance_full(vm: &dyn DriverInstance) -> InstanceFull {
    InstanceFull {
        instance: instance(vm),
        backups: Vec::new(),
        state: Some(instance_state::state(vm)),
        snapshots: Vec::new(),
    }
}

/// List the instances
///
/// `recursion=0`: URLs; `1`: instances; `2`: instances with their state (`container_full`).
/// `filter` keeps the instances that match it (`api_filtering`: `name eq v1 and status ne
/// Stopped`; fields are paths into the instance with its state, operators `eq` and `ne`).
#[utoipa::path(
    get,
    path = "/1.0/instances",
    operation_id = "instances_get",
    tag = "instances",
    params(ListQuery),
    responses(
        (status = 200, description = "The instances", body = crate::envelope::SyncEnvelope<crate::openapi::InstanceList>),
        (status = 400, description = "Bad parameter", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn list(context: &Context, query: &Query) -> Result<ApiResponse, ApiError> {
    let query: ListQuery = query.typed()?;
    let filter = Filter::parse(query.filter.as_deref().unwrap_or_default())?;
    let project = query.project.name()?;
    let mut instances = context.driver.list(project);
    if let Some(filter) = filter {
        instances.retain(|vm| {
            let full =
                serde_json::to_value(instance_full(vm.as_ref())).expect("instances serialise");
            filter.matches(&full)
        });
    }
    Ok(match query.recursion {
        Recursion(0) => envelope::sync(
            instances
                .iter()
                .map(|vm| format!("/1.0/instances/{}", vm.name()))
                .collect::<Vec<_>>(),
        ),
        Recursion(1) => envelope::sync(
            instances
                .iter()
                .map(|vm| instance(vm.as_ref()))
                .collect::<Vec<_>>(),
        ),
        _ => envelope::sync(
            instances
                .iter()
                .map(|vm| instance_full(vm.as_ref()))
                .collect::<Vec<_>>(),
        ),
    })
}

/// Create an instance
///
/// Source type `none` creates an empty VM (what `incus init --empty --vm` sends); a VM boots
/// from a local disk image given as a `disk` device with `source` and `path: /`. Images,
/// migrations and copies are refused with a 400. With `start: true` the VM is started too.
#[utoipa::path(
    post,
    path = "/1.0/instances",
    operation_id = "instances_post",
    tag = "instances",
    params(ProjectQuery),
    request_body = InstancesPost,
    responses(
        (status = 202, description = "Creating", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "A request this server cannot honour", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such project", body = crate::envelope::ErrorEnvelope),
        (status = 409, description = "The name is taken", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn create(
    context: &Context,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    let project = query.typed::<ProjectQuery>()?.project.name()?.to_owned();
    let request: InstancesPost = json_body(body).await?;
    let definition = new_definition(&request, &project)?;
    let name = definition.name.clone();
    let vm = context.driver.create(definition).await?;
    let start = request.start;
    let events = context.events.clone();
    let work_project = project.clone();
    Ok(lifecycle::run(
        context,
        "Creating instance",
        &project,
        &name,
        async move {
            events.publish_lifecycle("instance-created", &instance_url(vm.name()), &work_project);
            // Its `instance-started` is the driver's transition (`crate::transitions`).
            if start {
                vm.start().await?;
            }
            Ok(())
        },
    ))
}

/// Checks a creation request and turns it into a definition.
fn new_definition(request: &InstancesPost, project: &str) -> Result<InstanceDefinition, ApiError> {
    if request.name.is_empty() {
        return Err(ApiError::BadRequest(
            "An instance name is required (this server does not generate names)".into(),
        ));
    }
    definition::validate_instance_name(&request.name)
        .map_err(|error| ApiError::Driver(DriverError::InvalidName(error)))?;
    let instance_type = match request.kind.as_str() {
        "virtual-machine" => InstanceType::VirtualMachine,
        // Incus's default is a container, which this server does not run.
        "" | "container" => InstanceType::Container,
        other => {
            return Err(ApiError::BadRequest(format!(
                "Invalid instance type: {other}"
            )));
        }
    };
    match request.source.kind.as_str() {
        "none" => {}
        "" => return Err(ApiError::BadRequest("Unknown source type ".into())),
        other => {
            return Err(ApiError::BadRequest(format!(
                "Source type \"{other}\" is not supported; use \"none\" with a disk device \
                 whose source is a local image"
            )));
        }
    }
    refuse_unsupported(&request.instance_put())?;
    if !request.instance_type.is_empty() {
        return Err(ApiError::BadRequest(
            "Cloud instance types are not supported; set limits.cpu and limits.memory".into(),
        ));
    }
    Ok(InstanceDefinition {
        name: request.name.clone(),
        project: project.to_owned(),
        instance_type,
        description: request.description.clone(),
        config: request.config.clone(),
        devices: request.devices.clone(),
        profiles: profiles(request.profiles.clone())?,
        ephemeral: request.ephemeral,
        created_at: vgashot_stdext::now_rfc3339(),
        last_used_at: String::new(),
    })
}

/// Refuses the parts of an instance body this server cannot honour, with why.
fn refuse_unsupported(put: &InstancePut) -> Result<(), ApiError> {
    if put
        .restore
        .as_deref()
        .is_some_and(|restore| !restore.is_empty())
    {
        return Err(ApiError::BadRequest("Snapshots are not supported".into()));
    }
    if put.stateful == Some(true) {
        return Err(ApiError::BadRequest(
            "Stateful instances are not supported".into(),
        ));
    }
    match put.architecture.as_deref() {
        None | Some("" | "x86_64") => Ok(()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Architecture \"{other}\" is not supported; only x86_64"
        ))),
    }
}

/// The profiles of a request: `null` is the default profile, and `default` is the only one.
fn profiles(requested: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let profiles = requested.unwrap_or_else(|| vec![DEFAULT_PROFILE.to_owned()]);
    match profiles.iter().find(|profile| *profile != DEFAULT_PROFILE) {
        Some(missing) => Err(ApiError::BadRequest(format!(
            "Requested profile \"{missing}\" doesn't exist"
        ))),
        None => Ok(profiles),
    }
}

/// Get an instance
///
/// `recursion=1` adds its state (`instance_get_full`).
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}",
    operation_id = "instance_get",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), RecursionQuery),
    responses(
        (status = 200, description = "The instance", body = crate::envelope::SyncEnvelope<crate::openapi::InstanceOrFull>),
        (status = 400, description = "Bad parameter", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let query: RecursionQuery = query.typed()?;
    let vm = context.instance(query.project.name()?, name)?;
    Ok(match query.recursion {
        Recursion(0) => envelope::sync(instance(vm.as_ref())),
        _ => envelope::sync(instance_full(vm.as_ref())),
    })
}

/// Replace an instance's configuration
///
/// Takes effect at the next start.
#[utoipa::path(
    put,
    path = "/1.0/instances/{name}",
    operation_id = "instance_put",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    request_body = InstancePut,
    responses(
        (status = 202, description = "Updating", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "A configuration this server cannot honour", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn put(
    context: &Context,
    name: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    update(context, name, query, body, Replace::All).await
}

/// Update part of an instance's configuration
///
/// The fields sent replace the stored ones; the others are kept.
#[utoipa::path(
    patch,
    path = "/1.0/instances/{name}",
    operation_id = "instance_patch",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    request_body = InstancePut,
    responses(
        (status = 202, description = "Updating", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "A configuration this server cannot honour", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn patch(
    context: &Context,
    name: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    update(context, name, query, body, Replace::Given).await
}

/// Whether a field left out of the body is cleared (`PUT`) or kept (`PATCH`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    All,
    Given,
}

async fn update(
    context: &Context,
    name: &str,
    query: &Query,
    body: Incoming,
    replace: Replace,
) -> Result<ApiResponse, ApiError> {
    let project = query.typed::<ProjectQuery>()?.project.name()?.to_owned();
    let vm = context.instance(&project, name)?;
    let put: InstancePut = json_body(body).await?;
    refuse_unsupported(&put)?;
    let mut definition = vm.definition();
    let keep = replace == Replace::Given;
    definition.config = pick(put.config, definition.config, keep);
    definition.devices = pick(put.devices, definition.devices, keep);
    definition.description = pick(put.description, definition.description, keep);
    definition.ephemeral = pick(put.ephemeral, definition.ephemeral, keep);
    definition.profiles = match put.profiles {
        Some(given) => profiles(Some(given))?,
        None if keep => definition.profiles,
        None => Vec::new(),
    };
    // Validate now, so a bad configuration is a 400 rather than a failed operation.
    vm.update(definition).await?;
    let events = context.events.clone();
    let url = instance_url(name);
    let event_project = project.clone();
    Ok(lifecycle::run(
        context,
        "Updating instance",
        &project,
        name,
        async move {
            events.publish_lifecycle("instance-updated", &url, &event_project);
            Ok(())
        },
    ))
}

/// The new value of a field: the one given, else the current one (`PATCH`) or the zero value
/// (`PUT`).
fn pick<T: Default>(given: Option<T>, current: T, keep: bool) -> T {
    match given {
        Some(value) => value,
        None if keep => current,
        None => T::default(),
    }
}

/// Delete an instance
///
/// A running instance must be stopped first (400).
#[utoipa::path(
    delete,
    path = "/1.0/instances/{name}",
    operation_id = "instance_delete",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    responses(
        (status = 202, description = "Deleting", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "The instance is running", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn delete(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let project = query.typed::<ProjectQuery>()?.project.name()?.to_owned();
    let vm = context.instance(&project, name)?;
    if vm.state().pid.is_some() {
        return Err(ApiError::Driver(DriverError::Running));
    }
    let driver = context.driver.clone();
    let history = context.history.clone();
    let events = context.events.clone();
    let url = instance_url(name);
    let (work_project, work_name) = (project.clone(), name.to_owned());
    Ok(lifecycle::run(
        context,
        "Deleting instance",
        &project,
        name,
        async move {
            driver.delete(&work_project, &work_name).await?;
            if let Some(history) = &history {
                history.forget(&vm).await?;
            }
            events.publish_lifecycle("instance-deleted", &url, &work_project);
            Ok(())
        },
    ))
}

/// `/1.0/instances/NAME`, kept here for the handlers that name it through this module.
pub use crate::urls::instance_url;
