//! Runs a plan: creates the bus, starts the generator threads, merges their recordings once per
//! interval, samples resources, and hands back everything measured as one [`RunData`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use alphapulse_bus::now_ns;

use crate::plan::patterns::{LoadPattern, PatternSpec};
use crate::plan::{ExchangePlan, Plan, Stream};
use crate::results::decode_histogram;
use crate::results::{Point, StreamPoint};
use crate::run::consumer::{Digests, ReaderMessage, ReaderOutcome, DIGESTS_NAME};
use crate::run::generator::{self, ExchangeWork, GeneratorConfig, Message, SourceId};
use crate::run::measure::{new_histogram, Counters, LatencySet, SourceStats};
use crate::run::pacing::{ConstantRate, Schedule};
use crate::run::readers::{self, ReaderChild, ReaderLine, ReaderSpec};
use crate::run::sampler::{self, ResourceSample};
use crate::source::market::ExchangeSim;
use crate::transport::bus::BusRun;
use crate::transport::Transport;
use hdrhistogram::Histogram;

/// Sees the run as it goes; the console progress view implements it.
pub trait Observer {
    /// The bus is up and load starts at the next instant.
    fn started(&mut self, _plan: &Plan, _run_dir: &Path) {}
    /// One interval ended; `point` covers exactly that interval and `per_stream` holds every
    /// latency recorded in it (what an HdrHistogram interval log stores).
    fn interval(&mut self, _point: &Point, _per_stream: &BTreeMap<Stream, SourceStats>) {}
    /// The same interval's end-to-end latencies, per stream, all readers merged.
    fn delivery_interval(&mut self, _point: &Point, _e2e: &BTreeMap<Stream, Histogram<u64>>) {}
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
    fn delivery_interval(&mut self, point: &Point, e2e: &BTreeMap<Stream, Histogram<u64>>) {
        for o in &mut self.0 {
            o.delivery_interval(point, e2e);
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
    /// Pinning failures and other trouble that did not stop the run.
    pub warnings: Vec<String>,
    /// Every reader process.
    pub readers: Vec<ReaderReport>,
    /// End-to-end latency per stream over the measured intervals, all readers merged.
    pub e2e_measured: BTreeMap<Stream, Histogram<u64>>,
    /// The writers' final book digests.
    pub digests: Digests,
    /// Reader output lines that could not be understood.
    pub garbage_lines: u64,
    /// Per source, messages its pattern targeted over the measured intervals.
    pub target_measured: BTreeMap<SourceId, f64>,
    /// Per stream, latencies of whole seconds inside bursts (burst patterns only).
    pub burst_in: BTreeMap<Stream, LatencySet>,
    /// Per stream, latencies of whole seconds outside bursts (burst patterns only).
    pub burst_out: BTreeMap<Stream, LatencySet>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bus could not be created.
    #[error(transparent)]
    Bus(#[from] alphapulse_bus::Error),
    /// A reader process could not be started or did not attach.
    #[error("{0}")]
    Readers(String),
}

/// Everything the engine hears, from generator threads and reader processes.
enum Event {
    Generator(Message),
    Reader(usize, ReaderLine),
}

/// How long readers get to attach to the rings before the run is abandoned.
const READER_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long readers get, after the writers closed, to drain and report.
const READER_FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the arrival pattern of one stream of one exchange; `None` falls back to the plan's.
pub type PatternFactory<'a> =
    &'a (dyn Fn(&ExchangePlan, Stream) -> Option<Box<dyn LoadPattern>> + Sync);

/// The pattern of `stream` of exchange `e`: the factory's, else the plan's.
fn pattern_for(
    plan: &Plan,
    e: &ExchangePlan,
    stream: Stream,
    custom: Option<PatternFactory>,
) -> Option<Box<dyn LoadPattern>> {
    if let Some(p) = custom.and_then(|f| f(e, stream)) {
        return Some(p);
    }
    e.sends(stream)
        .then(|| e.pattern(stream).build(plan.pattern_seed(e.id, stream)))
}

/// The schedule of `stream` of exchange `e` from `start_ns`; a constant rate takes the fast
/// integer path.
fn schedule_for(
    plan: &Plan,
    e: &ExchangePlan,
    stream: Stream,
    start_ns: u64,
    custom: Option<PatternFactory>,
) -> Option<Schedule> {
    if custom.is_none() {
        if let Some(rate) = e.pattern(stream).constant_rate() {
            let rate = rate.round() as u64;
            return (rate > 0).then(|| Schedule::Constant(ConstantRate::new(start_ns, rate)));
        }
    }
    pattern_for(plan, e, stream, custom).map(|p| Schedule::pattern(start_ns, p))
}

/// Runs `plan` on the bus under `shm_dir`. Stops early when `stop` is set.
pub fn run(
    plan: &Plan,
    shm_dir: &Path,
    keep_shm: bool,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<RunData, EngineError> {
    run_with_patterns(plan, shm_dir, keep_shm, stop, observer, None)
}

/// [`run`], with arrival patterns from `custom` where it gives one (a user's own
/// [`LoadPattern`], see `examples/custom_pattern.rs`).
pub fn run_with_patterns(
    plan: &Plan,
    shm_dir: &Path,
    keep_shm: bool,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
    custom: Option<PatternFactory>,
) -> Result<RunData, EngineError> {
    let clock_cost_ns = crate::run::measure::clock_cost_ns();
    let (mut bus, transports) = BusRun::create(plan, shm_dir)?;
    if keep_shm {
        bus.keep();
    }
    let run_dir = bus.path();
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
            trades: None,
            book: None,
        });
    }

    keep_off_generator_cores(&plan.pin_cores);
    let (tx, rx) = mpsc::channel::<Event>();
    let reader_tx = tx.clone();
    let mut readers = readers::spawn(
        &ReaderSpec {
            count: plan.consumers,
            pin_cores: plan.reader_pin_cores.clone(),
            delay_ns: plan.reader_delay_ns,
            interval_ns: plan.interval_ns,
        },
        &run_dir,
        move |i, line| {
            let _ = reader_tx.send(Event::Reader(i, line));
        },
    )
    .map_err(EngineError::Readers)?;
    wait_ready(&rx, &mut readers)?;

    let interval_ns = plan.interval_ns;
    let start_ns = now_ns() + 100_000_000;
    let end_ns = start_ns + plan.total_secs() * interval_ns;
    for works in &mut per_thread {
        for w in works {
            let e = &plan.exchanges[usize::from(w.id)];
            w.trades = schedule_for(plan, e, Stream::Trades, start_ns, custom);
            w.book = schedule_for(plan, e, Stream::Book, start_ns, custom);
        }
    }
    for r in &mut readers {
        r.start(start_ns);
    }
    observer.started(plan, &run_dir);
    let ticks = sampler::ticks_per_sec();

    let mut agg = Aggregator::new(plan, custom);
    let mut generators_stopped_ns = end_ns;
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
                    generator::run(
                        config,
                        works,
                        stop,
                        |m| {
                            let _ = tx.send(Event::Generator(m));
                        },
                        spare_rx,
                    )
                })
                .expect("spawning a generator thread");
        }

        let mut proc_before = sampler::read("self");
        let mut next_sample = start_ns + interval_ns;
        let mut running = plan.threads;
        let mut watermark = vec![0u64; plan.threads];
        let mut finish_deadline = None;
        loop {
            if running == 0 && !readers.iter().any(ReaderChild::running) {
                break;
            }
            let now = now_ns();
            if finish_deadline.is_some_and(|d| now >= d) {
                for r in readers.iter_mut().filter(|r| r.running()) {
                    agg.warnings.push(format!(
                        "reader {} (pid {}) did not report within {} s after the writers closed; killed",
                        r.index,
                        r.pid,
                        READER_FINISH_TIMEOUT.as_secs()
                    ));
                    r.reap();
                    r.closed((now.saturating_sub(start_ns)) as f64 / 1e9);
                }
                break;
            }
            let timeout = next_sample.saturating_sub(now).min(100_000_000);
            match rx.recv_timeout(Duration::from_nanos(timeout)) {
                Ok(Event::Generator(Message::Interval(report))) => {
                    watermark[report.thread] = report.index + 1;
                    let vec = agg.add_report(report);
                    let _ = spares[vec.0].send(vec.1);
                }
                Ok(Event::Generator(Message::Done(summary))) => {
                    watermark[summary.thread] = u64::MAX;
                    running -= 1;
                    agg.done(summary);
                    if running == 0 {
                        generators_stopped_ns = now_ns().min(end_ns);
                        // Every writer is closed once its thread returned; readers drain, then
                        // compare their books with these.
                        let json = serde_json::to_vec(&agg.digests).expect("digests serialize");
                        if let Err(e) = bus.publish(DIGESTS_NAME, &json) {
                            agg.warnings
                                .push(format!("cannot publish book digests: {e}"));
                        }
                        finish_deadline = Some(now_ns() + READER_FINISH_TIMEOUT.as_nanos() as u64);
                    }
                }
                Ok(Event::Reader(i, line)) => {
                    let at = now_ns().saturating_sub(start_ns) as f64 / 1e9;
                    agg.reader_line(&mut readers[i], line, at);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = now_ns();
            if now >= next_sample && running > 0 {
                let index = (next_sample - start_ns) / interval_ns - 1;
                let after = sampler::read("self");
                if let (Some(b), Some(a)) = (&proc_before, &after) {
                    agg.resources.insert(index, sampler::sample(b, a, ticks));
                }
                proc_before = after;
                for r in readers.iter_mut().filter(|r| r.running()) {
                    r.sample(ticks);
                }
                next_sample += interval_ns;
                // After a stall, sample once, not once per missed second.
                if next_sample <= now {
                    next_sample = now + interval_ns;
                }
            }
            // An interval is final once every thread and reader moved past it and its resource
            // sample was taken (or is overdue, after a stall of the sampler).
            let threads_done = watermark.iter().copied().min().unwrap_or(u64::MAX);
            let readers_done = readers
                .iter()
                .map(|r| r.watermark)
                .min()
                .unwrap_or(u64::MAX);
            let sampled = (next_sample - start_ns) / interval_ns - 1;
            let overdue =
                (now.saturating_sub(start_ns + interval_ns / 4) / interval_ns).saturating_sub(1);
            let sampled = if running == 0 {
                u64::MAX
            } else {
                sampled.max(overdue)
            };
            agg.finalize_before(threads_done.min(readers_done).min(sampled), observer);
        }
        agg.finalize_before(u64::MAX, observer);
        agg.flush_point();
    });
    for r in &mut readers {
        r.stop();
        r.reap();
    }

    let measured_start = start_ns + plan.warmup_secs * interval_ns;
    let measured_secs = generators_stopped_ns.saturating_sub(measured_start) as f64 / 1e9;
    let reports = readers.iter().map(reader_report).collect();
    Ok(agg.into_data(
        plan,
        started_unix_ms,
        run_dir,
        clock_cost_ns,
        measured_secs,
        reports,
    ))
}

