//! The OpenAPI document of the API, generated from the handlers' annotations.
//!
//! The document is a contract, checked by `cargo xtask test` against a live daemon with
//! schemathesis and by generating a Python client from it (`xtask/src/contract.rs`):
//!
//! 1. Query parameters come from the same typed structs that parse them (`IntoParams`), with
//!    their ranges and patterns.
//! 2. Answers whose shape depends on `recursion` are `anyOf` their shapes ([`InstanceList`] and
//!    the others below): `anyOf`, not `oneOf`, since an empty list is every one of them. The
//!    most specific shape comes first, as generated clients try them in order.
//! 3. [`document`] drops the defaults utoipa derives from `Default` for fields that are
//!    objects: they say nothing a client needs (the fields are always sent) and client
//!    generators cannot have a model property with a default. It also unwraps the one-item
//!    `oneOf` utoipa puts around a flattened struct in an `allOf` (to hold its description),
//!    which generators drop, losing the struct's fields.
//!
//! `cargo xtask swagger` writes it to `swagger/rest-api.yaml` and `swagger/rest-api.json`, which
//! are committed next to the code that serves them; a test fails when they are stale. OpenAPI 3
//! keeps what Swagger 2.0 loses: the console operation answers `application/octet-stream` or
//! `image/png`, and both are documented.

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::api;
use crate::envelope::{ErrorEnvelope, SyncEnvelope};
use crate::model::{Instance, InstanceFull, Profile, Screenshot};
use crate::operations::Operation;

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
        api::instance_rename::post,
        api::instances::delete,
        api::instance_state::get,
        api::instance_state::put,
        api::console::get,
        api::console::delete,
        api::console_session::post,
        api::screenshots::list,
        api::screenshots::create,
        api::screenshots::timelapse,
        api::screenshots::get,
        api::screenshots::patch,
        api::screenshots::delete,
        api::screenshots::image,
        api::operations::list,
        api::operations::get,
        api::operations::wait,
        api::operations::websocket,
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
        // What `/1.0/events` sends, as websocket frames rather than a response body.
        crate::events::EventType,
        crate::screen_events::ScreenChange,
    )),
    tags(
        (name = "server", description = "The server and its API extensions"),
        (name = "instances", description = "Virtual machines, their state, console and screenshots"),
        (name = "operations", description = "Long-running actions"),
        (name = "events", description = "Operation, life-cycle and screen-change events over a websocket"),
        (name = "profiles", description = "Profiles (only `default`)"),
        (name = "metrics", description = "Screenshot metrics in OpenMetrics text"),
        (name = "ui", description = "The web page that shows every VM's screen"),
    ),
)]
pub struct ApiDoc;

/// The document, with the defaults of object fields dropped (step 3 of the module's docs).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    if let Some(components) = document.components.as_mut() {
        components
            .schemas
            .values_mut()
            .for_each(drop_object_defaults);
    }
    document
}

/// Removes every `default` whose value is an object from `schema` and the schemas in it (and
/// unwraps one-item `oneOf`s in `allOf`s).
fn drop_object_defaults(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    let (default, children): (&mut Option<serde_json::Value>, Vec<&mut RefOr<Schema>>) =
        match schema {
            Schema::Object(object) => (
                &mut object.default,
                object
                    .properties
                    .values_mut()
                    .chain(
                        object
                            .additional_properties
                            .as_deref_mut()
                            .and_then(|additional| match additional {
                                AdditionalProperties::RefOr(schema) => Some(schema),
                                _ => None,
                            }),
                    )
                    .collect(),
            ),
            Schema::Array(array) => (
                &mut array.default,
                match &mut array.items {
                    ArrayItems::RefOrSchema(items) => vec![items.as_mut()],
                    ArrayItems::False => Vec::new(),
                },
            ),
            Schema::AllOf(all) => {
                all.items.iter_mut().for_each(unwrap_single_one_of);
                (&mut all.default, all.items.iter_mut().collect())
            }
            Schema::AnyOf(any) => (&mut any.default, any.items.iter_mut().collect()),
            Schema::OneOf(one) => (&mut one.default, one.items.iter_mut().collect()),
            _ => return,
        };
    if default.as_ref().is_some_and(serde_json::Value::is_object) {
        *default = None;
    }
    children.into_iter().for_each(drop_object_defaults);
}

/// Replaces a `oneOf` of one schema by that schema.
fn unwrap_single_one_of(schema: &mut RefOr<Schema>) {
    if let RefOr::T(Schema::OneOf(one)) = schema {
        if one.items.len() == 1 {
            *schema = one.items.remove(0);
        }
    }
}

/// The document as YAML, as committed in `swagger/rest-api.yaml`.
pub fn yaml() -> String {
    document()
        .to_yaml()
        .expect("the document serialises to YAML")
}

/// The document as JSON, as committed in `swagger/rest-api.json`.
pub fn json() -> String {
    let mut json = document()
        .to_pretty_json()
        .expect("the document serialises to JSON");
    json.push('\n');
    json
}

/// A list of URLs (what `recursion=0` answers).
fn urls() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String))
        .into()
}

/// The component `T`.
fn component<T: ToSchema>() -> RefOr<Schema> {
    Ref::from_schema_name(T::name()).into()
}

/// An object whose every value is `value` (operations by status).
fn by_status(value: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .additional_properties(Some(AdditionalProperties::RefOr(value)))
        .into()
}

/// A list of the component `T`.
fn list_of<T: ToSchema>() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(Ref::from_schema_name(T::name()))
        .into()
}

/// Adds the component `T` and the components it uses to `schemas`.
fn collect<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// Declares a documentation-only type whose schema is `anyOf` the shapes an answer can have
/// (mostly the ones `recursion` picks).
macro_rules! by_recursion {
    ($(#[$doc:meta])* $name:ident: [$($shape:expr),+ $(,)?] uses [$($component:ty),+]) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                AnyOfBuilder::new()
                    $(.item($shape))+
                    .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                $(collect::<$component>(schemas);)+
            }
        }
    };
}

by_recursion! {
    /// `GET /1.0/instances`: URLs (`recursion=0`), instances (`1`), or instances with their
    /// state (`2`).
    InstanceList: [list_of::<InstanceFull>(), list_of::<Instance>(), urls()]
        uses [Instance, InstanceFull]
}

by_recursion! {
    /// `GET /1.0/instances/{name}`: the instance (`recursion=0`), or with its state (`1`, `2`).
    InstanceOrFull: [component::<InstanceFull>(), component::<Instance>()]
        uses [Instance, InstanceFull]
}

by_recursion! {
    /// `GET /1.0/operations/{id}/wait`: the ended operation, or (as upstream, with HTTP 200) an
    /// error envelope for a failed operation or a timeout.
    WaitAnswer: [
        <SyncEnvelope<Operation> as PartialSchema>::schema(),
        component::<ErrorEnvelope>(),
    ] uses [Operation, ErrorEnvelope]
}

by_recursion! {
    /// `GET /1.0/instances/{name}/screenshots`: URLs (`recursion=0`) or screenshots (`1`).
    ScreenshotList: [list_of::<Screenshot>(), urls()] uses [Screenshot]
}

by_recursion! {
    /// `GET /1.0/profiles`: URLs (`recursion=0`) or profiles (`1`, `2`).
    ProfileList: [list_of::<Profile>(), urls()] uses [Profile]
}

by_recursion! {
    /// `GET /1.0/operations`: by status (`running`, `success`, `failure`), URLs (`recursion=0`)
    /// or operations (`1`, `2`).
    OperationList: [by_status(list_of::<Operation>()), by_status(urls())] uses [Operation]
}
