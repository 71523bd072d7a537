//! The OpenAPI document of the API, generated from the handlers' annotations.
//!
//! `cargo xtask swagger` writes it to `swagger/rest-api.yaml` and `swagger/rest-api.json`, which
//! are committed next to the code that serves them; a test fails when they are stale. OpenAPI 3
//! keeps what Swagger 2.0 loses: the console operation answers `application/octet-stream` or
//! `image/png`, and both are documented.

use utoipa::OpenApi;

use crate::api;

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vgashot REST API",
        description = "QEMU virtual machines behind Incus's instance API, wire-compatible with \
            Incus, with screenshots of their VGA consoles (`instance_console_screenshot`).",
        license(name = "Apache-2.0"),
    ),
    paths(
        api::server::root,
        api::server::get,
        api::instances::list,
        api::instances::create,
        api::instances::get,
        api::instances::put,
        api::instances::patch,
        api::instances::delete,
        api::instance_state::get,
        api::instance_state::put,
        api::console::get,
        api::console::delete,
        api::operations::list,
        api::operations::get,
        api::operations::wait,
        api::events::get,
        api::profiles::list,
        api::profiles::get,
        api::metrics::get,
        api::ui::get,
    ),
    // Types that appear only as parameters are not collected by themselves.
    components(schemas(
        api::console::ConsoleType,
        api::console::StreamType,
        vgashot_screens::ImageFormat,
    )),
    tags(
        (name = "server", description = "The server and its API extensions"),
        (name = "instances", description = "Virtual machines, their state, console and screenshots"),
        (name = "operations", description = "Long-running actions"),
        (name = "events", description = "Operation and life-cycle events over a websocket"),
        (name = "profiles", description = "Profiles (only `default`)"),
        (name = "metrics", description = "Screenshot metrics in OpenMetrics text"),
        (name = "ui", description = "The web page that shows every VM's screen"),
    ),
)]
pub struct ApiDoc;

/// The document as YAML, as committed in `swagger/rest-api.yaml`.
pub fn yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the document serialises to YAML")
}

/// The document as JSON, as committed in `swagger/rest-api.json`.
pub fn json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises to JSON");
    json.push('\n');
    json
}
