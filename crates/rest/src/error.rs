//! The API layer's errors, and the one place where any error becomes an HTTP status.

use std::sync::Arc;

use http::StatusCode;
use vgashot_instance_drivers::DriverError;
use vgashot_instance_drivers::store::StoreError;

use crate::envelope::{self, ApiResponse};

/// Every error a handler returns; [`ApiError::status`] maps each to its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route for this path (Incus answers exactly "not found").
    #[error("not found")]
    UnknownPath,
    /// The route exists but not for this method; the 405 says which methods it has (`Allow`,
    /// as RFC 9110 requires).
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The route's methods, as the `Allow` header lists them: `GET, POST`.
        allowed: &'static str,
    },
    /// The caller is not trusted and the route is not open to untrusted clients (Incus's
    /// `response.Forbidden(nil)`, which is also what incusd answers there).
    #[error("not authorized")]
    Forbidden,
    /// The instance does not exist in the project (Incus's wording).
    #[error("Failed to fetch instance \"{name}\" in project \"{project}\": Instance not found")]
    InstanceNotFound {
        /// The instance asked for.
        name: String,
        /// The project it was looked for in.
        project: String,
    },
    /// The project does not exist.
    #[error("Project not found")]
    ProjectNotFound,
    /// The profile does not exist (only `default` does).
    #[error("Profile not found")]
    ProfileNotFound,
    /// The operation does not exist (or was forgotten).
    #[error("Operation not found")]
    OperationNotFound,
    /// A query parameter, header or field the request cannot have.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not the JSON this endpoint takes; the decoder says why.
    #[error("{0}")]
    BadJson(#[source] serde_json::Error),
    /// The body is larger than any request of this API.
    #[error("Request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The bound.
        limit: usize,
    },
    /// Reading the request failed.
    #[error("cannot read the request body")]
    Body(#[source] hyper::Error),
    /// The driver refused or failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// An error shared by every request that waited for the same capture.
    #[error(transparent)]
    Shared(Arc<ApiError>),
    /// Something that should not happen did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status for this error. This is the only place errors meet statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownPath
            | Self::InstanceNotFound { .. }
            | Self::ProjectNotFound
            | Self::ProfileNotFound
            | Self::OperationNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::BadRequest(_) | Self::BadJson(_) | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Driver(error) => driver_status(error),
            Self::Shared(error) => error.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error as an Incus error envelope. The message is this error's text, followed by its
    /// causes for server-side failures, so an operator sees QEMU's own words.
    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        let message = if status.is_server_error() {
            with_causes(&self)
        } else {
            self.to_string()
        };
        if status.is_server_error() {
            tracing::error!(%message, "request failed");
        }
        let mut response = envelope::error(status, message);
        if let Self::MethodNotAllowed { allowed } = self {
            response
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
        }
        response
    }
}

/// The status of each driver error: the caller's mistakes are 4xx, the machine's are 500.
fn driver_status(error: &DriverError) -> StatusCode {
    match error {
        DriverError::InvalidName(_)
        | DriverError::Config(_)
        | DriverError::UnsupportedType(_)
        | DriverError::Unsupported { .. }
        | DriverError::NotRunning
        | DriverError::AlreadyRunning
        | DriverError::AlreadyStopped
        | DriverError::Running
        | DriverError::NotFrozen
        | DriverError::DisplayNotFound { .. }
        | DriverError::HeadNotFound { .. }
        | DriverError::HeadWithoutDevice
        | DriverError::NoDisplay => StatusCode::BAD_REQUEST,
        // The instance went away while the request ran (deleted meanwhile): gone, not broken.
        DriverError::NotFound | DriverError::Store(StoreError::NotFound { .. }) => {
            StatusCode::NOT_FOUND
        }
        DriverError::AlreadyExists { .. } => StatusCode::CONFLICT,
        DriverError::Store(_)
        | DriverError::Launch(_)
        | DriverError::Qmp { .. }
        | DriverError::Image(_)
        | DriverError::QemuPng(_)
        | DriverError::ConsoleEncoding(_)
        | DriverError::StopFailed { .. }
        | DriverError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error's text and its causes, `: `-separated.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.ends_with(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incus_wording_and_statuses() {
        let missing = ApiError::InstanceNotFound {
            name: "nope".into(),
            project: "default".into(),
        };
        assert_eq!(
            missing.to_string(),
            "Failed to fetch instance \"nope\" in project \"default\": Instance not found"
        );
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::UnknownPath.to_string(), "not found");
        assert_eq!(ApiError::Forbidden.to_string(), "not authorized");
        assert_eq!(ApiError::Forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ApiError::Driver(DriverError::NotRunning).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::Driver(DriverError::NotRunning).to_string(),
            "Instance is not running"
        );
        assert_eq!(
            ApiError::Driver(DriverError::AlreadyExists { name: "v1".into() }).status(),
            StatusCode::CONFLICT
        );
    }
}
