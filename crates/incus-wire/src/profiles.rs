//! Profiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::null_as_default;

/// The name of a profile a request may apply: only `default` exists.
// A schema only, for the OpenAPI document: on the wire a profile name is a string.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ProfileName {
    /// The default profile (empty).
    Default,
}

/// A profile (Incus `api.Profile`, embedding `api.ProfilePut`): `GET /1.0/profiles/NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Profile {
    /// Configuration.
    #[serde(deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    /// Description (`Default Incus profile`).
    pub description: String,
    /// Devices.
    #[serde(deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Name.
    pub name: String,
    /// URLs of the instances and profiles using it.
    #[serde(deserialize_with = "null_as_default")]
    pub used_by: Vec<String>,
    /// Project.
    pub project: String,
}
