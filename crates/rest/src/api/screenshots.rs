//! `/1.0/instances/{name}/screenshots`: the screen history (`instance_screenshot_history`).
//!
//! 1. A list (recursion 0: URLs, 1: objects), filtered by a time range and a reason; one
//!    screenshot; its image, rendered as the live console's (`width`, `height`, `format`,
//!    `quality`, `If-None-Match`); a time-lapse of a range as an animated PNG.
//! 2. `POST` takes a screenshot now (reason `manual`), pinned and with a note if asked;
//!    `PATCH` pins, unpins or changes the note; `DELETE` removes one.
//! 3. [`at`] answers `GET .../console?type=vga&at=TIME`: the screenshot the screen showed then,
//!    for running and stopped instances alike.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, HeaderValue, LAST_MODIFIED};
use http::{HeaderMap, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vgashot_history::timelapse::{self, Bounds};
use vgashot_history::{Filter, NewShot, Reason, Shot};
use vgashot_instance_drivers::Instance;
use vgashot_screens::{ImageFormat, ScreenId, Variant};

use crate::api::console::{self, if_none_match};
use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::history::{ScreenHistory, instance_ref, screenshot_url};
use crate::model::{Screenshot, ScreenshotPatch, ScreenshotsPost};
use crate::request::{Project, ProjectQuery, Query, Recursion, invalid, json_body};

/// Reads a time parameter: RFC 3339 in UTC (`2026-12-02T01:30:00Z`, fractions allowed).
pub(crate) fn time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SystemTime>, D::Error> {
    let value = String::deserialize(deserializer)?;
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map(|time| Some(SystemTime::from(time)))
        .map_err(|_| {
            invalid(
                "time",
                &value,
                Some("an RFC 3339 time, such as 2026-12-02T01:30:00Z"),
            )
        })
}

/// Reads `reason`.
fn reason<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Reason>, D::Error> {
    let value = String::deserialize(deserializer)?;
    Reason::parse(&value).map(Some).ok_or_else(|| {
        invalid(
            "reason",
            &value,
            Some("change, stop, shutdown, panic, crash or manual"),
        )
    })
}

/// The query of `GET /1.0/instances/{name}/screenshots`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScreenshotsQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// 0 (the default): URLs; 1 or 2: screenshot objects.
    #[serde(default)]
    #[param(value_type = Option<u8>, minimum = 0, maximum = 2)]
    pub recursion: Recursion,
    /// Only screenshots taken at or after this time (RFC 3339, UTC).
    #[serde(default, deserialize_with = "time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<SystemTime>,
    /// Only screenshots taken at or before this time (RFC 3339, UTC).
    #[serde(default, deserialize_with = "time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<SystemTime>,
    /// Only screenshots recorded for this reason.
    #[serde(default, deserialize_with = "reason")]
    #[param(value_type = Option<String>, pattern = "^(change|stop|shutdown|panic|crash|manual)$")]
    pub reason: Option<Reason>,
}

/// The query of `GET /1.0/instances/{name}/screenshots/{id}/image`: the live console's
/// rendering parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScreenshotImageQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// Thumbnail width in pixels (1-8192, no larger than the screen).
    #[serde(default, deserialize_with = "console::width")]
    #[param(minimum = 1, maximum = 8192)]
    pub width: Option<u32>,
    /// Thumbnail height in pixels (1-8192, no larger than the screen).
    #[serde(default, deserialize_with = "console::height")]
    #[param(minimum = 1, maximum = 8192)]
    pub height: Option<u32>,
    /// Image format, `png` (default), `jpeg` or `webp`.
    #[serde(default, deserialize_with = "console::format")]
    pub format: Option<ImageFormat>,
    /// JPEG quality, 1-100 (default 80).
    #[serde(default, deserialize_with = "console::quality")]
    #[param(minimum = 1, maximum = 100)]
    pub quality: Option<u8>,
}

