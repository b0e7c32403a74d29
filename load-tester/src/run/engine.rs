//! Runs a plan: creates the transport, starts the reader processes and the generator threads,
//! samples resources, merges everyone's interval reports ([`Collector`]) and hands each complete
//! interval to the observer. What only the end knows comes back as a [`RunEnd`].

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use alphapulse_bus::now_ns;

use crate::plan::patterns::LoadPattern;
use crate::plan::{ExchangePlan, Plan, Stream};
use crate::report::collect::{Collector, ProducerId};
use crate::report::end::{PacingReport, ReaderProcessEnd, RunEnd};
use crate::report::observe::{Observer, RunStart};
use crate::report::{reader_process, IntervalReport, TESTER_PROCESS};
use crate::run::chaos::{spawn_injector, EngineChaos, GeneratorFaults, Handles, InjectorNote};
use crate::run::consumer::{Digests, DIGESTS_NAME};
use crate::run::generator::{self, ExchangeWork, GeneratorConfig, Message};
use crate::run::pacing::{ConstantRate, Schedule};
use crate::run::reader_wire::{Start, ToTester};
use crate::run::readers::{self, ReaderChild, ReaderLine, ReaderSpec};
use crate::run::sampler;
use crate::run::Stop;
use crate::source::capture::format::CaptureError;
use crate::source::capture::reader::CaptureFile;
use crate::source::market::ExchangeSim;
use crate::source::replay::{self, ReplayMarket};
use crate::source::Market;
use crate::transport::bus::BusRun;
use crate::transport::Transport;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bus could not be created.
    #[error(transparent)]
    Bus(#[from] alphapulse_bus::Error),
    /// A reader process could not be started or did not attach.
    #[error("{0}")]
    Readers(String),
    /// A second stop request ended the run at once: readers were killed, the transport removed,
    /// and nothing is left to report.
    #[error("the run was ended at once by a second stop request")]
    Aborted,
    /// The capture to replay cannot be read.
    #[error(transparent)]
    Replay(#[from] CaptureError),
    /// The transport could not be set up.
    #[error("--transport: {0}")]
    Transport(String),
}

/// The run directory (always: it holds the manifest and the final digests readers check) and
/// one transport per exchange, by id, of the plan's kind.
fn create_transport(
    plan: &Plan,
    shm_dir: &Path,
) -> Result<(BusRun, Vec<Box<dyn Transport>>), EngineError> {
    use crate::plan::transport::TransportKind;
    use crate::transport::datagram::{DatagramExchange, Socket};
    use crate::transport::feed::{session, FeedInfo, FeedSource, FEED_NAME};
    if plan.transport.kind == TransportKind::Shm {
        let (bus, exchanges) = BusRun::create(plan, shm_dir)?;
        return Ok((
            bus,
            exchanges
                .into_iter()
                .map(|e| Box::new(e) as Box<dyn Transport>)
                .collect(),
        ));
    }
    let mut bus = BusRun::create_without_rings(plan, shm_dir, &[FEED_NAME])?;
    let run_id = bus
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t = &plan.transport;
    let mut sources = Vec::new();
    let mut out: Vec<Box<dyn Transport>> = Vec::new();
    if t.kind == TransportKind::Iceoryx2 {
        #[cfg(feature = "iceoryx2")]
        for e in &plan.exchanges {
            for stream in Stream::ALL {
                sources.push(FeedSource {
                    exchange: e.id,
                    stream,
                    session: String::from_utf8_lossy(&session(&run_id, e.id, stream)).into_owned(),
                });
            }
            out.push(Box::new(
                crate::transport::iceoryx2::Iceoryx2Exchange::new(&run_id, e.id)
                    .map_err(EngineError::Transport)?,
            ));
        }
        #[cfg(not(feature = "iceoryx2"))]
        return Err(EngineError::Transport(
            "iceoryx2: this build has no iceoryx2 (cargo feature iceoryx2)".into(),
        ));
    }
    for e in plan
        .exchanges
        .iter()
        .filter(|_| t.kind != TransportKind::Iceoryx2)
    {
        let sessions = [
            session(&run_id, e.id, Stream::Trades),
            session(&run_id, e.id, Stream::Book),
        ];
        for (stream, s) in Stream::ALL.iter().zip(&sessions) {
            sources.push(FeedSource {
                exchange: e.id,
                stream: *stream,
                session: String::from_utf8_lossy(s).into_owned(),
            });
        }
        let fail = |what: &str, err: std::io::Error| {
            EngineError::Transport(format!("{}: {what}: {err}", t.kind.name()))
        };
        let socket = match t.kind {
            TransportKind::Udp => {
                let s = std::net::UdpSocket::bind(("127.0.0.1", 0))
                    .map_err(|err| fail("cannot bind a sending socket", err))?;
                s.set_nonblocking(true)
                    .map_err(|err| fail("cannot make the socket non-blocking", err))?;
                let _ = socket2::SockRef::from(&s).set_send_buffer_size(8 << 20);
                let to = match &t.group {
                    Some((group, port)) => {
                        let ip: std::net::Ipv4Addr = group.parse().map_err(|err| {
                            EngineError::Transport(format!("multicast group {group}: {err}"))
                        })?;
                        s.set_multicast_loop_v4(true)
                            .map_err(|err| fail("cannot enable multicast loopback", err))?;
                        socket2::SockRef::from(&s)
                            .set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
                            .map_err(|err| fail("cannot send multicast on loopback", err))?;
                        vec![std::net::SocketAddr::from((ip, *port))]
                    }
                    None => Vec::new(),
                };
                Socket::Udp(s, to)
            }
            TransportKind::Uds | TransportKind::Shm | TransportKind::Iceoryx2 => {
                let s = std::os::unix::net::UnixDatagram::unbound()
                    .map_err(|err| fail("cannot open a Unix datagram socket", err))?;
                s.set_nonblocking(true)
                    .map_err(|err| fail("cannot make the socket non-blocking", err))?;
                let _ = socket2::SockRef::from(&s).set_send_buffer_size(8 << 20);
                Socket::Uds(s, Vec::new())
            }
        };
        out.push(Box::new(DatagramExchange::new(
            socket,
            sessions,
            t.batch,
            &t.impairment,
            e.id,
            plan.chaos
                .as_ref()
                .is_some_and(|c| c.faults.iter().any(|f| f.kind.needs_udp())),
        )));
    }
    let info = FeedInfo {
        kind: t.kind.name().into(),
        group: t.group.as_ref().map(|g| g.0.clone()),
        port: t.group.as_ref().map_or(0, |g| g.1),
        sources,
        gap_wait_ns: t.gap_wait_ns(),
    };
    let json = serde_json::to_vec(&info).expect("a feed description serializes");
    bus.publish(FEED_NAME, &json)?;
    Ok((bus, out))
}

/// Everything the engine hears, from generator threads and reader processes.
enum Event {
    Generator(Message),
    Reader(usize, ReaderLine),
    Chaos(InjectorNote),
}

/// How long readers get to attach to the rings before the run is abandoned.
const READER_ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long readers get, after the writers closed, to drain and report.
const READER_FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How far ahead of now interval 0 starts, so that every thread and reader is ready for it.
const START_DELAY_NS: u64 = 100_000_000;

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

/// Runs `plan` on the bus under `shm_dir`, handing every complete interval to `observer`.
/// Stops early when `stop` is requested: once, gracefully; twice, at once ([`EngineError::Aborted`]).
pub fn run(
    plan: &Plan,
    shm_dir: &Path,
    keep_shm: bool,
    stop: &Stop,
    observer: &mut dyn Observer,
) -> Result<RunEnd, EngineError> {
    run_with_patterns(plan, shm_dir, keep_shm, stop, observer, None)
}

/// [`run`], with arrival patterns from `custom` where it gives one (a user's own
/// [`LoadPattern`], see `examples/custom_pattern.rs`).
pub fn run_with_patterns(
    plan: &Plan,
    shm_dir: &Path,
    keep_shm: bool,
    stop: &Stop,
    observer: &mut dyn Observer,
    custom: Option<PatternFactory>,
) -> Result<RunEnd, EngineError> {
    prepare(plan, shm_dir, keep_shm, stop, custom)?.run(None, stop, observer)
}

/// A run ready to start: its transport created, its reader processes attached, its generator
/// threads' work laid out; nothing has been sent. [`Prepared::run`] starts it; dropping it
/// instead removes the transport and stops the readers.
pub struct Prepared<'a> {
    /// The plan to run.
    plan: &'a Plan,
    /// Arrival patterns of the user's own, where it gives them.
    custom: Option<PatternFactory<'a>>,
    /// The transport: its run directory goes when this does (unless kept).
    bus: BusRun,
    /// Each generator thread's exchanges, their schedules not set yet.
    per_thread: Vec<Vec<ExchangeWork>>,
    /// The reader processes, every one attached and waiting for `start`.
    readers: Vec<ReaderChild>,
    /// How they were started (a chaos run starts killed ones again the same way).
    spec: ReaderSpec,
    /// Where generator threads and readers send what they hear.
    tx: mpsc::Sender<Event>,
    /// What the engine hears.
    rx: mpsc::Receiver<Event>,
    /// Cost of one clock read, ns.
    clock_cost_ns: f64,
    /// CPU cores the process could run on before the engine thread moved off the generators'.
    cores: usize,
    /// Where the engine's (the calling) thread was before the run moved and lowered it: put
    /// back when the run ends, for the next run of the same process.
    _place: crate::run::placement::ThreadPlace,
}

