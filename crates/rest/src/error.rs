//! The API layer's errors, and the one place where any error becomes an HTTP status.

use http::StatusCode;
use vgashot_history::HistoryError;
use vgashot_instance_drivers::DriverError;
use vgashot_instance_drivers::store::StoreError;
use vgashot_screens::{ScreensError, SourceError};

use crate::envelope::{self, ApiResponse};
use crate::limits::LimitError;

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
    /// A browser sent the request on behalf of a page of another origin
    /// ([`crate::same_origin`]); the text says what gave it away.
    #[error("Cross-origin request refused: {0}")]
    CrossOrigin(String),
    /// `vgashot ui` was addressed by another name than its own loopback address (a page of
    /// another name that resolves to it, as DNS rebinding makes one).
    #[error("Request refused: Host {0} is not this server's address")]
    ForeignHost(String),
    /// A request to `vgashot ui` without its session cookie.
    #[error("not authorized: open the address that `vgashot ui` printed")]
    NoUiSession,
    /// A `vgashot ui` token that is not the one it printed, or that was used already.
    #[error("not authorized: this token is wrong or was used already; run `vgashot ui` again")]
    UiTokenRefused,
    /// `vgashot ui` could not reach the daemon on its Unix socket, or the daemon broke off.
    #[error("cannot reach the daemon on {socket}")]
    DaemonUnreachable {
        /// The daemon's socket.
        socket: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
    /// The request carries a body that is not JSON (the text names what it is instead), the
    /// only kind this API reads ([`crate::request::check_body_type`]).
    #[error("A request body must be application/json, not {0}")]
    NotJson(String),
    /// Reading the request failed.
    #[error("cannot read the request body")]
    Body(#[source] hyper::Error),
    /// The driver refused or failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The screens engine refused or failed (a screen that does not exist, a bad rendering
    /// parameter, a failed capture, too many renderings at once).
    #[error(transparent)]
    Screens(#[from] ScreensError),
    /// A bound on what clients may hold at once was met ([`crate::limits`]).
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The screen history refused or failed ([`crate::history`]).
    #[error(transparent)]
    History(#[from] HistoryError),
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
            Self::Forbidden
            | Self::CrossOrigin(_)
            | Self::ForeignHost(_)
            | Self::NoUiSession
            | Self::UiTokenRefused => StatusCode::FORBIDDEN,
            Self::DaemonUnreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::NotJson(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadRequest(_) | Self::BadJson(_) | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Driver(error) => driver_status(error),
            Self::Screens(error) => screens_status(error),
            Self::Limit(error) => limit_status(error),
            Self::History(error) => history_status(error),
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
        // A bound met is expected under load, and one log line per refusal would let a flood
        // fill the log.
        let bound_met = matches!(
            self,
            Self::Limit(_)
                | Self::Screens(ScreensError::Busy { .. })
                | Self::Driver(DriverError::ConsoleSessions { .. })
        );
        if status.is_server_error() && !bound_met {
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

/// The status of each history error: what a client asked for that is not there is a 404, its
/// bounds 400 (413 for a time-lapse too large to send), the store's failures 500.
fn history_status(error: &HistoryError) -> StatusCode {
    match error {
        HistoryError::NotFound | HistoryError::NothingRecorded | HistoryError::EmptyRange => {
            StatusCode::NOT_FOUND
        }
        HistoryError::FrameTooLarge { .. }
        | HistoryError::NoteTooLong { .. }
        | HistoryError::TooManyFrames { .. } => StatusCode::BAD_REQUEST,
        HistoryError::TimelapseTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        HistoryError::Open { .. }
        | HistoryError::Database(_)
        | HistoryError::Encode(_)
        | HistoryError::Decode(_)
        | HistoryError::Animation(_)
        | HistoryError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
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
        | DriverError::RenameRunning
        | DriverError::NotFrozen
        | DriverError::RestartInterrupted
        | DriverError::DisplayNotFound { .. }
        | DriverError::HeadNotFound { .. }
        | DriverError::HeadWithoutDevice
        | DriverError::NoDisplay
        | DriverError::SocketPathTooLong { .. }
        | DriverError::ScreenTooLarge { .. } => StatusCode::BAD_REQUEST,
        // The instance went away while the request ran (deleted meanwhile): gone, not broken.
        DriverError::NotFound | DriverError::Store(StoreError::NotFound { .. }) => {
            StatusCode::NOT_FOUND
        }
        DriverError::AlreadyExists { .. } => StatusCode::CONFLICT,
        DriverError::ConsoleSessions { .. } => StatusCode::SERVICE_UNAVAILABLE,
        DriverError::Store(_)
        | DriverError::Launch(_)
        | DriverError::Qmp { .. }
        | DriverError::Image(_)
        | DriverError::QemuPng(_)
        | DriverError::ConsoleEncoding(_)
        | DriverError::StopFailed { .. }
        | DriverError::DirectoryInUse { .. }
        | DriverError::Task(_)
        | DriverError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of each bound: a client holding its own share too much is told to slow down (429);
/// a full server is unavailable for now (503).
fn limit_status(error: &LimitError) -> StatusCode {
    match error {
        LimitError::ConnectionsFromAddress { .. } => StatusCode::TOO_MANY_REQUESTS,
        LimitError::Connections { .. }
        | LimitError::Streams { .. }
        | LimitError::InstanceStreams { .. }
        | LimitError::EventListeners { .. }
        | LimitError::Waiters { .. }
        | LimitError::InstanceWaiters { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The status of each screens error: the caller's mistakes are 4xx, a full render queue 503
/// (retry later), the machine's failures 500; a driver error inside a failed capture keeps its
/// own status.
fn screens_status(error: &ScreensError) -> StatusCode {
    match error {
        ScreensError::NotRunning
        | ScreensError::NoDisplay
        | ScreensError::HeadWithoutDevice
        | ScreensError::DisplayNotFound { .. }
        | ScreensError::HeadNotFound { .. }
        | ScreensError::QualityNotJpeg
        | ScreensError::Size(_) => StatusCode::BAD_REQUEST,
        ScreensError::Source(source) => match &**source {
            SourceError::NotRunning | SourceError::HeadNotFound { .. } => StatusCode::BAD_REQUEST,
            SourceError::Failed(cause) => cause
                .downcast_ref::<DriverError>()
                .map_or(StatusCode::INTERNAL_SERVER_ERROR, driver_status),
        },
        ScreensError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ScreensError::CapturePanicked | ScreensError::Encode(_) | ScreensError::RenderPanicked => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
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

    #[test]
    fn screens_errors_keep_the_statuses_and_texts_of_before() {
        let status = |error: ScreensError| ApiError::from(error).status();
        assert_eq!(status(ScreensError::NotRunning), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(ScreensError::HeadWithoutDevice),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ScreensError::QualityNotJpeg),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ScreensError::Busy { limit: 16 }),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(ScreensError::CapturePanicked),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // A driver error inside a failed capture keeps its status and its words.
        let failed = |error: Box<dyn std::error::Error + Send + Sync>| {
            ApiError::from(ScreensError::Source(std::sync::Arc::new(
                SourceError::Failed(error),
            )))
        };
        let no_display = failed(Box::new(DriverError::NoDisplay));
        assert_eq!(no_display.status(), StatusCode::BAD_REQUEST);
        assert_eq!(no_display.to_string(), "Instance has no display");
        let other = failed("the socket closed".into());
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(with_causes(&other), "the socket closed");
    }
}
