//! `/1.0/instances/{name}/console`: the console log, and the screenshot of the VGA console
//! (`instance_console_screenshot`).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, DATE, ETAG, HeaderValue, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, Response, StatusCode};
use vgashot_instance_drivers::{DISPLAY_DEVICE_ID, DriverError, Instance, MAX_HEADS};
use vgashot_screens::{ImageFormat, MAX_SIDE, ScreenId, Variant};

use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::request::{Project, ProjectQuery, Query, bounded, invalid};
use crate::screens::{stream, wake};

/// What `type` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ConsoleType {
    /// The serial console's log (the default, as in Incus).
    #[default]
    Log,
    /// A screenshot of the VGA console.
    Vga,
}

impl<'de> Deserialize<'de> for ConsoleType {
    /// Reads `type`: `log` (also when empty, as Incus) or `vga`. Anything else is a 400
    /// (upstream answers 500 here, although its own API documentation says 400).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "" | "log" => Ok(Self::Log),
            "vga" => Ok(Self::Vga),
            other => Err(invalid("type", other, None)),
        }
    }
}

/// The query of `GET /1.0/instances/{name}/console`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$", example = "default")]
    pub project: Project,
    /// What to return: the console log (`log`, the default) or a screenshot of the VGA console
    /// (`vga`).
    #[serde(default, rename = "type")]
    #[param(value_type = Option<ConsoleType>)]
    pub kind: ConsoleType,
    /// `vga`: the display device (`video0`, the only one); the primary console when absent or
    /// empty. Only screens that can exist are named, so a client cannot make the daemon keep
    /// state for any number of made-up devices.
    #[serde(default, deserialize_with = "device")]
    #[param(value_type = Option<String>, pattern = "^(video0)?$")]
    pub device: Option<String>,
    /// `vga`: the head of a multi-head display device; needs `device`.
    #[serde(default, deserialize_with = "head")]
    #[param(maximum = 15)]
    pub head: Option<u32>,
    /// `vga`: thumbnail width in pixels (1-8192, no larger than the screen); with only one of
    /// width and height the aspect ratio is kept.
    #[serde(default, deserialize_with = "width")]
    #[param(minimum = 1, maximum = 8192)]
    pub width: Option<u32>,
    /// `vga`: thumbnail height in pixels (1-8192, no larger than the screen).
    #[serde(default, deserialize_with = "height")]
    #[param(minimum = 1, maximum = 8192)]
    pub height: Option<u32>,
    /// `vga`: image format, `png` (default), `jpeg` or `webp`.
    #[serde(default, deserialize_with = "format")]
    pub format: Option<ImageFormat>,
    /// `vga`: JPEG quality, 1-100 (default 80); PNG and WebP are lossless.
    #[serde(default, deserialize_with = "quality")]
    #[param(minimum = 1, maximum = 100)]
    pub quality: Option<u8>,
    /// `vga`: `mjpeg` streams the screen as `multipart/x-mixed-replace` JPEG frames.
    #[serde(default, deserialize_with = "stream_type")]
    pub stream: Option<StreamType>,
    /// `vga` with `stream`: at most this many frames per second, 1-30 (default 5).
    #[serde(default, deserialize_with = "fps")]
    #[param(minimum = 1, maximum = 30)]
    pub fps: Option<u32>,
    /// `vga`: `true` presses and releases a modifier key in the guest first, so a blanked
    /// screen shows again, and waits up to 1 s for it to change
    /// (`instance_console_screenshot_wake`).
    #[serde(default, deserialize_with = "wake")]
    #[param(value_type = Option<bool>)]
    pub wake: bool,
    /// `vga`: the screen as it was at this time (RFC 3339, UTC), from the screen history, for
    /// running and stopped instances alike (`instance_screenshot_history`).
    #[serde(default, deserialize_with = "crate::api::screenshots::time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<std::time::SystemTime>,
    /// `vga` with `If-None-Match`: wait up to this long (`500ms`, `10s`, or whole seconds; at
    /// most 30s) for the screen to differ from the `ETag`s named, and answer as soon as it
    /// does; `304` when it has not by then (`instance_console_screenshot_wait`).
    #[serde(default, deserialize_with = "crate::screens::wait::parameter")]
    #[param(value_type = Option<String>, example = "10s")]
    pub wait: Option<std::time::Duration>,
}

impl ConsoleQuery {
    /// The rendering asked for, in `default_format` unless `format` says otherwise.
    pub(crate) fn variant(&self, default_format: ImageFormat) -> Result<Variant, ApiError> {
        Ok(Variant::new(
            self.width,
            self.height,
            self.format.unwrap_or(default_format),
            self.quality,
        )?)
    }
}

