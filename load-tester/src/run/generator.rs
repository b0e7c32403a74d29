//! A generator thread: drives several exchanges open-loop and records every write.
//!
//! Each write is recorded in the interval its *intended* send time falls in, so that an
//! interval's figures are those of the messages it had due: a write due in the warm-up but sent
//! after it is warm-up, and no interval can send more than it had due. The thread processes its
//! sources in intended-time order (one heap), so once the next due message belongs to a later
//! interval and that interval's time has come, the current one is complete and is shipped to
//! the engine as an [`IntervalReport`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;

use alphapulse_bus::{BookUpdate, Record, Trade};

use crate::plan::chaos::{show_ns, FaultKind};
use crate::plan::{Pacing, Stream};
use crate::report::end::PacingReport;
use crate::report::timeline::{Timeline, SLICE_NS};
use crate::report::{GeneratorTime, IntervalReport, Kind, SourceId, SourceReport, WriterCounters};
use crate::run::chaos::{Action, ActionKind, GeneratorFaults};
use crate::run::clock::{Clock, ClockSource};
use crate::run::consumer::NOT_COMPARED;
use crate::run::measure::LatencySet;
use crate::run::pacing::{Pacer, Schedule, MAX_WAIT_NS};
use crate::source::Market;
use crate::transport::{SendError, Transport};

/// One exchange as a generator thread drives it.
pub struct ExchangeWork {
    /// Exchange id.
    pub id: u16,
    /// Where its records come from.
    pub market: Market,
    /// Where its records go.
    pub transport: Box<dyn Transport>,
    /// When its trades are due (`None`: no trades).
    pub trades: Option<Schedule>,
    /// When its book updates are due (`None`: none).
    pub book: Option<Schedule>,
}

/// Timing of one generator thread.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Thread index.
    pub index: usize,
    /// Start of the run (first intended send time, start of interval 0), ns.
    pub start_ns: u64,
    /// Intervals of the run; the run ends at `start_ns + intervals * interval_ns`, and no
    /// message intended at or after that is sent.
    pub intervals: u64,
    /// Length of a measurement interval, ns.
    pub interval_ns: u64,
    /// Pacing.
    pub pacing: Pacing,
    /// Core to pin to.
    pub pin_core: Option<usize>,
    /// The clock to read.
    pub clock: ClockSource,
    /// The faults this thread injects (a chaos run).
    pub faults: GeneratorFaults,
    /// Keep a 10 ms timeline of the writes (a chaos run).
    pub timeline: bool,
}

impl GeneratorConfig {
    fn end_ns(&self) -> u64 {
        self.start_ns + self.intervals * self.interval_ns
    }
}

/// What a thread reports when it ends.
#[derive(Debug)]
pub struct ThreadSummary {
    /// Thread index.
    pub thread: usize,
    /// Whether the thread stopped early on request.
    pub interrupted: bool,
    /// Why pinning failed, if it was asked for and failed.
    pub pin_error: Option<String>,
    /// How the thread paced.
    pub pacing: PacingReport,
    /// Per exchange, per symbol: the last published book version and its digest.
    pub digests: Vec<(u16, Vec<(u64, u64)>)>,
    /// Why the thread stopped the run, if it did: a replayed capture turned bad.
    pub failure: Option<String>,
    /// Replay: recorded level changes that had no effect on this run's books.
    pub dropped_levels: u64,
}

/// Messages from generator threads to the engine.
#[derive(Debug)]
pub enum Message {
    /// An interval of this thread is complete.
    Interval {
        /// Thread index.
        thread: usize,
        /// What the thread measured in it.
        report: IntervalReport,
        /// A chaos run: the writes of the interval per 10 ms slice.
        timeline: Option<Timeline>,
    },
    /// A chaos run: what the thread did about a fault.
    Chaos(Action),
    /// The thread ended; no more messages from it.
    Done(ThreadSummary),
}

