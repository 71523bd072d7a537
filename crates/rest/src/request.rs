//! Reading what a request carries: its query string and its JSON body, with Incus's rules.
//!
//! Query parameters are typed: every endpoint has a struct deriving both `serde::Deserialize`
//! and `utoipa::IntoParams`, so the one type both parses the request and documents it in the
//! OpenAPI document, and the two cannot drift.
//!
//! 1. [`Query::parse`] percent-decodes the query string into keys and values; a repeated key
//!    keeps its last value, as before.
//! 2. [`Query::typed`] hands those pairs to `serde_urlencoded`, which fills the endpoint's
//!    struct; keys the struct does not name are ignored, as Incus ignores them.
//! 3. Values are checked while they are read, by the parameter types below ([`Project`],
//!    [`Recursion`], [`AllProjects`]) and by `deserialize_with` functions built on [`bounded`]; a bad
//!    value is a 400 in Incus's words (`Invalid value for recursion parameter: 9`), the
//!    decoder's message passed through unchanged.
//! 4. Bodies are JSON, and say so: a request that carries a body with any other `Content-Type` (or
//!    none) is refused before it reaches its handler ([`check_body_type`]), whatever the endpoint.
//!    The `incus` client, `vgashot` and the web page all send `application/json`; the kinds a web
//!    page of another site may send without a CORS preflight (`text/plain`, forms) never are.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// The largest JSON body this API accepts: instance definitions are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The project every instance lives in until projects are implemented.
pub const DEFAULT_PROJECT: &str = "default";

/// A request's query parameters, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses a raw query string (`a=1&b=x%20y`); a repeated key keeps its last value.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The parameters as the endpoint's typed struct `T`; a bad value is a 400 that says why.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.0)
            .finish();
        serde_urlencoded::from_str(&encoded)
            .map_err(|error| ApiError::BadRequest(error.to_string()))
    }
}

/// The error of a bad parameter value, in Incus's words, with what is accepted when given.
pub(crate) fn invalid<E: serde::de::Error>(name: &str, value: &str, accepted: Option<&str>) -> E {
    match accepted {
        Some(accepted) => E::custom(format!(
            "Invalid value for {name} parameter: {value} ({accepted})"
        )),
        None => E::custom(format!("Invalid value for {name} parameter: {value}")),
    }
}

/// Reads a parameter's value as text.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    String::deserialize(deserializer)
}

/// Reads an integer parameter `name` that must lie in `range`; out of range or not a number is
/// a 400 that names the range. For `deserialize_with` of an `Option` field (with `default`).
pub fn bounded<'de, D, T>(
    deserializer: D,
    name: &str,
    range: RangeInclusive<T>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + PartialOrd + Display,
{
    let value = text(deserializer)?;
    value
        .parse::<T>()
        .ok()
        .filter(|number| range.contains(number))
        .map(Some)
        .ok_or_else(|| {
            invalid(
                name,
                &value,
                Some(&format!("{} to {}", range.start(), range.end())),
            )
        })
}

/// The `project` parameter, which must name a project that exists: only `default` does, and
/// an absent or empty one means it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Project(Option<String>);

impl Project {
    /// The project's name, or a 404 for a project that does not exist.
    pub fn name(&self) -> Result<&str, ApiError> {
        match self.0.as_deref() {
            None | Some("" | DEFAULT_PROJECT) => Ok(DEFAULT_PROJECT),
            Some(_) => Err(ApiError::ProjectNotFound),
        }
    }

    /// The name given, if any and not empty, unchecked (for `all-projects`).
    pub fn given(&self) -> Option<&str> {
        self.0.as_deref().filter(|name| !name.is_empty())
    }
}

/// The `recursion` parameter: 0 (the default), 1 or 2. An empty value is refused like any
/// other that is not a number, so that what the document calls an integer is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recursion(pub u8);

impl<'de> Deserialize<'de> for Recursion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = text(deserializer)?;
        match value.as_str() {
            "0" => Ok(Self(0)),
            "1" => Ok(Self(1)),
            "2" => Ok(Self(2)),
            other => Err(invalid("recursion", other, None)),
        }
    }
}

/// The media type of every request body this API reads.
pub use vgashot_incus_wire::JSON;

