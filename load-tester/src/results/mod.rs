//! The results of a run: one serializable value that every output renders and that later runs
//! compare against. Latencies keep their full histograms (HdrHistogram's V2 compressed form,
//! base64), so results merge and compare without loss.

pub mod compare;
pub mod file;
pub mod targets;
pub mod verdict;

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Stream};
use crate::results::verdict::Verdict;
use crate::run::consumer::Integrity;
use crate::run::engine::{self, RunData};
use crate::run::generator::SourceId;
use crate::run::measure::{Counters, Kind, LatencySet, SourceStats};
use crate::run::sampler::ResourceSample;

/// Version of the results format (docs/results-schema.md). Readers refuse other versions.
pub const SCHEMA_VERSION: u32 = 1;

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
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// One stream over one time-series point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamPoint {
    /// Target rate, messages per second.
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
    /// Summarizes `latency`, `e2e` and `counters` recorded over `secs` seconds.
    pub fn new(
        target_rate: f64,
        latency: &LatencySet,
        e2e: Option<&Histogram<u64>>,
        counters: &Counters,
        secs: f64,
    ) -> Self {
        Self {
            target_rate,
            rate: if secs > 0.0 {
                counters.sent as f64 / secs
            } else {
                0.0
            },
            sent: counters.sent,
            errors: counters.errors(),
            service: Pcts::of(&latency.service),
            response: Pcts::of(&latency.response),
            lag: Pcts::of(&latency.lag),
            e2e: e2e.map(Pcts::of).unwrap_or_default(),
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
}

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
            histogram: encode_histogram(h),
        }
    }

    /// The histogram back, or why it cannot be decoded.
    pub fn decode(&self) -> Result<Histogram<u64>, String> {
        decode_histogram(&self.histogram)
    }
}

/// Serializes `h` in HdrHistogram's V2 compressed form, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes what [`encode_histogram`] produced.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))
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

impl Resources {
    fn of(samples: &[ResourceSample]) -> Self {
        let n = samples.len().max(1) as f64;
        let max = |f: fn(&ResourceSample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
        // A fold from +0.0, not `sum` (which starts at -0.0): no samples must read 0, not -0.
        let avg = |f: fn(&ResourceSample) -> f64| samples.iter().map(f).fold(0.0, |a, b| a + b) / n;
        let sum = |f: fn(&ResourceSample) -> u64| samples.iter().map(f).sum();
        Self {
            samples: samples.len(),
            cpu_avg_pct: avg(|s| s.cpu_pct),
            cpu_peak_pct: max(|s| s.cpu_pct),
            system_cpu_avg_pct: avg(|s| s.system_cpu_pct),
            rss_avg_mib: avg(|s| s.rss_mib),
            rss_peak_mib: max(|s| s.rss_mib),
            rss_anon_peak_mib: max(|s| s.rss_anon_mib),
            rss_shmem_peak_mib: max(|s| s.rss_shmem_mib),
            minor_faults: sum(|s| s.minor_faults),
            major_faults: sum(|s| s.major_faults),
            voluntary_switches: sum(|s| s.voluntary_switches),
            involuntary_switches: sum(|s| s.involuntary_switches),
        }
    }
}

/// How the generator itself fared: the evidence for an INVALID verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Generator {
    /// Generator threads.
    pub threads: usize,
    /// Cost of one clock read, ns (measured at start).
    pub clock_cost_ns: f64,
    /// Share of generator thread time spent waiting for send times, percent.
    pub wait_pct: f64,
    /// Share spent inside write calls, percent.
    pub write_pct: f64,
    /// Share spent generating, measuring and scheduling, percent.
    pub overhead_pct: f64,
    /// The lag budget: the run is invalid when lag P99 exceeds it, ns.
    pub lag_budget_ns: u64,
    /// Messages due but never sent, all sources.
    pub backlog: u64,
}

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
    /// Least-squares slope of RSS over the measured points, MiB per hour.
    pub rss_slope_mib_per_hour: f64,
}

