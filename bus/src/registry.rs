//! Reader registration, eviction and the backpressure gate: the part of the protocol between the
//! reader slots in a ring's header and the writer, over plain words.
//!
//! Like [`crate::protocol`], this module knows nothing of files: under `--cfg loom` its atomics
//! are loom's, and `tests/loom.rs` checks this very code. `reader.rs` and `writer.rs` only add
//! the system calls around it (clock, `kill(pid, 0)`).
//!
//! # Why a new reader is safe from the writer's cached gate
//!
//! A backpressure writer does not scan the reader table on every write: it caches `gate`, a
//! lower bound of every registered reader's cursor, and writes sequence `s` without looking as
//! long as `gate > s - capacity`. A reader that registers after a scan is not in that bound. Two
//! SeqCst fences make the two sides meet (a store-buffering, "Dekker" pattern):
//!
//! - the reader makes its slot ACTIVE with its intended cursor, issues a SeqCst fence, then
//!   loads the write cursor (`c1`): [`activate`];
//! - the writer issues a SeqCst fence at the start of every scan, then loads the slots:
//!   [`slowest_reader`].
//!
//! In the single total order of SeqCst fences, a scan whose fence comes after the reader's sees
//! the reader's slot and cursor. A scan whose fence comes before it was made by a writer whose
//! cursor the reader's `c1` already shows (`c1 >= s_scan - 1`), and the writer caches at most
//! `s_scan - capacity / 2` from any scan ([`Gate::admit`]). Until the writer scans again it only
//! overwrites sequences below its cached gate, so below `c1 + 1 - capacity / 2`: a reader that
//! starts at or after that sequence can never have a promised record overwritten. The reader
//! moves its start forward to it if needed ([`protected_start`]) and reports the records it
//! skipped as skipped at attach, not as lost.
//!
//! The price is that the writer rescans (one fence and a read of the reader table) at least
//! every `capacity / 2` writes once the ring has wrapped, and that a reader asking for the
//! oldest record of a backpressure ring whose writer has wrapped gets at most the newest half of
//! the ring.
//!
//! A registration counter that the writer checked on its fast path would not be enough by
//! itself: without a StoreLoad fence after each write (about the cost of the write) nothing
//! bounds how long the writer may keep reading the old count. The window above is what makes
//! the promise hold whatever the scheduler and the CPU do.

use crate::layout::reader_slot;
use crate::protocol::MAX_SEQUENCE;
use crate::sync::{fence, AtomicU64, Ordering};

/// Words in one reader slot (64 bytes).
pub const SLOT_WORDS: usize = 8;

const OWNER: usize = reader_slot::OWNER / 8;
const HEARTBEAT: usize = reader_slot::HEARTBEAT / 8;
const CURSOR: usize = reader_slot::CURSOR / 8;
const LOST: usize = reader_slot::LOST / 8;
const RECEIVED: usize = reader_slot::RECEIVED / 8;
const ATTACHED_NS: usize = reader_slot::ATTACHED_NS / 8;
const TORN: usize = reader_slot::TORN / 8;
const PID_NS: usize = reader_slot::PID_NS / 8;

/// The low 32 bits of an owner word: its state.
const STATE_MASK: u64 = 0xFFFF_FFFF;

/// The owner word of a slot that process `pid` holds in `state`.
pub fn owner_word(pid: u32, state: u64) -> u64 {
    (u64::from(pid) << 32) | state
}

/// The state (`reader_slot::FREE`, `ACTIVE`, `EVICTED`, `CLAIMING`) of an owner word.
pub fn state_of(owner: u64) -> u64 {
    owner & STATE_MASK
}

/// The process id of an owner word.
pub fn pid_of(owner: u64) -> u32 {
    (owner >> 32) as u32
}

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the oldest record still in the ring (sequence 1 if the writer has not wrapped yet).
    /// In backpressure mode, at the oldest one the writer is bound not to overwrite before it
    /// sees the reader, which may be up to half a ring later (see [`protected_start`]).
    Oldest,
    /// After the last record published so far: only new records.
    Latest,
    /// At most this many records behind the last one published (the oldest still in the ring
    /// if it holds fewer): a reader joining a live writer starts where it can keep up instead
    /// of at a slot the writer is about to overwrite. `Behind(0)` is [`StartAt::Latest`].
    Behind(u64),
}

