//! Live Prometheus metrics (`--metrics-addr`): the OpenMetrics text exposition at `/metrics`,
//! encoded by prometheus-client, served from a thread of its own (axum on a one-thread tokio
//! runtime). Values come from the merged interval reports, once per interval, as for every live
//! output: nothing here runs on a generator thread or reads the run's state. docs/metrics.md
//! lists every metric.
//!
//! Latencies are exported as histograms in seconds with fixed log-spaced buckets (1, 2, 5 per
//! decade from 10 ns to 10 s), filled from each interval's HdrHistograms: every recorded value
//! lands in the first bucket whose bound is at least its HdrHistogram bucket's value, so a bucket
//! count is exact to the HdrHistogram's 0.1% resolution. `_sum` adds those values.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::plan::Plan;
use crate::report::observe::{Observer, RunStart};
use crate::report::{is_tester_process, IntervalReport, Kind, Stream};

/// Upper bounds of the latency buckets, seconds: 1, 2 and 5 of every decade from 10 ns to 10 s.
pub fn bucket_bounds() -> Vec<f64> {
    let mut b = Vec::new();
    for exp in -8..=0 {
        for m in [1.0, 2.0, 5.0] {
            b.push(m * 10f64.powi(exp));
        }
    }
    b.push(10.0);
    b
}

/// The labels of every per-source metric: the exchange's name and the stream. Bounded: at most
/// 256 exchanges x 2 streams.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Exchange name, e.g. `binance`.
    pub exchange: String,
    /// `trades` or `book`.
    pub stream: String,
}

/// The label of the per-process metrics: `tester`, `reader.<n>` (`w<i>.tester`, ... in a
/// distributed run).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessLabels {
    /// The process, as the interval report names it.
    pub process: String,
}

/// The label of the outcome gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `running`, then `passed`, `failed` or `invalid` (or `interrupted`).
    pub outcome: String,
}

/// A histogram whose buckets are filled from HdrHistograms.
///
/// Invariant: `counts` has one entry per bound of [`bucket_bounds`] and one for `+Inf`;
/// `count` is their sum.
#[derive(Debug, Default)]
struct Buckets {
    sum: f64,
    count: u64,
    counts: Vec<u64>,
}

/// The bounds every latency histogram uses.
static BOUNDS: std::sync::LazyLock<Arc<Vec<f64>>> =
    std::sync::LazyLock::new(|| Arc::new(bucket_bounds()));

/// A shared [`Buckets`], as a prometheus-client metric.
#[derive(Debug, Clone)]
pub struct HdrHistogramMetric {
    inner: Arc<Mutex<Buckets>>,
    bounds: Arc<Vec<f64>>,
}

impl Default for HdrHistogramMetric {
    fn default() -> Self {
        let bounds = Arc::clone(&BOUNDS);
        Self {
            inner: Arc::new(Mutex::new(Buckets {
                sum: 0.0,
                count: 0,
                counts: vec![0; bounds.len() + 1],
            })),
            bounds,
        }
    }
}

impl HdrHistogramMetric {
    /// Adds every value of `h` (nanoseconds).
    pub fn add(&self, h: &hdrhistogram::Histogram<u64>) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for v in h.iter_recorded() {
            let secs = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e9;
            let n = v.count_at_value();
            let i = self.bounds.partition_point(|&bound| bound < secs);
            b.counts[i] += n;
            b.count += n;
            b.sum += secs * n as f64;
        }
    }

    /// (sum, count, cumulative count per bound then +Inf), for tests.
    pub fn snapshot(&self) -> (f64, u64, Vec<u64>) {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut acc = 0;
        let cumulative = b
            .counts
            .iter()
            .map(|c| {
                acc += c;
                acc
            })
            .collect();
        (b.sum, b.count, cumulative)
    }
}

