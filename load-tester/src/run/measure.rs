//! What the generator records per write, on the hot path.
//!
//! Each generator thread owns one [`LatencySet`] per source for the current interval; nothing on
//! the hot path is shared or locked. At each interval's end the thread moves the histograms into
//! its [`crate::report::IntervalReport`] and carries on with emptied ones.

use hdrhistogram::Histogram;

use crate::report::histogram::{new_histogram, HIGHEST_NS};
use crate::report::Kind;

/// The three latencies of writes, one histogram each.
///
/// Invariant: every histogram has the standard configuration
/// ([`crate::report::histogram::HistogramConfig::STANDARD`]); `saturated` counts the writes whose
/// response time exceeded [`HIGHEST_NS`] since the last reset.
#[derive(Debug, Clone)]
pub struct LatencySet {
    /// Service time.
    pub service: Histogram<u64>,
    /// Response time.
    pub response: Histogram<u64>,
    /// Generator lag.
    pub lag: Histogram<u64>,
    /// Writes whose response time exceeded [`HIGHEST_NS`] (their latencies are recorded as that;
    /// service time and lag never exceed response time).
    pub saturated: u64,
}

impl Default for LatencySet {
    fn default() -> Self {
        Self {
            service: new_histogram(),
            response: new_histogram(),
            lag: new_histogram(),
            saturated: 0,
        }
    }
}

impl LatencySet {
    /// The histogram of `kind`; `None` for [`Kind::E2e`], which writes do not have.
    pub fn get(&self, kind: Kind) -> Option<&Histogram<u64>> {
        match kind {
            Kind::Service => Some(&self.service),
            Kind::Response => Some(&self.response),
            Kind::Lag => Some(&self.lag),
            Kind::E2e => None,
        }
    }

    /// Records one write: intended time, start and end of the write call, all ns on one clock.
    #[inline]
    pub fn record(&mut self, intended: u64, start: u64, end: u64) {
        let service = end.saturating_sub(start);
        let response = end.saturating_sub(intended);
        let lag = start.saturating_sub(intended);
        if response > HIGHEST_NS {
            self.saturated += 1;
        }
        self.service.saturating_record(service);
        self.response.saturating_record(response);
        self.lag.saturating_record(lag);
    }

    /// Empties every histogram, keeping the allocations.
    pub fn reset(&mut self) {
        self.service.reset();
        self.response.reset();
        self.lag.reset();
        self.saturated = 0;
    }
}

/// Measures what one call of the clock costs, in ns: the median of 21 batches of 10,000 calls.
pub fn clock_cost_ns() -> f64 {
    let mut batches: Vec<f64> = (0..21)
        .map(|_| {
            let start = alphapulse_bus::now_ns();
            let mut sink = 0u64;
            for _ in 0..10_000 {
                sink = sink.wrapping_add(alphapulse_bus::now_ns());
            }
            std::hint::black_box(sink);
            (alphapulse_bus::now_ns() - start) as f64 / 10_000.0
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

#[cfg(test)]
mod tests {
    use crate::report::histogram::HIGHEST_NS;
    use crate::run::measure::LatencySet;

    #[test]
    fn record_splits_the_three_latencies() {
        let mut set = LatencySet::default();
        set.record(1_000, 1_500, 1_600);
        assert_eq!(set.service.max(), 100);
        assert_eq!(set.lag.max(), 500);
        assert_eq!(set.response.max(), 600);
        set.reset();
        assert_eq!(set.service.len(), 0);
    }

    #[test]
    fn huge_values_saturate_and_are_counted() {
        let mut set = LatencySet::default();
        set.record(0, 0, HIGHEST_NS * 10);
        assert_eq!(set.saturated, 1);
        assert_eq!(set.response.len(), 1);
    }
}
