//! Screenshot metrics per instance, rendered as OpenMetrics text for `GET /1.0/metrics`.
//!
//! Counters: captures taken (and, by where the source got the frame, `frames` with a `source`
//! label: `screendump` or `mirror`), requests served from a recent capture, requests that joined a
//! capture in flight, requests served from the last capture because the source's mirror showed
//! no change since, `304 Not Modified` answers, failed captures, and live streams open; a
//! histogram of capture latency (the source's capture and the pixel hash; encodings are made
//! later, lazily, and are not part of it). All are lock-free atomics, so counting
//! costs nothing on the request path.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::source::FrameOrigin;

/// How a request was served, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// By a new capture.
    Captured,
    /// By a recent capture.
    Cached,
    /// By a capture another request had started.
    Coalesced,
    /// By the last capture, which the source vouched is still its picture (a mirror that saw
    /// no change).
    Unchanged,
}

/// Every [`FrameOrigin`], in the order of [`ScreenMetrics::origins`].
const ORIGINS: [FrameOrigin; 2] = [FrameOrigin::Screendump, FrameOrigin::Mirror];

/// Upper bounds of the capture-latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The counters of one instance.
#[derive(Debug, Default)]
pub struct ScreenMetrics {
    captures: AtomicU64,
    /// Captures by [`FrameOrigin`], in the order of [`ORIGINS`].
    origins: [AtomicU64; ORIGINS.len()],
    cached: AtomicU64,
    coalesced: AtomicU64,
    unchanged: AtomicU64,
    not_modified: AtomicU64,
    errors: AtomicU64,
    streams: AtomicI64,
    /// Cumulative counts per bucket, then the `+Inf` bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of latencies, in nanoseconds.
    latency_sum_ns: AtomicU64,
}

