//! A generator thread: drives several exchanges open-loop and records every write.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;

use alphapulse_bus::{BookUpdate, Record, Trade};

use crate::plan::{Pacing, Stream};
use crate::run::clock::{Clock, ClockSource};
use crate::run::measure::SourceStats;
use crate::run::pacing::{Pacer, Schedule, MAX_WAIT_NS};
use crate::source::market::ExchangeSim;
use crate::transport::{SendError, Transport};

/// Identifies a source: one stream of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    /// Exchange id.
    pub exchange: u16,
    /// Stream.
    pub stream: Stream,
}

/// One exchange as a generator thread drives it.
pub struct ExchangeWork {
    /// Exchange id.
    pub id: u16,
    /// Its market.
    pub sim: ExchangeSim,
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
    /// End of the run: no message intended at or after it is sent, ns.
    pub end_ns: u64,
    /// Length of a measurement interval, ns.
    pub interval_ns: u64,
    /// Pacing.
    pub pacing: Pacing,
    /// Core to pin to.
    pub pin_core: Option<usize>,
    /// The clock to read.
    pub clock: ClockSource,
}

/// What one thread did in one interval, shipped when the interval ends.
#[derive(Debug)]
pub struct IntervalReport {
    /// Thread index.
    pub thread: usize,
    /// Interval index: the interval covers `[start + index * interval, start + (index + 1) * interval)`.
    pub index: u64,
    /// Per-source recordings of writes that completed in the interval.
    pub sources: Vec<(SourceId, SourceStats)>,
    /// Time spent waiting for send times, ns.
    pub wait_ns: u64,
    /// Time spent inside write calls, ns.
    pub write_ns: u64,
    /// When the run was stopped early inside this interval: how far into the run, ns. The
    /// interval then covers only up to there.
    pub cut_ns: Option<u64>,
}

/// What a thread reports when it ends.
#[derive(Debug)]
pub struct ThreadSummary {
    /// Thread index.
    pub thread: usize,
    /// Per source: messages whose intended time had passed but that were never sent.
    pub backlog: Vec<(SourceId, u64)>,
    /// Whether the thread stopped early on request.
    pub interrupted: bool,
    /// Why pinning failed, if it was asked for and failed.
    pub pin_error: Option<String>,
    /// Per exchange, per symbol: the last published book version and its digest.
    pub digests: Vec<(u16, Vec<(u64, u64)>)>,
}

/// Messages from generator threads to the engine.
#[derive(Debug)]
pub enum Message {
    /// An interval ended.
    Interval(IntervalReport),
    /// The thread ended; no more messages from it.
    Done(ThreadSummary),
}

struct Source {
    id: SourceId,
    work: usize,
    schedule: Schedule,
    /// A record refused by backpressure, sent again (not regenerated) at the next slot, so the
    /// stream stays gap-free and book versions stay consecutive.
    pending: bool,
}