/// Reads the `width` parameter: 1 to [`MAX_SIDE`].
pub(crate) fn width<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    bounded(deserializer, "width", 1..=MAX_SIDE)
}

/// Reads the `height` parameter: 1 to [`MAX_SIDE`].
pub(crate) fn height<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    bounded(deserializer, "height", 1..=MAX_SIDE)
}

/// Reads the `quality` parameter: 1 to 100.
pub(crate) fn quality<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    bounded(deserializer, "quality", 1..=100)
}

/// Reads the `format` parameter: `png`, `jpeg` (or `jpg`) or `webp`.
pub(crate) fn format<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ImageFormat>, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "png" => Ok(Some(ImageFormat::Png)),
        "jpeg" | "jpg" => Ok(Some(ImageFormat::Jpeg)),
        "webp" => Ok(Some(ImageFormat::Webp)),
        other => Err(invalid("format", other, Some("png, jpeg or webp"))),
    }
}

/// Reads the `fps` parameter: 1 to [`stream::MAX_FPS`] ([`stream::DEFAULT_FPS`] when absent).
fn fps<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    bounded(deserializer, "fps", 1..=stream::MAX_FPS)
}

/// Reads `wake`: `true` or `false`.
fn wake<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid("wake", other, Some("true or false"))),
    }
}

/// Reads `device`: the instance's own display device, `video0` (empty: none named).
fn device<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "" => Ok(None),
        DISPLAY_DEVICE_ID => Ok(Some(DISPLAY_DEVICE_ID.to_owned())),
        other => Err(D::Error::custom(
            DriverError::DisplayNotFound {
                device: other.to_owned(),
            }
            .to_string(),
        )),
    }
}

/// Reads `head`: 0 to the most heads a display device can have, less one.
fn head<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    bounded(deserializer, "head", 0..=MAX_HEADS - 1)
}

/// Reads `stream`: `mjpeg` for a stream (absent for a single image).
fn stream_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<StreamType>, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "mjpeg" => Ok(Some(StreamType::Mjpeg)),
        other => Err(invalid("stream", other, Some("mjpeg"))),
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
        ConsoleQuery,
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
    let query: ConsoleQuery = query.typed()?;
    let project = query.project.name()?;
    let instance = context.instance(project, name)?;
    match query.kind {
        ConsoleType::Log => {
            let log = instance.console_log().await?;
            Ok(envelope::bytes("application/octet-stream", log))
        }
        ConsoleType::Vga => match query.at {
            Some(at) => {
                let variant = query.variant(ImageFormat::Png)?;
                crate::api::screenshots::at(context, &instance, at, variant, headers).await
            }
            None => screenshot(context, instance, &query, headers).await,
        },
    }
}

