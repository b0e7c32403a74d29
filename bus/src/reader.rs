//! A consumer of a ring, in any process.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::now_ns;
use crate::error::Error;
use crate::layout::{
    reader_slot, MAX_READERS, OFF_WRITER_HEARTBEAT, OFF_WRITER_PID, OFF_WRITER_STATE, WRITER_CLOSED,
};
use crate::protocol::{self, SlotRead};
use crate::record::Record;
use crate::ring::{pid_alive, writer_holds_lock, ReaderSlot, RingFile, WriterMode};

/// How often, in polls (records or empty), a reader refreshes its heartbeat and published
/// counters.
const PUBLISH_EVERY: u32 = 64;

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the oldest record still in the ring (sequence 1 if the writer has not wrapped yet).
    Oldest,
    /// After the last record published so far: only new records.
    Latest,
}

/// The outcome of [`Reader::try_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll<R> {
    /// The next record, intact and in order.
    Record(R),
    /// Nothing new yet.
    Empty,
    /// The writer lapped this reader: exactly this many sequences, immediately before the next
    /// one this reader will return, will never be returned. Most were overwritten before the
    /// reader got to them; up to `capacity / 16` more may still have been intact, skipped so
    /// that the reader resumes with room to catch up instead of being lapped again at once.
    Lost(u64),
}

/// What a reader knows of the ring's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStatus {
    /// It holds its lock and its heartbeat is fresh.
    Alive,
    /// It closed the ring cleanly: no record will follow the last published one.
    Closed,
    /// It holds its lock but has not refreshed its heartbeat for this long (stopped or hung).
    Stale {
        /// Nanoseconds since its last heartbeat.
        silent_ns: u64,
    },
    /// Its lock is free without a clean close: the writer process died.
    Dead,
    /// The path now names another ring (a new writer, a new epoch): this reader's ring will
    /// never receive another record; attach again to follow the new one.
    Replaced,
}

/// What a reader has counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Records returned.
    pub received: u64,
    /// Records lost to laps.
    pub lost: u64,
    /// Copies discarded because the writer overwrote the slot during the copy (each is also
    /// counted in `lost`).
    pub torn: u64,
    /// Times the writer evicted this reader as dead and it took its slot back.
    pub evictions: u64,
}

/// A consumer of one ring, registered in the ring's header.
///
/// Any number of readers, in any processes, read the same ring; each sees every record in order,
/// or is told exactly how many it lost. A reader never returns a torn record. Invariant: after
/// `try_read` returned, `received + lost == next - first`, where `next` is the sequence it wants
/// next and `first` the one it started at.
///
/// The reader's slot (pid, heartbeat, cursor, counters) is what the writer's backpressure and any
/// monitor see; it is released on drop.
pub struct Reader<R: Record> {
    /// The ring, opened and validated by this reader (so it holds no lock).
    ring: RingFile<R>,
    /// Index of this reader's slot in the header, `0..MAX_READERS`; fixed.
    slot: usize,
    /// `(pid << 32) | ACTIVE`: the owner word of the slot while this reader holds it (the
    /// writer may turn it into its `EVICTED` form, which [`Self::heartbeat`] takes back).
    owner: u64,
    /// The sequence the next `try_read` looks for: every earlier one since `first` was
    /// received or lost. The slot's cursor is stored equal to it whenever it changes.
    next: u64,
    /// The sequence `next` held at attach; fixed.
    first: u64,
    /// What was counted since attach: `received + lost == next - first`, `torn <= lost`.
    stats: ReaderStats,
    /// Polls (records or empty) since the last heartbeat; below `PUBLISH_EVERY` between calls.
    since_publish: u32,
    /// `stats.received` as the last heartbeat published it in the slot (0 before the first).
    published_received: u64,
}