/// The query of `GET /1.0/instances/{name}/screenshots/timelapse`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelapseQuery {
    /// Project name (only `default` exists; absent or empty means it).
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^(default)?$")]
    pub project: Project,
    /// From this time (RFC 3339, UTC); the beginning of the history when absent.
    #[serde(default, deserialize_with = "time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<SystemTime>,
    /// To this time (RFC 3339, UTC); the last frame is shown until then (1 s when absent).
    #[serde(default, deserialize_with = "time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<SystemTime>,
    /// Canvas width in pixels, 1-8192 (default 640, never wider than the first frame).
    #[serde(default, deserialize_with = "console::width")]
    #[param(minimum = 1, maximum = 8192)]
    pub width: Option<u32>,
}

/// The daemon's history, or a 400 when it keeps none.
fn history(context: &Context) -> Result<Arc<ScreenHistory>, ApiError> {
    context
        .history
        .clone()
        .ok_or_else(|| ApiError::BadRequest("This server keeps no screen history".into()))
}

/// A screenshot id from its path segment (a 404 for anything that is not one).
fn shot_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::History(vgashot_history::HistoryError::NotFound))
}

/// The wire form of `shot`.
fn screenshot(shot: &Shot) -> Screenshot {
    Screenshot {
        id: shot.id,
        taken_at: humantime::format_rfc3339_micros(shot.taken_at).to_string(),
        reason: shot.reason.as_str().to_owned(),
        width: shot.width,
        height: shot.height,
        etag: format!("\"{}\"", shot.hash),
        pinned: shot.pinned,
        note: shot.note.clone(),
        stored_bytes: shot.stored_bytes,
    }
}

