//! Typed calls of the API: what tools and tests ask most, in the wire model's types
//! (`vgashot_incus_wire`) instead of JSON indexed by hand.
//!
//! 1. Every call goes through [`Client::call`], so a sync answer's `metadata` is read, an async
//!    one's operation is waited for, and an error envelope is a [`ClientError::Api`] with its
//!    status and message.
//! 2. The answer is then read into its type; a body of another shape is a
//!    [`ClientError::Json`], never a default value.
//! 3. Paths are built by [`instance_path`], which percent-encodes the name, and `project` is a
//!    query parameter when given.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vgashot_incus_wire::{
    Instance, InstanceFull, InstanceState, InstanceStatePut, InstancesPost, Screenshot, Server,
};

use crate::{Client, ClientError};

/// What a path segment keeps as it is: RFC 3986's unreserved characters; every other byte is
/// percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `/1.0/instances/NAME` with the name percent-encoded (every byte outside RFC 3986's
/// unreserved set), followed by `suffix` and the query `pairs`.
pub fn instance_path(name: &str, suffix: &str, pairs: &[(&str, String)]) -> String {
    let mut path = format!("/1.0/instances/{}", utf8_percent_encode(name, PATH_SEGMENT));
    path.push_str(suffix);
    if !pairs.is_empty() {
        path.push('?');
        path.push_str(&query(pairs));
    }
    path
}

/// The `project` query pair, when a project is named.
fn project_pair(project: Option<&str>) -> Vec<(&'static str, String)> {
    project
        .map(|project| vec![("project", project.to_owned())])
        .unwrap_or_default()
}

impl Client {
    /// [`Client::call`] with a typed body and a typed answer.
    pub async fn call_typed<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(ClientError::Json)?;
        let metadata = self.call(method, path, body.as_ref()).await?;
        serde_json::from_value(metadata).map_err(ClientError::Json)
    }

    /// `GET /1.0`: the server, as this client is trusted to see it.
    pub async fn server(&self) -> Result<Server, ClientError> {
        self.call_typed("GET", "/1.0", None::<&Value>).await
    }

    /// `GET /1.0/instances?recursion=1`: the instances of `project` (the default one when
    /// `None`).
    pub async fn instances(&self, project: Option<&str>) -> Result<Vec<Instance>, ClientError> {
        self.list_instances(project, 1).await
    }

    /// `GET /1.0/instances?recursion=2`: the instances of `project` with their state.
    pub async fn instances_full(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<InstanceFull>, ClientError> {
        self.list_instances(project, 2).await
    }

    /// `GET /1.0/instances?recursion=RECURSION` of `project`.
    async fn list_instances<T: DeserializeOwned>(
        &self,
        project: Option<&str>,
        recursion: u8,
    ) -> Result<Vec<T>, ClientError> {
        let mut pairs = project_pair(project);
        pairs.push(("recursion", recursion.to_string()));
        let path = format!("/1.0/instances?{}", query(&pairs));
        self.call_typed("GET", &path, None::<&Value>).await
    }

    /// `GET /1.0/instances/NAME`.
    pub async fn instance(
        &self,
        name: &str,
        project: Option<&str>,
    ) -> Result<Instance, ClientError> {
        let path = instance_path(name, "", &project_pair(project));
        self.call_typed("GET", &path, None::<&Value>).await
    }

    /// `GET /1.0/instances/NAME/state`.
    pub async fn instance_state(
        &self,
        name: &str,
        project: Option<&str>,
    ) -> Result<InstanceState, ClientError> {
        let path = instance_path(name, "/state", &project_pair(project));
        self.call_typed("GET", &path, None::<&Value>).await
    }

    /// `POST /1.0/instances`, waiting for the operation to end.
    pub async fn create_instance(
        &self,
        request: &InstancesPost,
        project: Option<&str>,
    ) -> Result<(), ClientError> {
        let pairs = project_pair(project);
        let path = if pairs.is_empty() {
            "/1.0/instances".to_owned()
        } else {
            format!("/1.0/instances?{}", query(&pairs))
        };
        self.call_typed::<Value>("POST", &path, Some(request))
            .await
            .map(drop)
    }

    /// `PUT /1.0/instances/NAME/state`, waiting for the operation to end.
    pub async fn change_state(
        &self,
        name: &str,
        request: &InstanceStatePut,
        project: Option<&str>,
    ) -> Result<(), ClientError> {
        let path = instance_path(name, "/state", &project_pair(project));
        self.call_typed::<Value>("PUT", &path, Some(request))
            .await
            .map(drop)
    }

    /// `DELETE /1.0/instances/NAME`, waiting for the operation to end.
    pub async fn delete_instance(
        &self,
        name: &str,
        project: Option<&str>,
    ) -> Result<(), ClientError> {
        let path = instance_path(name, "", &project_pair(project));
        self.call_typed::<Value>("DELETE", &path, None::<&Value>)
            .await
            .map(drop)
    }
}

/// Which screenshots of a history to list (`GET /1.0/instances/NAME/screenshots`); each filter
/// is passed as it is, and the server refuses one it cannot read.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Taken at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Taken at or before this time (RFC 3339).
    pub until: Option<String>,
    /// Recorded for this reason (`change`, `stop`, `shutdown`, `panic`, `crash`, `manual`).
    pub reason: Option<String>,
}

impl Client {
    /// `GET /1.0/instances/NAME/screenshots?recursion=1`: the screen history of `name`, oldest
    /// first, as `filter` narrows it.
    pub async fn screenshots(
        &self,
        name: &str,
        project: Option<&str>,
        filter: &HistoryFilter,
    ) -> Result<Vec<Screenshot>, ClientError> {
        let mut pairs = project_pair(project);
        pairs.push(("recursion", "1".to_owned()));
        for (key, value) in [
            ("since", &filter.since),
            ("until", &filter.until),
            ("reason", &filter.reason),
        ] {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        let path = instance_path(name, "/screenshots", &pairs);
        self.call_typed("GET", &path, None::<&Value>).await
    }
}

/// `pairs` as a query string.
fn query(pairs: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths_are_encoded() {
        assert_eq!(instance_path("v1", "", &[]), "/1.0/instances/v1");
        assert_eq!(
            instance_path("a b/c", "/console", &[("type", "vga".into())]),
            "/1.0/instances/a%20b%2Fc/console?type=vga"
        );
        assert_eq!(
            instance_path("v", "", &[("project", "a&b".into())]),
            "/1.0/instances/v?project=a%26b"
        );
        assert_eq!(
            instance_path("é-._~!", "", &[]),
            "/1.0/instances/%C3%A9-._~%21"
        );
    }
}