impl TypedMetric for HdrHistogramMetric {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for HdrHistogramMetric {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(b.counts.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(b.sum, b.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Every metric, shared by the observer (which writes) and the server (which encodes).
#[derive(Clone)]
struct Families {
    sent: Family<SourceLabels, Counter>,
    write_failures: Family<SourceLabels, Counter>,
    buffer_overflows: Family<SourceLabels, Counter>,
    received: Family<SourceLabels, Counter>,
    lost: Family<SourceLabels, Counter>,
    violations: Family<SourceLabels, Counter>,
    target_rate: Family<SourceLabels, F64Gauge>,
    actual_rate: Family<SourceLabels, F64Gauge>,
    lag_p99: Family<SourceLabels, F64Gauge>,
    latency: Vec<(Kind, Family<SourceLabels, HdrHistogramMetric>)>,
    cpu: Family<ProcessLabels, F64Gauge>,
    rss: Family<ProcessLabels, F64Gauge>,
    readers_alive: Gauge,
    outcome: Family<OutcomeLabels, Gauge>,
    /// `alphapulse_run_info{run_id, scenario, version} 1`: a gauge, the Prometheus text format's
    /// way to carry an info metric.
    info: Family<Vec<(String, String)>, Gauge>,
}

fn registry() -> (Registry, Families) {
    let f = Families {
        sent: Family::default(),
        write_failures: Family::default(),
        buffer_overflows: Family::default(),
        received: Family::default(),
        lost: Family::default(),
        violations: Family::default(),
        target_rate: Family::default(),
        actual_rate: Family::default(),
        lag_p99: Family::default(),
        latency: Kind::ALL.iter().map(|&k| (k, Family::default())).collect(),
        cpu: Family::default(),
        rss: Family::default(),
        readers_alive: Gauge::default(),
        outcome: Family::default(),
        info: Family::default(),
    };
    let mut r = Registry::with_prefix("alphapulse");
    r.register(
        "sent",
        "Records written, from the start of the run (warm-up included)",
        f.sent.clone(),
    );
    r.register(
        "write_failures",
        "Writes that failed",
        f.write_failures.clone(),
    );
    r.register(
        "buffer_overflows",
        "Writes refused because a reader was a whole ring behind (backpressure)",
        f.buffer_overflows.clone(),
    );
    r.register(
        "received",
        "Records the readers received, all readers",
        f.received.clone(),
    );
    r.register("lost", "Records the readers lost", f.lost.clone());
    r.register(
        "integrity_violations",
        "Records that failed an integrity check (corrupted, out of order, gaps, book errors, \
         digest mismatches, unaccounted)",
        f.violations.clone(),
    );
    r.register(
        "target_messages_per_second",
        "Messages the schedule had due per second, over the last interval",
        f.target_rate.clone(),
    );
    r.register(
        "actual_messages_per_second",
        "Records written per second, over the last interval",
        f.actual_rate.clone(),
    );
    r.register_with_unit(
        "generator_lag_p99",
        "99th percentile of how late the generator started each write, over the last interval",
        Unit::Seconds,
        f.lag_p99.clone(),
    );
    for (kind, family) in &f.latency {
        let (name, help) = match kind {
            Kind::Service => ("service_time", "Write (service) time"),
            Kind::Response => (
                "response_time",
                "Time from the intended send time to the end of the write (coordinated omission \
                 included)",
            ),
            Kind::Lag => (
                "generator_lag",
                "How late the generator started each write after its intended send time",
            ),
            Kind::E2e => (
                "end_to_end_latency",
                "Send timestamp to the record copied out by a reader",
            ),
        };
        r.register_with_unit(name, help, Unit::Seconds, family.clone());
    }
    r.register(
        "process_cpu_ratio",
        "CPU of a process over the last interval, as a fraction of one core",
        f.cpu.clone(),
    );
    r.register_with_unit(
        "process_resident_memory",
        "Resident memory of a process at the end of the last interval",
        Unit::Bytes,
        f.rss.clone(),
    );
    r.register(
        "readers_alive",
        "Reader processes that reported resource use in the last interval",
        f.readers_alive.clone(),
    );
    r.register(
        "run_outcome",
        "1 for the run's state: running, then passed, failed, invalid or interrupted",
        f.outcome.clone(),
    );
    r.register(
        "run_info",
        "The run: its id, scenario and tool version",
        f.info.clone(),
    );
    (r, f)
}

/// The metrics of a run, served at `/metrics` until dropped; an [`Observer`] of the run.
pub struct Metrics {
    families: Families,
    /// The registry the server encodes; shared with it.
    registry: Arc<Registry>,
    /// Where it is served.
    addr: SocketAddr,
    /// Stops the server.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's thread.
    thread: Option<std::thread::JoinHandle<()>>,
    /// Exchange names by id, from the plan.
    names: Vec<String>,
}

/// Resolves `--metrics-addr`: `HOST:PORT`, `:PORT` or `PORT` (the last two on loopback).
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    let full = if let Some(port) = text.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        format!("127.0.0.1:{text}")
    } else {
        text.to_string()
    };
    let mut addrs = full
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text}: {e}; give ADDR:PORT, e.g. 127.0.0.1:9464"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

impl Metrics {
    /// Binds `addr` (see [`resolve`]) now, so that a port in use or without rights fails before
    /// the run, and serves from a thread of its own, which runs `thread_setup` first (the
    /// caller lowers its priority there).
    pub fn bind(addr: &str, thread_setup: fn()) -> Result<Self, String> {
        let addr = resolve(addr)?;
        let listener = TcpListener::bind(addr).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => "; choose another port".to_string(),
                std::io::ErrorKind::PermissionDenied => {
                    // The kernel's line, 1024 unless the host moved it.
                    let start: u32 =
                        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                            .unwrap_or(1024);
                    format!(
                        "; ports below {start} need privileges here: choose a port of {start} \
                         or above"
                    )
                }
                _ => String::new(),
            };
            format!("cannot listen on {addr}: {e}{hint}")
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let (registry, families) = registry();
        let registry = Arc::new(registry);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::clone(&registry);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                thread_setup();
                serve(listener, shared, stop);
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        families
            .outcome
            .get_or_create(&OutcomeLabels {
                outcome: "running".into(),
            })
            .set(1);
        Ok(Self {
            families,
            registry,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            names: Vec::new(),
        })
    }

