//! `/1.0/metrics`: screenshot metrics per instance, in OpenMetrics text (as Incus serves its
//! metrics).

use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use vgashot_screens::metrics::CONTENT_TYPE;

/// Get the metrics
///
/// Per instance: captures taken, requests served from a recent capture, requests that joined a
/// capture in flight, 304 answers, failed captures, live streams, and a histogram of capture
/// latency (`instance_console_screenshot_metrics`).
#[utoipa::path(
    get,
    path = "/1.0/metrics",
    operation_id = "metrics_get",
    tag = "metrics",
    responses((status = 200, description = "The metrics, as text", content((String = "application/openmetrics-text")))),
)]
pub fn get(context: &Context) -> ApiResponse {
    envelope::bytes(CONTENT_TYPE, context.screens.render_metrics())
}
