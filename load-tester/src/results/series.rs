//! The time series of a run: one [`Point`] per interval (or per several, for runs so long that
//! one per interval would be too many), summarized from the merged interval reports.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::report::{is_tester_process, IntervalReport, Kind, ProcessUsage, SourceReport, Stream};

/// P50, P99 and max of one latency over one time-series point, ns (0 when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pcts {
    /// Median, ns.
    pub p50: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// Maximum, ns.
    pub max: u64,
}

impl Pcts {
    /// The percentiles of `h` (all 0 when there is none or it is empty).
    pub fn of(h: Option<&Histogram<u64>>) -> Self {
        match h {
            Some(h) if !h.is_empty() => Self {
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            },
            _ => Self::default(),
        }
    }
}

/// One stream over one time-series point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamPoint {
    /// Target rate: messages the schedule had due in the point, per second.
    pub target_rate: f64,
    /// Achieved rate (records written / point length), messages per second.
    pub rate: f64,
    /// Records written.
    pub sent: u64,
    /// Failed writes and buffer overflows.
    pub errors: u64,
    /// Service time (write latency).
    pub service: Pcts,
    /// Response time.
    pub response: Pcts,
    /// Generator lag.
    pub lag: Pcts,
    /// End-to-end latency to the readers (all readers merged; zeros without readers).
    pub e2e: Pcts,
}

impl StreamPoint {
    /// Summarizes `s`, recorded over `secs` seconds.
    pub fn of(s: &SourceReport, secs: f64) -> Self {
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Self {
            target_rate: per_sec(s.writer.due()),
            rate: per_sec(s.writer.sent),
            sent: s.writer.sent,
            errors: s.writer.errors(),
            service: Pcts::of(s.latency.get(Kind::Service)),
            response: Pcts::of(s.latency.get(Kind::Response)),
            lag: Pcts::of(s.latency.get(Kind::Lag)),
            e2e: Pcts::of(s.latency.get(Kind::E2e)),
        }
    }
}

/// One point of the time series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the point, seconds since the start of the run (warm-up included).
    pub start_secs: f64,
    /// Length of the point, seconds.
    pub secs: f64,
    /// Whether the point lies in the warm-up.
    pub warmup: bool,
    /// Trades.
    pub trades: StreamPoint,
    /// Book updates.
    pub book: StreamPoint,
    /// Tester process CPU, percent of one core (average over the point).
    pub cpu_pct: f64,
    /// Tester resident memory, MiB (peak over the point).
    pub rss_mib: f64,
}

impl Point {
    /// Records per second of both streams.
    pub fn total_rate(&self) -> f64 {
        self.trades.rate + self.book.rate
    }

    /// The point of one interval alone (what the live view shows each second).
    pub fn of_interval(report: &IntervalReport, warmup: bool) -> Self {
        let mut acc = PointAccumulator::new(report.index, warmup, report.length_ns);
        acc.add(report);
        acc.point()
    }
}

/// Several consecutive intervals summed into one point.
///
/// Invariant: `per_stream` and `tester` hold exactly the intervals `first..first + count`.
#[derive(Debug)]
pub struct PointAccumulator {
    /// Index of the point's first interval; fixed.
    first: u64,
    /// Intervals added so far (the caller adds `first, first + 1, ...` in order).
    count: u64,
    /// Length of one interval, ns; fixed.
    length_ns: u64,
    /// Whether the point is marked warm-up, as the caller said; fixed.
    warmup: bool,
    /// Sum of the added intervals' covered time, ns.
    covered_ns: u64,
    /// Per stream, the sum of every source (all exchanges) of the added intervals.
    per_stream: BTreeMap<Stream, SourceReport>,
    /// For each added interval that had a tester sample, in order: the highest CPU of a tester
    /// process in it (percent of one core) and the largest resident set (bytes). One tester
    /// process in a standalone run; one per worker in a distributed run, whose point shows the
    /// busiest.
    tester: Vec<(f64, u64)>,
}

impl PointAccumulator {
    /// An empty point starting at interval `first`.
    pub fn new(first: u64, warmup: bool, length_ns: u64) -> Self {
        Self {
            first,
            count: 0,
            length_ns,
            warmup,
            covered_ns: 0,
            per_stream: BTreeMap::new(),
            tester: Vec::new(),
        }
    }

    /// Intervals summed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds the next interval.
    pub fn add(&mut self, r: &IntervalReport) {
        self.count += 1;
        self.covered_ns += r.covered_ns;
        for (id, s) in &r.sources {
            // Reports were validated when they were merged: adding cannot fail.
            let _ = self.per_stream.entry(id.stream).or_default().add(s);
        }
        let testers: Vec<&ProcessUsage> = r
            .processes
            .iter()
            .filter(|(name, _)| is_tester_process(name))
            .map(|(_, u)| u)
            .collect();
        if !testers.is_empty() {
            let cpu = testers.iter().map(|u| u.cpu_pct()).fold(0.0, f64::max);
            let rss = testers.iter().map(|u| u.rss_bytes).max().unwrap_or(0);
            self.tester.push((cpu, rss));
        }
    }

    /// The point.
    pub fn point(&self) -> Point {
        let secs = self.covered_ns as f64 / 1e9;
        let empty = SourceReport::default();
        let stream = |s: Stream| StreamPoint::of(self.per_stream.get(&s).unwrap_or(&empty), secs);
        let n = self.tester.len().max(1) as f64;
        Point {
            start_secs: self.first as f64 * self.length_ns as f64 / 1e9,
            secs,
            warmup: self.warmup,
            trades: stream(Stream::Trades),
            book: stream(Stream::Book),
            cpu_pct: self.tester.iter().map(|t| t.0).fold(0.0, |a, b| a + b) / n,
            rss_mib: self
                .tester
                .iter()
                .map(|t| t.1 as f64 / (1u64 << 20) as f64)
                .fold(0.0, f64::max),
        }
    }
}
