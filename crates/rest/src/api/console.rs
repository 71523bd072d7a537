//! `/1.0/instances/{name}/console`: the console log, and the screenshot of the VGA console
//! (`instance_console_screenshot`).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, DATE, ETAG, HeaderValue, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, Response, StatusCode};
use vgashot_instance_drivers::{Instance, QemuInstance};
use vgashot_screens::{ImageFormat, ScreenId, Variant};

use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::request::Query;
use crate::screens::stream;

/// What `type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ConsoleType {
    /// The serial console's log (the default, as in Incus).
    Log,
    /// A screenshot of the VGA console.
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
/// VM's screen, taken without QEMU ever opening a host path; a stopped instance has no screen,
/// which is a 400 (upstream answers an empty 200).
///
/// Screenshots are shared: requests within the instance's `console.screenshot.min_interval`
/// (250 ms by default) get the same capture, and concurrent requests share one capture in
/// flight. Every screenshot has a strong `ETag` derived from the pixels, `Last-Modified` (when
/// the pixels last changed) and `Date`; `If-None-Match` answers `304 Not Modified`.
/// `width`/`height` (one keeps the aspect ratio), `format` and `quality` render thumbnails and
/// other formats (`instance_console_screenshot_formats`); `stream=mjpeg` streams the screen as
/// `multipart/x-mixed-replace` JPEG frames, a frame only when the screen changed, at most `fps`
/// per second (`instance_console_screenshot_stream`).
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/console",
    operation_id = "instance_console_get",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("project" = Option<String>, Query, description = "Project name", example = "default"),
        ("type" = Option<ConsoleType>, Query, description = "What to return: the console log (`log`, the default) or a screenshot of the VGA console (`vga`)"),
        ("device" = Option<String>, Query, description = "`vga`: the display device (`video0`); the primary console when absent"),
        ("head" = Option<u32>, Query, description = "`vga`: the head of a multi-head display device; needs `device`"),
        ("width" = Option<u32>, Query, description = "`vga`: thumbnail width in pixels (1-8192, no larger than the screen); with only one of width and height the aspect ratio is kept"),
        ("height" = Option<u32>, Query, description = "`vga`: thumbnail height in pixels (1-8192, no larger than the screen)"),
        ("format" = Option<ImageFormat>, Query, description = "`vga`: image format, `png` (default), `jpeg` or `webp`"),
        ("quality" = Option<u8>, Query, description = "`vga`: JPEG quality, 1-100 (default 80); PNG and WebP are lossless"),
        ("stream" = Option<StreamType>, Query, description = "`vga`: `mjpeg` streams the screen as `multipart/x-mixed-replace` JPEG frames"),
        ("fps" = Option<u32>, Query, description = "`vga` with `stream`: at most this many frames per second, 1-30 (default 5)"),
        ("If-None-Match" = Option<String>, Header, description = "`vga`: the `ETag` of a screenshot the client has; unchanged, the answer is 304"),
    ),
    responses(
        (status = 200, description = "The console log, or an image of the screen, or a stream of them", content(
            (crate::envelope::Binary = "application/octet-stream"),
            (crate::envelope::Binary = "image/png"),
            (crate::envelope::Binary = "image/jpeg"),
            (crate::envelope::Binary = "image/webp"),
            (crate::envelope::Binary = "multipart/x-mixed-replace"),
        ), headers(
            ("ETag" = String, description = "`vga`: strong, derived from the pixels and the rendering"),
            ("Last-Modified" = String, description = "`vga`: when the screen's pixels last changed"),
        )),
        (status = 304, description = "`vga`: the screen has not changed since `If-None-Match`"),
        (status = 400, description = "A bad parameter, or `vga` of an instance that is not running", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
        (status = 500, description = "QEMU failed", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(
    context: &Context,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<ApiResponse, ApiError> {
    let console = ConsoleType::parse(query)?;
    let project = query.project()?;
    let instance = context.instance(project, name)?;
    match console {
        ConsoleType::Log => {
            let log = instance.console_log().await?;
            Ok(envelope::bytes("application/octet-stream", log))
        }
        ConsoleType::Vga => screenshot(context, instance, query, headers).await,
    }
}

/// A screenshot, a thumbnail, a 304, or a stream.
async fn screenshot(
    context: &Context,
    instance: Arc<QemuInstance>,
    query: &Query,
    headers: &HeaderMap,
) -> Result<ApiResponse, ApiError> {
    let screen = screen_id(query)?;
    if let Some(StreamType::Mjpeg) = StreamType::parse(query)? {
        let variant = Variant::parse(|name| query.get(name), ImageFormat::Jpeg)?;
        if variant.format != ImageFormat::Jpeg {
            return Err(ApiError::BadRequest(
                "The mjpeg stream is made of JPEG frames: leave format out, or set it to jpeg"
                    .into(),
            ));
        }
        let fps = stream::parse_fps(query)?;
        // Fail now, in the error envelope, rather than with an empty stream.
        let first = context.screens.capture(&instance, &screen).await?;
        return stream::mjpeg(
            context.screens.clone(),
            instance,
            screen,
            variant,
            fps,
            &first.metrics,
        );
    }
    let variant = Variant::parse(|name| query.get(name), ImageFormat::Png)?;
    let answer = context.screens.capture(&instance, &screen).await?;
    let capture = &answer.capture;
    let etag = capture.etag(&variant);
    let validators = [
        (ETAG, etag.clone()),
        (LAST_MODIFIED, httpdate::fmt_http_date(capture.changed_at())),
        (DATE, httpdate::fmt_http_date(SystemTime::now())),
        (CACHE_CONTROL, "no-cache".to_owned()),
    ];
    let mut response = if if_none_match(headers, &etag) {
        answer.metrics.count_not_modified();
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(envelope::full(Bytes::new()))
            .expect("a status and no headers make a valid response")
    } else {
        let image = capture.render(&variant).await?;
        envelope::bytes(variant.format.content_type(), image)
    };
    for (name, value) in validators {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// Which screen a request asks for. Whether it exists (the instance's display device,
/// `video0`, and its heads) is the engine's to check, against the instance's displays, before
/// it keeps any state for it: a client cannot make the daemon keep state for made-up screens.
fn screen_id(query: &Query) -> Result<ScreenId, ApiError> {
    let device = query
        .get("device")
        .filter(|device| !device.is_empty())
        .map(str::to_owned);
    let head = query
        .get("head")
        .map(|head| {
            head.parse::<u32>().map_err(|_| {
                ApiError::BadRequest(format!("Invalid value for head parameter: {head}"))
            })
        })
        .transpose()?;
    Ok(ScreenId { device, head })
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by their opaque part, as
/// RFC 9110 says for `If-None-Match`.
pub(crate) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// The values of the `stream` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum StreamType {
    /// `multipart/x-mixed-replace` of JPEG frames.
    Mjpeg,
}

impl StreamType {
    /// Parses `stream`: absent or empty for a single image, `mjpeg` for a stream.
    fn parse(query: &Query) -> Result<Option<Self>, ApiError> {
        match query.get("stream") {
            None | Some("") => Ok(None),
            Some("mjpeg") => Ok(Some(Self::Mjpeg)),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid value for stream parameter: {other} (mjpeg)"
            ))),
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

    /// Which screens exist is the engine's to say (against the instance's displays); here only
    /// the parameters are read.
    #[test]
    fn a_screen_is_named_by_device_and_head() {
        let screen = |raw| screen_id(&Query::parse(Some(raw)));
        assert_eq!(screen("type=vga").unwrap(), ScreenId::default());
        assert_eq!(
            screen("type=vga&device=&head=3").unwrap(),
            ScreenId {
                device: None,
                head: Some(3)
            }
        );
        assert_eq!(
            screen("type=vga&device=video0&head=1").unwrap(),
            ScreenId {
                device: Some("video0".into()),
                head: Some(1)
            }
        );
        let bad = screen("type=vga&device=video0&head=x").unwrap_err();
        assert_eq!(bad.to_string(), "Invalid value for head parameter: x");
        assert_eq!(bad.status(), http::StatusCode::BAD_REQUEST);
    }
}
