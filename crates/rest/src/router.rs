//! From a request to its handler, in this order:
//! 1. A request a browser sent on behalf of another origin is refused, whatever it asks for
//!    ([`same_origin::check`]).
//! 2. The path is parsed into a typed [`Route`] (an unknown one is a 404 for anyone), so every
//!    handler receives names already decoded and checked.
//! 3. An untrusted caller gets a 403 for any route not open to it.
//! 4. A request with a body that is not `application/json` is refused with a 415
//!    ([`request::check_body_type`]), for every endpoint at once.
//! 5. The method picks the handler.

use std::time::Instant;

use http::Method;
use hyper::Request;
use hyper::body::Incoming;

use crate::api;
use crate::auth::trust::Caller;
use crate::context::Context;
use crate::envelope::ApiResponse;
use crate::error::ApiError;
use crate::request::{self, Query};
use crate::same_origin;

/// The resources of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`: the supported API versions.
    Root,
    /// `/1.0`: server information.
    Server,
    /// `/1.0/instances`.
    Instances,
    /// `/1.0/instances/{name}`.
    Instance(String),
    /// `/1.0/instances/{name}/state`.
    InstanceState(String),
    /// `/1.0/instances/{name}/console`.
    InstanceConsole(String),
    /// `/1.0/instances/{name}/screenshots`.
    InstanceScreenshots(String),
    /// `/1.0/instances/{name}/screenshots/timelapse`.
    InstanceTimelapse(String),
    /// `/1.0/instances/{name}/screenshots/{id}`.
    InstanceScreenshot(String, String),
    /// `/1.0/instances/{name}/screenshots/{id}/image`.
    InstanceScreenshotImage(String, String),
    /// `/1.0/operations`.
    Operations,
    /// `/1.0/operations/{id}`.
    Operation(String),
    /// `/1.0/operations/{id}/wait`.
    OperationWait(String),
    /// `/1.0/operations/{id}/websocket`.
    OperationWebsocket(String),
    /// `/1.0/events`.
    Events,
    /// `/1.0/profiles`.
    Profiles,
    /// `/1.0/profiles/{name}`.
    Profile(String),
    /// `/1.0/metrics`.
    Metrics,
    /// `/ui`, `/ui/` and `/ui/{asset}`: the web page ([`api::ui`]), which finds its asset in the
    /// raw path itself, as it must tell `/ui` (a redirect) from `/ui/`.
    Ui,
}

impl Route {
    /// Parses a request path; `None` for paths the API does not have. Segments are
    /// percent-decoded, and a trailing slash is ignored.
    pub fn parse(path: &str) -> Option<Self> {
        if path == "/" || path.is_empty() {
            return Some(Self::Root);
        }
        let segments: Vec<String> = path
            .trim_end_matches('/')
            .strip_prefix('/')?
            .split('/')
            .map(decode)
            .collect::<Option<_>>()?;
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let name = |name: &str| (!name.is_empty()).then(|| name.to_owned());
        Some(match segments.as_slice() {
            ["1.0"] => Self::Server,
            ["1.0", "instances"] => Self::Instances,
            ["1.0", "instances", instance] => Self::Instance(name(instance)?),
            ["1.0", "instances", instance, "state"] => Self::InstanceState(name(instance)?),
            ["1.0", "instances", instance, "console"] => Self::InstanceConsole(name(instance)?),
            ["1.0", "instances", instance, "screenshots"] => {
                Self::InstanceScreenshots(name(instance)?)
            }
            ["1.0", "instances", instance, "screenshots", "timelapse"] => {
                Self::InstanceTimelapse(name(instance)?)
            }
            ["1.0", "instances", instance, "screenshots", id] => {
                Self::InstanceScreenshot(name(instance)?, name(id)?)
            }
            ["1.0", "instances", instance, "screenshots", id, "image"] => {
                Self::InstanceScreenshotImage(name(instance)?, name(id)?)
            }
            ["1.0", "operations"] => Self::Operations,
            ["1.0", "operations", id] => Self::Operation(name(id)?),
            ["1.0", "operations", id, "wait"] => Self::OperationWait(name(id)?),
            ["1.0", "operations", id, "websocket"] => Self::OperationWebsocket(name(id)?),
            ["1.0", "events"] => Self::Events,
            ["1.0", "metrics"] => Self::Metrics,
            ["1.0", "profiles"] => Self::Profiles,
            ["1.0", "profiles", profile] => Self::Profile(name(profile)?),
            ["ui"] | ["ui", _] => Self::Ui,
            _ => return None,
        })
    }

