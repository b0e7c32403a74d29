//! A consumer of a ring, in any process.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::clock::now_ns;
use crate::error::Error;
use crate::layout::{
    reader_slot, MAX_READERS, OFF_WRITER_HEARTBEAT, OFF_WRITER_PID, OFF_WRITER_STATE, WRITER_CLOSED,
};
use crate::protocol::{self, Recovery, SlotRead, MAX_SEQUENCE};
use crate::record::Record;
use crate::registry::{self, Registration};
use crate::ring::{
    own_pid_namespace, pid_alive, writer_holds_lock, ReaderSlot, RingFile, WriterMode,
};

pub use crate::registry::StartAt;

/// How often, in polls (records or empty), a reader refreshes its heartbeat and published
/// counters.
const PUBLISH_EVERY: u32 = 64;
/// Least polls between two heartbeats that publish what a reader received as it catches up:
/// a reader that alternates one record and one empty poll would otherwise publish on every
/// other poll.
const CATCH_UP_PUBLISH_EVERY: u32 = 8;
/// How long [`Reader::attach`] waits for a ring that its writer is still creating.
pub const ATTACH_RETRY: Duration = Duration::from_secs(1);

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
    /// It is also how a record whose slot was corrupted in shared memory is reported (1 lost,
    /// counted in [`ReaderStats::corrupt`] too). The count never exceeds what the write cursor
    /// shows was published.
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
    /// Records skipped because their slot's stamp was one the writer cannot have written
    /// (corrupt shared memory); each is also counted in `lost`.
    pub corrupt: u64,
    /// Records between the start the reader asked for and the one it got
    /// ([`Reader::first_sequence`]), skipped at attach so that a backpressure writer cannot
    /// overwrite any record the reader was promised. Not counted in `lost`: they precede
    /// `first`.
    pub skipped_at_attach: u64,
}

/// A consumer of one ring, registered in the ring's header.
///
/// Any number of readers, in any processes, read the same ring; each sees every record in order,
/// or is told exactly how many it lost. A reader never returns a torn record, never panics on
/// what it finds in shared memory, and never returns a sequence twice or out of order, whatever
/// another process wrote there. Invariant: after `try_read` returned,
/// `received + lost == next - first`, where `next` is the sequence it wants next and `first`
/// the one it started at.
///
/// In backpressure mode no record from `first` on is overwritten before this reader read it,
/// unless the writer evicts the reader as dead (see [`Reader::heartbeat`]).
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
    /// received or lost. At most `MAX_SEQUENCE + 1`. The slot's cursor is stored equal to it
    /// whenever it changes.
    next: u64,
    /// The sequence `next` held at attach; fixed.
    first: u64,
    /// `CLOCK_MONOTONIC` ns at attach; with `first` it bounds the cursors this reader believes
    /// (see [`Self::believable`]).
    attached_ns: u64,
    /// What was counted since attach: `received + lost == next - first`, `torn <= lost`,
    /// `corrupt <= lost`.
    stats: ReaderStats,
    /// Polls (records or empty) since the last heartbeat; below `PUBLISH_EVERY` between calls.
    since_publish: u32,
    /// `stats.received` as the last heartbeat published it in the slot (0 before the first).
    published_received: u64,
}

