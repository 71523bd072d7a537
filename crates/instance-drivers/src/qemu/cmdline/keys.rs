//! The config keys the qemu driver knows, and the namespaces it stores without meaning.
//!
//! 1. Every key of a definition must be one of [`KNOWN_KEYS`] or start with one of
//!    [`FREE_FORM_PREFIXES`]; anything else is refused, as in Incus, so a typo is never
//!    silently ignored.
//! 2. The key names are constants shared by the parser and its errors.

/// The config keys this driver knows.
pub(super) const KNOWN_KEYS: &[&str] = &[
    CPU,
    MEMORY,
    VGA,
    VGA_HEADS,
    KERNEL,
    INITRD,
    CMDLINE,
    NETWORK,
    SCREENSHOT_MIN_INTERVAL,
    HISTORY_ENABLED,
    HISTORY_INTERVAL,
    HISTORY_RETENTION,
    HISTORY_SIZE,
];
/// Namespaces whose keys are stored but mean nothing to the driver.
pub(super) const FREE_FORM_PREFIXES: &[&str] = &["user.", "image.", "volatile."];

/// The key of vCPUs.
pub(crate) const CPU: &str = "limits.cpu";
/// The key of guest memory.
pub(crate) const MEMORY: &str = "limits.memory";
/// The key of the display adapter.
pub(crate) const VGA: &str = "vgashot.vga";
/// The key of virtio-vga's heads.
pub(crate) const VGA_HEADS: &str = "vgashot.vga.heads";
/// The key of a kernel to boot directly.
pub(crate) const KERNEL: &str = "vgashot.boot.kernel";
/// The key of its initrd.
pub(crate) const INITRD: &str = "vgashot.boot.initrd";
/// The key of its command line.
pub(crate) const CMDLINE: &str = "vgashot.boot.cmdline";
/// The key of guest networking.
pub(crate) const NETWORK: &str = "vgashot.network";
/// The key of the shortest time between two captures.
pub(crate) const SCREENSHOT_MIN_INTERVAL: &str = "console.screenshot.min_interval";
/// The keys of the screen history (see `history.rs`).
pub(crate) const HISTORY_ENABLED: &str = "console.history.enabled";
/// At most one recorded screenshot per this long.
pub(crate) const HISTORY_INTERVAL: &str = "console.history.interval";
/// How long recorded screenshots are kept.
pub(crate) const HISTORY_RETENTION: &str = "console.history.retention";
/// How many bytes an instance's history may take.
pub(crate) const HISTORY_SIZE: &str = "console.history.size";

/// Whether the driver accepts a config key.
pub(super) fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.contains(&key)
        || FREE_FORM_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use crate::qemu::cmdline::ConfigError;
    use crate::qemu::cmdline::testing::*;

    #[test]
    fn unknown_keys_are_refused_in_incus_words() {
        for key in [
            "limits.cpus",
            "boot.autostart",
            "security.secureboot",
            "console.screenshot.max_interval",
            "vgashot.vga.head",
            "users.x",
        ] {
            let error = plan(&[(key, "1")]).unwrap_err();
            assert!(
                matches!(&error, ConfigError::UnknownKey(k) if k == key),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                format!("Unknown configuration key: {key}")
            );
        }
        for key in ["user.anything", "image.os", "volatile.uuid"] {
            assert!(plan(&[(key, "x")]).is_ok(), "{key}");
        }
    }
}