    /// Where the metrics are served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current exposition, as a scrape would get it.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Sets the outcome gauge to `outcome` (`passed`, `failed`, `invalid`, `interrupted`).
    pub fn finish(&self, outcome: &str) {
        for name in ["running", "passed", "failed", "invalid", "interrupted"] {
            self.families
                .outcome
                .get_or_create(&OutcomeLabels {
                    outcome: name.into(),
                })
                .set(i64::from(name == outcome));
        }
    }

    fn labels(&self, exchange: u16, stream: Stream) -> SourceLabels {
        SourceLabels {
            exchange: self
                .names
                .get(usize::from(exchange))
                .cloned()
                .unwrap_or_else(|| exchange.to_string()),
            stream: stream.name().into(),
        }
    }
}

impl Observer for Metrics {
    fn started(&mut self, plan: &Plan, start: &RunStart) {
        let len = plan
            .exchanges
            .iter()
            .map(|e| usize::from(e.id) + 1)
            .max()
            .unwrap_or(0);
        self.names = vec![String::new(); len];
        for e in &plan.exchanges {
            self.names[usize::from(e.id)] = e.name.clone();
        }
        let run_id = std::path::Path::new(&start.location)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.starts_with("run-"))
            .map_or_else(
                || format!("run-{}-{}", std::process::id(), start.started_unix_ms),
                str::to_string,
            );
        let labels = vec![
            ("run_id".to_string(), run_id),
            (
                "scenario".to_string(),
                plan.scenario.clone().unwrap_or_else(|| "none".into()),
            ),
            ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ];
        self.families.info.get_or_create(&labels).set(1);
    }