fn reader_report(r: &ReaderChild) -> ReaderReport {
    ReaderReport {
        index: r.index,
        pid: r.pid,
        outcome: r.outcome.clone(),
        died: r.died.clone(),
        samples: r.samples.clone(),
    }
}

/// Moves this (the engine's) thread off the cores the generators are pinned to, so that merging
/// intervals never preempts a generator; the reader processes started from here inherit it
/// unless pinned themselves. No-op without pinning or when no other core is allowed.
fn keep_off_generator_cores(generator_cores: &[usize]) {
    if generator_cores.is_empty() {
        return;
    }
    let Ok(mut set) = rustix::thread::sched_getaffinity(None) else {
        return;
    };
    for &c in generator_cores {
        set.unset(c);
    }
    if set.count() > 0 {
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
}

/// Waits until every reader said it attached, or fails with what the failing one said.
fn wait_ready(rx: &mpsc::Receiver<Event>, readers: &mut [ReaderChild]) -> Result<(), EngineError> {
    let deadline = std::time::Instant::now() + READER_ATTACH_TIMEOUT;
    while readers.iter().any(|r| !r.ready) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Reader(i, ReaderLine::Message(ReaderMessage::Ready { .. }))) => {
                readers[i].ready = true
            }
            Ok(Event::Reader(i, ReaderLine::Closed)) => {
                readers[i].reap();
                return Err(EngineError::Readers(format!(
                    "reader process {i} failed to attach: {}",
                    readers[i].stderr_tail()
                )));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(EngineError::Readers(format!(
                    "reader processes did not attach within {} s",
                    READER_ATTACH_TIMEOUT.as_secs()
                )))
            }
        }
    }
    Ok(())
}

