//! The results of a run: one serializable value that every output renders and that later runs
//! compare against, built from the run's merged interval reports alone ([`accumulate`]), so that
//! a coordinator of workers builds exactly what a standalone run builds. Latencies keep their
//! full histograms (HdrHistogram's V2 compressed form, base64), so results compare without loss.

pub mod accumulate;
pub mod chaos;
pub mod compare;
pub mod file;
pub mod judge;
pub mod series;
pub mod targets;
#[cfg(test)]
pub(crate) mod testdata;
pub mod transports;
pub mod verdict;
pub mod workers;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Stream};
use crate::report::histogram::{decode, encode};
use crate::report::{Integrity, ProcessUsage, WriterCounters};
use crate::results::verdict::Verdict;

pub use series::{Pcts, Point, StreamPoint};

/// Version of the results format (docs/results-schema.md). Readers refuse other versions.
pub const SCHEMA_VERSION: u32 = 2;

/// Summary of one latency histogram, all values ns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
    /// The histogram: HdrHistogram V2 compressed serialization, base64 (standard alphabet).
    pub histogram: String,
}

impl LatencySummary {
    /// Summarizes `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        let q = |q| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        Self {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: if h.is_empty() { 0 } else { h.max() },
            histogram: encode(h),
        }
    }

    /// Summarizes `h`, or an empty histogram when there is none.
    pub fn of_opt(h: Option<&Histogram<u64>>) -> Self {
        match h {
            Some(h) => Self::of(h),
            None => Self::of(&crate::report::histogram::new_histogram()),
        }
    }

    /// The histogram back, or why it cannot be decoded.
    pub fn decode(&self) -> Result<Histogram<u64>, String> {
        decode(&self.histogram)
    }
}

/// One latency kind, per stream and over both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    /// Trades.
    pub trades: LatencySummary,
    /// Book updates.
    pub book: LatencySummary,
    /// Both streams.
    pub all: LatencySummary,
}

/// The three latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Service time: the write call ("write latency").
    pub service: KindReport,
    /// Response time: from the intended send time to the end of the write.
    pub response: KindReport,
    /// Generator lag: from the intended send time to the start of the write.
    pub lag: KindReport,
}

/// Throughput of one stream (or of both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamThroughput {
    /// Records written in the measured time.
    pub sent: u64,
    /// Target rate, messages per second.
    pub target_rate: f64,
    /// Achieved rate: `sent / measured_secs`, messages per second.
    pub actual_rate: f64,
    /// Most records written in one measured second (summed over sources, each at its own peak).
    pub peak_rate: f64,
    /// `actual_rate / target_rate`, percent.
    pub achievement_pct: f64,
    /// Messages due in the run but never sent.
    pub backlog: u64,
}

/// Throughput of one exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeReport {
    /// Exchange name.
    pub name: String,
    /// Trades.
    pub trades: StreamThroughput,
    /// Book updates.
    pub book: StreamThroughput,
    /// Service-time summary of its trades.
    pub trades_service: LatencySummary,
    /// Service-time summary of its book updates.
    pub book_service: LatencySummary,
}

/// Throughput per stream, in total and per exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Trades over all exchanges.
    pub trades: StreamThroughput,
    /// Book updates over all exchanges.
    pub book: StreamThroughput,
    /// Both streams.
    pub total: StreamThroughput,
    /// Per exchange, by id.
    pub per_exchange: Vec<ExchangeReport>,
}

/// Write errors over the measured time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    /// Writes attempted.
    pub attempts: u64,
    /// Writes refused by backpressure (buffer overflows).
    pub buffer_overflows: u64,
    /// Writes that failed otherwise.
    pub write_failures: u64,
    /// `(buffer_overflows + write_failures) / attempts`, percent.
    pub error_rate_pct: f64,
    /// Writes whose response time exceeded the histograms' range (one minute); their latencies
    /// were recorded as one minute.
    pub saturated: u64,
}

/// Resource use of the tester process over the measured time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Samples taken (one per second).
    pub samples: usize,
    /// Average process CPU, percent of one core.
    pub cpu_avg_pct: f64,
    /// Highest one-second process CPU, percent of one core.
    pub cpu_peak_pct: f64,
    /// Average CPU the process spent working: its CPU less the time its generator threads spun
    /// waiting for send times, percent of one core. The CPU target judges this.
    pub cpu_working_avg_pct: f64,
    /// Highest one-second working CPU, percent of one core.
    pub cpu_working_peak_pct: f64,
    /// Average machine CPU, percent of all cores.
    pub system_cpu_avg_pct: f64,
    /// Average resident memory, MiB.
    pub rss_avg_mib: f64,
    /// Peak resident memory, MiB.
    pub rss_peak_mib: f64,
    /// Peak anonymous resident memory, MiB.
    pub rss_anon_peak_mib: f64,
    /// Peak resident shared memory (ring pages), MiB.
    pub rss_shmem_peak_mib: f64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    pub involuntary_switches: u64,
}

