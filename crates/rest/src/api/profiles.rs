//! `/1.0/profiles`: the one profile there is, `default`, empty, so that requests naming it (or
//! naming no profile) are honoured.

use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::model::Profile;
use crate::request::{DEFAULT_PROJECT, ProjectQuery, Query, Recursion, RecursionQuery};

/// The only profile.
pub const DEFAULT_PROFILE: &str = "default";

/// The default profile: no config, no devices.
pub fn default_profile() -> Profile {
    Profile {
        config: Default::default(),
        description: "Default vgashot profile".into(),
        devices: Default::default(),
        name: DEFAULT_PROFILE.into(),
        used_by: Vec::new(),
        project: DEFAULT_PROJECT.into(),
    }
}

/// List the profiles
#[utoipa::path(
    get,
    path = "/1.0/profiles",
    operation_id = "profiles_get",
    tag = "profiles",
    params(RecursionQuery),
    responses(
        (status = 200, description = "The profiles' URLs, or the profiles", body = crate::envelope::SyncEnvelope<crate::openapi::ProfileList>),
        (status = 400, description = "Bad parameter", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub fn list(query: &Query) -> Result<ApiResponse, ApiError> {
    let query: RecursionQuery = query.typed()?;
    query.project.name()?;
    Ok(match query.recursion {
        Recursion(0) => envelope::sync([format!("/1.0/profiles/{DEFAULT_PROFILE}")]),
        _ => envelope::sync([default_profile()]),
    })
}

/// Get a profile
#[utoipa::path(
    get,
    path = "/1.0/profiles/{name}",
    operation_id = "profile_get",
    tag = "profiles",
    params(("name" = String, Path, description = "Profile name"), ProjectQuery),
    responses(
        (status = 200, description = "The profile", body = crate::envelope::SyncEnvelope<Profile>),
        (status = 404, description = "No such profile or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub fn get(name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    query.typed::<ProjectQuery>()?.project.name()?;
    if name != DEFAULT_PROFILE {
        return Err(ApiError::ProfileNotFound);
    }
    Ok(envelope::sync(default_profile()))
}
