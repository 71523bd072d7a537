//! `console.screenshot.min_interval`: how long viewers share one capture of a screen. A
//! policy of the REST layer's screen cache, validated here with the other config keys.

use std::time::Duration;

use super::ConfigError;
use super::keys;
use crate::definition::InstanceDefinition;

/// The shortest time between two screen captures of one VM when `console.screenshot.min_interval`
/// is not set: viewers asking more often share the last capture.
pub const DEFAULT_SCREENSHOT_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// The longest `console.screenshot.min_interval` accepted: a screen older than this is no
/// longer "live".
pub const MAX_SCREENSHOT_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The instance's `console.screenshot.min_interval` (a duration such as `250ms`, `1s`, `0` to
/// capture on every request), or its default.
pub fn screenshot_min_interval(definition: &InstanceDefinition) -> Result<Duration, ConfigError> {
    let Some(value) = definition.config.get(keys::SCREENSHOT_MIN_INTERVAL) else {
        return Ok(DEFAULT_SCREENSHOT_MIN_INTERVAL);
    };
    let invalid = |reason| ConfigError::InvalidValue {
        key: keys::SCREENSHOT_MIN_INTERVAL,
        value: value.clone(),
        reason,
    };
    let interval = if value.trim() == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(value.trim())
            .map_err(|_| invalid("is not a duration such as \"250ms\", \"1s\" or \"0\""))?
    };
    if interval > MAX_SCREENSHOT_MIN_INTERVAL {
        return Err(invalid("is longer than the 60s allowed"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::cmdline::testing::*;

    #[test]
    fn screenshot_min_interval() {
        for (value, expected) in [("0", 0), ("250ms", 250), ("1s", 1000), ("60s", 60_000)] {
            let definition = vm(&[("console.screenshot.min_interval", value)], &[]);
            assert_eq!(
                super::screenshot_min_interval(&definition).unwrap(),
                Duration::from_millis(expected),
                "{value}"
            );
        }
        assert_eq!(
            super::screenshot_min_interval(&vm(&[], &[])).unwrap(),
            DEFAULT_SCREENSHOT_MIN_INTERVAL
        );
        for bad in ["soon", "-1s", "61s", ""] {
            assert!(
                plan(&[("console.screenshot.min_interval", bad)]).is_err(),
                "{bad}"
            );
        }
    }
}
