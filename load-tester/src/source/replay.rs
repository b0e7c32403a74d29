//! Replaying a capture: [`ReplayFeed`] gives one source's recorded records and when each is
//! due, decoded ahead by a thread of its own; [`ReplayMarket`] turns them into a consistent
//! stream of the new run (its own trade ids, book versions and books).
//!
//! # Why each source has its own decoding thread
//!
//! A generator thread takes records in due order across its sources. Were one thread to decode
//! for several sources, it could wait to hand a chunk to a source whose queue is full while
//! the generator waits for a chunk of another: a deadlock that depends on how chunks of
//! different rates interleave in the file. A thread per source waits only on the disk and on
//! its own consumer. Memory per source: [`PREFETCH`] chunks queued, one being decoded, one
//! being replayed; their buffers go back to the decoder and are reused.
//!
//! # Why books are re-derived
//!
//! A replayed run is a new run: its readers check sequence numbers, trade ids, version chains
//! and final digests as in any other. The market keeps its own book per symbol and publishes
//! each recorded level change as what it means for that book ("this price now has this size"):
//! an update where the level exists, an insert where it does not (after deleting the opposite
//! levels it would cross), a delete where the size is 0 and the level exists, nothing where a
//! level that does not exist is deleted. Replayed from the start of a recorded run, that
//! reproduces the recorded changes exactly; from the middle of a stream, or from another
//! exchange's data, it stays consistent.

use std::fs::File;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use alphapulse_bus::{checksum_of, Action, BookUpdate, Level, Side, Trade, MAX_LEVELS};

use crate::plan::{ReplayPlan, Stream};
use crate::source::capture::format::{record_size, CaptureError, ChunkInfo};
use crate::source::capture::reader::CaptureFile;
use crate::source::market::Book;

/// Decoded chunks queued ahead of a source's generator.
pub const PREFETCH: usize = 2;

/// What a decoding thread hands its feed: a chunk's records in the window, and the loop
/// iteration they belong to.
type Decoded = Result<(Vec<u8>, u64), CaptureError>;

/// One source's records and their due times, in recorded order.
///
/// Invariants: `pos` is a multiple of `size` and below `chunk.len()` while `due != u64::MAX`;
/// `due` is the due time of the record at `pos`; `u64::MAX` once the feed is exhausted (the
/// window ended without `looped`, or the decoder failed: then `error` says why).
pub struct ReplayFeed {
    /// Decoded chunks, in order.
    rx: Receiver<Decoded>,
    /// Where a consumed chunk's buffer goes back to its decoder.
    back: std::sync::mpsc::Sender<Vec<u8>>,
    /// The current chunk's records.
    chunk: Vec<u8>,
    /// Loop iteration of the current chunk.
    iteration: u64,
    /// Byte offset of the current record in `chunk`.
    pos: usize,
    /// Bytes per record of this stream.
    size: usize,
    /// The replay's timing; fixed.
    plan: ReplayPlan,
    /// Start of the run (the window's first record in iteration 0), ns.
    start_ns: u64,
    /// Due time of the current record, ns; `u64::MAX`: none.
    due: u64,
    /// Records scheduled so far (the index of the current record).
    scheduled: u64,
    /// Why the feed ended early, if it did.
    error: Option<CaptureError>,
}

