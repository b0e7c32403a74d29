//! Runs a plan: creates the bus, starts the generator threads, merges their recordings once per
//! interval, samples resources, and hands back everything measured as one [`RunData`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use alphapulse_bus::now_ns;

use crate::generator::{self, ExchangeWork, GeneratorConfig, Message, SourceId};
use crate::market::ExchangeSim;
use crate::measure::{Counters, LatencySet, SourceStats};
use crate::plan::{Plan, Stream};
use crate::results::{Point, StreamPoint};
use crate::sampler::{self, ResourceSample};
use crate::transport::{BusRun, Transport};

/// Sees the run as it goes; the console progress view implements it.
pub trait Observer {
    /// The bus is up and load starts at the next instant.
    fn started(&mut self, _plan: &Plan, _run_dir: &Path) {}
    /// One interval ended; `point` covers exactly that interval and `per_stream` holds every
    /// latency recorded in it (what an HdrHistogram interval log stores).
    fn interval(&mut self, _point: &Point, _per_stream: &BTreeMap<Stream, SourceStats>) {}
}

/// Several observers as one, called in order.
pub struct Tee<'a>(pub Vec<&'a mut dyn Observer>);

impl Observer for Tee<'_> {
    fn started(&mut self, plan: &Plan, run_dir: &Path) {
        for o in &mut self.0 {
            o.started(plan, run_dir);
        }
    }
    fn interval(&mut self, point: &Point, per_stream: &BTreeMap<Stream, SourceStats>) {
        for o in &mut self.0 {
            o.interval(point, per_stream);
        }
    }
}

/// Everything a run measured, raw: the input of [`crate::results::build`].
#[derive(Debug)]
pub struct RunData {
    /// The plan that ran.
    pub plan: Plan,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The run directory the rings lived in.
    pub run_dir: PathBuf,
    /// Cost of one clock read, ns.
    pub clock_cost_ns: f64,
    /// Per source, everything recorded during the warm-up.
    pub warmup: BTreeMap<SourceId, SourceStats>,
    /// Per source, everything recorded after the warm-up.
    pub measured: BTreeMap<SourceId, SourceStats>,
    /// Per source, the most records sent in one measured interval.
    pub peak_sent: BTreeMap<SourceId, u64>,
    /// Per source, messages due but never sent (the generator fell behind or was stopped).
    pub backlog: BTreeMap<SourceId, u64>,
    /// The time series, one point per `plan.point_secs`.
    pub series: Vec<Point>,
    /// Resource samples of the measured intervals.
    pub resources: Vec<ResourceSample>,
    /// Measured seconds actually run (less than planned if interrupted).
    pub measured_secs: f64,
    /// Whether the run was stopped early.
    pub interrupted: bool,
    /// Generator time waiting for send times, ns, over the measured intervals.
    pub wait_ns: u64,
    /// Generator time inside writes, ns, over the measured intervals.
    pub write_ns: u64,
    /// Generator thread time, ns (threads x measured seconds).
    pub thread_ns: u64,
    /// Pinning failures.
    pub warnings: Vec<String>,
}