/// A screenshot, a thumbnail, a 304, or a stream.
async fn screenshot(
    context: &Context,
    instance: Arc<dyn Instance>,
    query: &ConsoleQuery,
    headers: &HeaderMap,
) -> Result<ApiResponse, ApiError> {
    let screen = screen_id(query);
    if let Some(StreamType::Mjpeg) = query.stream {
        let variant = query.variant(ImageFormat::Jpeg)?;
        if variant.format != ImageFormat::Jpeg {
            return Err(ApiError::BadRequest(
                "The mjpeg stream is made of JPEG frames: leave format out, or set it to jpeg"
                    .into(),
            ));
        }
        let fps = query.fps.unwrap_or(stream::DEFAULT_FPS);
        // Fail now, in the error envelope, rather than with an empty stream.
        let first = capture(context, &instance, &screen, query.wake).await?;
        return stream::mjpeg(
            context.screens.clone(),
            instance,
            screen,
            variant,
            fps,
            &first.metrics,
        );
    }
    let variant = query.variant(ImageFormat::Png)?;
    let answer = match query.wait {
        Some(wait) => {
            let screens = &context.screens;
            screens
                .changed_from(&instance, &screen, &variant, headers, wait)
                .await?
        }
        None => capture(context, &instance, &screen, query.wake).await?,
    };
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

/// A capture of `screen`, woken first when `wake` ([`wake::capture`]).
async fn capture(
    context: &Context,
    instance: &Arc<dyn Instance>,
    screen: &ScreenId,
    wake: bool,
) -> Result<vgashot_screens::Answer, ApiError> {
    if wake {
        wake::capture(&context.screens, instance, screen).await
    } else {
        context.screens.capture(instance, screen).await
    }
}

/// Which screen a request asks for. Reading the query allowed the instance's own display
/// device (`video0`) only, and heads up to the most a device can have; whether the screen exists
/// on this instance (a head without a device, a head beyond its device's) is the engine's to
/// check, against the instance's displays, before it keeps any state for it.
fn screen_id(query: &ConsoleQuery) -> ScreenId {
    ScreenId {
        device: query.device.clone(),
        head: query.head,
    }
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

/// Clear the console log
#[utoipa::path(
    delete,
    path = "/1.0/instances/{name}/console",
    operation_id = "instance_console_delete",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ProjectQuery,
    ),
    responses(
        (status = 200, description = "The log is empty", body = crate::envelope::SyncEnvelope<serde_json::Value>),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn delete(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let instance = context.instance(query.typed::<ProjectQuery>()?.project.name()?, name)?;
    instance.clear_console_log().await?;
    Ok(envelope::sync(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<ConsoleQuery, ApiError> {
        Query::parse(Some(raw)).typed()
    }

    #[test]
    fn wait_is_a_bounded_duration() {
        let wait = |raw| parse(raw).unwrap().wait;
        assert_eq!(
            wait("wait=500ms"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(wait("wait=30"), Some(std::time::Duration::from_secs(30)));
        assert_eq!(wait(""), None);
    }

    #[test]
    fn console_types() {
        let kind = |raw| parse(raw).map(|query| query.kind);
        assert_eq!(kind("").unwrap(), ConsoleType::Log);
        assert_eq!(kind("type=").unwrap(), ConsoleType::Log);
        assert_eq!(kind("type=log").unwrap(), ConsoleType::Log);
        assert_eq!(kind("type=vga").unwrap(), ConsoleType::Vga);
        let bogus = kind("type=bogus").unwrap_err();
        assert_eq!(bogus.to_string(), "Invalid value for type parameter: bogus");
        assert_eq!(bogus.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn screenshot_parameters_are_checked() {
        let variant = |raw| parse(raw)?.variant(ImageFormat::Png);
        assert!(variant("type=vga").unwrap().is_plain());
        let thumbnail = variant("width=320&format=jpeg&quality=70").unwrap();
        assert_eq!(thumbnail.width, Some(320));
        assert_eq!(thumbnail.format, ImageFormat::Jpeg);
        let stream = parse("stream=mjpeg&quality=70").unwrap();
        assert_eq!(stream.stream, Some(StreamType::Mjpeg));
        assert_eq!(stream.variant(ImageFormat::Jpeg).unwrap().quality, Some(70));
        for (bad, message) in [
            (
                "width=0",
                "Invalid value for width parameter: 0 (1 to 8192)",
            ),
            (
                "width=-1",
                "Invalid value for width parameter: -1 (1 to 8192)",
            ),
            (
                "height=99999",
                "Invalid value for height parameter: 99999 (1 to 8192)",
            ),
            (
                "width=abc",
                "Invalid value for width parameter: abc (1 to 8192)",
            ),
            (
                "format=gif",
                "Invalid value for format parameter: gif (png, jpeg or webp)",
            ),
            (
                "quality=0",
                "Invalid value for quality parameter: 0 (1 to 100)",
            ),
            (
                "quality=101",
                "Invalid value for quality parameter: 101 (1 to 100)",
            ),
            (
                "format=jpeg&quality=x",
                "Invalid value for quality parameter: x (1 to 100)",
            ),
            (
                "quality=50",
                "The quality parameter applies to jpeg only: png and webp are lossless",
            ),
            ("fps=31", "Invalid value for fps parameter: 31 (1 to 30)"),
            ("stream=x", "Invalid value for stream parameter: x (mjpeg)"),
            ("head=x", "Invalid value for head parameter: x (0 to 15)"),
            ("head=16", "Invalid value for head parameter: 16 (0 to 15)"),
            ("device=video1", "Display device \"video1\" not found"),
            (
                "format=",
                "Invalid value for format parameter:  (png, jpeg or webp)",
            ),
            ("fps=", "Invalid value for fps parameter:  (1 to 30)"),
            (
                "wake=1",
                "Invalid value for wake parameter: 1 (true or false)",
            ),
            (
                "wait=31s",
                "Invalid value for wait parameter: 31s (a duration of at most 30s, e.g. 500ms or 10s)",
            ),
            (
                "wait=soon",
                "Invalid value for wait parameter: soon (a duration of at most 30s, e.g. 500ms or 10s)",
            ),
        ] {
            let error = variant(bad)
                .and_then(|_| parse(bad).map(|_| ()))
                .unwrap_err();
            assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(error.to_string(), message, "{bad}");
        }
    }
}