/// Starts a decoding thread for each of `sources` of `capture` and returns their feeds, in the
/// same order; a source without records in the window gets `None`. Each thread first calls
/// `on_start` (the engine sets its scheduling there: each needs only a small share of a core,
/// bounded by the replay's rate, but must get it, or the generator waits for its chunks).
pub fn feeds(
    capture: &Arc<CaptureFile>,
    plan: &ReplayPlan,
    start_ns: u64,
    sources: &[(u16, Stream)],
    on_start: fn(),
) -> Vec<Option<ReplayFeed>> {
    sources
        .iter()
        .map(|&(exchange, stream)| {
            let source = capture.sources.get(&(exchange, stream))?;
            let chunks: Vec<ChunkInfo> = source
                .chunks
                .iter()
                .filter(|c| c.last_ts >= plan.from_ns && c.first_ts < plan.to_ns)
                .copied()
                .collect();
            if chunks.is_empty() {
                return None;
            }
            let (tx, rx) = sync_channel::<Decoded>(PREFETCH);
            // Buffers the feed is done with come back, so that steady state allocates nothing
            // (and no allocator arena grows with thread after thread's chunks).
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let capture = Arc::clone(capture);
            let window = (plan.from_ns, plan.to_ns, plan.looped);
            let symbols = capture.header.symbols.len();
            let spawned = std::thread::Builder::new()
                .name(format!("replay-{exchange}-{}", stream.name()))
                .spawn(move || {
                    on_start();
                    let fail = |problem: String, offset: Option<u64>| CaptureError {
                        path: capture.path.display().to_string(),
                        offset,
                        problem,
                    };
                    let opened = File::open(&capture.path)
                        .map_err(|e| fail(format!("cannot open: {e}"), None))
                        .and_then(|f| {
                            zstd::bulk::Decompressor::new()
                                .map(|d| (f, d))
                                .map_err(|e| fail(format!("cannot start zstd: {e}"), None))
                        });
                    let (mut file, mut decompressor) = match opened {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let (from, to, looped) = window;
                    let mut compressed = Vec::new();
                    for iteration in 0.. {
                        let mut sent_any = false;
                        for c in &chunks {
                            let mut records = back_rx.try_recv().unwrap_or_default();
                            let decoded = capture
                                .read_chunk_into(
                                    &mut file,
                                    c,
                                    &mut compressed,
                                    &mut records,
                                    &mut decompressor,
                                )
                                .and_then(|()| {
                                    check_and_trim(&mut records, c, symbols, from, to)
                                        .map_err(|problem| fail(problem, Some(c.offset)))
                                });
                            let failed = decoded.is_err();
                            let sent = match decoded {
                                Ok(()) if records.is_empty() => true,
                                Ok(()) => {
                                    sent_any = true;
                                    tx.send(Ok((records, iteration))).is_ok()
                                }
                                Err(e) => tx.send(Err(e)).is_ok(),
                            };
                            // The feed is gone (the run ended) or was told why it must end.
                            if !sent || failed {
                                return;
                            }
                        }
                        // A window where this source has no record: looping would spin.
                        if !looped || !sent_any {
                            return;
                        }
                    }
                });
            let mut feed = ReplayFeed {
                rx,
                back: back_tx,
                chunk: Vec::new(),
                iteration: 0,
                pos: 0,
                size: record_size(stream),
                plan: plan.clone(),
                start_ns,
                due: u64::MAX,
                scheduled: 0,
                error: None,
            };
            if let Err(e) = spawned {
                feed.error = Some(CaptureError {
                    path: plan.file.clone(),
                    offset: None,
                    problem: format!("cannot start a decoding thread: {e}"),
                });
                return Some(feed);
            }
            feed.next_chunk();
            Some(feed)
        })
        .collect()
}

/// Checks every record of a decoded chunk (bytes from a file are not trusted) and keeps, in
/// place, the ones recorded in `[from, to)`.
fn check_and_trim(
    raw: &mut Vec<u8>,
    chunk: &ChunkInfo,
    symbols: usize,
    from: u64,
    to: u64,
) -> Result<(), String> {
    let size = record_size(chunk.stream);
    let mut kept = 0;
    let mut last = chunk.first_ts;
    for i in 0..raw.len() / size {
        let r = &raw[i * size..(i + 1) * size];
        let bad = |what: String| format!("record {i} of the chunk: {what}");
        let ts = u64::from_le_bytes(r[8..16].try_into().expect("16 bytes"));
        if ts < last || ts > chunk.last_ts {
            return Err(bad(format!(
                "time {ts} is out of order (previous {last}, chunk ends {})",
                chunk.last_ts
            )));
        }
        last = ts;
        match chunk.stream {
            Stream::Trades => {
                let t: Trade = bytemuck::pod_read_unaligned(r);
                if t.checksum != checksum_of(&t) {
                    return Err(bad("its checksum does not match its bytes".into()));
                }
                if t.exchange_id != chunk.exchange {
                    return Err(bad(format!(
                        "exchange {} in a chunk of exchange {}",
                        t.exchange_id, chunk.exchange
                    )));
                }
                if t.symbol_id as usize >= symbols {
                    return Err(bad(format!("symbol {} is not in the header", t.symbol_id)));
                }
                if Side::from_raw(t.side).is_none() || t.price <= 0 || t.size <= 0 {
                    return Err(bad(format!(
                        "side {}, price {}, size {}: a trade needs side 1 or 2 and a positive price and size",
                        t.side, t.price, t.size
                    )));
                }
            }
            Stream::Book => {
                let u: BookUpdate = bytemuck::pod_read_unaligned(r);
                if u.checksum != checksum_of(&u) {
                    return Err(bad("its checksum does not match its bytes".into()));
                }
                if u.exchange_id != chunk.exchange {
                    return Err(bad(format!(
                        "exchange {} in a chunk of exchange {}",
                        u.exchange_id, chunk.exchange
                    )));
                }
                if u.symbol_id as usize >= symbols {
                    return Err(bad(format!("symbol {} is not in the header", u.symbol_id)));
                }
                if usize::from(u.level_count) > MAX_LEVELS {
                    return Err(bad(format!(
                        "{} levels (at most {MAX_LEVELS})",
                        u.level_count
                    )));
                }
                for l in &u.levels[..usize::from(u.level_count)] {
                    if Side::from_raw(l.side).is_none()
                        || Action::from_raw(l.action).is_none()
                        || l.price <= 0
                        || l.size < 0
                    {
                        return Err(bad(format!(
                            "level side {} action {} price {} size {} is not a level change",
                            l.side, l.action, l.price, l.size
                        )));
                    }
                }
            }
        }
        if (from..to).contains(&ts) {
            raw.copy_within(i * size..(i + 1) * size, kept * size);
            kept += 1;
        }
    }
    raw.truncate(kept * size);
    Ok(())
}

impl ReplayFeed {
    /// Moves to the next chunk (waiting for its decoder), or ends the feed.
    fn next_chunk(&mut self) {
        self.pos = 0;
        match self.rx.recv() {
            Ok(Ok((records, iteration))) => {
                let done = std::mem::replace(&mut self.chunk, records);
                if done.capacity() > 0 {
                    // A decoder that has ended no longer takes buffers back.
                    let _ = self.back.send(done);
                }
                self.iteration = iteration;
                self.due = self.due_of_current();
            }
            Ok(Err(e)) => {
                self.chunk.clear();
                self.error = Some(e);
                self.due = u64::MAX;
            }
            Err(_) => {
                self.chunk.clear();
                self.due = u64::MAX;
            }
        }
    }

    fn due_of_current(&self) -> u64 {
        let r = &self.chunk[self.pos..self.pos + self.size];
        let ts = u64::from_le_bytes(r[8..16].try_into().expect("16 bytes"));
        self.start_ns
            .saturating_add(self.plan.offset_ns(ts, self.iteration))
    }

    /// Sets the run's start (the window's first record's due time in iteration 0): feeds are
    /// made, and their first chunks decoded, before the start time is chosen.
    pub fn set_start(&mut self, start_ns: u64) {
        self.start_ns = start_ns;
        if self.due != u64::MAX {
            self.due = self.due_of_current();
        }
    }

    /// The intended time of the current record (`u64::MAX`: none).
    #[inline]
    pub fn due(&self) -> u64 {
        self.due
    }

    /// The current record's bytes, as the bus stores it; empty when the feed has ended.
    #[inline]
    pub fn current(&self) -> &[u8] {
        if self.due == u64::MAX {
            &[]
        } else {
            &self.chunk[self.pos..self.pos + self.size]
        }
    }

    /// Moves to the following record; at the end of a chunk, waits for the next (decoded
    /// [`PREFETCH`] chunks ahead, so normally at once).
    #[inline]
    pub fn advance(&mut self) {
        if self.due == u64::MAX {
            return;
        }
        self.scheduled += 1;
        self.pos += self.size;
        if self.pos >= self.chunk.len() {
            self.next_chunk();
        } else {
            self.due = self.due_of_current();
        }
    }

    /// Records scheduled so far.
    pub fn scheduled(&self) -> u64 {
        self.scheduled
    }

    /// Why the feed ended before its window did, if it did: the capture turned bad.
    pub fn error(&self) -> Option<&CaptureError> {
        self.error.as_ref()
    }
}

impl std::fmt::Debug for ReplayFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayFeed")
            .field("due", &self.due)
            .field("scheduled", &self.scheduled)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// One symbol of a replayed exchange.
#[derive(Debug, Clone)]
struct ReplaySymbol {
    /// The book as published in this run.
    book: Book,
    /// Last published version.
    version: u64,
    /// Last trade id.
    trade_id: u64,
}

/// One exchange of a replay: re-sequences recorded records into this run's stream (see the
/// [module docs](self)).
///
/// Invariant: `symbols[s].book` is what a reader holds after applying every book update
/// published for symbol `s` so far, and `symbols[s].version` the last one's version.
#[derive(Debug, Clone)]
pub struct ReplayMarket {
    /// The `exchange_id` of every record; fixed.
    exchange_id: u16,
    /// Per symbol id.
    symbols: Vec<ReplaySymbol>,
    /// Recorded level changes that had no effect (a delete of a level this book does not have)
    /// or did not fit in the update (its opposite levels to delete first took the room).
    dropped_levels: u64,
}

fn level(side: Side, action: Action, price: i64, size: i64) -> Level {
    Level {
        price,
        size,
        side: side as u8,
        action: action as u8,
        reserved: [0; 6],
    }
}

impl ReplayMarket {
    /// A market of `symbol_count` symbols, every book empty.
    pub fn new(exchange_id: u16, symbol_count: u32) -> Self {
        Self {
            exchange_id,
            symbols: (0..symbol_count)
                .map(|_| ReplaySymbol {
                    book: Book::new(),
                    version: 0,
                    trade_id: 0,
                })
                .collect(),
            dropped_levels: 0,
        }
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> u32 {
        self.symbols.len() as u32
    }

    /// Fills `out` (all but `sequence`, `send_ts_ns`, `checksum`) from the recorded trade
    /// `recorded` (checked by the feed: a known symbol, a side, positive price and size).
    #[inline]
    pub fn trade(&mut self, recorded: &[u8], out: &mut Trade) {
        let t: Trade = bytemuck::pod_read_unaligned(recorded);
        let Some(s) = self.symbols.get_mut(t.symbol_id as usize) else {
            return;
        };
        s.trade_id += 1;
        out.exchange_id = self.exchange_id;
        out.side = t.side;
        out.reserved0 = 0;
        out.symbol_id = t.symbol_id;
        out.trade_id = s.trade_id;
        out.price = t.price;
        out.size = t.size;
        out.book_version = s.version;
    }

    /// Fills `out` (all but `sequence`, `send_ts_ns`, `checksum`) from the recorded book update
    /// `recorded` (checked by the feed), as changes to this run's book of its symbol.
    #[inline]
    pub fn book_update(&mut self, recorded: &[u8], out: &mut BookUpdate) {
        let u: BookUpdate = bytemuck::pod_read_unaligned(recorded);
        let Some(s) = self.symbols.get_mut(u.symbol_id as usize) else {
            return;
        };
        let mut k = 0;
        let mut dropped = 0;
        for l in &u.levels[..usize::from(u.level_count).min(MAX_LEVELS)] {
            let Some(side) = Side::from_raw(l.side) else {
                dropped += 1;
                continue;
            };
            let size = if l.action == Action::Delete as u8 {
                0
            } else {
                l.size
            };
            let exists = s.book.size_at(side, l.price).is_some();
            let mut changes: [Option<Level>; MAX_LEVELS] = [None; MAX_LEVELS];
            let mut n = 0;
            if exists {
                let action = if size == 0 {
                    Action::Delete
                } else {
                    Action::Update
                };
                changes[0] = Some(level(side, action, l.price, size));
                n = 1;
            } else if size > 0 {
                // Opposite levels the insert would cross go first, best first.
                let opposite = match side {
                    Side::Buy => Side::Sell,
                    Side::Sell => Side::Buy,
                };
                for price in s.book.crossed_by(side, l.price).take(MAX_LEVELS - 1) {
                    changes[n] = Some(level(opposite, Action::Delete, price, 0));
                    n += 1;
                }
                changes[n] = Some(level(side, Action::Insert, l.price, size));
                n += 1;
            }
            if n == 0 || k + n > MAX_LEVELS {
                dropped += 1;
                continue;
            }
            for c in changes.iter().flatten() {
                if s.book.apply(c).is_ok() {
                    out.levels[k] = *c;
                    k += 1;
                } else {
                    // An insert still crossing levels beyond the room to delete them.
                    dropped += 1;
                }
            }
        }
        self.dropped_levels += dropped;
        out.levels[k..].fill(Level::default());
        out.exchange_id = self.exchange_id;
        out.level_count = k as u8;
        out.reserved0 = 0;
        out.symbol_id = u.symbol_id;
        out.prev_version = s.version;
        s.version += 1;
        out.version = s.version;
        out.reserved1 = [0; 2];
    }

    /// The last published version of `symbol_id` (0 if never published or out of range).
    pub fn published_version(&self, symbol_id: u32) -> u64 {
        self.symbols
            .get(symbol_id as usize)
            .map_or(0, |s| s.version)
    }

    /// [`Book::digest`] of `symbol_id`'s book as published (an empty book's if out of range).
    pub fn published_digest(&self, symbol_id: u32) -> u64 {
        self.symbols
            .get(symbol_id as usize)
            .map_or_else(|| Book::new().digest(), |s| s.book.digest())
    }

    /// Recorded level changes that were dropped (see the field).
    pub fn dropped_levels(&self) -> u64 {
        self.dropped_levels
    }
}

#[cfg(test)]
mod tests;