/// Bytes in a MiB.
const MIB: f64 = (1u64 << 20) as f64;

impl Resources {
    /// Summarizes the tester's samples, one per interval, each with the time its generator
    /// threads spun in that interval, ns.
    pub fn of_tester(samples: &[(ProcessUsage, u64)]) -> Self {
        let usage: Vec<ProcessUsage> = samples.iter().map(|(u, _)| *u).collect();
        let working: Vec<f64> = samples
            .iter()
            .map(|(u, spin)| {
                if u.wall_ns == 0 {
                    0.0
                } else {
                    100.0 * u.cpu_ns.saturating_sub(*spin) as f64 / u.wall_ns as f64
                }
            })
            .collect();
        let n = working.len().max(1) as f64;
        Self {
            cpu_working_avg_pct: working.iter().fold(0.0, |a, b| a + b) / n,
            cpu_working_peak_pct: working.iter().copied().fold(0.0, f64::max),
            ..Self::of(&usage)
        }
    }

    /// Summarizes one process's samples, one per interval; a process without generator
    /// threads works all the CPU time it uses.
    pub fn of(samples: &[ProcessUsage]) -> Self {
        let n = samples.len().max(1) as f64;
        let max = |f: fn(&ProcessUsage) -> f64| samples.iter().map(f).fold(0.0, f64::max);
        // A fold from +0.0, not `sum` (which starts at -0.0): no samples must read 0, not -0.
        let avg = |f: fn(&ProcessUsage) -> f64| samples.iter().map(f).fold(0.0, |a, b| a + b) / n;
        let sum = |f: fn(&ProcessUsage) -> u64| samples.iter().map(f).sum();
        Self {
            samples: samples.len(),
            cpu_avg_pct: avg(ProcessUsage::cpu_pct),
            cpu_peak_pct: max(ProcessUsage::cpu_pct),
            cpu_working_avg_pct: avg(ProcessUsage::cpu_pct),
            cpu_working_peak_pct: max(ProcessUsage::cpu_pct),
            system_cpu_avg_pct: avg(ProcessUsage::machine_cpu_pct),
            rss_avg_mib: avg(|s| s.rss_bytes as f64 / MIB),
            rss_peak_mib: max(|s| s.rss_bytes as f64 / MIB),
            rss_anon_peak_mib: max(|s| s.rss_anon_bytes as f64 / MIB),
            rss_shmem_peak_mib: max(|s| s.rss_shmem_bytes as f64 / MIB),
            minor_faults: sum(|s| s.minor_faults),
            major_faults: sum(|s| s.major_faults),
            voluntary_switches: sum(|s| s.voluntary_switches),
            involuntary_switches: sum(|s| s.involuntary_switches),
        }
    }
}

/// How the generator itself fared: the evidence for an INVALID verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    /// Generator threads.
    pub threads: usize,
    /// Cost of one clock read, ns (measured at start).
    pub clock_cost_ns: f64,
    /// Share of generator thread time spent waiting for send times, percent.
    pub wait_pct: f64,
    /// Of the waiting, the share spent spinning on the clock (the rest asleep), percent of
    /// generator thread time.
    pub spin_pct: f64,
    /// Share spent inside write calls, percent.
    pub write_pct: f64,
    /// Share spent generating, measuring and scheduling, percent.
    pub overhead_pct: f64,
    /// The lag budget: the run is invalid when lag P99 exceeds it, ns.
    pub lag_budget_ns: u64,
    /// Messages due but never sent, all sources.
    pub backlog: u64,
    /// Hybrid pacing: the widest spin window a thread ended with, ns (0 without hybrid pacing).
    pub spin_window_ns: u64,
    /// How late this machine's sleeps ended, 99th percentile as the pacer last measured it, ns
    /// (0 when the generator never slept).
    pub sleep_late_p99_ns: u64,
    /// CPU cores this process could run on.
    pub cores: usize,
    /// A chaos run with stall-generator faults: the lag P99 of the measured seconds no stall
    /// (or its recovery budget) touched, ns; the generator falling behind because it was told
    /// to is not the tester failing to keep up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_p99_outside_stalls_ns: Option<u64>,
}

/// Least measured time over which RSS growth is judged, seconds.
pub const MIN_GROWTH_SPAN_SECS: f64 = 600.0;

/// Change between the first and the last tenth of the measured time series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    /// Points in each tenth.
    pub points_per_tenth: usize,
    /// Highest service-time P99 of the points in the first tenth, ns.
    pub service_p99_first_ns: u64,
    /// Highest service-time P99 of the points in the last tenth, ns.
    pub service_p99_last_ns: u64,
    /// Average rate in the first tenth, messages per second.
    pub rate_first: f64,
    /// Average rate in the last tenth, messages per second.
    pub rate_last: f64,
    /// Peak RSS in the first tenth, MiB.
    pub rss_first_mib: f64,
    /// Peak RSS in the last tenth, MiB.
    pub rss_last_mib: f64,
    /// Least-squares slope of RSS over the measured points, MiB per hour, signed; `None` when
    /// the measured points span less than [`MIN_GROWTH_SPAN_SECS`] (a slope over a minute of
    /// a flat RSS extrapolates noise into thousands of MiB an hour).
    pub rss_slope_mib_per_hour: Option<f64>,
    /// Seconds the measured points span.
    pub span_secs: f64,
}