/// What one reader process reported, or how it ended.
#[derive(Debug, Clone)]
pub struct ReaderReport {
    /// Its index.
    pub index: usize,
    /// Its pid.
    pub pid: u32,
    /// Its final report, if it sent one.
    pub outcome: Option<ReaderOutcome>,
    /// How it died, if it did.
    pub died: Option<String>,
    /// Its resource samples.
    pub samples: Vec<ResourceSample>,
}

/// Merges interval reports into totals and points.
struct Aggregator {
    plan_warmup: u64,
    total_intervals: u64,
    point_secs: u64,
    interval_secs: f64,
    /// Per source, its pattern: what it targeted in each interval.
    targets: BTreeMap<SourceId, Box<dyn LoadPattern>>,
    /// Per source, messages targeted over the measured intervals.
    target_measured: BTreeMap<SourceId, f64>,
    /// Per source, its burst pattern, when it has one.
    bursts: BTreeMap<SourceId, PatternSpec>,
    /// Per stream, latencies inside and outside bursts (measured intervals only).
    burst_in: BTreeMap<Stream, LatencySet>,
    burst_out: BTreeMap<Stream, LatencySet>,
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
    digests: Digests,
    pending_e2e: BTreeMap<u64, BTreeMap<Stream, Histogram<u64>>>,
    e2e_measured: BTreeMap<Stream, Histogram<u64>>,
    point_e2e: BTreeMap<Stream, Histogram<u64>>,
    point_target: BTreeMap<Stream, f64>,
    garbage_lines: u64,
    /// Per interval, where an early stop cut it (seconds since the start).
    cuts: BTreeMap<u64, f64>,
    /// Per finalized interval, the seconds it actually covered.
    cut_span: BTreeMap<u64, f64>,
}

