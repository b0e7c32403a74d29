//! The reading side: a process that attaches to every ring of a run, reads every record,
//! measures end-to-end latency and checks integrity. The load tester starts `--consumers` of
//! them (`load-tester read --protocol`); `load-tester read --run-dir DIR` runs one standalone
//! against any writer built on `alphapulse-bus`.
//!
//! End-to-end latency is the record's `send_ts_ns` (taken by the writer just before its write
//! call) to the moment this process has copied the record out of the ring, both on
//! `CLOCK_MONOTONIC`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alphapulse_bus::{
    checksum_of, BookUpdate, Manifest, Poll, Reader, RecordType, Side, StartAt, Trade, WriterStatus,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::Stream;
use crate::report::end::{CaptureOutcome, ReaderEnd, RingOutcome, StreamDelivery};
use crate::report::histogram::{encode, new_histogram};
use crate::report::timeline::Ticker;
use crate::report::{Integrity, IntervalReport, Kind, SourceId};
use crate::run::clock::{tsc_usable, Clock, ClockSource};
use crate::run::reader_wire::{Order, Position, Start, ToTester};
use crate::source::capture::format::{CaptureError, Header, FORMAT_NAME};
use crate::source::capture::writer::CaptureWriter;
use crate::source::market::{BookReplica, ReplicaError};

/// Name of the file, in the run directory, where the writer publishes the final book digests.
pub use alphapulse_bus::DIGESTS_NAME;

/// The final state of every book a writer published: `digests[exchange][symbol] = (version,
/// digest)`. A reader that applied every update holds the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// Per exchange id, per symbol id: (last published version, digest), or
    /// ([`NOT_COMPARED`], 0) for a symbol whose last update was never written.
    pub exchanges: BTreeMap<u16, Vec<(u64, u64)>>,
}

/// The version of a symbol in [`Digests`] whose book readers cannot have: its last update was
/// refused (backpressure, a full socket queue) when the run ended, so it was never written.
pub const NOT_COMPARED: u64 = u64::MAX;

/// How a reader process runs.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Core to pin to.
    pub pin_core: Option<usize>,
    /// Busy delay after each record, ns (a deliberately slow reader).
    pub delay_ns: u64,
    /// A writer silent this long counts as stopped.
    pub stale_after: Duration,
    /// Stop after this long even if writers are still open.
    pub max_duration: Option<Duration>,
    /// Record every record read into this capture file (created; never overwritten).
    pub record: Option<PathBuf>,
    /// Ship a 10 ms timeline and the ring positions with every report (a chaos run).
    pub timeline: bool,
    /// Resume where the reader this one replaces last reported: per ring, the sequence it
    /// wanted next. Records before it are skipped (that reader reported them); records after
    /// it that the ring no longer holds are counted lost.
    pub resume: Vec<Position>,
    /// Orders from the tester while the reader runs.
    pub control: Arc<ReaderControl>,
}

/// What the tester ordered a running reader to do ([`Order`]), read on every record.
///
/// Invariant: the reader busy-waits `extra_ns` more per record while its clock is below
/// `until_ns`.
#[derive(Debug, Default)]
pub struct ReaderControl {
    /// Extra busy delay per record, ns.
    extra_ns: AtomicU64,
    /// Until when, ns of `CLOCK_MONOTONIC`.
    until_ns: AtomicU64,
}

impl ReaderControl {
    /// Carries out `order`.
    pub fn order(&self, order: Order) {
        match order {
            Order::Slow { extra_ns, until_ns } => {
                self.until_ns.store(0, Ordering::Relaxed);
                self.extra_ns.store(extra_ns, Ordering::Relaxed);
                self.until_ns.store(until_ns, Ordering::Release);
            }
        }
    }