/// One source (exchange x stream), for the verbose tables and for merging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    /// Exchange id.
    pub exchange: u16,
    /// Stream.
    pub stream: Stream,
    /// Counts over the measured time.
    pub counters: Counters,
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
    pub generator: Generator,
    /// Degradation over time, when the run had at least 10 measured points.
    pub degradation: Option<Degradation>,
    /// The warm-up.
    pub warmup: Warmup,
    /// What the readers received, when the run had readers.
    pub delivery: Option<Delivery>,
    /// Latency inside and outside bursts, when a stream follows a burst pattern.
    pub bursts: Option<Bursts>,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Time series, warm-up included.
    pub series: Vec<Point>,
    /// Things that went wrong without stopping the run.
    pub warnings: Vec<String>,
    /// The verdict against the targets.
    pub verdict: Verdict,
}

fn throughput(sent: u64, target: f64, secs: f64, peak: u64, backlog: u64) -> StreamThroughput {
    let actual = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    StreamThroughput {
        sent,
        target_rate: target,
        actual_rate: actual,
        peak_rate: peak as f64,
        achievement_pct: if target > 0.0 {
            100.0 * actual / target
        } else {
            0.0
        },
        backlog,
    }
}

fn kind_report(
    kind: Kind,
    per_stream: &BTreeMap<Stream, SourceStats>,
    all: &LatencySet,
) -> KindReport {
    let empty = SourceStats::default();
    let of = |s| LatencySummary::of(per_stream.get(&s).unwrap_or(&empty).latency.get(kind));
    KindReport {
        trades: of(Stream::Trades),
        book: of(Stream::Book),
        all: LatencySummary::of(all.get(kind)),
    }
}

fn sum_for<F: Fn(&SourceId) -> bool>(map: &BTreeMap<SourceId, u64>, f: F) -> u64 {
    map.iter().filter(|(id, _)| f(id)).map(|(_, v)| *v).sum()
}

