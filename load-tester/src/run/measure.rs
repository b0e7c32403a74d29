//! What the generator records per message, and how records of many threads merge.
//!
//! Each generator thread owns one [`SourceStats`] per source (exchange x stream) for the current
//! one-second interval; nothing on the hot path is shared or locked. At each interval boundary
//! the thread ships them to the engine and starts on fresh ones. Histograms add without loss,
//! so per-thread, per-interval and whole-run figures all come from the same recordings.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest value a latency histogram tracks, ns (one minute); larger values are recorded as
/// this and counted in [`LatencySet::saturated`].
pub const HIGHEST_NS: u64 = 60_000_000_000;
/// Significant decimal digits of every histogram (0.1% value resolution).
pub const SIGFIG: u8 = 3;

/// A fresh latency histogram: 1 ns to [`HIGHEST_NS`], [`SIGFIG`] significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG).expect("constant bounds are valid")
}

/// The three latencies of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// From just before the write call to just after it returned ("write latency").
    Service,
    /// From the intended send time to just after the write returned; includes every delay
    /// that made the write late (no coordinated omission).
    Response,
    /// From the intended send time to the start of the write: how late the generator was.
    Lag,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::Response, Kind::Lag];

    /// JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Response => "response",
            Kind::Lag => "lag",
        }
    }
}

/// One histogram per [`Kind`].
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
    /// The histogram of `kind`.
    pub fn get(&self, kind: Kind) -> &Histogram<u64> {
        match kind {
            Kind::Service => &self.service,
            Kind::Response => &self.response,
            Kind::Lag => &self.lag,
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

    /// Adds every count of `other` to `self`.
    pub fn add(&mut self, other: &LatencySet) {
        // Same bounds on both sides, so adding cannot fail.
        self.service.add(&other.service).expect("same bounds");
        self.response.add(&other.response).expect("same bounds");
        self.lag.add(&other.lag).expect("same bounds");
        self.saturated += other.saturated;
    }

    /// Empties every histogram, keeping the allocations.
    pub fn reset(&mut self) {
        self.service.reset();
        self.response.reset();
        self.lag.reset();
        self.saturated = 0;
    }
}

/// Counts of one source over some span of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Records written.
    pub sent: u64,
    /// Writes refused because a reader had not read what they would overwrite.
    pub buffer_overflows: u64,
    /// Writes that failed for any other reason.
    pub write_failures: u64,
}

impl Counters {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counters) {
        self.sent += other.sent;
        self.buffer_overflows += other.buffer_overflows;
        self.write_failures += other.write_failures;
    }

    /// Writes attempted.
    pub fn attempts(&self) -> u64 {
        self.sent + self.buffer_overflows + self.write_failures
    }

    /// Failed attempts of either kind.
    pub fn errors(&self) -> u64 {
        self.buffer_overflows + self.write_failures
    }
}

/// Everything recorded for one source in one interval.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    /// Latencies of the writes (successful or not).
    pub latency: LatencySet,
    /// Counts.
    pub counters: Counters,
}

impl SourceStats {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &SourceStats) {
        self.latency.add(&other.latency);
        self.counters.add(&other.counters);
    }

    /// Empties it, keeping the allocations.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.counters = Counters::default();
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
    use crate::run::measure::*;

    #[test]
    fn record_splits_the_three_latencies() {
        let mut set = LatencySet::default();
        set.record(1_000, 1_500, 1_600);
        assert_eq!(set.service.max(), 100);
        assert_eq!(set.lag.max(), 500);
        assert_eq!(set.response.max(), 600);
        let mut total = LatencySet::default();
        total.add(&set);
        total.add(&set);
        assert_eq!(total.service.len(), 2);
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
