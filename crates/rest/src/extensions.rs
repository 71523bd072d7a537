//! The API extensions this server implements, as `GET /1.0` lists them.
//!
//! Clients test for a feature by name in `api_extensions`, so the list holds exactly what is
//! implemented: the Incus extensions this API honours, in Incus's order of addition, then
//! `instance_console_screenshot`, then vgashot's own. Registering an extension is one line here
//! and one `## \`name\`` entry in `api-extensions.md`, in the same order; a test keeps them in
//! step.

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
    // vgashot's own.
    "instance_console_screenshot_device",
    "instance_console_screenshot_etag",
    "instance_console_screenshot_formats",
    "instance_console_screenshot_stream",
    "instance_console_screenshot_metrics",
    "instance_console_screenshot_wait",
];