    fn interval(&mut self, r: &IntervalReport) {
        let secs = r.covered_ns as f64 / 1e9;
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        for (id, s) in &r.sources {
            let l = self.labels(id.exchange, id.stream);
            let f = &self.families;
            f.sent.get_or_create(&l).inc_by(s.writer.sent);
            f.write_failures
                .get_or_create(&l)
                .inc_by(s.writer.write_failures);
            f.buffer_overflows
                .get_or_create(&l)
                .inc_by(s.writer.buffer_overflows);
            f.received.get_or_create(&l).inc_by(s.reader.received);
            f.lost.get_or_create(&l).inc_by(s.reader.lost);
            f.violations.get_or_create(&l).inc_by(s.reader.violations());
            f.target_rate.get_or_create(&l).set(per_sec(s.writer.due()));
            f.actual_rate.get_or_create(&l).set(per_sec(s.writer.sent));
            let lag = s
                .latency
                .get(Kind::Lag)
                .filter(|h| !h.is_empty())
                .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1e9);
            f.lag_p99.get_or_create(&l).set(lag);
            for (kind, family) in &f.latency {
                if let Some(h) = s.latency.get(*kind).filter(|h| !h.is_empty()) {
                    family.get_or_create(&l).add(h);
                }
            }
        }
        let mut readers = 0;
        for (name, u) in &r.processes {
            if !is_tester_process(name) {
                readers += 1;
            }
            let l = ProcessLabels {
                process: name.clone(),
            };
            self.families.cpu.get_or_create(&l).set(u.cpu_pct() / 100.0);
            self.families.rss.get_or_create(&l).set(u.rss_bytes as f64);
        }
        if !r.processes.is_empty() {
            self.families.readers_alive.set(readers);
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The content type of the OpenMetrics text, for scrapers that ask for it (Prometheus does).
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus' own text format, for every other client.
const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// prometheus-client's OpenMetrics text in Prometheus' text format 0.0.4, for clients that did
/// not ask for OpenMetrics (curl, promtool, older scrapers): a counter family's `HELP` and
/// `TYPE` lines name its samples (`x_total`, where OpenMetrics says `x`), and the `UNIT` and
/// `EOF` lines, which that format does not have, go. Samples are unchanged.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some(h) = help.take() {
                let text = h["# HELP ".len()..].split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Serves `registry` at `/metrics` on `listener` until `stop`.
fn serve(listener: TcpListener, registry: Arc<Registry>, stop: tokio::sync::oneshot::Receiver<()>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let registry = Arc::clone(&registry);
                async move {
                    let mut body = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
                    let openmetrics = headers
                        .get(axum::http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("application/openmetrics-text"));
                    if openmetrics {
                        ([(axum::http::header::CONTENT_TYPE, OPENMETRICS_TYPE)], body)
                    } else {
                        (
                            [(axum::http::header::CONTENT_TYPE, PROMETHEUS_TYPE)],
                            prometheus_text(&body),
                        )
                    }
                }
            }),
        );
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
    });
}

#[cfg(test)]
mod tests {
    use crate::output::metrics::{bucket_bounds, resolve, HdrHistogramMetric};

    #[test]
    fn buckets_are_log_spaced_from_10_ns_to_10_s() {
        let b = bucket_bounds();
        assert_eq!(b.len(), 28);
        assert!((b[0] - 1e-8).abs() < 1e-20);
        assert_eq!(*b.last().unwrap(), 10.0);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn hdr_values_land_in_the_first_bucket_that_holds_them() {
        let m = HdrHistogramMetric::default();
        let mut h = crate::report::histogram::new_histogram();
        // 15 ns -> le 2e-8; 100 ns exactly -> le 1e-7; 3 ms -> le 5e-3; 20 s -> +Inf.
        for (v, n) in [(15, 2), (100, 1), (3_000_000, 4), (20_000_000_000, 1)] {
            h.record_n(v, n).unwrap();
        }
        m.add(&h);
        let (sum, count, cumulative) = m.snapshot();
        assert_eq!(count, 8);
        let b = bucket_bounds();
        let at = |bound: f64| cumulative[b.iter().position(|&x| x == bound).unwrap()];
        assert_eq!(at(1e-8), 0);
        assert_eq!(at(2e-8), 2);
        assert_eq!(at(1e-7), 3);
        assert_eq!(at(2e-3), 3);
        assert_eq!(at(5e-3), 7);
        assert_eq!(at(10.0), 7);
        assert_eq!(*cumulative.last().unwrap(), 8);
        assert!(
            (sum - (2.0 * 15e-9 + 100e-9 + 4.0 * 3e-3 + 20.0)).abs() < 0.05,
            "{sum}"
        );
    }

    #[test]
    fn the_prometheus_text_names_counters_by_their_samples() {
        let om = "# HELP a_sent Records.\n# TYPE a_sent counter\na_sent_total{x=\"1\"} 3\n\
                  # HELP a_lag Lag.\n# TYPE a_lag_seconds histogram\n# UNIT a_lag_seconds seconds\n\
                  a_lag_seconds_sum 1.5\n# EOF\n";
        let p = crate::output::metrics::prometheus_text(om);
        assert_eq!(
            p,
            "# HELP a_sent_total Records.\n# TYPE a_sent_total counter\na_sent_total{x=\"1\"} 3\n\
             # HELP a_lag_seconds Lag.\n# TYPE a_lag_seconds histogram\na_lag_seconds_sum 1.5\n"
        );
    }

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(resolve(":9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(resolve("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert!(resolve("no-such-host.invalid:1").is_err());
    }
}