/// Runs one generator thread until `config.end_ns`, or until `stop` is set.
///
/// `spare` hands back emptied statistics vectors so that steady state allocates nothing.
pub fn run(
    config: GeneratorConfig,
    mut works: Vec<ExchangeWork>,
    stop: &AtomicBool,
    mut emit: impl FnMut(Message),
    spare: Receiver<Vec<SourceStats>>,
) {
    let pin_error = config.pin_core.and_then(|core| pin(core).err());
    let pacer = Pacer::new(config.pacing);
    let mut clock = Clock::new(config.clock);
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
                });
            }
        }
    }
    let ids: Vec<SourceId> = sources.iter().map(|s| s.id).collect();
    let mut stats: Vec<SourceStats> = vec![SourceStats::default(); sources.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.schedule.due(), i)))
        .collect();
    let mut trade = Trade::default();
    let mut book = BookUpdate::default();
    let mut interval = 0u64;
    let mut boundary = config.start_ns + config.interval_ns;
    let mut wait_ns = 0u64;
    let mut write_ns = 0u64;
    let mut interrupted = false;
    let mut now = clock.now();

    let ship = |index: u64,
                stats: &mut Vec<SourceStats>,
                wait_ns: &mut u64,
                write_ns: &mut u64,
                cut_ns: Option<u64>,
                emit: &mut dyn FnMut(Message)| {
        let fresh = spare
            .try_recv()
            .unwrap_or_else(|_| vec![SourceStats::default(); ids.len()]);
        let full = std::mem::replace(stats, fresh);
        let report = IntervalReport {
            thread: config.index,
            index,
            sources: ids.iter().copied().zip(full).collect(),
            wait_ns: std::mem::take(wait_ns),
            write_ns: std::mem::take(write_ns),
            cut_ns,
        };
        emit(Message::Interval(report));
    };

    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let Some(&Reverse((due, idx))) = heap.peek() else {
            break;
        };
        if due >= config.end_ns || now >= config.end_ns {
            break;
        }
        if now >= boundary {
            ship(
                interval,
                &mut stats,
                &mut wait_ns,
                &mut write_ns,
                None,
                &mut emit,
            );
            interval = now.saturating_sub(config.start_ns) / config.interval_ns;
            boundary = config.start_ns + (interval + 1) * config.interval_ns;
        }
        if now < due {
            let target = due.min(boundary).min(now + MAX_WAIT_NS);
            let woke = pacer.wait_until(&mut clock, target);
            // Waiting for the first send time is not part of any interval.
            wait_ns += woke.saturating_sub(now.max(config.start_ns));
            now = woke;
            if now < due {
                for w in &mut works {
                    w.transport.idle();
                }
                continue;
            }
        }
        let source = &mut sources[idx];
        let work = &mut works[source.work];
        let (start, result) = match source.id.stream {
            Stream::Trades => {
                if !source.pending {
                    work.sim.next_trade(&mut trade);
                    trade.seal();
                }
                let start = clock.now();
                trade.send_ts_ns = start;
                (start, work.transport.send_trade(&trade))
            }
            Stream::Book => {
                if !source.pending {
                    work.sim.next_book_update(&mut book);
                    book.seal();
                }
                let start = clock.now();
                book.send_ts_ns = start;
                (start, work.transport.send_book(&book))
            }
        };
        let end = clock.now_after();
        let st = &mut stats[idx];
        st.latency.record(due, start, end);
        match result {
            Ok(()) => {
                st.counters.sent += 1;
                source.pending = false;
            }
            Err(SendError::BufferFull) => {
                st.counters.buffer_overflows += 1;
                source.pending = true;
            }
            Err(SendError::Failed) => st.counters.write_failures += 1,
        }
        write_ns += end.saturating_sub(start);
        source.schedule.advance();
        // Replacing the top in place costs one sift instead of a pop and a push.
        if let Some(mut top) = heap.peek_mut() {
            *top = Reverse((source.schedule.due(), idx));
        }
        now = end;
    }
    let cut = interrupted.then(|| now.saturating_sub(config.start_ns));
    ship(
        interval,
        &mut stats,
        &mut wait_ns,
        &mut write_ns,
        cut,
        &mut emit,
    );
    let cutoff = now.min(config.end_ns);
    let backlog = sources
        .iter_mut()
        .map(|s| (s.id, s.schedule.unsent_before(cutoff)))
        .collect();
    let digests = works
        .iter()
        .map(|w| {
            let n = w.sim.symbol_count();
            (
                w.id,
                (0..n)
                    .map(|s| (w.sim.published_version(s), w.sim.published_digest(s)))
                    .collect(),
            )
        })
        .collect();
    // The writers close when `works` drops, after the engine has the digests.
    emit(Message::Done(ThreadSummary {
        thread: config.index,
        backlog,
        interrupted,
        pin_error,
        digests,
    }));
    drop(works);
}

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("cannot pin to core {core}: {e}"))
}