impl<R: Record> Reader<R> {
    /// Opens the ring at `path`, validates it (see [`crate::Error`] for what is refused) and
    /// registers in a free reader slot, taking over the slot of a reader whose process is gone.
    pub fn attach(path: &Path, start: StartAt) -> Result<Self, Error> {
        let ring = RingFile::<R>::open(path)?;
        let pid = u64::from(std::process::id());
        let owner = (pid << 32) | reader_slot::ACTIVE;
        let cursor = ring.cursor().load(Ordering::Acquire);
        let next = match start {
            // Saturating: the cursor comes from shared memory and may be garbage.
            StartAt::Latest => cursor.saturating_add(1),
            StartAt::Oldest => cursor.saturating_sub(ring.geo.capacity) + 1,
        };
        let map = &ring.map;
        let now = now_ns();
        let claim = (pid << 32) | reader_slot::CLAIMING;
        for i in 0..MAX_READERS {
            let word = map.reader_field(i, reader_slot::OWNER);
            let current = word.load(Ordering::Acquire);
            let free =
                current & 0xFFFF_FFFF == reader_slot::FREE || !pid_alive((current >> 32) as u32);
            // Claim first, then initialize: a reader that loses the race for a slot never
            // touches the winner's fields, and the writer ignores a slot until it is ACTIVE.
            if !free
                || word
                    .compare_exchange(current, claim, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            for (field, value) in [
                (reader_slot::CURSOR, next),
                (reader_slot::HEARTBEAT, now),
                (reader_slot::ATTACHED_NS, now),
                (reader_slot::LOST, 0),
                (reader_slot::RECEIVED, 0),
                (reader_slot::TORN, 0),
            ] {
                map.reader_field(i, field).store(value, Ordering::Relaxed);
            }
            word.store(owner, Ordering::Release);
            return Ok(Self {
                ring,
                slot: i,
                owner,
                next,
                first: next,
                stats: ReaderStats::default(),
                since_publish: 0,
                published_received: 0,
            });
        }
        Err(Error::NoReaderSlot {
            path: path.to_owned(),
            max: MAX_READERS,
        })
    }

    /// Returns the next record, [`Poll::Empty`] when there is none yet, or [`Poll::Lost`] when
    /// the writer lapped this reader.
    ///
    /// Never blocks, never returns a torn record and never returns the same sequence twice.
    #[inline]
    pub fn try_read(&mut self) -> Poll<R> {
        let mut record = R::zeroed();
        let out: &mut [u64] = bytemuck::cast_slice_mut(std::slice::from_mut(&mut record));
        let slot = self
            .ring
            .map
            .slot((self.next & self.ring.geo.mask) as usize, R::WORDS);
        match protocol::read_slot(slot, self.next, out) {
            SlotRead::Ready => {
                self.next += 1;
                self.stats.received += 1;
                self.ring
                    .map
                    .reader_field(self.slot, reader_slot::CURSOR)
                    .store(self.next, Ordering::Release);
                self.since_publish += 1;
                if self.since_publish >= PUBLISH_EVERY {
                    self.heartbeat();
                }
                Poll::Record(record)
            }
            SlotRead::NotYet => {
                // Publish what was received as soon as the reader catches up, and keep an idle
                // reader's heartbeat fresh, so monitors and the writer can tell it from a
                // stopped one.
                self.since_publish += 1;
                if self.since_publish >= PUBLISH_EVERY
                    || self.published_received != self.stats.received
                {
                    self.heartbeat();
                }
                Poll::Empty
            }
            SlotRead::Overwritten { found } => Poll::Lost(self.skip_lapped(found)),
            SlotRead::Torn { found } => {
                self.stats.torn += 1;
                Poll::Lost(self.skip_lapped(found))
            }
        }
    }

    /// Moves past records the writer overwrote and returns how many were skipped (at least 1).
    #[cold]
    fn skip_lapped(&mut self, found: u64) -> u64 {
        let capacity = self.ring.geo.capacity;
        let published = self.ring.cursor().load(Ordering::Acquire).max(found);
        // The oldest sequence that may still be intact is `published - capacity + 1`, but the
        // writer is about to overwrite it; resuming a sixteenth of the ring later gives the
        // reader room to catch up instead of being lapped again at once. Every skipped sequence
        // is counted as lost, so the choice affects how much is lost, never the accounting.
        let resume = published
            .saturating_sub(capacity)
            .saturating_add(1 + capacity / 16)
            .min(published)
            .max(self.next + 1);
        let lost = resume - self.next;
        self.next = resume;
        self.stats.lost += lost;
        let map = &self.ring.map;
        map.reader_field(self.slot, reader_slot::CURSOR)
            .store(self.next, Ordering::Release);
        map.reader_field(self.slot, reader_slot::LOST)
            .store(self.stats.lost, Ordering::Release);
        lost
    }

    /// Refreshes this reader's heartbeat and published counters, and takes its slot back if the
    /// writer evicted it while it was silent.
    ///
    /// [`Self::try_read`] does this every 64 polls, whether they found records or not; a reader
    /// that stops polling for longer than the writer's staleness limit (one second by default,
    /// [`crate::DEFAULT_READER_STALE_NS`]) should call it.
    pub fn heartbeat(&mut self) {
        self.since_publish = 0;
        self.published_received = self.stats.received;
        let map = &self.ring.map;
        map.reader_field(self.slot, reader_slot::HEARTBEAT)
            .store(now_ns(), Ordering::Release);
        map.reader_field(self.slot, reader_slot::RECEIVED)
            .store(self.stats.received, Ordering::Release);
        map.reader_field(self.slot, reader_slot::TORN)
            .store(self.stats.torn, Ordering::Release);
        let word = map.reader_field(self.slot, reader_slot::OWNER);
        let current = word.load(Ordering::Acquire);
        if current != self.owner {
            let evicted = (self.owner & !0xFFFF_FFFF) | reader_slot::EVICTED;
            if current == evicted
                && word
                    .compare_exchange(current, self.owner, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.stats.evictions += 1;
            }
        }
    }

    /// What this reader has counted so far.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// The sequence this reader will return next.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// The sequence this reader started at; `received + lost == next_sequence() - first_sequence()`.
    pub fn first_sequence(&self) -> u64 {
        self.first
    }

    /// The last sequence the writer has published.
    pub fn published(&self) -> u64 {
        self.ring.cursor().load(Ordering::Acquire)
    }

    /// How many published records this reader has not consumed yet.
    pub fn lag(&self) -> u64 {
        self.published().saturating_add(1).saturating_sub(self.next)
    }

    /// The ring's capacity in records.
    pub fn capacity(&self) -> u64 {
        self.ring.geo.capacity
    }

    /// The ring's writer mode.
    pub fn mode(&self) -> WriterMode {
        self.ring.geo.mode
    }

    /// The ring's epoch. Two rings created under the same name by two writers have different
    /// epochs; a reader only ever reads the ring (inode) it attached to, so it never mixes them.
    pub fn epoch(&self) -> u64 {
        self.ring.geo.epoch
    }

    /// The pid the writer recorded in the header.
    pub fn writer_pid(&self) -> u32 {
        self.ring.map.u32_at(OFF_WRITER_PID).load(Ordering::Relaxed)
    }

    /// The index of this reader's slot in the header.
    pub fn slot_index(&self) -> usize {
        self.slot
    }

    /// The ring file.
    pub fn path(&self) -> &Path {
        &self.ring.path
    }

    /// A snapshot of every registered reader of this ring, this one included.
    pub fn readers(&self) -> Vec<ReaderSlot> {
        self.ring.readers()
    }

    /// Checks on the writer: a clean close, a dead process (its lock is free), a stopped one
    /// (silent for more than `stale_after`), or a new ring under the same path.
    ///
    /// Costs a few system calls; call it when idle, not per record.
    pub fn writer_status(&self, stale_after: Duration) -> WriterStatus {
        let replaced = match rustix::fs::stat(&self.ring.path) {
            Ok(st) => (st.st_dev, st.st_ino) != self.ring.identity,
            Err(_) => false,
        };
        if replaced {
            return WriterStatus::Replaced;
        }
        if self
            .ring
            .map
            .u64_at(OFF_WRITER_STATE)
            .load(Ordering::Acquire)
            == WRITER_CLOSED
        {
            return WriterStatus::Closed;
        }
        if !writer_holds_lock(&self.ring.file) {
            return WriterStatus::Dead;
        }
        let heartbeat = self
            .ring
            .map
            .u64_at(OFF_WRITER_HEARTBEAT)
            .load(Ordering::Acquire);
        let silent_ns = now_ns().saturating_sub(heartbeat);
        if silent_ns > stale_after.as_nanos() as u64 {
            WriterStatus::Stale { silent_ns }
        } else {
            WriterStatus::Alive
        }
    }
}

impl<R: Record> Drop for Reader<R> {
    fn drop(&mut self) {
        self.heartbeat();
        let word = self.ring.map.reader_field(self.slot, reader_slot::OWNER);
        let _ = word.compare_exchange(
            self.owner,
            reader_slot::FREE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}
