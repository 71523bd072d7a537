//! `console.history.*`: whether and how an instance's screen is recorded into the screen
//! history. A policy of the daemon's history recorder, validated here with the other config
//! keys, so a bad value is refused at create or update rather than when recording.

use std::time::Duration;

use super::ConfigError;
use super::keys;
use super::parse::parse_size;
use crate::definition::InstanceDefinition;

/// How often the screen is looked at when `console.history.interval` is not set: 1 s. A look is
/// one capture shared with every viewer (a 720x400 screen costs QEMU about 2.5 ms of its main
/// loop and the daemon a decode and a hash: `BENCHMARKS.md`, 375 captures/s at 0.92 s/s of QEMU
/// CPU), so 1 s is 0.25% of a core per VM, and a timeline shows what a person would have seen.
pub const DEFAULT_HISTORY_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `console.history.interval`: 100 ms, ten captures a second at most.
pub const MIN_HISTORY_INTERVAL: Duration = Duration::from_millis(100);
/// How long screenshots are kept when `console.history.retention` is not set: a week.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many bytes of stored frames an instance may have when `console.history.size` is not
/// set: 64 MiB, thousands of text-console frames.
pub const DEFAULT_HISTORY_SIZE: u64 = 64 * 1024 * 1024;

/// An instance's history settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Whether its screen is recorded (`console.history.enabled`, default `true`); pinned
    /// final screens and manual screenshots are recorded either way.
    pub enabled: bool,
    /// At most one screenshot per this long (`console.history.interval`).
    pub interval: Duration,
    /// Screenshots older than this go, pinned ones excepted (`console.history.retention`).
    pub retention: Duration,
    /// The instance's stored frames may take this many bytes (`console.history.size`).
    pub size: u64,
}

/// The instance's `console.history.*` settings, or their defaults.
pub fn history_settings(definition: &InstanceDefinition) -> Result<HistorySettings, ConfigError> {
    let config = &definition.config;
    let invalid = |key: &'static str, reason| ConfigError::InvalidValue {
        key,
        value: config.get(key).cloned().unwrap_or_default(),
        reason,
    };
    let duration = |key: &'static str, default: Duration| match config.get(key) {
        None => Ok(default),
        Some(value) => humantime::parse_duration(value.trim())
            .map_err(|_| invalid(key, "is not a duration such as \"1s\", \"12h\" or \"7d\"")),
    };
    let enabled = match config.get(keys::HISTORY_ENABLED).map(|value| value.trim()) {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return Err(invalid(
                keys::HISTORY_ENABLED,
                "is not \"true\" or \"false\"",
            ));
        }
    };
    let interval = duration(keys::HISTORY_INTERVAL, DEFAULT_HISTORY_INTERVAL)?;
    if interval < MIN_HISTORY_INTERVAL {
        return Err(invalid(
            keys::HISTORY_INTERVAL,
            "is shorter than the 100ms allowed",
        ));
    }
    let retention = duration(keys::HISTORY_RETENTION, DEFAULT_HISTORY_RETENTION)?;
    let size = match config.get(keys::HISTORY_SIZE) {
        None => DEFAULT_HISTORY_SIZE,
        Some(value) => parse_size(value.trim()).ok_or_else(|| {
            invalid(
                keys::HISTORY_SIZE,
                "is not a size such as \"64MiB\" or \"1GiB\"",
            )
        })?,
    };
    Ok(HistorySettings {
        enabled,
        interval,
        retention,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::cmdline::testing::*;

    #[test]
    fn history_settings_and_their_defaults() {
        assert_eq!(
            history_settings(&vm(&[], &[])).unwrap(),
            HistorySettings {
                enabled: true,
                interval: DEFAULT_HISTORY_INTERVAL,
                retention: DEFAULT_HISTORY_RETENTION,
                size: DEFAULT_HISTORY_SIZE,
            }
        );
        let set = vm(
            &[
                ("console.history.enabled", "false"),
                ("console.history.interval", "5s"),
                ("console.history.retention", "2d"),
                ("console.history.size", "1MiB"),
            ],
            &[],
        );
        let settings = history_settings(&set).unwrap();
        assert!(!settings.enabled);
        assert_eq!(settings.interval, Duration::from_secs(5));
        assert_eq!(settings.retention, Duration::from_secs(2 * 86400));
        assert_eq!(settings.size, 1 << 20);
        for (key, bad) in [
            ("console.history.enabled", "yes"),
            ("console.history.interval", "10ms"),
            ("console.history.retention", "forever"),
            ("console.history.size", "lots"),
        ] {
            let error = plan(&[(key, bad)]).unwrap_err();
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }
}
