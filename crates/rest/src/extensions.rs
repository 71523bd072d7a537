//! The API extensions this server implements, as `GET /1.0` lists them.
//!
//! Clients test for a feature by name in `api_extensions`, so the list holds exactly what is
//! implemented: the Incus extensions this API honours, in Incus's order of addition (6.0.4's,
//! where `console_force` follows `instance_console_screenshot`), then vgashot's own, from
//! [`FIRST_OWN_EXTENSION`] on. Registering an extension is one line here and one `## \`name\``
//! entry in `api-extensions.md`, in the same order; a test keeps them in step, and checks the
//! split against the extensions of a real incusd 6.0.4 (`shared/incus-oracle/`).

/// The first of vgashot's own extensions in [`API_EXTENSIONS`]: every one before it is Incus's.
pub const FIRST_OWN_EXTENSION: &str = "instance_console_screenshot_device";

/// Every extension, oldest first.
pub const API_EXTENSIONS: &[&str] = &[
    // Incus extensions, in Incus's order.
    "container_last_used_at",
    "patch",
    "entity_description",
    "console",
    "container_full",
    "instances",
    "virtual-machines",
    "vm_boot_priority",
    "api_filtering",
    "instance_get_full",
    "instance_create_start",
    "instance_console_screenshot",
    "console_force",
    // vgashot's own.
    "instance_console_screenshot_device",
    "instance_console_screenshot_etag",
    "instance_console_screenshot_formats",
    "instance_console_screenshot_stream",
    "instance_console_screenshot_metrics",
    "instance_lifecycle_reasons",
    "instance_console_screenshot_wake",
    "instance_screenshot_history",
    "instance_console_screenshot_wait",
    "instance_console_screen_events",
];