impl Aggregator {
    fn new(plan: &Plan, custom: Option<PatternFactory>) -> Self {
        Self {
            plan_warmup: plan.warmup_secs,
            total_intervals: plan.total_secs(),
            point_secs: plan.point_secs,
            interval_secs: plan.interval_ns as f64 / 1e9,
            targets: plan
                .exchanges
                .iter()
                .flat_map(|e| Stream::ALL.map(|st| (e, st)))
                .filter_map(|(e, st)| {
                    let id = SourceId {
                        exchange: e.id,
                        stream: st,
                    };
                    pattern_for(plan, e, st, custom).map(|p| (id, p))
                })
                .collect(),
            target_measured: BTreeMap::new(),
            bursts: plan
                .exchanges
                .iter()
                .flat_map(|e| Stream::ALL.map(|st| (e, st)))
                .filter(|(e, st)| custom.is_none() && e.pattern(*st).in_burst(0).is_some())
                .map(|(e, st)| {
                    (
                        SourceId {
                            exchange: e.id,
                            stream: st,
                        },
                        e.pattern(st).clone(),
                    )
                })
                .collect(),
            burst_in: BTreeMap::new(),
            burst_out: BTreeMap::new(),
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
            digests: Digests::default(),
            pending_e2e: BTreeMap::new(),
            e2e_measured: BTreeMap::new(),
            point_e2e: BTreeMap::new(),
            point_target: BTreeMap::new(),
            garbage_lines: 0,
            cuts: BTreeMap::new(),
            cut_span: BTreeMap::new(),
        }
    }