impl ScreenMetrics {
    /// Counts how a request was served (captures are counted by [`Self::observe_capture`]).
    pub fn count(&self, served: Served) {
        match served {
            Served::Captured => {}
            Served::Cached => {
                self.cached.fetch_add(1, Ordering::Relaxed);
            }
            Served::Coalesced => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            Served::Unchanged => {
                self.unchanged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a capture, its latency and where its frame came from.
    pub fn observe_capture(&self, latency: Duration, origin: FrameOrigin) {
        self.captures.fetch_add(1, Ordering::Relaxed);
        let index = ORIGINS.iter().position(|known| *known == origin);
        if let Some(counter) = index.and_then(|index| self.origins.get(index)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.buckets[BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        let nanoseconds = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns
            .fetch_add(nanoseconds, Ordering::Relaxed);
    }

    /// Counts a `304 Not Modified`.
    pub fn count_not_modified(&self) {
        self.not_modified.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed capture.
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a stream opened; the guard counts it closed when dropped.
    pub fn open_stream(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            metrics: self.clone(),
        }
    }

    /// Captures taken so far.
    pub fn captures(&self) -> u64 {
        self.captures.load(Ordering::Relaxed)
    }
}

/// Counts a stream as open while it lives.
#[derive(Debug)]
pub struct StreamGuard {
    metrics: Arc<ScreenMetrics>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads one counter of an instance.
type Counter = fn(&ScreenMetrics) -> u64;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The counters of `instances` (project, name, counters; in this order) as OpenMetrics text,
/// ending with `# EOF`.
pub fn render(instances: &[(String, String, Arc<ScreenMetrics>)]) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, Counter); 6] = [
        ("captures", "Screen captures taken from QEMU.", |m| {
            m.captures.load(Ordering::Relaxed)
        }),
        (
            "cache_hits",
            "Screenshot requests served from a recent capture.",
            |m| m.cached.load(Ordering::Relaxed),
        ),
        (
            "coalesced",
            "Screenshot requests that joined a capture in flight.",
            |m| m.coalesced.load(Ordering::Relaxed),
        ),
        (
            "unchanged",
            "Screenshot requests served from the last capture, which the screen's mirror showed unchanged.",
            |m| m.unchanged.load(Ordering::Relaxed),
        ),
        (
            "not_modified",
            "Screenshot requests answered 304 Not Modified.",
            |m| m.not_modified.load(Ordering::Relaxed),
        ),
        ("errors", "Screen captures that failed.", |m| {
            m.errors.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, value) in counters {
        let family = format!("vgashot_screenshot_{name}");
        let _ = writeln!(out, "# TYPE {family} counter\n# HELP {family} {help}");
        for (project, instance, metrics) in instances {
            let _ = writeln!(
                out,
                "{family}_total{{project=\"{}\",name=\"{}\"}} {}",
                escape(project),
                escape(instance),
                value(metrics)
            );
        }
    }
    let family = "vgashot_screenshot_frames";
    let _ = writeln!(
        out,
        "# TYPE {family} counter\n# HELP {family} Captured frames by where the source got them: a screendump, or its mirror of the screen."
    );
    for (project, instance, metrics) in instances {
        for (origin, count) in ORIGINS.iter().zip(&metrics.origins) {
            let _ = writeln!(
                out,
                "{family}_total{{project=\"{}\",name=\"{}\",source=\"{}\"}} {}",
                escape(project),
                escape(instance),
                origin.label(),
                count.load(Ordering::Relaxed)
            );
        }
    }
    let family = "vgashot_screenshot_streams";
    let _ = writeln!(
        out,
        "# TYPE {family} gauge\n# HELP {family} Live screen streams open."
    );
    for (project, instance, metrics) in instances {
        let _ = writeln!(
            out,
            "{family}{{project=\"{}\",name=\"{}\"}} {}",
            escape(project),
            escape(instance),
            metrics.streams.load(Ordering::Relaxed)
        );
    }
    let family = "vgashot_screenshot_capture_duration_seconds";
    let _ = writeln!(
        out,
        "# TYPE {family} histogram\n# HELP {family} Time to capture a screen: QMP, decode, hash.\n# UNIT {family} seconds"
    );
    for (project, instance, metrics) in instances {
        let labels = format!(
            "project=\"{}\",name=\"{}\"",
            escape(project),
            escape(instance)
        );
        for (bucket, bound) in metrics.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "{family}_bucket{{{labels},le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = metrics.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{family}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{family}_count{{{labels}}} {count}");
        let sum = metrics.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{family}_sum{{{labels}}} {sum}");
    }
    out.push_str("# EOF\n");
    out
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_as_openmetrics() {
        let v1 = Arc::new(ScreenMetrics::default());
        v1.observe_capture(Duration::from_millis(3), FrameOrigin::Screendump);
        v1.observe_capture(Duration::from_millis(30), FrameOrigin::Mirror);
        v1.count(Served::Cached);
        v1.count(Served::Coalesced);
        v1.count_not_modified();
        let stream = v1.open_stream();
        let instances = [("default".to_owned(), "v1".to_owned(), v1.clone())];
        let text = render(&instances);
        assert!(text.ends_with("# EOF\n"));
        for line in [
            "vgashot_screenshot_captures_total{project=\"default\",name=\"v1\"} 2",
            "vgashot_screenshot_cache_hits_total{project=\"default\",name=\"v1\"} 1",
            "vgashot_screenshot_coalesced_total{project=\"default\",name=\"v1\"} 1",
            "vgashot_screenshot_not_modified_total{project=\"default\",name=\"v1\"} 1",
            "vgashot_screenshot_errors_total{project=\"default\",name=\"v1\"} 0",
            "vgashot_screenshot_frames_total{project=\"default\",name=\"v1\",source=\"screendump\"} 1",
            "vgashot_screenshot_frames_total{project=\"default\",name=\"v1\",source=\"mirror\"} 1",
            "vgashot_screenshot_streams{project=\"default\",name=\"v1\"} 1",
            "vgashot_screenshot_capture_duration_seconds_bucket{project=\"default\",name=\"v1\",le=\"0.005\"} 1",
            "vgashot_screenshot_capture_duration_seconds_bucket{project=\"default\",name=\"v1\",le=\"0.05\"} 2",
            "vgashot_screenshot_capture_duration_seconds_count{project=\"default\",name=\"v1\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        drop(stream);
        assert!(
            render(&instances)
                .contains("vgashot_screenshot_streams{project=\"default\",name=\"v1\"} 0")
        );
        assert!(!render(&[]).contains("name=\"v1\""));
    }
}
