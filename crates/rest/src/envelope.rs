//! Incus's response envelopes, and the response builders every handler uses.
//!
//! Every JSON answer of the Incus API is an envelope with the keys, in this order: `type`,
//! `status`, `status_code`, `operation`, `error_code`, `error`, `metadata`. Synchronous answers
//! carry their result in `metadata`; asynchronous ones (202) carry the operation they started;
//! errors carry `error_code` equal to the HTTP status and the message in `error`.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use utoipa::ToSchema;

/// The body type of every response: a whole buffer, or a stream (the live screen stream). Not
/// `Sync`: hyper needs only `Send`, and stream bodies are built from futures that are not `Sync`.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every handler returns.
pub type ApiResponse = Response<Body>;

/// A body from bytes held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A response body of raw bytes (a console log, a PNG), for the API documentation.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// The synchronous envelope: `metadata` is the result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncEnvelope<T> {
    /// Always `sync`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `Success`.
    pub status: &'static str,
    /// Always 200.
    pub status_code: u16,
    /// Always empty.
    pub operation: &'static str,
    /// Always 0.
    pub error_code: u16,
    /// Always empty.
    pub error: &'static str,
    /// The result.
    pub metadata: T,
}

/// The asynchronous envelope (HTTP 202): `metadata` is the operation just started.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsyncEnvelope<T> {
    /// Always `async`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `Operation created`.
    pub status: &'static str,
    /// Always 100.
    pub status_code: u16,
    /// The operation's URL, `/1.0/operations/UUID`.
    pub operation: String,
    /// Always 0.
    pub error_code: u16,
    /// Always empty.
    pub error: &'static str,
    /// The operation.
    pub metadata: T,
}

/// The error envelope: `error_code` is the HTTP status, `error` says what went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always empty.
    pub status: &'static str,
    /// Always 0.
    pub status_code: u16,
    /// Always empty.
    pub operation: &'static str,
    /// The HTTP status code.
    pub error_code: u16,
    /// The message.
    pub error: String,
    /// Always null.
    pub metadata: Option<()>,
}

/// A 200 with `metadata` in the sync envelope.
pub fn sync<T: Serialize>(metadata: T) -> ApiResponse {
    let envelope = SyncEnvelope {
        kind: "sync",
        status: "Success",
        status_code: 200,
        operation: "",
        error_code: 0,
        error: "",
        metadata,
    };
    json(StatusCode::OK, &envelope)
}

/// A 202 for a started operation: the async envelope and a `Location` header.
pub fn accepted<T: Serialize>(operation_url: String, operation: T) -> ApiResponse {
    let location = HeaderValue::from_str(&operation_url).ok();
    let envelope = AsyncEnvelope {
        kind: "async",
        status: "Operation created",
        status_code: 100,
        operation: operation_url,
        error_code: 0,
        error: "",
        metadata: operation,
    };
    let mut response = json(StatusCode::ACCEPTED, &envelope);
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// An error envelope with `status`.
pub fn error(status: StatusCode, message: String) -> ApiResponse {
    let envelope = ErrorEnvelope {
        kind: "error",
        status: "",
        status_code: 0,
        operation: "",
        error_code: status.as_u16(),
        error: message,
        metadata: None,
    };
    let mut response = json(status, &envelope);
    response.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A body of raw bytes with its content type and length.
pub fn bytes(content_type: &'static str, body: impl Into<Bytes>) -> ApiResponse {
    let body = body.into();
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, body.len())
        .body(full(body))
        .expect("static headers are valid")
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResponse {
    // Serialising our own plain structs cannot fail.
    let body = serde_json::to_vec(value).expect("envelopes serialise");
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len())
        .body(full(body))
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: ApiResponse) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn keys_come_in_incus_order() {
        let response = sync(["/1.0"]);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":["/1.0"]}"#
        );
    }

    #[tokio::test]
    async fn errors_carry_their_status_and_nosniff() {
        let response = error(StatusCode::NOT_FOUND, "not found".into());
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = body_of(response).await;
        assert_eq!(
            body,
            serde_json::json!({"type": "error", "status": "", "status_code": 0, "operation": "",
                "error_code": 404, "error": "not found", "metadata": null})
        );
    }

    #[tokio::test]
    async fn operations_are_announced_with_location() {
        let response = accepted("/1.0/operations/x".into(), serde_json::json!({"id": "x"}));
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["location"], "/1.0/operations/x");
        let body = body_of(response).await;
        assert_eq!(body["status_code"], 100);
        assert_eq!(body["operation"], "/1.0/operations/x");
    }
}
