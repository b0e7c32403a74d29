//! The single producer of a ring.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::clock::now_ns;
use crate::error::WriteError;
use crate::layout::{
    reader_slot, MAX_READERS, OFF_WRITER_HEARTBEAT, OFF_WRITER_STATE, WRITER_CLOSED,
};
use crate::protocol;
use crate::record::Record;
use crate::ring::{pid_alive, ReaderSlot, RingFile, WriterMode};

/// How often, in writes, the writer refreshes its heartbeat on its own.
const HEARTBEAT_EVERY: u32 = 1024;
/// Least time between two liveness checks of the readers that block a backpressure write.
const LIVENESS_CHECK_NS: u64 = 10_000_000;
/// Default time after which a silent reader counts as dead for backpressure.
pub const DEFAULT_READER_STALE_NS: u64 = 1_000_000_000;

/// The single producer of one ring.
///
/// There is exactly one `Writer` per ring file: it is created together with the file (see
/// [`crate::RunDir::create_ring`]) and holds an exclusive `flock` on it for its whole life, which
/// is how readers and `clean` tell a live writer from a dead one, whatever happened to its pid.
/// Dropping it marks the ring closed; the file itself belongs to the run directory.
///
/// Invariants: `next_seq` is one more than the last published sequence; in backpressure mode
/// `gate` is a lower bound of the cursor of every live registered reader and at most the
/// `next_seq` it was computed at (so it also bounds readers that register later at the latest
/// record), so a write of sequence `s` with `s - capacity < gate` cannot overwrite an unread
/// record.
pub struct Writer<R: Record> {
    /// The ring this writer created; its file holds the writer's exclusive `flock`.
    ring: RingFile<R>,
    /// The sequence the next write gets: the ring's cursor plus one; starts at 1 and grows by
    /// one per successful write only.
    next_seq: u64,
    /// Backpressure only: cached lower bound of the live readers' cursors (see above), at most
    /// the `next_seq` it was computed at; 0 until first computed, always 0 in overwrite mode.
    gate: u64,
    /// Successful writes since the last heartbeat; below `HEARTBEAT_EVERY` between calls.
    since_heartbeat: u32,
    /// `CLOCK_MONOTONIC` ns of the last eviction pass (0 before the first); passes are at
    /// least `LIVENESS_CHECK_NS` apart.
    last_liveness_ns: u64,
    /// Heartbeat age, ns, above which a reader that blocks a write is evicted as dead;
    /// [`DEFAULT_READER_STALE_NS`] unless set.
    reader_stale_ns: u64,
}

impl<R: Record> Writer<R> {
    pub(crate) fn new(ring: RingFile<R>) -> Self {
        Self {
            ring,
            next_seq: 1,
            gate: 0,
            since_heartbeat: 0,
            last_liveness_ns: 0,
            reader_stale_ns: DEFAULT_READER_STALE_NS,
        }
    }

    /// Publishes `record` as the next sequence and returns that sequence.
    ///
    /// The record's `sequence` field is ignored and replaced; everything else, send timestamp and
    /// checksum included, is written as given. In [`WriterMode::Overwrite`] this never fails and
    /// never waits. In [`WriterMode::Backpressure`] it returns [`WriteError::BufferFull`], having
    /// written nothing, when the write would overwrite a record that a live registered reader
    /// has not read.
    #[inline]
    pub fn write(&mut self, record: &R) -> Result<u64, WriteError> {
        let seq = self.next_seq;
        let capacity = self.ring.geo.capacity;
        if self.ring.geo.mode == WriterMode::Backpressure && seq > capacity {
            self.check_gate(seq - capacity)?;
        }
        let words: &[u64] = bytemuck::cast_slice(std::slice::from_ref(record));
        let slot = self
            .ring
            .map
            .slot((seq & self.ring.geo.mask) as usize, R::WORDS);
        protocol::write_slot(slot, seq, words);
        self.ring.cursor().store(seq, Ordering::Release);
        self.next_seq = seq + 1;
        self.since_heartbeat += 1;
        if self.since_heartbeat >= HEARTBEAT_EVERY {
            self.heartbeat();
        }
        Ok(seq)
    }