/// One source (exchange x stream), for the verbose tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// Exchange id.
    pub exchange: u16,
    /// Stream.
    pub stream: Stream,
    /// Counts over the measured time.
    pub counters: WriterCounters,
    /// Service time.
    pub service: LatencySummary,
    /// Response time.
    pub response: LatencySummary,
    /// Generator lag.
    pub lag: LatencySummary,
}

/// The warm-up, measured but kept out of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    /// Its length, seconds.
    pub secs: u64,
    /// Records written during it.
    pub sent: u64,
    /// Service time during it, both streams.
    pub service: LatencySummary,
}

/// One reader process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderSummary {
    /// Index.
    pub index: usize,
    /// Process id.
    pub pid: u32,
    /// How it ended: `writers closed`, `writer died`, ..., or `died`.
    pub ended: String,
    /// How it died, if it did.
    pub died: Option<String>,
    /// Records received, both streams.
    pub received: u64,
    /// Records lost, both streams.
    pub lost: u64,
    /// Integrity violations, both streams.
    pub violations: u64,
    /// Average CPU, percent of one core.
    pub cpu_avg_pct: f64,
    /// Peak one-second CPU, percent of one core.
    pub cpu_peak_pct: f64,
    /// Peak resident memory, MiB.
    pub rss_peak_mib: f64,
    /// What it recorded, if it recorded (`--record`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::report::end::CaptureOutcome>,
    /// A datagram feed's reader: datagrams not of this run's feed, counted and ignored.
    #[serde(default)]
    pub foreign_datagrams: u64,
}

/// What the readers received: end-to-end latency, losses, integrity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Reader processes started.
    pub readers: usize,
    /// Of those, how many died before reporting.
    pub dead: usize,
    /// Whether losses were allowed (`--allow-loss`).
    pub loss_allowed: bool,
    /// End-to-end latency over the measured time, all readers merged.
    pub e2e: KindReport,
    /// Records the writers wrote over the whole run (warm-up included), per stream.
    pub written: BTreeMap<Stream, u64>,
    /// An impaired datagram feed: the losses the readers must count because the impairment
    /// dropped records on purpose: records dropped over the whole run, times the readers that
    /// reported (each counts every one).
    #[serde(default)]
    pub impairment_lost: u64,
    /// Counts per stream, summed over the readers that reported.
    pub streams: BTreeMap<Stream, Integrity>,
    /// Per reader.
    pub per_reader: Vec<ReaderSummary>,
    /// Reader output lines that could not be understood.
    pub garbage_lines: u64,
}

impl Delivery {
    /// Counts of both streams.
    pub fn total(&self) -> Integrity {
        let mut t = Integrity::default();
        for i in self.streams.values() {
            t.add(i);
        }
        t
    }
}

/// Latencies of whole seconds inside and outside bursts (burst patterns only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bursts {
    /// Service time inside bursts, both streams.
    pub inside_service: LatencySummary,
    /// Service time outside bursts.
    pub outside_service: LatencySummary,
    /// Response time inside bursts.
    pub inside_response: LatencySummary,
    /// Response time outside bursts.
    pub outside_response: LatencySummary,
}

/// The tool that produced the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// `alphapulse-load-tester`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// Everything a run measured, summarized; see docs/results-schema.md for every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The producer.
    pub tool: Tool,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The plan that ran (the configuration).
    pub plan: Plan,
    /// Measured seconds (after the warm-up; less than planned if interrupted).
    pub measured_secs: f64,
    /// Set when a signal stopped the run early: `SIGINT` or `SIGTERM`.
    pub interrupted: Option<String>,
    /// Throughput.
    pub throughput: Throughput,
    /// Latencies.
    pub latency: Latency,
    /// Errors.
    pub errors: Errors,
    /// Resources.
    pub resources: Resources,
    /// The generator's own performance.
    pub generator: GeneratorHealth,
    /// Degradation over time, when the run had at least 10 measured points.
    pub degradation: Option<Degradation>,
    /// The warm-up.
    pub warmup: Warmup,
    /// What the readers received, when the run had readers.
    pub delivery: Option<Delivery>,
    /// Latency inside and outside bursts, when a stream follows a burst pattern.
    pub bursts: Option<Bursts>,
    /// Per source.
    pub sources: Vec<SourceSummary>,
    /// Time series, warm-up included.
    pub series: Vec<Point>,
    /// Things that went wrong without stopping the run.
    pub warnings: Vec<String>,
    /// The verdict against the targets.
    pub verdict: Verdict,
    /// A distributed run's workers, each with its own figures (absent for a standalone run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<workers::Workers>,
    /// A chaos run's faults, each judged (absent without `--chaos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<chaos::ChaosResults>,
}
