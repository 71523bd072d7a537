//! Reading what a request carries: its query string and its JSON body, with Incus's rules.
//!
//! Bodies are JSON, and say so: a request that carries a body with any other `Content-Type` (or
//! none) is refused before it reaches its handler ([`check_body_type`]), whatever the endpoint.
//! The `incus` client, `vgashot` and the web page all send `application/json`; the kinds a web
//! page of another site may send without a CORS preflight (`text/plain`, forms) never are.

use std::collections::BTreeMap;

use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use serde::de::DeserializeOwned;

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

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The `project` parameter (default `default`), which must name a project that exists.
    pub fn project(&self) -> Result<&str, ApiError> {
        match self.get("project") {
            None | Some("") => Ok(DEFAULT_PROJECT),
            Some(DEFAULT_PROJECT) => Ok(DEFAULT_PROJECT),
            Some(_) => Err(ApiError::ProjectNotFound),
        }
    }

    /// The `recursion` parameter: 0 (default), 1 or 2.
    pub fn recursion(&self) -> Result<u8, ApiError> {
        match self.get("recursion") {
            None | Some("") | Some("0") => Ok(0),
            Some("1") => Ok(1),
            Some("2") => Ok(2),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid value for recursion parameter: {other}"
            ))),
        }
    }
}

/// The media type of every request body this API reads.
pub const JSON: &str = "application/json";

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

/// Reads the body as JSON of type `T`, at most [`MAX_BODY_BYTES`]. Malformed JSON, a wrong
/// shape and fields `T` does not define are all 400s with the decoder's message.
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
    serde_json::from_slice(&bytes).map_err(ApiError::BadJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_checked() {
        let query = Query::parse(Some("type=vga&project=default&name=a%20b"));
        assert_eq!(query.get("type"), Some("vga"));
        assert_eq!(query.get("name"), Some("a b"));
        assert_eq!(query.project().unwrap(), "default");
        assert_eq!(Query::parse(None).project().unwrap(), "default");
        assert!(matches!(
            Query::parse(Some("project=nope")).project(),
            Err(ApiError::ProjectNotFound)
        ));
        assert_eq!(Query::parse(Some("recursion=2")).recursion().unwrap(), 2);
        assert!(Query::parse(Some("recursion=9")).recursion().is_err());
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