    /// The extra delay per record at `now`, ns.
    #[inline]
    fn extra_at(&self, now: u64) -> u64 {
        if now < self.until_ns.load(Ordering::Acquire) {
            self.extra_ns.load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

/// Why reading could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The run directory or a ring is unusable.
    #[error(transparent)]
    Bus(#[from] alphapulse_bus::Error),
    /// The run lists no ring.
    #[error("{0}: the run lists no ring")]
    Empty(String),
    /// The capture file cannot be created.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The run's datagram feed cannot be read.
    #[error("{0}")]
    Feed(String),
}

enum RingReader {
    Trades(Reader<Trade>, Vec<u64>),
    Book(Reader<BookUpdate>, BookReplica, Vec<bool>),
}

/// One ring as this reader follows it.
///
/// Invariants: `counts` holds everything counted since attaching and `shipped` the part of it
/// already sent in interval reports (`shipped <= counts` field by field); `e2e` holds the
/// end-to-end latencies of the records copied since the last report; `expected_seq` is the
/// sequence the next record should carry.
struct Ring {
    /// The ring's file name in the run directory, as the manifest lists it.
    file: String,
    /// The manifest's exchange id, and the stream of the ring's record type.
    id: SourceId,
    /// The reader, attached at the oldest record, with its per-symbol checking state.
    reader: RingReader,
    /// Everything counted since attaching; `published`, `accounted` and `unaccounted` are set
    /// only at the end.
    counts: Integrity,
    /// The part of `counts` already shipped in interval reports; `shipped <= counts`.
    shipped: Integrity,
    /// End-to-end latencies, ns, of the records copied since the last report (standard
    /// configuration).
    e2e: Histogram<u64>,
    /// The sequence the next record should carry: one past the last record's, plus what was
    /// lost since; starts at the reader's first sequence.
    expected_seq: u64,
    /// The writer's status at the last check; `Alive` until the first.
    writer: WriterStatus,
    /// The writer can write no more and a poll after that found nothing; the ring is not
    /// polled again.
    finished: bool,
    /// Largest end-to-end latency since the timeline's last slice closed, ns.
    max_e2e_ns: u64,
    /// Records with a sequence below this are skipped: the reader this one replaced had
    /// reported them (0: none).
    skip_below: u64,
    /// The sequence this reader accounts from in the current epoch: its first, or where the
    /// reader it replaced stopped.
    origin: u64,
    /// Published and accounted sequences of the epochs before the current one.
    earlier: (u64, u64),
    /// Times it followed the ring to a new epoch.
    epochs: u64,
}

fn status_name(s: WriterStatus) -> &'static str {
    match s {
        WriterStatus::Alive => "alive",
        WriterStatus::Closed => "closed",
        WriterStatus::Stale { .. } => "stale",
        WriterStatus::Dead => "dead",
        WriterStatus::Replaced => "replaced",
    }
}

/// Attaches to every ring listed in the manifest of `run_dir`, from the oldest record.
/// Attaches to `path` where this reader can read safely: for a writer still writing, at most
/// half a ring behind its latest record (an older slot is about to be overwritten, and starting
/// there would count as lost what was written before this reader came); for a writer that has
/// stopped, at the oldest record still in the ring.
fn attach_ring<R: alphapulse_bus::Record>(
    path: &Path,
    capacity: u64,
    stale_after: Duration,
    oldest: bool,
) -> Result<Reader<R>, ReadError> {
    if oldest {
        return Ok(Reader::attach(path, StartAt::Oldest)?);
    }
    let live = Reader::<R>::attach(path, StartAt::Behind(capacity / 2))?;
    Ok(match live.writer_status(stale_after) {
        WriterStatus::Alive => live,
        _ => {
            drop(live);
            Reader::attach(path, StartAt::Oldest)?
        }
    })
}

/// Attaches to every ring listed in the manifest of `run_dir` (see [`attach_ring`]; at the
/// oldest record if `oldest`: a reader that resumes wants everything the ring still holds).
fn attach(
    run_dir: &Path,
    stale_after: Duration,
    oldest: bool,
) -> Result<(Manifest, Vec<Ring>), ReadError> {
    let manifest = Manifest::read(run_dir)?;
    let symbols = manifest.symbols.len();
    let mut rings = Vec::new();
    for r in &manifest.rings {
        let path = run_dir.join(&r.file);
        let (stream, reader) = match r.record_type() {
            Some(RecordType::Trade) => (
                Stream::Trades,
                RingReader::Trades(
                    attach_ring(&path, r.capacity, stale_after, oldest)?,
                    vec![0; symbols],
                ),
            ),
            _ => {
                let reader: Reader<BookUpdate> =
                    attach_ring(&path, r.capacity, stale_after, oldest)?;
                // Joining mid-stream, a symbol's first update follows updates this reader never
                // saw: it resyncs the book (as after a loss) instead of counting a chain gap.
                let mid_stream = reader.first_sequence() > 1;
                (
                    Stream::Book,
                    RingReader::Book(reader, BookReplica::new(symbols), vec![mid_stream; symbols]),
                )
            }
        };
        let first = match &reader {
            RingReader::Trades(r, _) => r.first_sequence(),
            RingReader::Book(r, ..) => r.first_sequence(),
        };
        rings.push(Ring {
            file: r.file.clone(),
            id: SourceId {
                exchange: r.exchange_id,
                stream,
            },
            reader,
            counts: Integrity::default(),
            shipped: Integrity::default(),
            e2e: new_histogram(),
            expected_seq: first,
            writer: WriterStatus::Alive,
            finished: false,
            max_e2e_ns: 0,
            skip_below: 0,
            origin: first,
            earlier: (0, 0),
            epochs: 0,
        });
    }
    if rings.is_empty() {
        return Err(ReadError::Empty(run_dir.display().to_string()));
    }
    Ok((manifest, rings))
}

/// Busy-waits `ns` nanoseconds.
fn delay(clock: &mut Clock, ns: u64) {
    if ns > 0 {
        let until = clock.now() + ns;
        while clock.now() < until {
            std::hint::spin_loop();
        }
    }
}

impl Ring {
    /// Reads up to `batch` records; returns how many were taken (records or losses).
    /// Reads up to `batch` records, or until `halt` says to stop (checked between records, so
    /// that a slow reader still obeys a stop request or a time limit at once).
    #[allow(clippy::too_many_arguments)]
    fn poll(
        &mut self,
        batch: usize,
        clock: &mut Clock,
        delay_ns: u64,
        control: &ReaderControl,
        halt: &mut dyn FnMut(u64) -> bool,
        recorder: &mut Option<CaptureWriter>,
    ) -> usize {
        let e2e = &mut self.e2e;
        let max_e2e = &mut self.max_e2e_ns;
        let mut n = 0;
        while n < batch {
            match &mut self.reader {
                RingReader::Trades(r, trade_ids) => match r.try_read() {
                    Poll::Record(t) if t.sequence < self.skip_below => {}
                    Poll::Record(t) => {
                        record_e2e(e2e, max_e2e, clock.now_after(), t.send_ts_ns);
                        if let Some(w) = recorder {
                            w.push(self.id.exchange, Stream::Trades, bytemuck::bytes_of(&t));
                        }
                        check_trade(
                            &t,
                            self.id.exchange,
                            &mut self.expected_seq,
                            trade_ids,
                            &mut self.counts,
                        );
                    }
                    Poll::Empty => break,
                    Poll::Lost(k) => {
                        // What the reader this one replaced reported is not lost again, and a
                        // lap while skipping it leaves the next expected record at its end.
                        let next = r.next_sequence();
                        self.counts.lost += next.saturating_sub((next - k).max(self.skip_below));
                        self.expected_seq = next.max(self.skip_below);
                        // Trade ids of any symbol may jump now.
                        trade_ids.iter_mut().for_each(|id| *id = 0);
                    }
                },
                RingReader::Book(r, replica, resync) => match r.try_read() {
                    Poll::Record(u) if u.sequence < self.skip_below => {}
                    Poll::Record(u) => {
                        record_e2e(e2e, max_e2e, clock.now_after(), u.send_ts_ns);
                        if let Some(w) = recorder {
                            w.push(self.id.exchange, Stream::Book, bytemuck::bytes_of(&u));
                        }
                        check_book(
                            &u,
                            self.id.exchange,
                            &mut self.expected_seq,
                            replica,
                            resync,
                            &mut self.counts,
                        );
                    }
                    Poll::Empty => break,
                    Poll::Lost(k) => {
                        let next = r.next_sequence();
                        self.counts.lost += next.saturating_sub((next - k).max(self.skip_below));
                        self.expected_seq = next.max(self.skip_below);
                        // Any symbol's next update may follow a lost one.
                        resync.iter_mut().for_each(|r| *r = true);
                    }
                },
            }
            n += 1;
            let delay_ns = delay_ns + control.extra_at(clock.now());
            delay(clock, delay_ns);
            if delay_ns > 0 && halt(clock.now()) {
                break;
            }
        }
        n
    }

    /// Where the reader is: the ring, its epoch, the sequence it wants next.
    fn position(&self) -> Position {
        let (epoch, next) = match &self.reader {
            RingReader::Trades(r, _) => (r.epoch(), r.next_sequence()),
            RingReader::Book(r, ..) => (r.epoch(), r.next_sequence()),
        };
        Position {
            file: self.file.clone(),
            epoch,
            next,
        }
    }

    /// Resumes at `p`, where the reader this one replaces wanted its next record: what it
    /// reported is skipped, what the ring no longer holds is lost. A position in another
    /// epoch (the writer restarted since) is not this ring's and is ignored.
    fn resume(&mut self, p: &Position) {
        let here = self.position();
        if p.epoch != here.epoch {
            return;
        }
        let first = here.next;
        if first > p.next {
            self.counts.lost += first - p.next;
        } else {
            self.skip_below = p.next;
            self.expected_seq = p.next;
        }
        // The readers before this one accounted for every sequence before `p.next`, from the
        // first: this one accounts for the ring as if it had read it all along.
        self.origin = 1;
    }

    /// Follows the ring to the new epoch its path names now (a restarted writer), from the
    /// new ring's first record: the old ring must be drained. What the new writer wrote before
    /// this reader could attach and the ring no longer holds is lost.
    fn follow(&mut self, path: &Path) -> Result<(), ReadError> {
        let (published, next) = match &self.reader {
            RingReader::Trades(r, _) => (r.published(), r.next_sequence()),
            RingReader::Book(r, ..) => (r.published(), r.next_sequence()),
        };
        self.earlier.0 += published.saturating_sub(self.origin - 1);
        self.earlier.1 += next.saturating_sub(self.origin);
        let first = match &mut self.reader {
            RingReader::Trades(r, trade_ids) => {
                *r = Reader::attach(path, StartAt::Oldest)?;
                trade_ids.iter_mut().for_each(|id| *id = 0);
                r.first_sequence()
            }
            RingReader::Book(r, _, resync) => {
                *r = Reader::attach(path, StartAt::Oldest)?;
                resync.iter_mut().for_each(|x| *x = true);
                r.first_sequence()
            }
        };
        self.counts.lost += first - 1;
        self.origin = 1;
        self.skip_below = 0;
        self.expected_seq = first;
        self.epochs += 1;
        self.writer = WriterStatus::Alive;
        Ok(())
    }

    fn refresh_status(&mut self, stale_after: Duration) {
        self.writer = match &self.reader {
            RingReader::Trades(r, _) => r.writer_status(stale_after),
            RingReader::Book(r, ..) => r.writer_status(stale_after),
        };
    }

    fn stats(&self) -> alphapulse_bus::ReaderStats {
        match &self.reader {
            RingReader::Trades(r, _) => r.stats(),
            RingReader::Book(r, ..) => r.stats(),
        }
    }

    /// Moves what was counted and measured since the last report into `report`.
    fn ship_into(&mut self, report: &mut IntervalReport) {
        self.counts.torn = self.stats().torn;
        let out = report.sources.entry(self.id).or_default();
        out.reader.add(&self.counts.since(&self.shipped));
        self.shipped = self.counts;
        if !self.e2e.is_empty() {
            let _ = out.latency.get_mut(Kind::E2e).add(&self.e2e);
            self.e2e.reset();
        }
    }

    fn finish(&mut self, drained: bool) {
        let (stats, published, first, next) = match &self.reader {
            RingReader::Trades(r, _) => (
                r.stats(),
                r.published(),
                r.first_sequence(),
                r.next_sequence(),
            ),
            RingReader::Book(r, ..) => (
                r.stats(),
                r.published(),
                r.first_sequence(),
                r.next_sequence(),
            ),
        };
        self.counts.torn = stats.torn;
        let _ = first;
        // Sequences before the first one this reader saw (or, resumed, the one the reader it
        // replaced stopped at) are not its to account for.
        self.counts.published = self.earlier.0 + published.saturating_sub(self.origin - 1);
        self.counts.accounted = self.earlier.1 + next.saturating_sub(self.origin);
        if drained {
            self.counts.unaccounted = self.counts.published.abs_diff(self.counts.accounted);
        }
    }
}

/// Records the end-to-end latency of a record sent at `sent` and copied out at `now` into `h`,
/// and keeps the largest since the timeline's last slice in `max`.
#[inline]
pub(super) fn record_e2e(h: &mut Histogram<u64>, max: &mut u64, now: u64, sent: u64) {
    let e = now.saturating_sub(sent);
    h.saturating_record(e);
    *max = (*max).max(e);
}

pub(super) fn check_trade(
    t: &Trade,
    exchange: u16,
    expected: &mut u64,
    trade_ids: &mut [u64],
    c: &mut Integrity,
) {
    c.received += 1;
    if t.sequence != *expected {
        c.out_of_order += 1;
    }
    *expected = t.sequence.wrapping_add(1);
    let sym = t.symbol_id as usize;
    if t.checksum != checksum_of(t)
        || t.exchange_id != exchange
        || sym >= trade_ids.len()
        || Side::from_raw(t.side).is_none()
        || t.price <= 0
        || t.size <= 0
    {
        c.corrupted += 1;
        // A record that cannot be trusted is one missing from every chain it could be in.
        trade_ids.iter_mut().for_each(|id| *id = 0);
        return;
    }
    let last = trade_ids[sym];
    // 0: unknown (start, or after a loss); any id is accepted then.
    if last != 0 && t.trade_id != last + 1 {
        c.gaps += 1;
    }
    trade_ids[sym] = t.trade_id;
}

pub(super) fn check_book(
    u: &BookUpdate,
    exchange: u16,
    expected: &mut u64,
    replica: &mut BookReplica,
    resync: &mut [bool],
    c: &mut Integrity,
) {
    c.received += 1;
    if u.sequence != *expected {
        c.out_of_order += 1;
    }
    *expected = u.sequence.wrapping_add(1);
    if u.checksum != checksum_of(u) || u.exchange_id != exchange {
        c.corrupted += 1;
        // The update cannot be applied: every book it could be of resyncs, as after a loss.
        resync.iter_mut().for_each(|r| *r = true);
        return;
    }
    let sym = u.symbol_id as usize;
    match replica.apply(u) {
        Ok(()) => {}
        // After a lap, a symbol's next update may follow updates that were lost: expected.
        Err(ReplicaError::VersionGap { .. }) if resync.get(sym).copied().unwrap_or(false) => {}
        Err(ReplicaError::VersionGap { .. }) => c.gaps += 1,
        Err(ReplicaError::Level { .. }) => c.book_errors += 1,
        Err(_) => c.corrupted += 1,
    }
    if let Some(r) = resync.get_mut(sym) {
        *r = false;
    }
}

pub(super) fn pin(core: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        tracing::warn!("reader cannot pin to core {core}: {e}");
    }
}

/// The end of interval `index` of `start`, or `u64::MAX` for the last interval (which takes
/// everything copied after the run's end).
fn boundary_of(start: &Start, index: u64) -> u64 {
    if index + 1 >= start.intervals {
        u64::MAX
    } else {
        start
            .start_ns
            .saturating_add((index + 1).saturating_mul(start.interval_ns))
    }
}

/// Reads the run until every writer has closed (or died, or `stop` is set), reporting through
/// `emit` as it goes. Returns what the reader counted over its whole life (also emitted, with
/// the last interval's report).
///
/// Once attached to every ring it emits [`ToTester::Ready`] and calls `start`, which says when
/// interval 0 starts and how long intervals are (`None`: now, one-second intervals without end).
pub fn read_run(
    options: &ReadOptions,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&ToTester),
    start: &mut dyn FnMut() -> Option<Start>,
) -> Result<ReaderEnd, ReadError> {
    if let Some(core) = options.pin_core {
        pin(core);
    }
    let (manifest, mut rings) = attach(
        &options.run_dir,
        options.stale_after,
        !options.resume.is_empty(),
    )?;
    for ring in &mut rings {
        if let Some(p) = options.resume.iter().find(|p| p.file == ring.file) {
            ring.resume(p);
        }
    }
    let mut recorder = match &options.record {
        Some(path) => Some(CaptureWriter::create(
            path,
            &Header {
                format: FORMAT_NAME.into(),
                tool: format!("load-tester {}", env!("CARGO_PKG_VERSION")),
                created_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                exchanges: manifest.exchanges.clone(),
                symbols: manifest.symbols.clone(),
                origin: format!("run {}", manifest.run_id),
                clock: "monotonic".into(),
            },
            crate::run::placement::lower_this_thread,
        )?),
        None => None,
    };
    let pid = std::process::id();
    emit(&ToTester::Ready {
        pid,
        rings: rings.len(),
        listen: None,
    });
    let mut clock = Clock::new(if tsc_usable() {
        ClockSource::Tsc
    } else {
        ClockSource::Monotonic
    });
    let start = start().unwrap_or_else(|| Start {
        start_ns: clock.now(),
        interval_ns: 1_000_000_000,
        intervals: u64::MAX,
    });
    let streams = [Stream::Trades, Stream::Book];
    let mut totals: BTreeMap<Stream, Histogram<u64>> =
        streams.iter().map(|&s| (s, new_histogram())).collect();
    let mut index = start.index_of(clock.now());
    let mut boundary = boundary_of(&start, index);
    let mut report = IntervalReport::empty(index, start.interval_ns);
    let mut ticker = options
        .timeline
        .then(|| Ticker::new(start.start_ns, clock.now()));
    // Closes the timeline's slice in progress once its time is over (or now, at the end).
    let tick = |ticker: &mut Option<Ticker>, rings: &mut [Ring], now: u64, force: bool| {
        if let Some(t) = ticker.as_mut().filter(|t| force || t.due(now)) {
            t.close_sources(
                now,
                rings
                    .iter_mut()
                    .map(|r| (r.counts, std::mem::take(&mut r.max_e2e_ns), r.epochs)),
            );
        }
    };
    let progress = |ticker: &mut Option<Ticker>, rings: &[Ring]| {
        ticker.as_mut().map(|t| ToTester::Progress {
            timeline: t.take(),
            positions: rings.iter().map(Ring::position).collect(),
        })
    };
    let mut next_status = 0u64;
    let deadline = options
        .max_duration
        .map(|d| clock.now() + d.as_nanos() as u64);
    let ship = |rings: &mut [Ring],
                report: &mut IntervalReport,
                totals: &mut BTreeMap<Stream, Histogram<u64>>| {
        for ring in rings.iter_mut() {
            if !ring.e2e.is_empty() {
                let _ = totals
                    .get_mut(&ring.id.stream)
                    .expect("both streams present")
                    .add(&ring.e2e);
            }
            ring.ship_into(report);
        }
    };
    let mut halt = |now: u64| stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d);
    let ended;
    loop {
        let mut taken = 0;
        for ring in rings.iter_mut().filter(|r| !r.finished) {
            taken += ring.poll(
                64,
                &mut clock,
                options.delay_ns,
                &options.control,
                &mut halt,
                &mut recorder,
            );
        }
        let now = clock.now();
        tick(&mut ticker, &mut rings, now, false);
        if now >= boundary {
            ship(&mut rings, &mut report, &mut totals);
            if let Some(m) = progress(&mut ticker, &rings) {
                emit(&m);
            }
            let message = ToTester::Interval { report };
            emit(&message);
            let ToTester::Interval { report: done } = message else {
                unreachable!("built above")
            };
            report = done;
            index = start.index_of(now);
            boundary = boundary_of(&start, index);
            report.reset(index);
        }
        // Idle, or told to stop: a slow reader may never be idle.
        if (taken == 0 || halt(now)) && now >= next_status {
            next_status = now + 20_000_000;
            for ring in rings.iter_mut().filter(|r| !r.finished) {
                ring.refresh_status(options.stale_after);
                // A ring is done once its writer can write no more and it is drained (this
                // poll found nothing after the status said so).
                if matches!(
                    ring.writer,
                    WriterStatus::Closed | WriterStatus::Dead | WriterStatus::Replaced
                ) && ring.poll(
                    usize::MAX,
                    &mut clock,
                    options.delay_ns,
                    &options.control,
                    &mut halt,
                    &mut recorder,
                ) == 0
                {
                    // A new ring under the same name (a restarted writer): read on there.
                    let path = options.run_dir.join(&ring.file);
                    if ring.writer != WriterStatus::Replaced || ring.follow(&path).is_err() {
                        ring.finished = true;
                    }
                }
            }
            if rings.iter().all(|r| r.finished) {
                ended = if rings
                    .iter()
                    .any(|r| matches!(r.writer, WriterStatus::Dead | WriterStatus::Replaced))
                {
                    "writer died"
                } else {
                    "writers closed"
                };
                break;
            }
            if stop.load(Ordering::Relaxed) {
                ended = "stopped";
                break;
            }
            if deadline.is_some_and(|d| now >= d) {
                ended = "time limit";
                break;
            }
        }
    }
    for ring in &mut rings {
        ring.finish(ended != "stopped" && ended != "time limit");
    }
    let digests_compared =
        ended == "writers closed" && compare_digests(&options.run_dir, &mut rings);
    // The last interval: what was copied since the last report, and the counts that are only
    // known now.
    ship(&mut rings, &mut report, &mut totals);
    tick(&mut ticker, &mut rings, clock.now(), true);
    if let Some(m) = progress(&mut ticker, &rings) {
        emit(&m);
    }
    let mut per_stream: BTreeMap<Stream, Integrity> = BTreeMap::new();
    for ring in &rings {
        per_stream
            .entry(ring.id.stream)
            .or_default()
            .add(&ring.counts);
    }
    let capture = recorder.map(|w| {
        let lost = rings.iter().map(|r| r.counts.lost).sum();
        let path = options
            .record
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match w.finish() {
            Ok(s) => CaptureOutcome {
                path,
                records: s.records,
                bytes: s.bytes,
                lost,
                backwards: s.backwards,
                error: None,
            },
            Err(e) => CaptureOutcome {
                path,
                records: 0,
                bytes: 0,
                lost,
                backwards: 0,
                error: Some(e.to_string()),
            },
        }
    });
    let end = ReaderEnd {
        capture,
        foreign_datagrams: 0,
        pid,
        streams: deliveries(&totals, &per_stream),
        rings: rings
            .iter()
            .map(|r| RingOutcome {
                file: r.file.clone(),
                stream: r.id.stream,
                integrity: r.counts,
                writer: status_name(r.writer).into(),
                started_at: match &r.reader {
                    RingReader::Trades(r, _) => r.first_sequence(),
                    RingReader::Book(r, ..) => r.first_sequence(),
                },
            })
            .collect(),
        ended: ended.into(),
        digests_compared,
    };
    emit(&ToTester::Final {
        report,
        end: Box::new(end.clone()),
    });
    Ok(end)
}