    /// Ensures no live reader still needs sequence `overwritten`.
    #[cold]
    #[inline(never)]
    fn check_gate(&mut self, overwritten: u64) -> Result<(), WriteError> {
        if self.gate > overwritten {
            return Ok(());
        }
        let (mut gate, mut slowest) = self.slowest_reader();
        if gate <= overwritten {
            let now = now_ns();
            if now.saturating_sub(self.last_liveness_ns) >= LIVENESS_CHECK_NS {
                self.last_liveness_ns = now;
                self.evict_dead_readers(now, overwritten);
                (gate, slowest) = self.slowest_reader();
            }
        }
        // Never cache more than `next_seq`: a reader that registers later starts at or after it
        // (`StartAt::Latest`), so the cache stays a lower bound of its cursor too. Caching
        // `u64::MAX` (no reader registered) switched backpressure off for good.
        self.gate = gate.min(self.next_seq);
        if gate <= overwritten {
            return Err(WriteError::BufferFull {
                reader: slowest,
                lag: self.next_seq.saturating_sub(gate),
                capacity: self.ring.geo.capacity,
            });
        }
        Ok(())
    }

    fn slowest_reader(&self) -> (u64, usize) {
        let map = &self.ring.map;
        let mut min = (u64::MAX, usize::MAX);
        for i in 0..MAX_READERS {
            let owner = map
                .reader_field(i, reader_slot::OWNER)
                .load(Ordering::Acquire);
            if owner & 0xFFFF_FFFF == reader_slot::ACTIVE {
                let cursor = map
                    .reader_field(i, reader_slot::CURSOR)
                    .load(Ordering::Acquire);
                if cursor < min.0 {
                    min = (cursor, i);
                }
            }
        }
        min
    }

    fn evict_dead_readers(&self, now: u64, overwritten: u64) {
        let map = &self.ring.map;
        for i in 0..MAX_READERS {
            let owner_word = map.reader_field(i, reader_slot::OWNER);
            let owner = owner_word.load(Ordering::Acquire);
            if owner & 0xFFFF_FFFF != reader_slot::ACTIVE {
                continue;
            }
            if map
                .reader_field(i, reader_slot::CURSOR)
                .load(Ordering::Acquire)
                > overwritten
            {
                continue;
            }
            let heartbeat = map
                .reader_field(i, reader_slot::HEARTBEAT)
                .load(Ordering::Acquire);
            let stale = now.saturating_sub(heartbeat) > self.reader_stale_ns;
            if stale || !pid_alive((owner >> 32) as u32) {
                let evicted = (owner & !0xFFFF_FFFF) | reader_slot::EVICTED;
                // Losing this race means the reader changed its slot itself: it is alive.
                let _ = owner_word.compare_exchange(
                    owner,
                    evicted,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Sets how long a reader may stay silent before backpressure stops waiting for it
    /// (default [`DEFAULT_READER_STALE_NS`]).
    pub fn set_reader_stale_ns(&mut self, ns: u64) {
        self.reader_stale_ns = ns;
    }

    /// Refreshes the writer heartbeat that readers watch.
    ///
    /// [`Self::write`] does this every 1024 writes, so a writer that writes fewer than 1024
    /// records per staleness limit of its readers (they pass it to
    /// [`crate::Reader::writer_status`]; the load tester uses one second) must also call it
    /// on a timer, at least a few times per that limit.
    pub fn heartbeat(&mut self) {
        self.since_heartbeat = 0;
        self.ring
            .map
            .u64_at(OFF_WRITER_HEARTBEAT)
            .store(now_ns(), Ordering::Release);
    }

    /// The sequence the next write will get; `next_sequence() - 1` records were written.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// The ring's capacity in records.
    pub fn capacity(&self) -> u64 {
        self.ring.geo.capacity
    }

    /// The ring's writer mode.
    pub fn mode(&self) -> WriterMode {
        self.ring.geo.mode
    }

    /// The ring's epoch (see [`crate::Reader::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.ring.geo.epoch
    }

    /// The ring file.
    pub fn path(&self) -> &Path {
        &self.ring.path
    }

    /// A snapshot of the registered readers, as their slots show them.
    pub fn readers(&self) -> Vec<ReaderSlot> {
        self.ring.readers()
    }
}

impl<R: Record> Drop for Writer<R> {
    fn drop(&mut self) {
        self.heartbeat();
        self.ring
            .map
            .u64_at(OFF_WRITER_STATE)
            .store(WRITER_CLOSED, Ordering::Release);
    }
}
