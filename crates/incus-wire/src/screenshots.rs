//! The bodies of `/1.0/instances/{name}/screenshots` (`instance_screenshot_history`, ours).

use serde::{Deserialize, Serialize};

/// One screenshot of an instance's screen history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Screenshot {
    /// Its id, in its URL `/1.0/instances/NAME/screenshots/ID`; never reused.
    pub id: i64,
    /// When the screen showed it, RFC 3339.
    pub taken_at: String,
    /// Why it was recorded: `change`, `stop`, `shutdown`, `panic`, `crash` or `manual`.
    pub reason: String,
    /// The screen's width in pixels.
    pub width: u32,
    /// The screen's height in pixels.
    pub height: u32,
    /// The strong `ETag` of its plain PNG (the live console's for the same pixels).
    pub etag: String,
    /// Kept by retention.
    pub pinned: bool,
    /// Free text.
    pub note: String,
    /// The bytes its stored image takes (shared with every screenshot of the same pixels).
    pub stored_bytes: u64,
}

/// `POST /1.0/instances/{name}/screenshots`: take one now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScreenshotsPost {
    /// Keep it whatever the retention (default false).
    pub pinned: bool,
    /// Free text, at most 1024 bytes.
    pub note: String,
}

/// `PATCH /1.0/instances/{name}/screenshots/{id}`: what to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScreenshotPatch {
    /// Pin or unpin it.
    pub pinned: Option<bool>,
    /// A new note, at most 1024 bytes.
    pub note: Option<String>,
}