/// List an instance's screenshots
///
/// Oldest first; `recursion=1` returns objects. `since`, `until` and `reason` filter.
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/screenshots",
    operation_id = "instance_screenshots_get",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ScreenshotsQuery),
    responses(
        (status = 200, description = "URLs, or screenshots with recursion", body = crate::envelope::SyncEnvelope<crate::openapi::ScreenshotList>),
        (status = 400, description = "A bad parameter", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn list(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let query: ScreenshotsQuery = query.typed()?;
    let vm = context.instance(query.project.name()?, name)?;
    let identity = instance_ref(&vm).identity;
    let filter = Filter {
        since: query.since,
        until: query.until,
        reason: query.reason,
        limit: None,
    };
    let shots = history(context)?
        .run(move |store| store.list(&identity, filter))
        .await?;
    Ok(match query.recursion {
        Recursion(0) => envelope::sync(
            shots
                .iter()
                .map(|shot| screenshot_url(name, shot.id))
                .collect::<Vec<_>>(),
        ),
        _ => envelope::sync(shots.iter().map(screenshot).collect::<Vec<_>>()),
    })
}

/// Take a screenshot into the history now
///
/// Reason `manual`; `pinned` keeps it whatever the retention. The instance must be running.
#[utoipa::path(
    post,
    path = "/1.0/instances/{name}/screenshots",
    operation_id = "instance_screenshots_post",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    request_body = ScreenshotsPost,
    responses(
        (status = 200, description = "The screenshot taken", body = crate::envelope::SyncEnvelope<Screenshot>),
        (status = 400, description = "Not running, or a bad body", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn create(
    context: &Context,
    name: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    let vm = context.instance(query.typed::<ProjectQuery>()?.project.name()?, name)?;
    let request: ScreenshotsPost = json_body(body).await?;
    let history = history(context)?;
    let answer = context.screens.capture(&vm, &ScreenId::default()).await?;
    let instance = instance_ref(&vm);
    let capture = answer.capture;
    let shot = history
        .run(move |store| {
            let id = store.record(
                &instance,
                NewShot {
                    frame: capture.frame(),
                    hash: capture.hash(),
                    taken_at: capture.captured_at(),
                    reason: Reason::Manual,
                    pinned: request.pinned,
                    note: &request.note,
                },
            )?;
            store.get(&instance.identity, id)
        })
        .await?;
    Ok(envelope::sync(screenshot(&shot)))
}

/// Get a screenshot of the history
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/screenshots/{id}",
    operation_id = "instance_screenshot_get",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("id" = i64, Path, description = "Screenshot id"),
        ProjectQuery,
    ),
    responses(
        (status = 200, description = "The screenshot", body = crate::envelope::SyncEnvelope<Screenshot>),
        (status = 404, description = "No such instance, project or screenshot", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(
    context: &Context,
    name: &str,
    id: &str,
    query: &Query,
) -> Result<ApiResponse, ApiError> {
    let vm = context.instance(query.typed::<ProjectQuery>()?.project.name()?, name)?;
    let (identity, id) = (instance_ref(&vm).identity, shot_id(id)?);
    let shot = history(context)?
        .run(move |store| store.get(&identity, id))
        .await?;
    Ok(envelope::sync(screenshot(&shot)))
}

/// Pin, unpin or annotate a screenshot
#[utoipa::path(
    patch,
    path = "/1.0/instances/{name}/screenshots/{id}",
    operation_id = "instance_screenshot_patch",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("id" = i64, Path, description = "Screenshot id"),
        ProjectQuery,
    ),
    request_body = ScreenshotPatch,
    responses(
        (status = 200, description = "The screenshot as changed", body = crate::envelope::SyncEnvelope<Screenshot>),
        (status = 400, description = "A bad body", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance, project or screenshot", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn patch(
    context: &Context,
    name: &str,
    id: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    let vm = context.instance(query.typed::<ProjectQuery>()?.project.name()?, name)?;
    let (identity, id) = (instance_ref(&vm).identity, shot_id(id)?);
    let change: ScreenshotPatch = json_body(body).await?;
    let shot = history(context)?
        .run(move |store| store.update(&identity, id, change.pinned, change.note.as_deref()))
        .await?;
    Ok(envelope::sync(screenshot(&shot)))
}

/// Delete a screenshot
#[utoipa::path(
    delete,
    path = "/1.0/instances/{name}/screenshots/{id}",
    operation_id = "instance_screenshot_delete",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("id" = i64, Path, description = "Screenshot id"),
        ProjectQuery,
    ),
    responses(
        (status = 200, description = "Deleted", body = crate::envelope::SyncEnvelope<serde_json::Value>),
        (status = 404, description = "No such instance, project or screenshot", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn delete(
    context: &Context,
    name: &str,
    id: &str,
    query: &Query,
) -> Result<ApiResponse, ApiError> {
    let vm = context.instance(query.typed::<ProjectQuery>()?.project.name()?, name)?;
    let (identity, id) = (instance_ref(&vm).identity, shot_id(id)?);
    history(context)?
        .run(move |store| store.delete(&identity, id))
        .await?;
    Ok(envelope::sync(serde_json::json!({})))
}

/// Get a screenshot's image
///
/// Rendered as the live console's (`width`, `height`, `format`, `quality`), with the same
/// strong `ETag` for the same pixels and rendering, and `If-None-Match`.
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/screenshots/{id}/image",
    operation_id = "instance_screenshot_image_get",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("id" = i64, Path, description = "Screenshot id"),
        ScreenshotImageQuery,
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` the client has; unchanged, the answer is 304"),
    ),
    responses(
        (status = 200, description = "The image", content(
            (crate::envelope::Binary = "image/png"),
            (crate::envelope::Binary = "image/jpeg"),
            (crate::envelope::Binary = "image/webp"),
        )),
        (status = 304, description = "The client has this image"),
        (status = 400, description = "A bad parameter", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance, project or screenshot", body = crate::envelope::ErrorEnvelope),
        (status = 503, description = "Too many renderings at once", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn image(
    context: &Context,
    name: &str,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<ApiResponse, ApiError> {
    let query: ScreenshotImageQuery = query.typed()?;
    let vm = context.instance(query.project.name()?, name)?;
    let variant = Variant::new(
        query.width,
        query.height,
        query.format.unwrap_or(ImageFormat::Png),
        query.quality,
    )?;
    let (identity, id) = (instance_ref(&vm).identity, shot_id(id)?);
    let history = history(context)?;
    let (shot, stored) = history.run(move |store| store.image(&identity, id)).await?;
    // A screenshot's pixels never change.
    let sent = Sent {
        url: screenshot_url(name, id),
        cache_control: "private, max-age=31536000, immutable",
    };
    send(&history, shot, stored, variant, headers, sent).await
}

/// What a stored image's response says besides the image: the screenshot it is of
/// (`Content-Location`, so a client of `console?at=` learns which one, its time and reason) and
/// how long it may be cached.
struct Sent {
    url: String,
    cache_control: &'static str,
}

/// The screenshot `vm`'s screen showed at `time`, as `variant` (`console?type=vga&at=TIME`).
pub(crate) async fn at(
    context: &Context,
    vm: &Arc<dyn Instance>,
    time: SystemTime,
    variant: Variant,
    headers: &HeaderMap,
) -> Result<ApiResponse, ApiError> {
    let instance = instance_ref(vm);
    let identity = instance.identity;
    let history = history(context)?;
    let (shot, stored) = history
        .run(move |store| {
            let shot = store.at(&identity, time)?;
            store.image(&identity, shot.id)
        })
        .await?;
    let sent = Sent {
        url: screenshot_url(&instance.name, shot.id),
        cache_control: "no-cache",
    };
    send(&history, shot, stored, variant, headers, sent).await
}

/// `variant` of a stored image with its validators, or a 304.
async fn send(
    history: &ScreenHistory,
    shot: Shot,
    stored: Vec<u8>,
    variant: Variant,
    headers: &HeaderMap,
    sent: Sent,
) -> Result<ApiResponse, ApiError> {
    let etag = format!("\"{}{}\"", shot.hash, variant.etag_suffix());
    let mut response = if if_none_match(headers, &etag) {
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(envelope::full(Bytes::new()))
            .expect("a status and no headers make a valid response")
    } else {
        let image = history.render(stored, variant).await?;
        envelope::bytes(variant.format.content_type(), image)
    };
    let validators = [
        (ETAG, etag),
        (LAST_MODIFIED, httpdate::fmt_http_date(shot.taken_at)),
        (DATE, httpdate::fmt_http_date(SystemTime::now())),
        (CACHE_CONTROL, sent.cache_control.to_owned()),
        (CONTENT_LOCATION, sent.url),
    ];
    for (name, value) in validators {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// Get a time-lapse of a range of the history
///
/// An animated PNG (APNG) of the screenshots taken from `since` to `until`, each shown for its
/// real duration; at most 600 frames (400 past it) and 32 MiB (413 past it).
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/screenshots/timelapse",
    operation_id = "instance_screenshots_timelapse_get",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), TimelapseQuery),
    responses(
        (status = 200, description = "The animated PNG", content((crate::envelope::Binary = "image/apng"))),
        (status = 400, description = "A bad parameter, or too many frames", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project, or no screenshot in the range", body = crate::envelope::ErrorEnvelope),
        (status = 413, description = "The time-lapse would be too large", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn timelapse(
    context: &Context,
    name: &str,
    query: &Query,
) -> Result<ApiResponse, ApiError> {
    let query: TimelapseQuery = query.typed()?;
    let vm = context.instance(query.project.name()?, name)?;
    let identity = instance_ref(&vm).identity;
    let bounds = Bounds {
        width: query.width.unwrap_or(timelapse::DEFAULT_WIDTH),
        ..Bounds::default()
    };
    let (since, until) = (query.since, query.until);
    let apng = history(context)?
        .run(move |store| store.timelapse(&identity, since, until, bounds))
        .await?;
    Ok(envelope::bytes("image/apng", apng))
}
