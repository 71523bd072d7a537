//! Times as Incus writes them: RFC 3339 in UTC with nanoseconds
//! (`2026-11-25T03:06:29.912394528Z`), what Go's `time.Time` encodes and its client parses.

use std::time::SystemTime;

/// `time` in RFC 3339, UTC, with nanoseconds.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Now, in RFC 3339, UTC, with nanoseconds.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nanoseconds_in_utc() {
        let time = SystemTime::UNIX_EPOCH + Duration::new(1_764_041_189, 912_394_528);
        assert_eq!(rfc3339(time), "2025-11-25T03:26:29.912394528Z");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