    /// Handles one line of a reader's output.
    fn reader_line(&mut self, reader: &mut ReaderChild, line: ReaderLine, at_secs: f64) {
        match line {
            ReaderLine::Message(ReaderMessage::Interval { index, e2e }) => {
                reader.watermark = reader.watermark.max(index + 1);
                let index = index.min(self.total_intervals.saturating_sub(1));
                let slot = self.pending_e2e.entry(index).or_default();
                for (stream, text) in e2e {
                    match decode_histogram(&text) {
                        Ok(h) => {
                            let _ = slot.entry(stream).or_insert_with(new_histogram).add(&h);
                        }
                        Err(_) => self.garbage_lines += 1,
                    }
                }
            }
            ReaderLine::Message(ReaderMessage::Final(outcome)) => {
                reader.outcome = Some(*outcome);
            }
            ReaderLine::Message(ReaderMessage::Ready { .. }) => {}
            ReaderLine::Garbage(_) => self.garbage_lines += 1,
            ReaderLine::Closed => {
                reader.closed(at_secs);
                if let Some(why) = &reader.died {
                    tracing::warn!("{why}");
                }
            }
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
        if let Some(cut) = report.cut_ns {
            let secs = cut as f64 / 1e9;
            let c = self.cuts.entry(index).or_insert(secs);
            *c = c.max(secs);
        }
        (report.thread, back)
    }

    fn done(&mut self, summary: generator::ThreadSummary) {
        for (id, n) in summary.backlog {
            *self.backlog.entry(id).or_default() += n;
        }
        self.interrupted |= summary.interrupted;
        self.digests.exchanges.extend(summary.digests);
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
        // A run stopped early ends inside its last interval: that interval targeted, and its
        // rates are over, only the part that ran.
        let from = index as f64 * self.interval_secs;
        let to = ((index + 1) as f64 * self.interval_secs)
            .min(self.cuts.get(&index).copied().unwrap_or(f64::INFINITY))
            .max(from);
        self.cut_span.insert(index, to - from);
        let mut target_per_stream: BTreeMap<Stream, f64> = BTreeMap::new();
        for (id, p) in &self.targets {
            let n = p.expected_between(from, to);
            *target_per_stream.entry(id.stream).or_default() += n;
            if !warm {
                *self.target_measured.entry(*id).or_default() += n;
            }
        }
        let mut per_stream: BTreeMap<Stream, SourceStats> = BTreeMap::new();
        for (id, stats) in &sources {
            if !warm {
                if let Some(inside) = self.bursts.get(id).and_then(|b| b.in_burst(index)) {
                    let acc = if inside {
                        &mut self.burst_in
                    } else {
                        &mut self.burst_out
                    };
                    acc.entry(id.stream).or_default().add(&stats.latency);
                }
            }
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
        let e2e = self.pending_e2e.remove(&index).unwrap_or_default();
        if !warm {
            for (stream, h) in &e2e {
                let _ = self
                    .e2e_measured
                    .entry(*stream)
                    .or_insert_with(new_histogram)
                    .add(h);
            }
        }
        let resources = self.resources.get(&index).copied();
        let point = self.point(
            index,
            1,
            &per_stream,
            &target_per_stream,
            &e2e,
            resources.as_slice(),
        );
        observer.interval(&point, &per_stream);
        observer.delivery_interval(&point, &e2e);
        for (stream, h) in &e2e {
            let _ = self
                .point_e2e
                .entry(*stream)
                .or_insert_with(new_histogram)
                .add(h);
        }
        if self.point_acc.is_empty() {
            self.point_start = index;
        }
        for (stream, stats) in per_stream {
            self.point_acc.entry(stream).or_default().add(&stats);
        }
        for (stream, n) in target_per_stream {
            *self.point_target.entry(stream).or_default() += n;
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
        let e2e = std::mem::take(&mut self.point_e2e);
        let targets = std::mem::take(&mut self.point_target);
        let span = self.next_final - self.point_start;
        let point = self.point(self.point_start, span, &acc, &targets, &e2e, &res);
        self.series.push(point);
    }

    fn point(
        &self,
        first: u64,
        span: u64,
        per_stream: &BTreeMap<Stream, SourceStats>,
        targets: &BTreeMap<Stream, f64>,
        e2e: &BTreeMap<Stream, Histogram<u64>>,
        res: &[ResourceSample],
    ) -> Point {
        let secs: f64 = (first..first + span)
            .map(|i| self.cut_span.get(&i).copied().unwrap_or(self.interval_secs))
            .sum();
        let empty = SourceStats::default();
        let stream = |s: Stream| {
            let st = per_stream.get(&s).unwrap_or(&empty);
            StreamPoint::new(
                targets.get(&s).copied().unwrap_or(0.0) / secs.max(f64::MIN_POSITIVE),
                &st.latency,
                e2e.get(&s),
                &st.counters,
                secs,
            )
        };
        let n = res.len().max(1) as f64;
        Point {
            start_secs: first as f64 * self.interval_secs,
            secs,
            warmup: first < self.plan_warmup,
            trades: stream(Stream::Trades),
            book: stream(Stream::Book),
            cpu_pct: res.iter().map(|r| r.cpu_pct).fold(0.0, |a, b| a + b) / n,
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
        readers: Vec<ReaderReport>,
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
            readers,
            e2e_measured: self.e2e_measured,
            digests: self.digests,
            garbage_lines: self.garbage_lines,
            target_measured: self.target_measured,
            burst_in: self.burst_in,
            burst_out: self.burst_out,
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
