//! The single producer of a ring.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::clock::now_ns;
use crate::error::{Error, WriteError};
use crate::layout::{OFF_WRITER_HEARTBEAT, OFF_WRITER_STATE, WRITER_CLOSED};
use crate::protocol;
use crate::record::Record;
use crate::registry::{self, Blocked, Gate, ReaderTable};
use crate::ring::{own_pid_namespace, pid_alive, ReaderSlot, RingFile, WriterMode};

/// How often, in writes, the writer looks at the clock to see whether its heartbeat is due.
const CLOCK_EVERY: u32 = 64;
/// Least time between two heartbeats that writes store on their own; at high rates this keeps
/// the writer from dirtying the heartbeat's cache line every `CLOCK_EVERY` writes.
const HEARTBEAT_NS: u64 = 1_000_000;
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
/// `gate` is a lower bound of the cursor of every live registered reader, including readers that
/// registered after it was computed (the registration protocol of `registry` makes them start
/// at or above it), so a write of sequence `s` with `s - capacity < gate` cannot overwrite a
/// record that a registered reader was promised.
pub struct Writer<R: Record> {
    /// The ring this writer created; its file holds the writer's exclusive `flock`.
    ring: RingFile<R>,
    /// The sequence the next write gets: the ring's cursor plus one; starts at 1 and grows by
    /// one per successful write only.
    next_seq: u64,
    /// Backpressure only: the cached lower bound of the readers' cursors (see above).
    gate: Gate,
    /// Successful writes since the writer last looked at the clock; below `CLOCK_EVERY`
    /// between calls.
    since_clock: u32,
    /// `CLOCK_MONOTONIC` ns of the last heartbeat stored.
    last_heartbeat_ns: u64,
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
            gate: Gate::new(),
            since_clock: 0,
            last_heartbeat_ns: now_ns(),
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
    /// has not read. Refreshes the writer heartbeat when it is a millisecond old, checking the
    /// clock every 64 writes.
    #[inline]
    pub fn write(&mut self, record: &R) -> Result<u64, WriteError> {
        let seq = self.next_seq;
        let capacity = self.ring.geo.capacity;
        if self.ring.geo.mode == WriterMode::Backpressure && seq > capacity {
            self.check_gate(seq)?;
        }
        let words: &[u64] = bytemuck::cast_slice(std::slice::from_ref(record));
        let slot = self
            .ring
            .map
            .slot((seq & self.ring.geo.mask) as usize, R::WORDS);
        protocol::write_slot(slot, seq, words);
        self.ring.cursor().store(seq, Ordering::Release);
        self.next_seq = seq + 1;
        self.since_clock += 1;
        if self.since_clock >= CLOCK_EVERY {
            self.heartbeat_if_due();
        }
        Ok(seq)
    }

    /// Ensures no live reader still needs sequence `seq - capacity`.
    #[inline]
    fn check_gate(&mut self, seq: u64) -> Result<(), WriteError> {
        let capacity = self.ring.geo.capacity;
        let (stale_ns, last) = (self.reader_stale_ns, &mut self.last_liveness_ns);
        let evict = |table: &crate::ring::Mapping, overwritten: u64| {
            let now = now_ns();
            if now.saturating_sub(*last) < LIVENESS_CHECK_NS {
                return false;
            }
            *last = now;
            evict_dead_readers(table, overwritten, now, stale_ns);
            true
        };
        self.gate
            .admit(&self.ring.map, seq, capacity, evict)
            .map_err(|Blocked { gate, slowest }| WriteError::BufferFull {
                reader: slowest,
                lag: seq.saturating_sub(gate),
                capacity,
            })
    }

    #[cold]
    fn heartbeat_if_due(&mut self) {
        self.since_clock = 0;
        let now = now_ns();
        if now.saturating_sub(self.last_heartbeat_ns) >= HEARTBEAT_NS {
            self.store_heartbeat(now);
        }
    }

    fn store_heartbeat(&mut self, now: u64) {
        self.last_heartbeat_ns = now;
        self.ring
            .map
            .u64_at(OFF_WRITER_HEARTBEAT)
            .store(now, Ordering::Release);
    }

    /// Sets how long a reader may stay silent before backpressure stops waiting for it
    /// (default [`DEFAULT_READER_STALE_NS`]).
    pub fn set_reader_stale_ns(&mut self, ns: u64) {
        self.reader_stale_ns = ns;
    }

    /// Refreshes the writer heartbeat that readers watch.
    ///
    /// [`Self::write`] refreshes it on its own once it is a millisecond old, looking at the
    /// clock every 64 writes; so a writer that writes fewer than 64 records per staleness limit
    /// of its readers (they pass it to [`crate::Reader::writer_status`]; the load tester uses
    /// one second) must also call this on a timer, at least a few times per that limit.
    pub fn heartbeat(&mut self) {
        self.since_clock = 0;
        self.store_heartbeat(now_ns());
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

    /// Starts a new epoch of the ring under the same name, as a restarted publisher would:
    /// creates a new ring of the same capacity and mode beside the old one, renames it over the
    /// old one's path, then closes the old ring. Readers of the old ring see it
    /// [`crate::WriterStatus::Replaced`]; everything published in it stays readable, so a
    /// reader that drains it and attaches again to the path loses nothing. Sequences start
    /// again at 1.
    ///
    /// On an error (no space for the new ring, say) nothing changed: the old ring stays open
    /// and this writer keeps writing it.
    pub fn restart(&mut self) -> Result<(), Error> {
        use rustix::fs::{AtFlags, Mode, OFlags};
        use std::os::fd::AsFd;
        let path = self.ring.path.clone();
        let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::io(&path, "restarting", rustix::io::Errno::INVAL));
        };
        let name = name.to_string_lossy().into_owned();
        let dir = rustix::fs::open(
            dir_path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(dir_path, "opening the run directory", e))?;
        let tmp = format!("{name}.restart");
        let mut ring = RingFile::<R>::create(
            dir.as_fd(),
            dir_path,
            &tmp,
            self.ring.geo.capacity,
            self.ring.geo.mode,
        )?;
        if let Err(e) = rustix::fs::renameat(&dir, tmp.as_str(), &dir, name.as_str()) {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            return Err(Error::io(&path, "renaming the new ring into place", e));
        }
        ring.path = path;
        let old = std::mem::replace(&mut self.ring, ring);
        old.map
            .u64_at(OFF_WRITER_STATE)
            .store(WRITER_CLOSED, Ordering::Release);
        drop(old);
        self.next_seq = 1;
        self.gate = Gate::new();
        self.last_liveness_ns = 0;
        self.heartbeat();
        Ok(())
    }
}

/// Evicts the readers of `table` that block the overwrite of `overwritten` and are dead or
/// silent for more than `stale_ns` (see [`registry::evict_if_dead`]).
///
/// A reader's pid is only tested with `kill(pid, 0)` when it was registered from this
/// process's pid namespace (or did not say): in another namespace the same number names
/// another process, so there only the heartbeat counts.
fn evict_dead_readers(table: &crate::ring::Mapping, overwritten: u64, now: u64, stale_ns: u64) {
    let my_ns = own_pid_namespace();
    let alive = |pid: u32, ns: u64| (ns != 0 && my_ns != 0 && ns != my_ns) || pid_alive(pid);
    for i in 0..table.slots() {
        registry::evict_if_dead(table.reader_slot(i), overwritten, now, stale_ns, alive);
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
