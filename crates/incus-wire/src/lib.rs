//! The JSON bodies of the Incus API that vgashot serves, as plain serde structs.
//!
//! Field names and JSON keys follow Incus's `shared/api` Go structs (6.0.x), field by field and in
//! the same order, so that what we write reads like incusd's output and what the `incus` client
//! sends parses here. Go writes the fields of an embedded struct first: where a Go struct embeds
//! another (`Instance` embeds `InstancePut`), the fields come first here too.
//!
//! Conventions:
//! - Maps are [`BTreeMap`](std::collections::BTreeMap)s: Go's encoder writes map keys sorted, and so does a `BTreeMap`.
//! - Timestamps are RFC 3339 strings (`2026-11-25T03:06:29.912394528Z`). The Go client parses
//!   every one of them into a `time.Time`: an empty string fails the whole response, so an unset
//!   time must be Go's zero time, [`ZERO_TIME`].
//! - The key `type` is the Rust field `kind`.
//! - Response structs are lenient (`#[serde(default)]`: a missing key is its zero value, as for
//!   Go's decoder). Request bodies refuse unknown keys (`#[serde(deny_unknown_fields)]`): a key
//!   Incus does not define is a 400 naming it. They accept `null` wherever Go does (Go's client
//!   sends `"profiles": null`), and they never use `#[serde(flatten)]`, which would silently
//!   disable `deny_unknown_fields`: fields Go shares through embedding are repeated instead.
//!
//! One module per part of the API: [`server`] (`GET /1.0`), [`instances`] (instances, their
//! state, snapshots and backups), [`requests`] (the bodies clients send), [`profiles`],
//! [`operations`], [`screenshots`] (the screen history); each is re-exported here, so every type is `vgashot_incus_wire::Name` (and
//! `vgashot_rest::model::Name`). [`certificates`] names certificates as Incus does.
//!
//! The server (`vgashot-rest`) and the client (`vgashot-client`) both speak through these
//! types, so what one writes the other reads.

pub mod certificates;
pub mod instances;
pub mod operations;
pub mod profiles;
pub mod requests;
pub mod screenshots;
pub mod server;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Deserializer};

pub use instances::*;
pub use operations::*;
pub use profiles::*;
pub use requests::*;
pub use screenshots::*;
pub use server::*;

/// Incus's HTTPS port, where a remote address names none.
pub const DEFAULT_PORT: u16 = 8443;

/// The `Content-Type` of every JSON body, request or answer.
pub const JSON: &str = "application/json";

/// Go's zero `time.Time` as its JSON encoder writes it: the value of a time that is not set
/// (`last_used_at` of an instance never started, `started_at` of a stopped one).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Reads `null` as the type's default, as Go's decoder does for maps, lists, strings and numbers.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The default of a timestamp field: [`ZERO_TIME`].
fn zero_time() -> String {
    ZERO_TIME.to_owned()
}
