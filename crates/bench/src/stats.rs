//! Latency samples and their summary figures.

use std::time::Duration;

/// Latencies of one measured path.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    durations: Vec<Duration>,
}

impl Samples {
    /// Adds one measurement.
    pub fn push(&mut self, duration: Duration) {
        self.durations.push(duration);
    }

    /// The `fraction` quantile (0.0 min, 0.5 median, 1.0 max), nearest rank.
    pub fn quantile(&self, fraction: f64) -> Duration {
        let mut sorted = self.durations.clone();
        sorted.sort_unstable();
        let last = sorted.len().saturating_sub(1);
        let rank = (fraction * last as f64).round() as usize;
        sorted.get(rank.min(last)).copied().unwrap_or_default()
    }

    /// The number of measurements.
    pub fn len(&self) -> usize {
        self.durations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        for ms in [5, 1, 4, 2, 3] {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.quantile(0.0), Duration::from_millis(1));
        assert_eq!(samples.quantile(0.5), Duration::from_millis(3));
        assert_eq!(samples.quantile(1.0), Duration::from_millis(5));
        assert_eq!(Samples::default().quantile(0.5), Duration::ZERO);
    }
}
