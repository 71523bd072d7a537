//! Reading what a request carries: its query string and its JSON body, with Incus's rules.

use std::collections::BTreeMap;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
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
}