/// Refuses a request that carries a body (a `Content-Length` above zero, or a chunked one) unless
/// its one `Content-Type` is `application/json`, parameters such as `; charset=utf-8` allowed.
/// Requests without a body pass, whatever their headers.
pub fn check_body_type<B: Body>(request: &Request<B>) -> Result<(), ApiError> {
    if request.body().is_end_stream() {
        return Ok(());
    }
    let types: Vec<_> = request.headers().get_all(CONTENT_TYPE).iter().collect();
    let media_type = |value: &http::HeaderValue| {
        let text = String::from_utf8_lossy(value.as_bytes());
        let media_type = text.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case(JSON)
    };
    match types.as_slice() {
        [value] if media_type(value) => Ok(()),
        [] => Err(ApiError::NotJson("one without a Content-Type".into())),
        values => Err(ApiError::NotJson(
            values
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The `all-projects` parameter: `true` or `false`; anything else (an empty value included) is
/// a 400 rather than silently false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllProjects(pub bool);

impl<'de> Deserialize<'de> for AllProjects {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = text(deserializer)?;
        match value.as_str() {
            "true" => Ok(Self(true)),
            "false" => Ok(Self(false)),
            other => Err(invalid("all-projects", other, Some("true or false"))),
        }
    }
}

/// Only `project`: the query of most endpoints.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
}

/// `project` and `recursion`: the query of an object's `GET` (`1`: with its state) and of
/// short lists (`1`: objects rather than URLs).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecursionQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// Recursion level: 0 (the default), 1 or 2.
    #[serde(default)]
    #[param(value_type = Option<u8>, minimum = 0, maximum = 2)]
    pub recursion: Recursion,
}

/// Reads the body as a JSON object of type `T`, at most [`MAX_BODY_BYTES`]. Malformed JSON, a
/// wrong shape (an array included) and fields `T` does not define are all 400s with the
/// decoder's message.
pub async fn json_body<T: DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let bytes = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|error| match error.downcast::<hyper::Error>() {
            Ok(error) => ApiError::Body(*error),
            Err(_) => ApiError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            },
        })?
        .to_bytes();
    // Every body of this API is an object; serde would also fill a struct from an array.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
                .err()
                .map_or_else(
                    || ApiError::BadRequest("The request body must be a JSON object".into()),
                    ApiError::BadJson,
                ),
        );
    }
    serde_json::from_slice(&bytes).map_err(ApiError::BadJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Example {
        #[serde(default)]
        project: Project,
        #[serde(default)]
        recursion: Recursion,
        #[serde(default, rename = "all-projects")]
        all_projects: AllProjects,
        #[serde(default, deserialize_with = "side")]
        width: Option<u32>,
        name: Option<String>,
    }

    fn side<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
        bounded(deserializer, "width", 1..=10)
    }

    fn parse(raw: &str) -> Result<Example, ApiError> {
        Query::parse(Some(raw)).typed()
    }

    #[test]
    fn queries_are_decoded_and_checked() {
        let query = parse("project=default&name=a%20b&recursion=2&width=3").unwrap();
        assert_eq!(query.name.as_deref(), Some("a b"));
        assert_eq!(query.project.name().unwrap(), "default");
        assert_eq!(query.recursion, Recursion(2));
        assert_eq!(query.width, Some(3));
        let empty: Example = Query::parse(None).typed().unwrap();
        assert_eq!(empty.project.name().unwrap(), "default");
        assert_eq!(empty.recursion, Recursion(0));
        assert_eq!(empty.width, None);
        assert!(!empty.all_projects.0);
        assert!(parse("all-projects=true").unwrap().all_projects.0);
        // A repeated key keeps its last value; unknown keys are ignored.
        assert_eq!(
            parse("recursion=9&recursion=1&x=y").unwrap().recursion,
            Recursion(1)
        );
        assert!(matches!(
            parse("project=nope").unwrap().project.name(),
            Err(ApiError::ProjectNotFound)
        ));
        let message = |raw| parse(raw).unwrap_err().to_string();
        assert_eq!(
            message("recursion=9"),
            "Invalid value for recursion parameter: 9"
        );
        assert_eq!(
            message("width=11"),
            "Invalid value for width parameter: 11 (1 to 10)"
        );
        assert_eq!(
            message("all-projects=yes"),
            "Invalid value for all-projects parameter: yes (true or false)"
        );
    }

    #[test]
    fn bodies_must_be_json() {
        use bytes::Bytes;
        use http_body_util::{Empty, Full};

        let with_body = |types: &[&str]| {
            let mut request = Request::post("/1.0/instances");
            for value in types {
                request = request.header(CONTENT_TYPE, *value);
            }
            let request = request.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
            check_body_type(&request).map_err(|error| {
                assert_eq!(error.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
                error.to_string()
            })
        };
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
        ] {
            assert_eq!(with_body(&[accepted]), Ok(()), "{accepted}");
        }
        for (types, named) in [
            (
                &["text/plain;charset=UTF-8"][..],
                "text/plain;charset=UTF-8",
            ),
            (
                &["application/x-www-form-urlencoded"],
                "application/x-www-form-urlencoded",
            ),
            (
                &["multipart/form-data; boundary=x"],
                "multipart/form-data; boundary=x",
            ),
            (&["application/jsonp"], "application/jsonp"),
            (
                &["application/json", "text/plain"],
                "application/json, text/plain",
            ),
            (&[], "one without a Content-Type"),
        ] {
            assert_eq!(
                with_body(types),
                Err(format!(
                    "A request body must be application/json, not {named}"
                ))
            );
        }
        // No body: nothing to check, whatever the headers say.
        let empty = Request::post("/1.0/instances")
            .header(CONTENT_TYPE, "text/plain")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert!(check_body_type(&empty).is_ok());
    }
}