    /// The methods this route answers, as the `Allow` header of a 405 lists them; [`dispatch`]
    /// has an arm for each of them and for no other.
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Self::Instances => "GET, POST",
            Self::Instance(_) => "GET, PUT, POST, PATCH, DELETE",
            Self::InstanceState(_) => "GET, PUT",
            Self::InstanceConsole(_) => "GET, POST, DELETE",
            Self::InstanceScreenshots(_) => "GET, POST",
            Self::InstanceScreenshot(..) => "GET, PATCH, DELETE",
            Self::Root
            | Self::Server
            | Self::Operations
            | Self::Operation(_)
            | Self::OperationWait(_)
            | Self::OperationWebsocket(_)
            | Self::Events
            | Self::Profiles
            | Self::Profile(_)
            | Self::Metrics
            | Self::InstanceTimelapse(_)
            | Self::InstanceScreenshotImage(..)
            | Self::Ui => "GET",
        }
    }

    /// Whether an untrusted client may call `method` on this route: only what incusd opens to
    /// them, `GET /` and `GET /1.0` (a route added later is closed to them by default).
    pub fn allows_untrusted(&self, method: &Method) -> bool {
        *method == Method::GET && matches!(self, Self::Root | Self::Server)
    }
}

/// Percent-decodes one path segment (`a%20b` is `a b`; unlike a query, `+` stays `+`).
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            decoded.push(value);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Answers one request of `caller` (decided for this request); errors become Incus error
/// envelopes here and nowhere else.
pub async fn handle(context: &Context, caller: &Caller, request: Request<Incoming>) -> ApiResponse {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = dispatch(context, caller, request)
        .await
        .unwrap_or_else(ApiError::into_response);
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

async fn dispatch(
    context: &Context,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<ApiResponse, ApiError> {
    same_origin::check(caller, request.uri(), request.headers())?;
    let route = Route::parse(request.uri().path()).ok_or(ApiError::UnknownPath)?;
    let query = Query::parse(request.uri().query());
    let method = request.method().clone();
    // As incusd: an unknown path is a 404 for anyone, any other refusal of an untrusted
    // client a 403, whatever the method.
    if !caller.is_trusted() && !route.allows_untrusted(&method) {
        return Err(ApiError::Forbidden);
    }
    request::check_body_type(&request)?;
    let allowed = route.allowed_methods();
    match (method, route) {
        (Method::GET, Route::Root) => Ok(api::server::root()),
        (Method::GET, Route::Server) => Ok(api::server::get(context, caller)),
        (Method::GET, Route::Instances) => api::instances::list(context, &query).await,
        (Method::POST, Route::Instances) => {
            api::instances::create(context, &query, request.into_body()).await
        }
        (Method::GET, Route::Instance(name)) => api::instances::get(context, &name, &query).await,
        (Method::PUT, Route::Instance(name)) => {
            api::instances::put(context, &name, &query, request.into_body()).await
        }
        (Method::POST, Route::Instance(name)) => {
            api::instance_rename::post(context, &name, &query, request.into_body()).await
        }
        (Method::PATCH, Route::Instance(name)) => {
            api::instances::patch(context, &name, &query, request.into_body()).await
        }
        (Method::DELETE, Route::Instance(name)) => {
            api::instances::delete(context, &name, &query).await
        }
        (Method::GET, Route::InstanceState(name)) => {
            api::instance_state::get(context, &name, &query).await
        }
        (Method::PUT, Route::InstanceState(name)) => {
            api::instance_state::put(context, &name, &query, request.into_body()).await
        }
        (Method::GET, Route::InstanceConsole(name)) => {
            api::console::get(context, &name, &query, request.headers()).await
        }
        (Method::POST, Route::InstanceConsole(name)) => {
            api::console_session::post(context, caller, &name, &query, request.into_body()).await
        }
        (Method::DELETE, Route::InstanceConsole(name)) => {
            api::console::delete(context, &name, &query).await
        }
        (Method::GET, Route::InstanceScreenshots(name)) => {
            api::screenshots::list(context, &name, &query).await
        }
        (Method::POST, Route::InstanceScreenshots(name)) => {
            api::screenshots::create(context, &name, &query, request.into_body()).await
        }
        (Method::GET, Route::InstanceTimelapse(name)) => {
            api::screenshots::timelapse(context, &name, &query).await
        }
        (Method::GET, Route::InstanceScreenshot(name, id)) => {
            api::screenshots::get(context, &name, &id, &query).await
        }
        (Method::PATCH, Route::InstanceScreenshot(name, id)) => {
            api::screenshots::patch(context, &name, &id, &query, request.into_body()).await
        }
        (Method::DELETE, Route::InstanceScreenshot(name, id)) => {
            api::screenshots::delete(context, &name, &id, &query).await
        }
        (Method::GET, Route::InstanceScreenshotImage(name, id)) => {
            api::screenshots::image(context, &name, &id, &query, request.headers()).await
        }
        (Method::GET, Route::Operations) => api::operations::list(context, &query).await,
        (Method::GET, Route::Operation(id)) => api::operations::get(context, &id).await,
        (Method::GET, Route::OperationWait(id)) => {
            api::operations::wait(context, &id, &query).await
        }
        (Method::GET, Route::OperationWebsocket(id)) => {
            api::operations::websocket(context, caller, &id, &query, request)
        }
        (Method::GET, Route::Events) => api::events::get(context, &query, request).await,
        (Method::GET, Route::Profiles) => api::profiles::list(&query),
        (Method::GET, Route::Profile(name)) => api::profiles::get(&name, &query),
        (Method::GET, Route::Metrics) => Ok(api::metrics::get(context)),
        (Method::GET, Route::Ui) => api::ui::get(request.uri(), request.headers()),
        _ => Err(ApiError::MethodNotAllowed { allowed }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_routes() {
        assert_eq!(Route::parse("/"), Some(Route::Root));
        assert_eq!(Route::parse("/1.0"), Some(Route::Server));
        assert_eq!(Route::parse("/1.0/"), Some(Route::Server));
        assert_eq!(
            Route::parse("/1.0/instances/v1/console"),
            Some(Route::InstanceConsole("v1".into()))
        );
        assert_eq!(
            Route::parse("/1.0/instances/a%20b"),
            Some(Route::Instance("a b".into()))
        );
        assert_eq!(
            Route::parse("/1.0/operations/abc/wait"),
            Some(Route::OperationWait("abc".into()))
        );
        assert_eq!(
            Route::parse("/1.0/instances/a+b"),
            Some(Route::Instance("a+b".into()))
        );
        for page in ["/ui", "/ui/", "/ui/app.js"] {
            assert_eq!(Route::parse(page), Some(Route::Ui), "{page}");
        }
        for unknown in [
            "/2.0",
            "/1.0/nope",
            "/1.0/instances//state",
            "/1.0/instances/v1/x",
            "1.0",
            "/1.0/instances/%zz",
            "/1.0/instances/%ff",
            "/ui/a/b",
        ] {
            assert_eq!(Route::parse(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn every_route_allows_get() {
        for route in [
            Route::Root,
            Route::Instances,
            Route::Instance("v1".into()),
            Route::Ui,
        ] {
            assert!(route.allowed_methods().starts_with("GET"), "{route:?}");
        }
        assert_eq!(Route::Instances.allowed_methods(), "GET, POST");
    }

    #[test]
    fn untrusted_clients_get_the_server_description_only() {
        assert!(Route::Root.allows_untrusted(&Method::GET));
        assert!(Route::Server.allows_untrusted(&Method::GET));
        assert!(!Route::Server.allows_untrusted(&Method::PATCH));
        assert!(!Route::Instances.allows_untrusted(&Method::GET));
        assert!(!Route::Events.allows_untrusted(&Method::GET));
        // The web page obeys the same certificate trust as the API it drives.
        assert!(!Route::Ui.allows_untrusted(&Method::GET));
    }
}