/// The sequence a reader that starts at `start` wants first, given the write cursor `cursor`;
/// `None` if the cursor is not a sequence (corrupt shared memory).
pub fn start_position(start: StartAt, cursor: u64, capacity: u64) -> Option<u64> {
    if cursor > MAX_SEQUENCE {
        return None;
    }
    Some(match start {
        StartAt::Latest => cursor + 1,
        StartAt::Oldest => cursor.saturating_sub(capacity) + 1,
        StartAt::Behind(n) => cursor.saturating_sub(n.min(capacity)) + 1,
    })
}

/// The first sequence a backpressure reader can be promised, given the sequence it wants and
/// the write cursor `c1` it loaded after the SeqCst fence that follows its activation (see the
/// module documentation). Never less than `wanted`.
pub fn protected_start(wanted: u64, c1: u64, capacity: u64) -> u64 {
    // The writer scans only to write a sequence above `capacity`, at which point its cursor is
    // at least `capacity`: below that no scan can have missed this reader.
    if c1 < capacity {
        wanted
    } else {
        wanted.max(c1 + 1 - capacity / 2)
    }
}

/// Claims a reader slot for `pid`: compare-and-swap of its owner word from `current` (which
/// the caller loaded and judged available) to CLAIMING.
///
/// A reader that loses the race never touches the slot's other words, and the writer ignores
/// a slot until it is ACTIVE, so it never sees half-written fields.
pub fn try_claim(slot: &[AtomicU64], current: u64, pid: u32) -> bool {
    slot[OWNER]
        .compare_exchange(
            current,
            owner_word(pid, reader_slot::CLAIMING),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// Where a registered reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// The first sequence the reader will read; in backpressure mode, no record from it on is
    /// overwritten before the reader has read it (unless the reader is evicted).
    pub first: u64,
    /// The sequence the reader asked for; `first - wanted` records were skipped to keep the
    /// promise above.
    pub wanted: u64,
}

/// Initializes a slot that [`try_claim`] claimed for `pid`, makes it ACTIVE and decides where
/// the reader starts.
///
/// With `protect` (backpressure rings), follows the protocol of the module documentation so
/// that the writer cannot overwrite a record from `first` on without seeing the reader. On a
/// write cursor that is not a sequence, frees the slot again and returns the bad cursor.
#[allow(clippy::too_many_arguments)]
pub fn activate(
    slot: &[AtomicU64],
    write_cursor: &AtomicU64,
    pid: u32,
    pid_ns: u64,
    start: StartAt,
    capacity: u64,
    protect: bool,
    now: u64,
) -> Result<Registration, u64> {
    let mine = owner_word(pid, reader_slot::ACTIVE);
    let c0 = write_cursor.load(Ordering::Acquire);
    let Some(wanted) = start_position(start, c0, capacity) else {
        slot[OWNER].store(reader_slot::FREE, Ordering::Release);
        return Err(c0);
    };
    for (field, value) in [
        (CURSOR, wanted),
        (HEARTBEAT, now),
        (ATTACHED_NS, now),
        (LOST, 0),
        (RECEIVED, 0),
        (TORN, 0),
        (PID_NS, pid_ns),
    ] {
        slot[field].store(value, Ordering::Relaxed);
    }
    // Releases the fields with the state: a writer that sees ACTIVE sees the cursor.
    slot[OWNER].store(mine, Ordering::Release);
    if !protect {
        return Ok(Registration {
            first: wanted,
            wanted,
        });
    }
    // Pairs with the fence that starts every scan of the writer (`slowest_reader`): either that
    // scan sees this slot, or the cursor load below sees the writer's cursor of that scan.
    fence(Ordering::SeqCst);
    let c1 = write_cursor.load(Ordering::Acquire);
    if c1 > MAX_SEQUENCE {
        let _ = slot[OWNER].compare_exchange(
            mine,
            reader_slot::FREE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        return Err(c1);
    }
    let first = protected_start(wanted, c1, capacity);
    if first != wanted {
        // A writer that saw `wanted` is only more careful than it needs to be.
        slot[CURSOR].store(first, Ordering::Release);
    }
    Ok(Registration { first, wanted })
}

/// A reader's heartbeat on its slot `slot`, which it holds as `mine` (its ACTIVE owner word):
/// publishes `now`, `received` and `torn`, then takes the slot back if the writer evicted it.
/// Returns whether it took the slot back.
///
/// The SeqCst fence between the heartbeat store and the owner load pairs with the one in
/// [`evict_if_dead`] after its compare-and-swap: either the writer sees this heartbeat and
/// undoes its eviction, or this load sees the eviction and the reader takes its slot back.
/// A live reader is never left evicted past its next heartbeat.
pub fn heartbeat(slot: &[AtomicU64], mine: u64, now: u64, received: u64, torn: u64) -> bool {
    slot[HEARTBEAT].store(now, Ordering::Release);
    slot[RECEIVED].store(received, Ordering::Release);
    slot[TORN].store(torn, Ordering::Release);
    fence(Ordering::SeqCst);
    let current = slot[OWNER].load(Ordering::Acquire);
    if current == mine {
        return false;
    }
    let evicted = owner_word(pid_of(mine), reader_slot::EVICTED);
    current == evicted
        && slot[OWNER]
            .compare_exchange(current, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
}

/// Stores a reader's cursor (the next sequence it wants).
#[inline]
pub fn store_cursor(slot: &[AtomicU64], next: u64) {
    slot[CURSOR].store(next, Ordering::Release);
}

/// Stores a reader's cursor and its total of lost records, after a lap or a corrupt slot.
pub fn store_loss(slot: &[AtomicU64], next: u64, lost: u64) {
    slot[CURSOR].store(next, Ordering::Release);
    slot[LOST].store(lost, Ordering::Release);
}

/// Frees the slot that a reader holds as `mine`. Call [`heartbeat`] first, so that an evicted
/// reader's slot is its own again and is freed too.
pub fn release(slot: &[AtomicU64], mine: u64) {
    let _ =
        slot[OWNER].compare_exchange(mine, reader_slot::FREE, Ordering::AcqRel, Ordering::Relaxed);
}

/// The reader slots of a ring's header, as the writer sees them.
pub trait ReaderTable {
    /// Number of slots.
    fn slots(&self) -> usize;
    /// Slot `i` (`i < slots()`), [`SLOT_WORDS`] words.
    fn slot(&self, i: usize) -> &[AtomicU64];
}

/// The smallest cursor of an ACTIVE slot and that slot's index, or `(u64::MAX, usize::MAX)`
/// when there is none.
///
/// Starts with the SeqCst fence that the registration protocol relies on (see the module
/// documentation and [`activate`]).
pub fn slowest_reader(table: &impl ReaderTable) -> (u64, usize) {
    fence(Ordering::SeqCst);
    let mut min = (u64::MAX, usize::MAX);
    for i in 0..table.slots() {
        let slot = table.slot(i);
        if state_of(slot[OWNER].load(Ordering::Acquire)) == reader_slot::ACTIVE {
            let cursor = slot[CURSOR].load(Ordering::Acquire);
            if cursor < min.0 {
                min = (cursor, i);
            }
        }
    }
    min
}

/// One eviction check of slot `slot` by a backpressure writer that wants to overwrite
/// `overwritten`: evicts the ACTIVE reader there if it still needs `overwritten` and is dead
/// (`alive(pid, pid_ns)` is false) or silent for more than `stale_ns` at `now`. Returns whether
/// it left the reader evicted.
///
/// After its compare-and-swap it fences (pairing with [`heartbeat`]) and loads the heartbeat
/// again: a reader that refreshed it since the first load is alive, and the eviction is undone.
/// A refresh that this second load does not see comes after the eviction in the fences' order,
/// so the eviction was decided on a heartbeat that was stale at the time, and the reader takes
/// its slot back at that very heartbeat.
pub fn evict_if_dead(
    slot: &[AtomicU64],
    overwritten: u64,
    now: u64,
    stale_ns: u64,
    alive: impl Fn(u32, u64) -> bool,
) -> bool {
    let owner = slot[OWNER].load(Ordering::Acquire);
    if state_of(owner) != reader_slot::ACTIVE || slot[CURSOR].load(Ordering::Acquire) > overwritten
    {
        return false;
    }
    let heartbeat = slot[HEARTBEAT].load(Ordering::Acquire);
    let stale = now.saturating_sub(heartbeat) > stale_ns;
    if !stale && alive(pid_of(owner), slot[PID_NS].load(Ordering::Relaxed)) {
        return false;
    }
    let evicted = owner_word(pid_of(owner), reader_slot::EVICTED);
    if slot[OWNER]
        .compare_exchange(owner, evicted, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        // The reader changed its slot itself: it is alive.
        return false;
    }
    fence(Ordering::SeqCst);
    if slot[HEARTBEAT].load(Ordering::Acquire) != heartbeat {
        // Only this writer evicts, so the slot is still `evicted` unless the reader took it
        // back itself; either way it ends ACTIVE.
        let _ = slot[OWNER].compare_exchange(evicted, owner, Ordering::AcqRel, Ordering::Relaxed);
        return false;
    }
    true
}

/// Why [`Gate::admit`] refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// The smallest cursor of a live registered reader.
    pub gate: u64,
    /// That reader's slot index.
    pub slowest: usize,
}

/// A backpressure writer's cached lower bound of the registered readers' cursors.
///
/// Invariant: `cached` is 0 or was computed by a scan ([`slowest_reader`]) made to write some
/// sequence `s`, and is at most `s - capacity / 2`; so (module documentation) it is a lower
/// bound of the cursor of every reader registered when it is used, including readers that
/// registered after that scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gate {
    /// The bound; 0 before the first scan.
    cached: u64,
}

impl Gate {
    /// A gate that has not scanned yet.
    pub const fn new() -> Self {
        Self { cached: 0 }
    }

    /// The cached bound.
    pub fn cached(&self) -> u64 {
        self.cached
    }

    /// Decides whether sequence `seq` (`> capacity`) may be written, overwriting
    /// `seq - capacity`, which it may unless a live registered reader still wants that one.
    ///
    /// Uses the cached bound when it suffices; otherwise scans the table, and if a reader
    /// blocks the write calls `evict` (which may evict dead readers and returns whether it
    /// looked) and scans once more.
    #[inline]
    pub fn admit<T: ReaderTable>(
        &mut self,
        table: &T,
        seq: u64,
        capacity: u64,
        evict: impl FnOnce(&T, u64) -> bool,
    ) -> Result<(), Blocked> {
        let overwritten = seq - capacity;
        if self.cached > overwritten {
            return Ok(());
        }
        self.rescan(table, seq, capacity, evict)
    }

    #[cold]
    #[inline(never)]
    fn rescan<T: ReaderTable>(
        &mut self,
        table: &T,
        seq: u64,
        capacity: u64,
        evict: impl FnOnce(&T, u64) -> bool,
    ) -> Result<(), Blocked> {
        let overwritten = seq - capacity;
        let (mut gate, mut slowest) = slowest_reader(table);
        if gate <= overwritten && evict(table, overwritten) {
            (gate, slowest) = slowest_reader(table);
        }
        // At most `seq - capacity / 2`: the bound the registration protocol gives readers that
        // registered after this scan. (`u64::MAX`, no reader at all, must never be cached: it
        // would switch backpressure off for good.)
        self.cached = gate.min(seq - capacity / 2);
        if gate <= overwritten {
            return Err(Blocked { gate, slowest });
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::registry::{start_position, StartAt};

    #[test]
    fn a_reader_starts_where_it_asked_within_the_ring() {
        // Cursor 100 on a 16-record ring: records 85..=100 are still there.
        assert_eq!(start_position(StartAt::Oldest, 100, 16), Some(85));
        assert_eq!(start_position(StartAt::Latest, 100, 16), Some(101));
        assert_eq!(start_position(StartAt::Behind(4), 100, 16), Some(97));
        assert_eq!(start_position(StartAt::Behind(1000), 100, 16), Some(85));
        assert_eq!(start_position(StartAt::Behind(0), 100, 16), Some(101));
        assert_eq!(start_position(StartAt::Behind(8), 3, 16), Some(1));
        assert_eq!(start_position(StartAt::Behind(8), u64::MAX, 16), None);
    }
}