/// Summarizes what a run measured. The verdict is left for [`crate::results::verdict::judge`].
pub fn build(data: &RunData, interrupted: Option<String>, allow_loss: bool) -> Results {
    let plan = &data.plan;
    let secs = data.measured_secs;
    let per_stream = engine::by_stream(&data.measured);
    let (all_lat, all_counters) = engine::all(&data.measured);
    let empty = SourceStats::default();
    // Target rates are what the patterns targeted over the measured time.
    let target_of = |f: &dyn Fn(&SourceId) -> bool| {
        if secs <= 0.0 {
            return 0.0;
        }
        data.target_measured
            .iter()
            .filter(|(id, _)| f(id))
            .map(|(_, n)| n)
            .sum::<f64>()
            / secs
    };
    let stream_tp = |s: Stream| {
        let st = per_stream.get(&s).unwrap_or(&empty);
        throughput(
            st.counters.sent,
            target_of(&|id: &SourceId| id.stream == s),
            secs,
            sum_for(&data.peak_sent, |id| id.stream == s),
            sum_for(&data.backlog, |id| id.stream == s),
        )
    };
    let trades = stream_tp(Stream::Trades);
    let book = stream_tp(Stream::Book);
    let total = throughput(
        all_counters.sent,
        target_of(&|_: &SourceId| true),
        secs,
        data.series
            .iter()
            .filter(|p| !p.warmup)
            .map(|p| (p.total_rate()) as u64)
            .max()
            .unwrap_or(0),
        data.backlog.values().sum(),
    );
    let per_exchange = plan
        .exchanges
        .iter()
        .map(|e| {
            let src = |stream| {
                data.measured
                    .get(&SourceId {
                        exchange: e.id,
                        stream,
                    })
                    .unwrap_or(&empty)
            };
            let tp = |stream: Stream| {
                let id = SourceId {
                    exchange: e.id,
                    stream,
                };
                throughput(
                    src(stream).counters.sent,
                    target_of(&|i: &SourceId| *i == id),
                    secs,
                    data.peak_sent.get(&id).copied().unwrap_or(0),
                    data.backlog.get(&id).copied().unwrap_or(0),
                )
            };
            ExchangeReport {
                name: e.name.clone(),
                trades: tp(Stream::Trades),
                book: tp(Stream::Book),
                trades_service: LatencySummary::of(&src(Stream::Trades).latency.service),
                book_service: LatencySummary::of(&src(Stream::Book).latency.service),
            }
        })
        .collect();
    let attempts = all_counters.attempts();
    let errors = Errors {
        attempts,
        buffer_overflows: all_counters.buffer_overflows,
        write_failures: all_counters.write_failures,
        error_rate_pct: if attempts > 0 {
            100.0 * all_counters.errors() as f64 / attempts as f64
        } else {
            0.0
        },
        saturated: all_lat.saturated,
    };
    let thread_ns = data.thread_ns.max(1) as f64;
    let wait_pct = 100.0 * data.wait_ns as f64 / thread_ns;
    let write_pct = 100.0 * data.write_ns as f64 / thread_ns;
    let (warm_lat, warm_counters) = engine::all(&data.warmup);
    Results {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        started_unix_ms: data.started_unix_ms,
        plan: plan.clone(),
        measured_secs: secs,
        interrupted,
        throughput: Throughput {
            trades,
            book,
            total,
            per_exchange,
        },
        latency: Latency {
            service: kind_report(Kind::Service, &per_stream, &all_lat),
            response: kind_report(Kind::Response, &per_stream, &all_lat),
            lag: kind_report(Kind::Lag, &per_stream, &all_lat),
        },
        errors,
        resources: Resources::of(&data.resources),
        generator: Generator {
            threads: plan.threads,
            clock_cost_ns: data.clock_cost_ns,
            wait_pct,
            write_pct,
            overhead_pct: (100.0 - wait_pct - write_pct).max(0.0),
            lag_budget_ns: plan.lag_budget_ns,
            backlog: data.backlog.values().sum(),
        },
        degradation: degradation(&data.series),
        warmup: Warmup {
            secs: plan.warmup_secs,
            sent: warm_counters.sent,
            service: LatencySummary::of(&warm_lat.service),
        },
        delivery: (plan.consumers > 0).then(|| delivery(data, allow_loss)),
        bursts: bursts(data),
        sources: data
            .measured
            .iter()
            .map(|(id, st)| SourceReport {
                exchange: id.exchange,
                stream: id.stream,
                counters: st.counters,
                service: LatencySummary::of(&st.latency.service),
                response: LatencySummary::of(&st.latency.response),
                lag: LatencySummary::of(&st.latency.lag),
            })
            .collect(),
        series: data.series.clone(),
        warnings: data.warnings.clone(),
        verdict: Verdict::default(),
    }
}

fn bursts(data: &RunData) -> Option<Bursts> {
    if data.burst_in.is_empty() && data.burst_out.is_empty() {
        return None;
    }
    let merge = |m: &BTreeMap<Stream, LatencySet>| {
        let mut all = LatencySet::default();
        for l in m.values() {
            all.add(l);
        }
        all
    };
    let (inside, outside) = (merge(&data.burst_in), merge(&data.burst_out));
    Some(Bursts {
        inside_service: LatencySummary::of(&inside.service),
        outside_service: LatencySummary::of(&outside.service),
        inside_response: LatencySummary::of(&inside.response),
        outside_response: LatencySummary::of(&outside.response),
    })
}