/// One source as the thread drives it.
struct Source {
    /// The exchange and stream it writes.
    id: SourceId,
    /// Index in `works` of its exchange (simulator and transport); `works[work].id == id.exchange`.
    work: usize,
    /// Its intended send times; its heap entry is always `(schedule.due(), its index)`.
    schedule: Schedule,
    /// A record refused by backpressure, sent again (not regenerated) at the next slot, so the
    /// stream stays gap-free and book versions stay consecutive.
    pending: bool,
    /// The last trade generated for this source (trades sources only): kept per source, so
    /// that a refused one is still there to send again whatever other sources wrote since.
    trade: Trade,
    /// The last book update generated for this source (book sources only), likewise.
    book: BookUpdate,
    /// Latencies of the writes due in the current interval (the hot path records here).
    latency: LatencySet,
    /// Counts of the writes due in the current interval.
    counters: WriterCounters,
}

/// The thread's state between writes.
///
/// Invariants: `boundary == start_ns + (interval + 1) * interval_ns`; every write recorded in
/// `sources` since the last ship was due in `[boundary - interval_ns, boundary)`; intervals
/// before `interval` have been shipped, in order.
struct Intervals<'a> {
    /// The thread's timing; fixed.
    config: &'a GeneratorConfig,
    /// Index of the current interval, the one writes are recorded in; not shipped yet.
    interval: u64,
    /// End of the current interval, ns: `start_ns + (interval + 1) * interval_ns`.
    boundary: u64,
    /// Time spent since the last ship (waiting, spinning, writing), ns; `thread_ns` is set only
    /// when shipping.
    time: GeneratorTime,
    /// Emptied reports the engine hands back, reused before allocating a new one.
    spare: &'a Receiver<IntervalReport>,
    /// A chaos run: the writes since the last ship, per 10 ms slice from the run's start.
    timeline: Option<Timeline>,
}

impl Intervals<'_> {
    /// Ships the current interval, covered up to `until` (ns, absolute), and moves to the next.
    fn ship(
        &mut self,
        sources: &mut [Source],
        works: &mut [ExchangeWork],
        until: u64,
        emit: &mut dyn FnMut(Message),
    ) {
        let config = self.config;
        let start = self.boundary - config.interval_ns;
        let covered = until.clamp(start, self.boundary) - start;
        let mut report = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| IntervalReport::empty(self.interval, config.interval_ns));
        report.reset(self.interval);
        report.length_ns = config.interval_ns;
        report.covered_ns = covered;
        self.time.thread_ns = covered;
        report.generator = std::mem::take(&mut self.time);
        for s in sources.iter_mut() {
            let out = report.sources.entry(s.id).or_default();
            swap_into(&mut s.latency, out);
            out.writer = std::mem::take(&mut s.counters);
            out.writer.saturated = std::mem::take(&mut s.latency.saturated);
            let net = works[s.work].transport.take_net(s.id.stream);
            out.writer.net_dropped = net.dropped;
            out.writer.net_duplicated = net.duplicated;
            out.writer.net_reordered = net.reordered;
            out.writer.net_refused = net.refused;
        }
        let timeline = self.timeline.as_mut().map(|t| {
            let next = (self.boundary - config.start_ns) / SLICE_NS;
            let mut out = Timeline::default();
            out.reset(next);
            std::mem::swap(t, &mut out);
            out
        });
        emit(Message::Interval {
            thread: config.index,
            report,
            timeline,
        });
        self.interval += 1;
        self.boundary += config.interval_ns;
    }
}

/// Moves the recorded histograms into `out` and takes `out`'s (emptied) ones in exchange, so
/// that the hot path keeps writing into allocated, resident histograms.
fn swap_into(latency: &mut LatencySet, out: &mut SourceReport) {
    for (kind, h) in [
        (Kind::Service, &mut latency.service),
        (Kind::Response, &mut latency.response),
        (Kind::Lag, &mut latency.lag),
    ] {
        let mut fresh = out
            .latency
            .take(kind)
            .unwrap_or_else(crate::report::histogram::new_histogram);
        fresh.reset();
        let full = std::mem::replace(h, fresh);
        // Every histogram of a `LatencySet` has the standard configuration.
        let _ = out.latency.set(kind, full);
    }
}