/// Both streams' end-to-end latencies (`totals`) and counts (`per_stream`, summed over their
/// rings or sessions) as a reader's end reports them; both keys always present.
pub(super) fn deliveries(
    totals: &BTreeMap<Stream, Histogram<u64>>,
    per_stream: &BTreeMap<Stream, Integrity>,
) -> BTreeMap<Stream, StreamDelivery> {
    Stream::ALL
        .iter()
        .map(|s| {
            (
                *s,
                StreamDelivery {
                    e2e: totals.get(s).map(encode).unwrap_or_default(),
                    integrity: per_stream.get(s).copied().unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// Compares every synced book with the writer's final digests, waiting up to 3 s for the
/// writer to publish them. Returns whether they were found.
fn compare_digests(run_dir: &Path, rings: &mut [Ring]) -> bool {
    let Some(digests) = load_digests(run_dir) else {
        return false;
    };
    for ring in rings.iter_mut() {
        if let RingReader::Book(_, replica, _) = &ring.reader {
            check_digests(&digests, ring.id.exchange, replica, &mut ring.counts);
        }
    }
    true
}

/// The writer's final digests, waiting up to 3 s for it to publish them.
pub(super) fn load_digests(run_dir: &Path) -> Option<Digests> {
    let path = run_dir.join(DIGESTS_NAME);
    let until = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(d) = serde_json::from_str(&text) {
                return Some(d);
            }
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Compares exchange `exchange`'s synced books in `replica` with `digests`, counting into
/// `counts` (nothing is compared after a loss: the books are not whole).
pub(super) fn check_digests(
    digests: &Digests,
    exchange: u16,
    replica: &BookReplica,
    counts: &mut Integrity,
) {
    let Some(expected) = digests.exchanges.get(&exchange) else {
        return;
    };
    for (sym, &(version, digest)) in expected.iter().enumerate() {
        let sym = sym as u32;
        // A symbol that went out of sync after a loss cannot be compared, nor one whose last
        // update the writer never wrote.
        if version == NOT_COMPARED
            || !replica.is_synced(sym)
            || counts.lost > 0
            || counts.corrupted > 0
        {
            continue;
        }
        counts.digests_checked += 1;
        if replica.version(sym) != version || replica.digest(sym) != digest {
            counts.digest_mismatches += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::report::Integrity;
    use crate::run::consumer::{check_digests, Digests, NOT_COMPARED};
    use crate::source::market::{BookReplica, ExchangeSim};
    use alphapulse_bus::BookUpdate;

    #[test]
    fn a_book_whose_last_update_was_never_written_is_not_compared() {
        let mut sim = ExchangeSim::new(0, 2, 5);
        let mut replica = BookReplica::new(2);
        let mut u = BookUpdate::default();
        for _ in 0..200 {
            sim.next_book_update(&mut u);
            replica.apply(&u).unwrap();
        }
        // One more update, made by the simulator but refused and never written.
        sim.next_book_update(&mut u);
        let unwritten = u.symbol_id;
        let digests = |marked: bool| Digests {
            exchanges: [(
                0,
                (0..2)
                    .map(|s| {
                        if marked && s == unwritten {
                            (NOT_COMPARED, 0)
                        } else {
                            (sim.published_version(s), sim.published_digest(s))
                        }
                    })
                    .collect(),
            )]
            .into(),
        };
        let mut counts = Integrity::default();
        check_digests(&digests(false), 0, &replica, &mut counts);
        assert_eq!((counts.digests_checked, counts.digest_mismatches), (2, 1));
        let mut counts = Integrity::default();
        check_digests(&digests(true), 0, &replica, &mut counts);
        assert_eq!((counts.digests_checked, counts.digest_mismatches), (1, 0));
    }
}