/// Creates the transport and starts the readers of a run of `plan` on the bus under `shm_dir`;
/// the load starts with [`Prepared::run`]. Fails if a stop is requested meanwhile.
pub fn prepare<'a>(
    plan: &'a Plan,
    shm_dir: &Path,
    keep_shm: bool,
    stop: &Stop,
    custom: Option<PatternFactory<'a>>,
) -> Result<Prepared<'a>, EngineError> {
    let clock_cost_ns = crate::run::measure::clock_cost_ns();
    // Counted before this thread moves off the generators' cores, which narrows its CPU set;
    // moved first, so that every thread it starts stays off them too.
    let cores = crate::run::placement::available_cores().len();
    let place = crate::run::placement::ThreadPlace::save();
    keep_off_generator_cores(&plan.pin_cores);
    let (mut bus, transports) = create_transport(plan, shm_dir)?;
    if keep_shm {
        bus.keep();
    }
    let run_dir = bus.path();

    let mut per_thread: Vec<Vec<ExchangeWork>> = (0..plan.threads).map(|_| Vec::new()).collect();
    for (e, transport) in plan.exchanges.iter().zip(transports) {
        per_thread[e.thread].push(ExchangeWork {
            id: e.id,
            market: if plan.replay.is_some() {
                Market::Replay(ReplayMarket::new(e.id, plan.symbols.len() as u32))
            } else {
                Market::Sim(ExchangeSim::new(
                    e.id,
                    plan.symbols.len() as u32,
                    plan.seed ^ (u64::from(e.id) << 32),
                ))
            },
            transport,
            trades: None,
            book: None,
        });
    }

    let (tx, rx) = mpsc::channel::<Event>();
    let reader_tx = tx.clone();
    let spec = ReaderSpec {
        count: plan.consumers,
        pin_cores: plan.reader_pin_cores.clone(),
        delay_ns: plan.reader_delay_ns,
        record: plan.record.as_ref().map(std::path::PathBuf::from),
        timeline: plan.chaos.is_some(),
    };
    let mut readers = readers::spawn(&spec, &run_dir, move |i, line| {
        let _ = reader_tx.send(Event::Reader(i, line));
    })
    .map_err(EngineError::Readers)?;
    wait_ready(&rx, &mut readers, stop)?;
    let listens: Vec<String> = readers.iter().filter_map(|r| r.listen.clone()).collect();
    if plan.transport.group.is_none() {
        for w in per_thread.iter_mut().flatten() {
            w.transport
                .set_receivers(&listens)
                .map_err(EngineError::Transport)?;
        }
    }
    Ok(Prepared {
        plan,
        custom,
        bus,
        per_thread,
        readers,
        spec,
        tx,
        rx,
        clock_cost_ns,
        cores,
        _place: place,
    })
}