fn delivery(data: &RunData, allow_loss: bool) -> Delivery {
    let mut written: BTreeMap<Stream, u64> = BTreeMap::new();
    for (id, st) in data.warmup.iter().chain(&data.measured) {
        *written.entry(id.stream).or_default() += st.counters.sent;
    }
    let mut streams: BTreeMap<Stream, Integrity> = BTreeMap::new();
    let mut per_reader = Vec::new();
    for r in &data.readers {
        let mut total = Integrity::default();
        if let Some(o) = &r.outcome {
            for (stream, d) in &o.streams {
                let mut i = d.integrity;
                // What the reader accounted for must be exactly what the tester wrote.
                let w = written.get(stream).copied().unwrap_or(0);
                if o.ended == "writers closed" && i.unaccounted == 0 && i.accounted != w {
                    i.unaccounted = i.accounted.abs_diff(w);
                }
                streams.entry(*stream).or_default().add(&i);
                total.add(&i);
            }
        }
        let res = Resources::of(&r.samples);
        per_reader.push(ReaderSummary {
            index: r.index,
            pid: r.pid,
            ended: r
                .outcome
                .as_ref()
                .map_or_else(|| "died".to_string(), |o| o.ended.clone()),
            died: r.died.clone(),
            received: total.received,
            lost: total.lost,
            violations: total.violations(),
            cpu_avg_pct: res.cpu_avg_pct,
            cpu_peak_pct: res.cpu_peak_pct,
            rss_peak_mib: res.rss_peak_mib,
        });
    }
    let empty = crate::run::measure::new_histogram();
    let mut all = crate::run::measure::new_histogram();
    for h in data.e2e_measured.values() {
        let _ = all.add(h);
    }
    let of = |s: Stream| LatencySummary::of(data.e2e_measured.get(&s).unwrap_or(&empty));
    Delivery {
        readers: data.readers.len(),
        dead: data.readers.iter().filter(|r| r.outcome.is_none()).count(),
        loss_allowed: allow_loss,
        e2e: KindReport {
            trades: of(Stream::Trades),
            book: of(Stream::Book),
            all: LatencySummary::of(&all),
        },
        written,
        streams,
        per_reader,
        garbage_lines: data.garbage_lines,
    }
}

fn degradation(series: &[Point]) -> Option<Degradation> {
    let measured: Vec<&Point> = series.iter().filter(|p| !p.warmup).collect();
    if measured.len() < 10 {
        return None;
    }
    let n = measured.len() / 10;
    let (first, last) = (&measured[..n], &measured[measured.len() - n..]);
    let p99 = |ps: &[&Point]| {
        ps.iter()
            .map(|p| p.trades.service.p99.max(p.book.service.p99))
            .max()
            .unwrap_or(0)
    };
    let rate = |ps: &[&Point]| ps.iter().map(|p| p.total_rate()).sum::<f64>() / ps.len() as f64;
    let rss = |ps: &[&Point]| ps.iter().map(|p| p.rss_mib).fold(0.0, f64::max);
    // Least-squares slope of RSS against time, over every measured point.
    let xs: Vec<f64> = measured
        .iter()
        .map(|p| (p.start_secs + p.secs / 2.0) / 3600.0)
        .collect();
    let ys: Vec<f64> = measured.iter().map(|p| p.rss_mib).collect();
    let (mx, my) = (
        xs.iter().sum::<f64>() / xs.len() as f64,
        ys.iter().sum::<f64>() / ys.len() as f64,
    );
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    Some(Degradation {
        rss_slope_mib_per_hour: if sxx > 0.0 { sxy / sxx } else { 0.0 },
        points_per_tenth: n,
        service_p99_first_ns: p99(first),
        service_p99_last_ns: p99(last),
        rate_first: rate(first),
        rate_last: rate(last),
        rss_first_mib: rss(first),
        rss_last_mib: rss(last),
    })
}

#[cfg(test)]
mod tests {
    use crate::results::*;

    #[test]
    fn histograms_round_trip_through_text() {
        let mut h = crate::run::measure::new_histogram();
        for v in [1, 100, 1_000, 123_456, 9_999_999] {
            h.record(v).unwrap();
        }
        let text = encode_histogram(&h);
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert_eq!(back.max(), h.max());
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("aGVsbG8=").is_err());
    }
}
