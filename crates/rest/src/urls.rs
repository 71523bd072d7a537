//! The URLs of the API's objects, as upstream renders them:
//! 1. an instance is `/1.0/instances/NAME` ([`instance_url`]);
//! 2. outside the default project an object's URL carries `?project=NAME` ([`with_project`]),
//!    as upstream's `api.URL.Project` renders it in operations' resources and events' sources.

use crate::request::DEFAULT_PROJECT;

/// `/1.0/instances/NAME`.
pub fn instance_url(name: &str) -> String {
    format!("/1.0/instances/{name}")
}

/// `url` with `?project=NAME` outside the default project (a URL that already has a query is
/// left alone).
pub fn with_project(url: &str, project: &str) -> String {
    if project.is_empty() || project == DEFAULT_PROJECT || url.contains('?') {
        return url.to_owned();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("project", project)
        .finish();
    format!("{url}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_queries_outside_the_default_project() {
        assert_eq!(instance_url("v1"), "/1.0/instances/v1");
        assert_eq!(with_project("/1.0/instances/v1", ""), "/1.0/instances/v1");
        assert_eq!(
            with_project("/1.0/instances/v1", "default"),
            "/1.0/instances/v1"
        );
        assert_eq!(
            with_project("/1.0/instances/v1", "a&b"),
            "/1.0/instances/v1?project=a%26b"
        );
        assert_eq!(with_project("/1.0/x?y=1", "other"), "/1.0/x?y=1");
    }
}