/// Runs `plan` on the bus under `shm_dir`. Stops early when `stop` is set.
pub fn run(
    plan: &Plan,
    shm_dir: &Path,
    keep_shm: bool,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<RunData, alphapulse_bus::Error> {
    let clock_cost_ns = crate::measure::clock_cost_ns();
    let (mut bus, transports) = BusRun::create(plan, shm_dir)?;
    if keep_shm {
        bus.keep();
    }
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);

    let mut per_thread: Vec<Vec<ExchangeWork>> = (0..plan.threads).map(|_| Vec::new()).collect();
    for (e, transport) in plan.exchanges.iter().zip(transports) {
        per_thread[e.thread].push(ExchangeWork {
            id: e.id,
            sim: ExchangeSim::new(
                e.id,
                plan.symbols.len() as u32,
                plan.seed ^ (u64::from(e.id) << 32),
            ),
            transport: Box::new(transport) as Box<dyn Transport>,
            trades_per_sec: e.trades_per_sec,
            book_per_sec: e.book_per_sec,
        });
    }

    let interval_ns = plan.interval_ns;
    let start_ns = now_ns() + 100_000_000;
    let end_ns = start_ns + plan.total_secs() * interval_ns;
    let (tx, rx) = mpsc::channel::<Message>();
    observer.started(plan, &bus.path());
    let ticks = sampler::ticks_per_sec();

    let mut agg = Aggregator::new(plan);
    std::thread::scope(|scope| {
        let mut spares = Vec::new();
        for (index, works) in per_thread.into_iter().enumerate() {
            let (spare_tx, spare_rx) = mpsc::channel();
            spares.push(spare_tx);
            let config = GeneratorConfig {
                index,
                start_ns,
                end_ns,
                interval_ns,
                pacing: plan.pacing,
                pin_core: plan.pin_cores.get(index).copied(),
                clock: plan.clock,
            };
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("generator-{index}"))
                .spawn_scoped(scope, move || {
                    generator::run(config, works, stop, tx, spare_rx)
                })
                .expect("spawning a generator thread");
        }
        drop(tx);

        let mut proc_before = sampler::read("self");
        let mut next_sample = start_ns + interval_ns;
        let mut running = plan.threads;
        let mut watermark = vec![0u64; plan.threads];
        while running > 0 {
            let timeout = next_sample.saturating_sub(now_ns());
            match rx.recv_timeout(Duration::from_nanos(timeout)) {
                Ok(Message::Interval(report)) => {
                    watermark[report.thread] = report.index + 1;
                    let vec = agg.add_report(report);
                    let _ = spares[vec.0].send(vec.1);
                }
                Ok(Message::Done(summary)) => {
                    watermark[summary.thread] = u64::MAX;
                    running -= 1;
                    agg.done(summary);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = now_ns();
            if now >= next_sample {
                let index = (next_sample - start_ns) / interval_ns - 1;
                let after = sampler::read("self");
                if let (Some(b), Some(a)) = (&proc_before, &after) {
                    agg.resources.insert(index, sampler::sample(b, a, ticks));
                }
                proc_before = after;
                next_sample += interval_ns;
                // After a stall, sample once, not once per missed second.
                if next_sample <= now {
                    next_sample = now + interval_ns;
                }
            }
            // An interval is final once every thread moved past it and its resource sample was
            // taken (or is overdue, after a stall of the sampler).
            let threads_done = watermark.iter().copied().min().unwrap_or(u64::MAX);
            let sampled = (next_sample - start_ns) / interval_ns - 1;
            let overdue =
                (now.saturating_sub(start_ns + interval_ns / 4) / interval_ns).saturating_sub(1);
            agg.finalize_before(threads_done.min(sampled.max(overdue)), observer);
        }
        agg.finalize_before(u64::MAX, observer);
        agg.flush_point();
    });

    let stopped_ns = now_ns().min(end_ns);
    let measured_start = start_ns + plan.warmup_secs * interval_ns;
    let measured_secs = stopped_ns.saturating_sub(measured_start) as f64 / 1e9;
    Ok(agg.into_data(
        plan,
        started_unix_ms,
        bus.path(),
        clock_cost_ns,
        measured_secs,
    ))
}

/// Merges interval reports into totals and points.
struct Aggregator {
    plan_warmup: u64,
    total_intervals: u64,
    point_secs: u64,
    interval_secs: f64,
    targets: BTreeMap<Stream, u64>,
    pending: BTreeMap<u64, BTreeMap<SourceId, SourceStats>>,
    pending_time: BTreeMap<u64, (u64, u64)>,
    next_final: u64,
    warmup: BTreeMap<SourceId, SourceStats>,
    measured: BTreeMap<SourceId, SourceStats>,
    peak_sent: BTreeMap<SourceId, u64>,
    backlog: BTreeMap<SourceId, u64>,
    resources: BTreeMap<u64, ResourceSample>,
    point_acc: BTreeMap<Stream, SourceStats>,
    point_start: u64,
    point_res: Vec<ResourceSample>,
    series: Vec<Point>,
    interrupted: bool,
    wait_ns: u64,
    write_ns: u64,
    warnings: Vec<String>,
}

impl Aggregator {
    fn new(plan: &Plan) -> Self {
        Self {
            plan_warmup: plan.warmup_secs,
            total_intervals: plan.total_secs(),
            point_secs: plan.point_secs,
            interval_secs: plan.interval_ns as f64 / 1e9,
            targets: Stream::ALL
                .iter()
                .map(|&s| (s, plan.target_rate(s)))
                .collect(),
            pending: BTreeMap::new(),
            pending_time: BTreeMap::new(),
            next_final: 0,
            warmup: BTreeMap::new(),
            measured: BTreeMap::new(),
            peak_sent: BTreeMap::new(),
            backlog: BTreeMap::new(),
            resources: BTreeMap::new(),
            point_acc: BTreeMap::new(),
            point_start: 0,
            point_res: Vec::new(),
            series: Vec::new(),
            interrupted: false,
            wait_ns: 0,
            write_ns: 0,
            warnings: Vec::new(),
        }
    }

    /// Merges a report and returns its emptied vector for the thread to reuse.
    fn add_report(&mut self, report: generator::IntervalReport) -> (usize, Vec<SourceStats>) {
        // Writes that completed just after the end belong to the last interval.
        let index = report.index.min(self.total_intervals.saturating_sub(1));
        let slot = self.pending.entry(index).or_default();
        let mut back = Vec::with_capacity(report.sources.len());
        for (id, mut stats) in report.sources {
            slot.entry(id).or_default().add(&stats);
            stats.reset();
            back.push(stats);
        }
        let t = self.pending_time.entry(index).or_default();
        t.0 += report.wait_ns;
        t.1 += report.write_ns;
        (report.thread, back)
    }

    fn done(&mut self, summary: generator::ThreadSummary) {
        for (id, n) in summary.backlog {
            *self.backlog.entry(id).or_default() += n;
        }
        self.interrupted |= summary.interrupted;
        if let Some(e) = summary.pin_error {
            self.warnings
                .push(format!("generator thread {}: {e}", summary.thread));
        }
    }

    /// Finalizes every interval before `complete` (all threads have moved past it).
    fn finalize_before(&mut self, complete: u64, observer: &mut dyn Observer) {
        while let Some((&index, _)) = self.pending.first_key_value() {
            if index >= complete {
                break;
            }
            let sources = self.pending.remove(&index).unwrap_or_default();
            let (wait, write) = self.pending_time.remove(&index).unwrap_or_default();
            // Intervals in which no thread completed a write still count (as empty).
            while self.next_final < index {
                let i = self.next_final;
                self.finalize(i, BTreeMap::new(), observer);
            }
            if index >= self.plan_warmup {
                self.wait_ns += wait;
                self.write_ns += write;
            }
            self.finalize(index, sources, observer);
        }
    }

    fn finalize(
        &mut self,
        index: u64,
        sources: BTreeMap<SourceId, SourceStats>,
        observer: &mut dyn Observer,
    ) {
        self.next_final = index + 1;
        let warm = index < self.plan_warmup;
        let mut per_stream: BTreeMap<Stream, SourceStats> = BTreeMap::new();
        for (id, stats) in &sources {
            per_stream.entry(id.stream).or_default().add(stats);
            let totals = if warm {
                &mut self.warmup
            } else {
                &mut self.measured
            };
            totals.entry(*id).or_default().add(stats);
            if !warm {
                let peak = self.peak_sent.entry(*id).or_default();
                *peak = (*peak).max(stats.counters.sent);
            }
        }
        let resources = self.resources.get(&index).copied();
        let point = self.point(index, 1, &per_stream, resources.as_slice());
        observer.interval(&point, &per_stream);
        if self.point_acc.is_empty() {
            self.point_start = index;
        }
        for (stream, stats) in per_stream {
            self.point_acc.entry(stream).or_default().add(&stats);
        }
        self.point_acc.entry(Stream::Trades).or_default();
        if let Some(r) = resources {
            self.point_res.push(r);
        }
        if index + 1 - self.point_start >= self.point_secs || index + 1 == self.plan_warmup {
            self.flush_point();
        }
    }

    fn flush_point(&mut self) {
        if self.point_acc.is_empty() {
            return;
        }
        let acc = std::mem::take(&mut self.point_acc);
        let res = std::mem::take(&mut self.point_res);
        let span = self.next_final - self.point_start;
        let point = self.point(self.point_start, span, &acc, &res);
        self.series.push(point);
    }

    fn point(
        &self,
        first: u64,
        span: u64,
        per_stream: &BTreeMap<Stream, SourceStats>,
        res: &[ResourceSample],
    ) -> Point {
        let secs = span as f64 * self.interval_secs;
        let empty = SourceStats::default();
        let stream = |s: Stream| {
            let st = per_stream.get(&s).unwrap_or(&empty);
            StreamPoint::new(self.targets[&s] as f64, &st.latency, &st.counters, secs)
        };
        let n = res.len().max(1) as f64;
        Point {
            start_secs: first as f64 * self.interval_secs,
            secs,
            warmup: first < self.plan_warmup,
            trades: stream(Stream::Trades),
            book: stream(Stream::Book),
            cpu_pct: res.iter().map(|r| r.cpu_pct).sum::<f64>() / n,
            rss_mib: res.iter().map(|r| r.rss_mib).fold(0.0, f64::max),
        }
    }

    fn into_data(
        self,
        plan: &Plan,
        started_unix_ms: u64,
        run_dir: PathBuf,
        clock_cost_ns: f64,
        measured_secs: f64,
    ) -> RunData {
        let resources = self
            .resources
            .iter()
            .filter(|(&i, _)| i >= self.plan_warmup)
            .map(|(_, r)| *r)
            .collect();
        RunData {
            plan: plan.clone(),
            started_unix_ms,
            run_dir,
            clock_cost_ns,
            warmup: self.warmup,
            measured: self.measured,
            peak_sent: self.peak_sent,
            backlog: self.backlog,
            series: self.series,
            resources,
            measured_secs,
            interrupted: self.interrupted,
            wait_ns: self.wait_ns,
            write_ns: self.write_ns,
            thread_ns: (measured_secs * 1e9) as u64 * plan.threads as u64,
            warnings: self.warnings,
        }
    }
}

/// Merges per-source statistics into one per stream.
pub fn by_stream(sources: &BTreeMap<SourceId, SourceStats>) -> BTreeMap<Stream, SourceStats> {
    let mut out: BTreeMap<Stream, SourceStats> = BTreeMap::new();
    for (id, stats) in sources {
        out.entry(id.stream).or_default().add(stats);
    }
    out
}

/// Merges every source's latencies and counters.
pub fn all(sources: &BTreeMap<SourceId, SourceStats>) -> (LatencySet, Counters) {
    let mut lat = LatencySet::default();
    let mut counters = Counters::default();
    for stats in sources.values() {
        lat.add(&stats.latency);
        counters.add(&stats.counters);
    }
    (lat, counters)
}