/// Runs one generator thread until the end of the run, or until `stop` is set.
///
/// `spare` hands back reports the engine has merged, emptied, so that steady state allocates
/// nothing.
pub fn run(
    config: GeneratorConfig,
    works: Vec<ExchangeWork>,
    stop: &AtomicBool,
    emit: impl FnMut(Message),
    spare: Receiver<IntervalReport>,
) {
    // A run without faults gets a loop without a trace of them: the chaos checks are compiled
    // out, not branched around.
    if config.timeline || !config.faults.faults.is_empty() {
        run_loop::<true>(config, works, stop, emit, spare)
    } else {
        run_loop::<false>(config, works, stop, emit, spare)
    }
}

/// [`run`], with the chaos checks (`CHAOS`) or without.
fn run_loop<const CHAOS: bool>(
    config: GeneratorConfig,
    mut works: Vec<ExchangeWork>,
    stop: &AtomicBool,
    mut emit: impl FnMut(Message),
    spare: Receiver<IntervalReport>,
) {
    let pin_error = config.pin_core.and_then(|core| pin(core).err());
    let mut clock = Clock::new(config.clock);
    let mut pacer = Pacer::new(config.pacing, &mut clock);
    let mut sources = Vec::new();
    for (w, work) in works.iter_mut().enumerate() {
        for (stream, schedule) in [
            (Stream::Trades, work.trades.take()),
            (Stream::Book, work.book.take()),
        ] {
            if let Some(schedule) = schedule {
                sources.push(Source {
                    id: SourceId {
                        exchange: work.id,
                        stream,
                    },
                    work: w,
                    schedule,
                    pending: false,
                    trade: Trade::default(),
                    book: BookUpdate::default(),
                    latency: LatencySet::default(),
                    counters: WriterCounters::default(),
                });
            }
        }
    }
    let end_ns = config.end_ns();
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.schedule.due(), i)))
        .collect();
    let mut iv = Intervals {
        config: &config,
        interval: 0,
        boundary: config.start_ns + config.interval_ns,
        time: GeneratorTime::default(),
        spare: &spare,
        timeline: config.timeline.then(|| {
            let mut t = Timeline::default();
            t.reset(0);
            t
        }),
    };
    let mut faults = config.faults.clone();
    // A record of this exchange is to be corrupted (and which fault asked for it).
    let mut corrupt: Option<(u16, Stream, usize)> = None;
    // A writer restart that failed, tried again from then: (fault, exchange, when, failures,
    // the first error).
    let mut restart: Option<(usize, u16, u64, u64, String)> = None;
    let by = format!("generator thread {}", config.index);
    // When the next fault (or a failed restart's next try) is due; `u64::MAX`: none.
    let mut chaos_due = faults.due_ns;
    let mut interrupted = false;
    let mut failure = None;
    // Only transports that delay datagrams need polling between sends.
    let polls = works.iter().any(|w| w.transport.delays());
    let mut now = clock.now();

    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        // One compare per event while no fault is due.
        if CHAOS && now >= chaos_due {
            now = inject(
                &mut faults,
                &mut restart,
                &mut corrupt,
                &mut works,
                &mut sources,
                &config,
                &mut clock,
                &mut pacer,
                stop,
                &by,
                &mut emit,
            );
            chaos_due = faults
                .due_ns
                .min(restart.as_ref().map_or(u64::MAX, |r| r.2));
            continue;
        }
        let top = heap.peek().map_or(u64::MAX, |&Reverse((due, _))| due);
        // Ship every interval whose time is over and that has nothing left due.
        while now >= iv.boundary && top >= iv.boundary && iv.boundary < end_ns {
            let until = iv.boundary;
            iv.ship(&mut sources, &mut works, until, &mut emit);
        }
        if now >= end_ns {
            break;
        }
        let target = if top >= end_ns { end_ns } else { top };
        if now < target {
            // Wake at the next send time, the end of the interval or the run, or after
            // MAX_WAIT_NS, whichever comes first: a slow source still sees the interval end,
            // the stop flag and its heartbeats.
            // What a transport batched goes before the wait; what it delayed is due at its
            // own time, which the wait honours as a send time.
            let mut deadline = u64::MAX;
            for w in &mut works {
                w.transport.flush();
                deadline = deadline.min(w.transport.next_deadline());
            }
            let wake = target
                .min(iv.boundary)
                .min(now + MAX_WAIT_NS)
                .min(deadline.max(now));
            let woke = pacer.wait_until(&mut clock, wake);
            if deadline <= woke.at {
                for w in &mut works {
                    w.transport.poll(woke.at);
                }
            }
            // Waiting for the first send time is not part of any interval.
            iv.time.wait_ns += woke.at.saturating_sub(now.max(config.start_ns));
            iv.time.spin_ns += woke.spun_ns.min(woke.at.saturating_sub(config.start_ns));
            now = woke.at;
            if now < target {
                for w in &mut works {
                    w.transport.idle();
                }
            }
            continue;
        }
        let Some(&Reverse((due, idx))) = heap.peek() else {
            break;
        };
        let source = &mut sources[idx];
        let work = &mut works[source.work];
        // A chaos run's corrupt-record: this record goes out with a bit flipped after its
        // checksum was sealed, as after a bit flip in the slot.
        let flip =
            CHAOS && corrupt.is_some_and(|c| (c.0, c.1) == (source.id.exchange, source.id.stream));
        let (start, result) = match source.id.stream {
            Stream::Trades => {
                let trade = &mut source.trade;
                if !source.pending {
                    work.market.trade(source.schedule.recorded(), trade);
                    trade.seal();
                }
                if flip {
                    trade.price ^= 1;
                }
                let start = clock.now();
                trade.send_ts_ns = start;
                let result = work.transport.send_trade(trade);
                if flip {
                    trade.price ^= 1;
                }
                (start, result)
            }
            Stream::Book => {
                let book = &mut source.book;
                if !source.pending {
                    work.market.book_update(source.schedule.recorded(), book);
                    book.seal();
                }
                if flip {
                    book.reserved1[0] ^= 1;
                }
                let start = clock.now();
                book.send_ts_ns = start;
                let result = work.transport.send_book(book);
                if flip {
                    book.reserved1[0] ^= 1;
                }
                (start, result)
            }
        };
        if flip && result.is_ok() {
            let (e, stream, fault) = corrupt.take().expect("checked");
            let symbol = match stream {
                Stream::Trades => source.trade.symbol_id,
                Stream::Book => source.book.symbol_id,
            };
            emit(Message::Chaos(Action {
                fault,
                at_ns: start.saturating_sub(config.start_ns),
                what: ActionKind::Injected,
                by: by.clone(),
                detail: format!(
                    "sent a {} record of exchange {e}, symbol {symbol}, with a bit flipped",
                    stream.name()
                ),
            }));
        }
        let end = clock.now_after();
        source.latency.record(due, start, end);
        if let Some(t) = iv.timeline.as_mut().filter(|_| CHAOS) {
            let s = t.at(start.saturating_sub(config.start_ns));
            s.attempts += 1;
            s.failed += u64::from(result.is_err());
            s.max_lag_ns = s.max_lag_ns.max(start.saturating_sub(due));
        }
        match result {
            Ok(()) => {
                source.counters.sent += 1;
                source.pending = false;
            }
            Err(SendError::BufferFull) => {
                source.counters.buffer_overflows += 1;
                source.pending = true;
            }
            Err(SendError::Failed) => source.counters.write_failures += 1,
        }
        iv.time.write_ns += end.saturating_sub(start);
        if polls {
            // Any exchange's delayed datagrams, not only this one's: a busy thread may not wait.
            for w in works.iter_mut() {
                if w.transport.next_deadline() <= end {
                    w.transport.poll(end);
                }
            }
        }
        source.schedule.advance();
        let next = source.schedule.due();
        // Replacing the top in place costs one sift instead of a pop and a push.
        if let Some(mut top) = heap.peek_mut() {
            *top = Reverse((next, idx));
        }
        now = end;
        if next == u64::MAX {
            if let Some(f) = source.schedule.failure() {
                // The capture turned bad: the whole run stops, and keeps what it measured.
                failure = Some(f);
                stop.store(true, Ordering::SeqCst);
                interrupted = true;
                break;
            }
        }
    }
    // What the transports still batch, hold or delay goes now, so that what it costs is in
    // the last report.
    for w in &mut works {
        w.transport.drain();
    }
    // Every message due before the cut-off and never attempted is backlog, in the interval it
    // was due in; the intervals up to the cut-off are shipped, the last one covered up to it.
    let cutoff = if interrupted { now.min(end_ns) } else { end_ns };
    let last = cutoff
        .saturating_sub(config.start_ns)
        .saturating_sub(1)
        .checked_div(config.interval_ns)
        .unwrap_or(0)
        .min(config.intervals.saturating_sub(1));
    let mut backlog: Vec<Vec<(u64, u64)>> = sources
        .iter_mut()
        .map(|s| {
            s.schedule
                .unsent_by_interval(cutoff, config.start_ns, config.interval_ns)
        })
        .collect();
    while iv.interval <= last {
        let index = iv.interval;
        for (s, b) in sources.iter_mut().zip(&mut backlog) {
            b.retain(|&(i, n)| {
                if i == index {
                    s.counters.backlog += n;
                }
                i != index
            });
        }
        iv.ship(&mut sources, &mut works, cutoff, &mut emit);
    }
    // A book update still refused at the end was applied to the simulator's published book but
    // never written: its symbol's digest describes a book no reader could have, so it is marked
    // not to be compared.
    let unwritten: std::collections::BTreeSet<(u16, u32)> = sources
        .iter()
        .filter(|s| s.pending && s.id.stream == Stream::Book)
        .map(|s| (s.id.exchange, s.book.symbol_id))
        .collect();
    let digests = works
        .iter()
        .map(|w| {
            let n = w.market.symbol_count();
            (
                w.id,
                (0..n)
                    .map(|s| {
                        if unwritten.contains(&(w.id, s)) {
                            (NOT_COMPARED, 0)
                        } else {
                            (w.market.published_version(s), w.market.published_digest(s))
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    // The writers close when `works` drops, after the engine has the digests.
    emit(Message::Done(ThreadSummary {
        thread: config.index,
        interrupted,
        pin_error,
        pacing: pacer.report(),
        digests,
        failure,
        dropped_levels: works
            .iter()
            .map(|w| match &w.market {
                Market::Replay(m) => m.dropped_levels(),
                Market::Sim(_) => 0,
            })
            .sum(),
    }));
    drop(works);
}

/// Injects the faults due by now (and tries a failed writer restart again when its time has
/// come); returns the time after.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn inject(
    faults: &mut GeneratorFaults,
    restart: &mut Option<(usize, u16, u64, u64, String)>,
    corrupt: &mut Option<(u16, Stream, usize)>,
    works: &mut [ExchangeWork],
    sources: &mut [Source],
    config: &GeneratorConfig,
    clock: &mut Clock,
    pacer: &mut Pacer,
    stop: &AtomicBool,
    by: &str,
    emit: &mut dyn FnMut(Message),
) -> u64 {
    let mut now = clock.now();
    let rel = |t: u64| t.saturating_sub(config.start_ns);
    let mut say = |fault: usize, at: u64, what: ActionKind, detail: String| {
        emit(Message::Chaos(Action {
            fault,
            at_ns: rel(at),
            what,
            by: by.to_string(),
            detail,
        }))
    };
    if let Some((fault, exchange, at, failures, first)) = restart.take() {
        if now >= at {
            let work = works.iter_mut().find(|w| w.id == exchange);
            match work.map(|w| w.transport.restart()) {
                Some(Ok(())) => say(
                    fault,
                    now,
                    ActionKind::Restored,
                    format!(
                        "the writers of exchange {exchange} restarted (new epoch) after \
                         {failures} failed attempt(s): {first}"
                    ),
                ),
                Some(Err(_)) => {
                    *restart = Some((fault, exchange, now + RESTART_RETRY_NS, failures + 1, first))
                }
                None => {}
            }
        } else {
            *restart = Some((fault, exchange, at, failures, first));
        }
    }
    while let Some(f) = faults.take_due(now, config.start_ns) {
        match f.kind {
            FaultKind::StallGenerator => {
                say(
                    f.id,
                    now,
                    ActionKind::Injected,
                    format!("stopped sending for {}", show_ns(f.duration_ns)),
                );
                let until = config.start_ns + f.end_ns();
                while now < until && !stop.load(Ordering::Relaxed) {
                    now = pacer.wait_until(clock, until.min(now + MAX_WAIT_NS)).at;
                    for w in works.iter_mut() {
                        w.transport.idle();
                    }
                }
                say(f.id, now, ActionKind::Ended, "sending again".into());
            }
            FaultKind::CorruptRecord => {
                let Some(e) = f.exchange else { continue };
                let has = |stream| {
                    sources.iter().any(|s| {
                        s.id == SourceId {
                            exchange: e,
                            stream,
                        }
                    })
                };
                let stream = if has(Stream::Trades) {
                    Stream::Trades
                } else if has(Stream::Book) {
                    Stream::Book
                } else {
                    say(
                        f.id,
                        now,
                        ActionKind::Trouble,
                        format!("exchange {e} sends nothing to corrupt"),
                    );
                    continue;
                };
                // The next record of that stream is sent corrupted.
                *corrupt = Some((e, stream, f.id));
            }
            FaultKind::RestartWriter => {
                let Some(e) = f.exchange else { continue };
                let Some(w) = works.iter_mut().find(|w| w.id == e) else {
                    continue;
                };
                say(
                    f.id,
                    now,
                    ActionKind::Injected,
                    format!("restarting the writers of exchange {e}"),
                );
                match w.transport.restart() {
                    Ok(()) => say(
                        f.id,
                        clock.now(),
                        ActionKind::Restored,
                        format!("the writers of exchange {e} restarted (new epoch)"),
                    ),
                    Err(why) => {
                        say(
                            f.id,
                            clock.now(),
                            ActionKind::Trouble,
                            format!("the restart failed, trying again every 10 ms: {why}"),
                        );
                        *restart = Some((f.id, e, clock.now() + RESTART_RETRY_NS, 1, why));
                    }
                }
            }
            FaultKind::NetLossBurst | FaultKind::NetDelaySpike => {
                let until = config.start_ns + f.end_ns();
                let (drop_until, extra) = if f.kind == FaultKind::NetLossBurst {
                    (until, 0)
                } else {
                    (0, f.amount)
                };
                let mut any = false;
                for w in works.iter_mut() {
                    any |= w.transport.net_fault(drop_until, extra, until);
                }
                if any {
                    say(
                        f.id,
                        now,
                        ActionKind::Injected,
                        if extra > 0 {
                            format!(
                                "delaying every datagram {} more for {}",
                                show_ns(extra),
                                show_ns(f.duration_ns)
                            )
                        } else {
                            format!("dropping every datagram for {}", show_ns(f.duration_ns))
                        },
                    );
                }
            }
            _ => {}
        }
        now = clock.now();
    }
    now
}

/// How long a writer restart that failed waits before it tries again, ns.
const RESTART_RETRY_NS: u64 = 10_000_000;

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("cannot pin to core {core}: {e}"))
}