impl<R: Record> Reader<R> {
    /// Opens the ring at `path`, validates it (see [`crate::Error`] for what is refused) and
    /// registers in a free reader slot, taking over the slot of a reader whose process is gone.
    ///
    /// A ring that its writer is still creating (the writer holds the file's lock but has not
    /// published the header's magic yet) is waited for, polling every millisecond, for up to
    /// [`ATTACH_RETRY`] (one second); a file that is still not a valid ring then, or that no
    /// writer holds, is refused at once with the error that says why.
    ///
    /// The start is `start` as of attach. In backpressure mode the reader may start later than
    /// asked, when the writer raced past the point where the records before could still be
    /// promised; [`ReaderStats::skipped_at_attach`] says by how many records.
    pub fn attach(path: &Path, start: StartAt) -> Result<Self, Error> {
        let ring = open_when_ready::<R>(path)?;
        let pid = std::process::id();
        let pid_ns = own_pid_namespace();
        let map = &ring.map;
        for i in 0..MAX_READERS {
            let slot = map.reader_slot(i);
            let current = slot[0].load(Ordering::Acquire);
            if !slot_available(
                current,
                slot[reader_slot::PID_NS / 8].load(Ordering::Relaxed),
                pid_ns,
            ) || !registry::try_claim(slot, current, pid)
            {
                continue;
            }
            let attached_ns = now_ns();
            let Registration { first, wanted } = registry::activate(
                slot,
                ring.cursor(),
                pid,
                pid_ns,
                start,
                ring.geo.capacity,
                ring.geo.mode == WriterMode::Backpressure,
                attached_ns,
            )
            .map_err(|cursor| Error::BadHeader {
                path: path.to_owned(),
                field: "write cursor",
                found: cursor,
                expected: format!("expected a sequence, at most {MAX_SEQUENCE}"),
            })?;
            return Ok(Self {
                ring,
                slot: i,
                owner: registry::owner_word(pid, reader_slot::ACTIVE),
                next: first,
                first,
                attached_ns,
                stats: ReaderStats {
                    skipped_at_attach: first - wanted,
                    ..ReaderStats::default()
                },
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
    /// the writer lapped this reader (or a slot was corrupt).
    ///
    /// Never blocks, never returns a torn record and never returns the same sequence twice.
    #[inline]
    pub fn try_read(&mut self) -> Poll<R> {
        if self.next > MAX_SEQUENCE {
            // Only a corrupt cursor or stamp can bring a reader here: no sequence follows.
            return Poll::Empty;
        }
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
                registry::store_cursor(self.ring.map.reader_slot(self.slot), self.next);
                self.since_publish += 1;
                if self.since_publish >= PUBLISH_EVERY {
                    self.heartbeat();
                }
                Poll::Record(record)
            }
            SlotRead::NotYet => {
                // Keep an idle reader's heartbeat fresh, so monitors and the writer can tell it
                // from a stopped one, and publish what it received soon after it catches up.
                self.since_publish += 1;
                if self.since_publish >= PUBLISH_EVERY {
                    if let Some(lost) = self.check_unpublished() {
                        return Poll::Lost(lost);
                    }
                    self.heartbeat();
                } else if self.since_publish >= CATCH_UP_PUBLISH_EVERY
                    && self.published_received != self.stats.received
                {
                    self.heartbeat();
                }
                Poll::Empty
            }
            SlotRead::Overwritten { found } => self.recover(found, false),
            SlotRead::Torn { found } => self.recover(found, true),
        }
    }

    /// Moves past the records the writer overwrote (or a corrupt slot) per
    /// [`protocol::recover_lap`].
    #[cold]
    fn recover(&mut self, found: u64, torn: bool) -> Poll<R> {
        let recovery = {
            let ring = &self.ring;
            protocol::recover_lap(
                self.next,
                found,
                ring.cursor(),
                |s| ring.stamp(s),
                ring.geo.capacity,
                self.believable(),
            )
        };
        match self.skip(recovery) {
            Some(lost) => {
                if torn {
                    self.stats.torn += 1;
                }
                Poll::Lost(lost)
            }
            None => Poll::Empty,
        }
    }

    /// An idle reader's check that its slot was not damaged (see
    /// [`protocol::check_unpublished`]); returns what it skipped.
    #[cold]
    fn check_unpublished(&mut self) -> Option<u64> {
        let recovery = {
            let ring = &self.ring;
            protocol::check_unpublished(
                self.next,
                ring.cursor(),
                |s| ring.stamp(s),
                ring.geo.capacity,
                self.believable(),
            )
        };
        self.skip(recovery)
    }

    /// The largest write cursor this reader believes: no writer publishes more than one record
    /// per nanosecond, so none can be further than that past where this reader started (plus
    /// the ring it may have started behind). A larger cursor is corrupt shared memory, and a
    /// loss computed from it would be absurd.
    fn believable(&self) -> u64 {
        let elapsed = now_ns().saturating_sub(self.attached_ns);
        self.first
            .saturating_add(self.ring.geo.capacity)
            .saturating_add(elapsed)
    }

    /// Applies a recovery: returns how many records it skipped (at least 1), or `None` to wait.
    fn skip(&mut self, recovery: Recovery) -> Option<u64> {
        let Recovery::Skip { resume, corrupt } = recovery else {
            return None;
        };
        debug_assert!(resume > self.next && resume <= MAX_SEQUENCE + 1);
        let lost = resume - self.next;
        self.next = resume;
        self.stats.lost += lost;
        if corrupt {
            self.stats.corrupt += 1;
        }
        registry::store_loss(
            self.ring.map.reader_slot(self.slot),
            self.next,
            self.stats.lost,
        );
        Some(lost)
    }

    /// Refreshes this reader's heartbeat and published counters, and takes its slot back if the
    /// writer evicted it while it was silent.
    ///
    /// [`Self::try_read`] does this every 64 polls, whether they found records or not, and
    /// within 8 polls of catching up with the writer; a reader that stops polling for longer
    /// than the writer's staleness limit (one second by default,
    /// [`crate::DEFAULT_READER_STALE_NS`]) should call it. An evicted reader is waited for
    /// again from the writer's next scan of the reader table on; records the writer overwrote
    /// in between reach it as [`Poll::Lost`].
    pub fn heartbeat(&mut self) {
        self.since_publish = 0;
        self.published_received = self.stats.received;
        let slot = self.ring.map.reader_slot(self.slot);
        if registry::heartbeat(
            slot,
            self.owner,
            now_ns(),
            self.stats.received,
            self.stats.torn,
        ) {
            self.stats.evictions += 1;
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

    /// The last sequence the writer has published, as the header's write cursor shows it now
    /// (shared memory, reported unchecked: see [`Poll::Lost`] for how reading treats it).
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
        registry::release(self.ring.map.reader_slot(self.slot), self.owner);
    }
}

/// Whether a reader in pid namespace `my_ns` may take a slot whose owner word is `owner` and
/// whose recorded pid namespace is `slot_ns`: a free one, or one whose process is gone.
///
/// `kill(pid, 0)` only tells about a pid of this process's own namespace: the slot of a reader
/// in another one (both namespaces known and different) is never judged dead from here. A
/// namespace of 0 is unknown (a reader that predates the field, or no `/proc`) and counts as
/// this one, as before the field existed.
fn slot_available(owner: u64, slot_ns: u64, my_ns: u64) -> bool {
    if registry::state_of(owner) == reader_slot::FREE {
        return true;
    }
    let foreign = slot_ns != 0 && my_ns != 0 && slot_ns != my_ns;
    !foreign && !pid_alive(registry::pid_of(owner))
}

/// Opens the ring at `path`, waiting up to [`ATTACH_RETRY`] while a live writer is still
/// creating it.
fn open_when_ready<R: Record>(path: &Path) -> Result<RingFile<R>, Error> {
    let deadline = Instant::now() + ATTACH_RETRY;
    loop {
        match RingFile::<R>::open(path) {
            Err(e @ (Error::BadMagic { .. } | Error::Truncated { .. })) => {
                // The writer locks the file before it sizes it and publishes the magic last:
                // a locked file without magic is one being created. Nobody finishes a file
                // that no writer holds, so that one is refused at once.
                if Instant::now() >= deadline || !RingFile::<R>::creation_in_progress(path) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}