impl Prepared<'_> {
    /// Where the run's transport lives (the bus's run directory).
    pub fn location(&self) -> String {
        self.bus.path().display().to_string()
    }

    /// Runs the load from `start_ns` (`CLOCK_MONOTONIC`; `None`: in a moment), handing every
    /// complete interval to `observer`. A start already past is moved to now, plus the moment
    /// every thread and reader needs to be ready.
    pub fn run(
        self,
        start_ns: Option<u64>,
        stop: &Stop,
        observer: &mut dyn Observer,
    ) -> Result<RunEnd, EngineError> {
        let Prepared {
            plan,
            custom,
            mut bus,
            mut per_thread,
            mut readers,
            spec,
            tx,
            rx,
            clock_cost_ns,
            cores,
            // Kept to the end of the run, where it puts this thread back.
            _place,
        } = self;
        let run_dir = bus.path();
        // A replay's capture is opened and every source's first chunk decoded before the start
        // time is chosen: on a big file that takes longer than the start delay.
        if let Some(r) = &plan.replay {
            let capture = std::sync::Arc::new(CaptureFile::open(Path::new(&r.file))?);
            for w in per_thread.iter_mut().flatten() {
                let mut feeds = replay::feeds(
                    &capture,
                    r,
                    0,
                    &[(w.id, Stream::Trades), (w.id, Stream::Book)],
                    // A decoder at the lowest priority starves behind a busy-polling reader and
                    // then stalls the generator; at the default one with short slices it takes
                    // what the replay's rate needs and holds a core only briefly.
                    crate::run::placement::short_slices_for_this_thread,
                )
                .into_iter();
                w.trades = feeds.next().flatten().map(Schedule::Replay);
                w.book = feeds.next().flatten().map(Schedule::Replay);
                // A capture whose first chunks are bad fails before any load.
                for s in [&w.trades, &w.book].into_iter().flatten() {
                    if let Schedule::Replay(f) = s {
                        if let Some(e) = f.error() {
                            return Err(EngineError::Replay(e.clone()));
                        }
                    }
                }
            }
        }
        let interval_ns = plan.interval_ns;
        let intervals = plan.intervals();
        let now = now_ns();
        let start_ns = start_ns
            .filter(|&s| s > now + START_DELAY_NS / 10)
            .unwrap_or(now + START_DELAY_NS);
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d.as_nanos() as u64 + (start_ns - now)) / 1_000_000)
            .unwrap_or(0);
        for works in &mut per_thread {
            for w in works {
                if plan.replay.is_some() {
                    // Primed before the start time: their first chunks are decoded already.
                    for s in [&mut w.trades, &mut w.book].into_iter().flatten() {
                        if let Schedule::Replay(f) = s {
                            f.set_start(start_ns);
                        }
                    }
                    continue;
                }
                let Some(e) = plan.exchanges.iter().find(|e| e.id == w.id) else {
                    continue;
                };
                w.trades = schedule_for(plan, e, Stream::Trades, start_ns, custom);
                w.book = schedule_for(plan, e, Stream::Book, start_ns, custom);
            }
        }
        let start = Start {
            start_ns,
            interval_ns,
            intervals,
        };
        for r in &mut readers {
            r.start(&start);
        }
        observer.started(
            plan,
            &RunStart {
                location: run_dir.display().to_string(),
                started_unix_ms,
            },
        );
        let ticks = sampler::ticks_per_sec();

        let mut collector = Collector::new(intervals, interval_ns);
        let generator_ids: Vec<ProducerId> = (0..plan.threads)
            .map(|i| collector.producer(format!("generator thread {i}")))
            .collect();
        let reader_ids: Vec<ProducerId> = readers
            .iter()
            .map(|r| collector.producer(format!("reader {} (pid {})", r.index, r.pid)))
            .collect();
        let mut reader_ids = reader_ids;
        let sampler_id = collector.producer("resource sampler");
        let mut chaos = plan
            .chaos
            .as_ref()
            .map(|c| EngineChaos::new(c, start_ns, intervals * interval_ns));
        let handles: Handles = std::sync::Arc::new(std::sync::Mutex::new(
            readers.iter().map(ReaderChild::handle).collect(),
        ));
        let injector_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Readers started in place of killed ones: their producer, registered at the kill so
        // that no interval completes without them.
        let mut replacing: std::collections::BTreeMap<usize, ProducerId> = Default::default();
        let mut end = RunEnd {
            started_unix_ms,
            location: run_dir.display().to_string(),
            clock: plan.clock,
            clock_cost_ns,
            pacing: vec![PacingReport::default(); plan.threads],
            cores,
            interrupted: false,
            warnings: Vec::new(),
            readers: Vec::new(),
            garbage_lines: 0,
            failure: None,
            distributed: None,
            chaos: None,
        };
        if plan.transport.kind == crate::plan::transport::TransportKind::Uds {
            end.warnings
                .extend(crate::transport::datagram::uds_queue_warning());
        }
        let mut refused = 0u64;
        let mut aborted = false;
        let mut digests = Digests::default();
        std::thread::scope(|scope| {
            let mut spares = Vec::new();
            for (index, works) in per_thread.into_iter().enumerate() {
                let (spare_tx, spare_rx) = mpsc::channel();
                spares.push(spare_tx);
                let ids: Vec<u16> = works.iter().map(|w| w.id).collect();
                let config = GeneratorConfig {
                    index,
                    start_ns,
                    intervals,
                    interval_ns,
                    pacing: plan.pacing,
                    pin_core: plan.pin_cores.get(index).copied(),
                    clock: plan.clock,
                    faults: plan
                        .chaos
                        .as_ref()
                        .map(|c| GeneratorFaults::new(&c.faults, &ids, start_ns))
                        .unwrap_or_default(),
                    timeline: plan.chaos.is_some(),
                };
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("generator-{index}"))
                    .spawn_scoped(scope, move || {
                        generator::run(
                            config,
                            works,
                            stop.flag(),
                            |m| {
                                let _ = tx.send(Event::Generator(m));
                            },
                            spare_rx,
                        )
                    })
                    .expect("spawning a generator thread");
            }

            // The injector sleeps until each fault is due, at the priority the run started
            // with, so that it injects on time whatever this thread is doing.
            let injector = plan.chaos.as_ref().and_then(|c| {
                let ring_bytes = plan
                    .exchanges
                    .iter()
                    .map(|e| (e.trades_capacity * 64).max(e.book_capacity * 256))
                    .max()
                    .unwrap_or(0);
                let tx = tx.clone();
                match spawn_injector(
                    c,
                    start_ns,
                    &run_dir,
                    ring_bytes,
                    std::sync::Arc::clone(&handles),
                    std::sync::Arc::clone(&injector_done),
                    move |n| {
                        let _ = tx.send(Event::Chaos(n));
                    },
                ) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        end.warnings
                            .push(format!("cannot start the chaos injector: {e}"));
                        None
                    }
                }
            });
            // Generator threads run at the priority this thread had; from here this thread
            // only merges and samples, and must not take a generator's core for long (nor a
            // reader's: at the default priority its merging at every interval boundary shows
            // as a latency spike in the readers).
            crate::run::placement::lower_this_thread();
            let mut proc_before = sampler::read("self");
            let mut next_sample = start_ns + interval_ns;
            let mut running = plan.threads;
            let mut finish_deadline = None;
            let mut emit = |r: &IntervalReport| observer.interval(r);
            loop {
                if stop.aborted() {
                    // The generators watch the same request and return within MAX_WAIT_NS.
                    for r in &mut readers {
                        r.reap();
                    }
                    aborted = true;
                    break;
                }
                if running == 0 && !readers.iter().any(ReaderChild::running) {
                    break;
                }
                let now = now_ns();
                if finish_deadline.is_some_and(|d| now >= d) {
                    for r in readers.iter_mut().filter(|r| r.running()) {
                        end.warnings.push(format!(
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
                    Ok(Event::Generator(Message::Chaos(a)))
                    | Ok(Event::Chaos(InjectorNote::Action(a))) => {
                        if let Some(c) = &mut chaos {
                            c.heard(a);
                        }
                    }
                    Ok(Event::Chaos(InjectorNote::NotKilled { reader })) => {
                        if let Some(c) = &mut chaos {
                            c.not_killed(reader);
                        }
                        if let Some(id) = replacing.remove(&reader) {
                            collector.done(id);
                        }
                    }
                    Ok(Event::Chaos(InjectorNote::Killed { reader, fault })) => {
                        if let Some(c) = &mut chaos {
                            c.killed(reader, fault);
                            if c.replaces(reader) {
                                // Registered now, so that no interval completes without
                                // the replacement's report.
                                let id = collector.producer(format!(
                                    "reader {reader} (started in place of a killed one)"
                                ));
                                collector.reached(id, collector.next_index());
                                replacing.insert(reader, id);
                            }
                        }
                    }
                    Ok(Event::Generator(Message::Interval {
                        thread,
                        mut report,
                        timeline,
                    })) => {
                        if let (Some(c), Some(t)) = (&mut chaos, &timeline) {
                            c.timeline(crate::report::chaos::GENERATOR, t);
                        }
                        if let Err(e) = collector.add(generator_ids[thread], &report) {
                            refused += 1;
                            tracing::warn!("{e}");
                        }
                        report.reset(report.index);
                        let _ = spares[thread].send(report);
                    }
                    Ok(Event::Generator(Message::Done(summary))) => {
                        collector.done(generator_ids[summary.thread]);
                        running -= 1;
                        end.interrupted |= summary.interrupted;
                        if end.failure.is_none() {
                            end.failure = summary.failure;
                        }
                        if summary.dropped_levels > 0 {
                            end.warnings.push(format!(
                                "replay: {} recorded level changes of generator thread {} had no \
                                 effect on this run's books (deletes of levels they did not \
                                 have, or no room left in their update) and were left out",
                                summary.dropped_levels, summary.thread
                            ));
                        }
                        if let Some(p) = end.pacing.get_mut(summary.thread) {
                            *p = summary.pacing;
                        }
                        digests.exchanges.extend(summary.digests);
                        if let Some(e) = summary.pin_error {
                            end.warnings
                                .push(format!("generator thread {}: {e}", summary.thread));
                        }
                        if running == 0 {
                            // Nothing more is injected; a reader still stopped continues, so
                            // that it can drain and report.
                            injector_done.store(true, std::sync::atomic::Ordering::Relaxed);
                            // The interval the generators ended in gets its sample now, then the
                            // sampler is done.
                            let index = (now_ns().saturating_sub(start_ns) / interval_ns)
                                .min(intervals.saturating_sub(1));
                            if (next_sample - start_ns) / interval_ns - 1 <= index {
                                let after = sampler::read("self");
                                sample(
                                    &mut collector,
                                    sampler_id,
                                    index,
                                    interval_ns,
                                    (&proc_before, &after),
                                    &mut readers,
                                    ticks,
                                );
                            }
                            collector.done(sampler_id);
                            // Every writer is closed once its thread returned; readers drain, then
                            // compare their books with these.
                            let json = serde_json::to_vec(&digests).expect("digests serialize");
                            if let Err(e) = bus.publish(DIGESTS_NAME, &json) {
                                end.warnings
                                    .push(format!("cannot publish book digests: {e}"));
                            }
                            finish_deadline =
                                Some(now_ns() + READER_FINISH_TIMEOUT.as_nanos() as u64);
                        }
                    }
                    Ok(Event::Reader(i, line)) => {
                        let id = reader_ids[i];
                        match line {
                            ReaderLine::Message(m) => match *m {
                                ToTester::Interval { report } => {
                                    if let Err(e) = collector.add(id, &report) {
                                        refused += 1;
                                        tracing::warn!("{e}");
                                    }
                                }
                                ToTester::Final { report, end } => {
                                    if let Err(e) = collector.add(id, &report) {
                                        refused += 1;
                                        tracing::warn!("{e}");
                                    }
                                    readers[i].outcome = Some(*end);
                                    collector.done(id);
                                }
                                ToTester::Ready { .. } => {
                                    if let Some(c) = &mut chaos {
                                        c.reader_ready(i);
                                    }
                                }
                                ToTester::Progress {
                                    timeline,
                                    positions,
                                } => {
                                    if let Some(c) = &mut chaos {
                                        c.timeline(&reader_process(i), &timeline);
                                        c.positions.insert(i, positions);
                                    }
                                }
                            },
                            ReaderLine::Garbage(_) => end.garbage_lines += 1,
                            ReaderLine::Closed { at_ns } => {
                                readers[i].closed(at_ns.saturating_sub(start_ns) as f64 / 1e9);
                                collector.done(id);
                                let how = readers[i].died.clone().unwrap_or_default();
                                if let Some(fault) =
                                    chaos.as_mut().and_then(|c| c.reader_closed(i, &how, at_ns))
                                {
                                    // The fault is detected; a reader takes the dead one's
                                    // place, resuming where it last reported.
                                    let c = chaos.as_mut().expect("checked");
                                    let resume = c.positions.get(&i).cloned().unwrap_or_default();
                                    let reader_tx = tx.clone();
                                    match readers::spawn_one(
                                        &spec,
                                        &run_dir,
                                        i,
                                        &resume,
                                        move |i, line| {
                                            let _ = reader_tx.send(Event::Reader(i, line));
                                        },
                                    ) {
                                        Ok(mut child) => {
                                            child.start(&start);
                                            c.restarting(i, fault, child.pid);
                                            if let Some(h) = handles
                                                .lock()
                                                .unwrap_or_else(|e| e.into_inner())
                                                .get_mut(i)
                                            {
                                                *h = child.handle();
                                            }
                                            readers[i] = child;
                                            if let Some(new) = replacing.remove(&i) {
                                                reader_ids[i] = new;
                                            }
                                        }
                                        Err(e) => {
                                            c.restart_failed(i, fault, &e);
                                            if let Some(new) = replacing.remove(&i) {
                                                collector.done(new);
                                            }
                                        }
                                    }
                                } else if let Some(why) = &readers[i].died {
                                    tracing::warn!("{why}");
                                }
                                if let Some(new) = replacing.remove(&i) {
                                    collector.done(new);
                                }
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                let now = now_ns();
                if now >= next_sample && running > 0 {
                    let index = ((next_sample - start_ns) / interval_ns - 1).min(intervals - 1);
                    let after = sampler::read("self");
                    sample(
                        &mut collector,
                        sampler_id,
                        index,
                        interval_ns,
                        (&proc_before, &after),
                        &mut readers,
                        ticks,
                    );
                    proc_before = after;
                    next_sample += interval_ns;
                    // After a stall, sample once, not once per missed second.
                    if next_sample <= now {
                        next_sample = now + interval_ns;
                    }
                    collector.reached(sampler_id, (next_sample - start_ns) / interval_ns - 1);
                }
                collector.drain(&mut emit);
            }
            if !aborted {
                collector.finish(&mut emit);
            }
            // What the injector still holds (a stopped reader, a fill) goes back now.
            injector_done.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(j) = injector {
                let _ = j.join();
            }
        });
        if aborted {
            return Err(EngineError::Aborted);
        }
        if let Some(c) = &mut chaos {
            // What the injector said as it ended.
            while let Ok(event) = rx.try_recv() {
                if let Event::Chaos(InjectorNote::Action(a)) = event {
                    c.heard(a);
                }
            }
            end.chaos = Some(std::mem::take(&mut c.log));
        }
        for r in &mut readers {
            r.stop();
            r.reap();
        }
        if refused > 0 {
            end.warnings.push(format!(
                "{refused} interval report(s) were refused (see -v); their figures are missing"
            ));
        }
        end.readers = readers
            .iter()
            .map(|r| ReaderProcessEnd {
                index: r.index,
                pid: r.pid,
                outcome: r.outcome.clone(),
                died: r.died.clone(),
            })
            .collect();
        Ok(end)
    }
}

/// Reports the resource use of the tester and of every live reader over interval `index`.
fn sample(
    collector: &mut Collector,
    sampler_id: ProducerId,
    index: u64,
    interval_ns: u64,
    (before, after): (
        &Option<sampler::ProcCounters>,
        &Option<sampler::ProcCounters>,
    ),
    readers: &mut [ReaderChild],
    ticks: u64,
) {
    let mut report = IntervalReport::empty(index, interval_ns);
    if let (Some(b), Some(a)) = (before, after) {
        report
            .processes
            .insert(TESTER_PROCESS.to_string(), sampler::usage(b, a, ticks));
    }
    for r in readers.iter_mut().filter(|r| r.running()) {
        if let Some(u) = r.sample(ticks) {
            report.processes.insert(reader_process(r.index), u);
        }
    }
    // The sampler's reports are well-formed by construction; a refusal here means the interval
    // was already complete, and its sample is dropped.
    let _ = collector.add(sampler_id, &report);
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
fn wait_ready(
    rx: &mpsc::Receiver<Event>,
    readers: &mut [ReaderChild],
    stop: &Stop,
) -> Result<(), EngineError> {
    let deadline = std::time::Instant::now() + READER_ATTACH_TIMEOUT;
    while readers.iter().any(|r| !r.ready) {
        if stop.stopping() {
            // Nothing was measured yet: a stop now, graceful or not, ends the run.
            return Err(EngineError::Aborted);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(Event::Reader(i, ReaderLine::Message(m)))
                if matches!(*m, ToTester::Ready { .. }) =>
            {
                if let ToTester::Ready { listen, .. } = *m {
                    readers[i].listen = listen;
                }
                readers[i].ready = true
            }
            Ok(Event::Reader(i, ReaderLine::Closed { .. })) => {
                readers[i].reap();
                // The reader's own line, without its "error: " (ours comes in front).
                let tail = readers[i].stderr_tail();
                return Err(EngineError::Readers(format!(
                    "reader process {i} failed to attach: {}",
                    tail.strip_prefix("error: ").unwrap_or(&tail)
                )));
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
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
