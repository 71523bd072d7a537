//! `/1.0/instances/{name}/console`: the console log, and the screenshot of the VGA console
//! (`instance_console_screenshot`).

use vgashot_instance_drivers::{Instance, ScreenshotOptions};

use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::request::Query;

/// What `type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ConsoleType {
    /// The serial console's log (the default, as in Incus).
    Log,
    /// A PNG of the VGA console.
    Vga,
}

impl ConsoleType {
    /// Parses `type`: `log` (also when absent or empty, as Incus) or `vga`. Anything else is a
    /// 400 (upstream answers 500 here, although its own API documentation says 400).
    fn parse(query: &Query) -> Result<Self, ApiError> {
        match query.get("type") {
            None | Some("" | "log") => Ok(Self::Log),
            Some("vga") => Ok(Self::Vga),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid value for type parameter: {other}"
            ))),
        }
    }
}

/// Get the console log or a screenshot of the VGA console
///
/// `type=log` (the default) returns the serial console's log. `type=vga` returns a PNG of the
/// VM's screen, taken without QEMU ever opening a host path. A stopped instance has no screen:
/// that is a 400 (upstream answers an empty 200).
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/console",
    operation_id = "instance_console_get",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("project" = Option<String>, Query, description = "Project name", example = "default"),
        ("type" = Option<ConsoleType>, Query, description = "What to return: the console log (`log`, the default) or a PNG screenshot of the VGA console (`vga`)"),
    ),
    responses(
        (status = 200, description = "The console log, or a PNG of the screen", content(
            (crate::envelope::Binary = "application/octet-stream"),
            (crate::envelope::Binary = "image/png"),
        )),
        (status = 400, description = "Bad `type`, or `vga` of an instance that is not running", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
        (status = 500, description = "QEMU failed", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let console = ConsoleType::parse(query)?;
    let instance = context.instance(query.project()?, name)?;
    match console {
        ConsoleType::Log => {
            let log = instance.console_log().await?;
            Ok(envelope::bytes("application/octet-stream", log))
        }
        ConsoleType::Vga => {
            let screenshot = instance
                .console_screenshot(&ScreenshotOptions::default())
                .await?;
            Ok(envelope::bytes("image/png", screenshot.png))
        }
    }
}

/// Clear the console log
#[utoipa::path(
    delete,
    path = "/1.0/instances/{name}/console",
    operation_id = "instance_console_delete",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("project" = Option<String>, Query, description = "Project name", example = "default"),
    ),
    responses(
        (status = 200, description = "The log is empty", body = crate::envelope::SyncEnvelope<serde_json::Value>),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn delete(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let instance = context.instance(query.project()?, name)?;
    instance.clear_console_log().await?;
    Ok(envelope::sync(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_types() {
        let parse = |raw| ConsoleType::parse(&Query::parse(Some(raw)));
        assert_eq!(parse("").unwrap(), ConsoleType::Log);
        assert_eq!(parse("type=").unwrap(), ConsoleType::Log);
        assert_eq!(parse("type=log").unwrap(), ConsoleType::Log);
        assert_eq!(parse("type=vga").unwrap(), ConsoleType::Vga);
        let bogus = parse("type=bogus").unwrap_err();
        assert_eq!(bogus.to_string(), "Invalid value for type parameter: bogus");
        assert_eq!(bogus.status(), http::StatusCode::BAD_REQUEST);
    }
}
