//! A loom model of the bus protocol: the real `protocol` (seqlock, lap recovery) and `registry`
//! (registration, backpressure gate, eviction) over loom's atomics (under `--cfg loom` the
//! crate's atomics are loom's), explored over every interleaving and every value the memory
//! model lets a load return.
//!
//! Checked: a `Ready` read is never torn (every payload word is the one written for the sequence
//! read), a reader never returns a sequence twice or out of order, `Overwritten`/`Torn` only
//! ever report a later lap of the same slot and lap recovery resumes inside the ring; no record
//! that a registered reader was promised is overwritten by a backpressure writer, however its
//! registration interleaves with the writer's scans; and a reader that refreshes its heartbeat
//! while the writer evicts it is never left evicted.
//!
//! `broken` holds weakened copies of the same code (a fence or an ordering removed), each of
//! which loom must reject: if one of them passes, the model has become too weak to catch that
//! bug.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p alphapulse-bus --release --target-dir target/loom
//! --test loom`. `LOOM_MAX_PREEMPTIONS` overrides the preemption bound set here.
#![cfg(loom)]

use alphapulse_bus::layout::reader_slot::{ACTIVE, EVICTED};
use alphapulse_bus::protocol::{self, read_slot, write_slot, Recovery, SlotRead, BUSY};
use alphapulse_bus::registry::{self, Gate, ReaderTable, StartAt, SLOT_WORDS};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Words per slot: the stamp and two payload words, enough for a copy to be half old, half new.
const WORDS: usize = 3;
const K: u64 = 1000;
const PID: u32 = 42;

type WriteFn = fn(&[AtomicU64], u64, &[u64]);
type ReadFn = fn(&[AtomicU64], u64, &mut [u64]) -> SlotRead;

/// The payload the writer writes for `seq`: word `i` is `seq * K + i` (word 0 is the stamp).
fn payload(seq: u64) -> [u64; WORDS] {
    std::array::from_fn(|i| if i == 0 { 0 } else { seq * K + i as u64 })
}

/// The record area, the write cursor and a reader table of one slot.
struct Ring {
    words: Vec<AtomicU64>,
    mask: u64,
    cursor: AtomicU64,
    table: Vec<AtomicU64>,
    write_fn: WriteFn,
}

impl ReaderTable for Ring {
    fn slots(&self) -> usize {
        self.table.len() / SLOT_WORDS
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        &self.table[i * SLOT_WORDS..(i + 1) * SLOT_WORDS]
    }
}

impl Ring {
    fn new(capacity: u64) -> Self {
        Self::with(capacity, write_slot)
    }

    fn with(capacity: u64, write_fn: WriteFn) -> Self {
        Self {
            words: (0..capacity as usize * WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            mask: capacity - 1,
            cursor: AtomicU64::new(0),
            table: (0..SLOT_WORDS).map(|_| AtomicU64::new(0)).collect(),
            write_fn,
        }
    }

    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    fn record_slot(&self, seq: u64) -> &[AtomicU64] {
        let i = (seq & self.mask) as usize;
        &self.words[i * WORDS..(i + 1) * WORDS]
    }

    fn stamp(&self, seq: u64) -> u64 {
        self.record_slot(seq)[0].load(Ordering::Acquire)
    }

    /// What `Writer::write` does once the write is allowed: the slot, then the cursor.
    fn write(&self, seq: u64) {
        (self.write_fn)(self.record_slot(seq), seq, &payload(seq));
        self.cursor.store(seq, Ordering::Release);
    }

    fn reader(&self) -> &[AtomicU64] {
        self.slot(0)
    }
}

/// A reader as `Reader::try_read` drives the protocol, without the file around it: the real
/// `read_slot` (or a weakened copy) and the real lap recovery.
struct Follower {
    next: u64,
    got: Vec<u64>,
    lost: u64,
    read_fn: ReadFn,
}

impl Follower {
    fn new(first: u64) -> Self {
        Self::with(first, read_slot)
    }

    fn with(first: u64, read_fn: ReadFn) -> Self {
        Self {
            next: first,
            got: Vec::new(),
            lost: 0,
            read_fn,
        }
    }

    /// One attempt at `next`; returns the outcome after checking it.
    fn poll(&mut self, ring: &Ring) -> SlotRead {
        let capacity = ring.capacity();
        let mut out = [0u64; WORDS];
        let expected = self.next;
        let outcome = (self.read_fn)(ring.record_slot(expected), expected, &mut out);
        match outcome {
            SlotRead::Ready => {
                let mut want = payload(expected);
                want[0] = expected;
                assert_eq!(out, want, "torn copy accepted as sequence {expected}");
                if let Some(&last) = self.got.last() {
                    assert!(expected > last, "sequence {expected} after {last}");
                }
                self.got.push(expected);
                self.next += 1;
            }
            SlotRead::NotYet => {}
            SlotRead::Overwritten { found } | SlotRead::Torn { found } => {
                assert!(found > expected, "{outcome:?} reading {expected}");
                assert_eq!(found & BUSY, 0);
                assert_eq!(
                    found % capacity,
                    expected % capacity,
                    "a later lap of the same slot"
                );
                let recovery = protocol::recover_lap(
                    expected,
                    found,
                    &ring.cursor,
                    |s| ring.stamp(s),
                    capacity,
                    u64::MAX,
                );
                match recovery {
                    Recovery::Skip { resume, corrupt } => {
                        assert!(!corrupt, "the writer's own stamps are never corrupt");
                        // Resumes inside the ring as of the lap it saw, never past the writer.
                        let published = ring.cursor.load(Ordering::Acquire).max(found);
                        assert!(resume > expected && resume <= published, "resume {resume}");
                        assert!(
                            resume + capacity > found,
                            "resume {resume} lapped by {found}"
                        );
                        self.lost += resume - expected;
                        self.next = resume;
                    }
                    // The cursor lags the stamp it saw (formally possible for a busy stamp):
                    // the next poll sees the lap again.
                    Recovery::Wait => {}
                }
            }
        }
        outcome
    }
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b
}

/// A writer laps a reader: capacity 2, three writes, so sequence 3 overwrites sequence 1 while
/// the reader may be copying it.
#[test]
fn writer_lapping_a_reader() {
    builder().check(|| {
        const CAP: u64 = 2;
        const WRITES: u64 = 3;
        let ring = Arc::new(Ring::new(CAP));
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for seq in 1..=WRITES {
                    ring.write(seq);
                }
            })
        };
        let mut reader = Follower::new(1);
        for _ in 0..3 {
            if reader.next > WRITES {
                break;
            }
            reader.poll(&ring);
        }
        writer.join().unwrap();
        assert_eq!(
            reader.got.len() as u64 + reader.lost,
            reader.next - 1,
            "every sequence received or counted lost"
        );

        // Once the writer is done, the last `CAP` sequences are all readable, intact.
        let mut last = Follower::new(WRITES - CAP + 1);
        for _ in 0..CAP {
            assert_eq!(last.poll(&ring), SlotRead::Ready);
        }
        assert_eq!(last.poll(&ring), SlotRead::NotYet);
        // And the racing reader's next attempt is consistent with that.
        if reader.next <= WRITES {
            let outcome = reader.poll(&ring);
            assert!(
                reader.next > WRITES - CAP || matches!(outcome, SlotRead::Overwritten { .. }),
                "{outcome:?}"
            );
        }
    });
}

/// A reader racing one write into an empty slot, and one overwrite of a slot it is reading:
/// it sees the old record intact, the new one intact, or is told it cannot have either.
fn reader_racing_a_write_with(write_fn: WriteFn, read_fn: ReadFn) {
    builder().check(move || {
        const CAP: u64 = 2;
        let ring = Arc::new(Ring::with(CAP, write_fn));
        // Sequence 1 is in the ring before the race; the writer writes 2 (an empty slot) and
        // then 3 (over 1).
        ring.write(1);
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.write(2);
                ring.write(3);
            })
        };
        let mut old = Follower::with(1, read_fn);
        let first = old.poll(&ring);
        assert!(
            matches!(
                first,
                SlotRead::Ready | SlotRead::Overwritten { found: 3 } | SlotRead::Torn { found: 3 }
            ),
            "{first:?}"
        );
        let mut new = Follower::with(2, read_fn);
        let second = new.poll(&ring);
        assert!(
            matches!(second, SlotRead::Ready | SlotRead::NotYet),
            "{second:?}"
        );
        writer.join().unwrap();
        // Whatever happened in the race, sequence 3 is now readable and intact, exactly once.
        let mut after = Follower::with(3, read_fn);
        assert_eq!(after.poll(&ring), SlotRead::Ready);
        assert_eq!(after.got, [3]);
        assert_eq!(after.poll(&ring), SlotRead::NotYet);
    });
}

#[test]
fn reader_racing_a_write() {
    reader_racing_a_write_with(write_slot, read_slot);
}

/// Two readers on one slot while the writer overwrites it twice: each Ready copy is intact and
/// no reader goes backwards.
#[test]
fn two_readers_and_two_overwrites() {
    builder().check(|| {
        const CAP: u64 = 2;
        let ring = Arc::new(Ring::new(CAP));
        ring.write(1);
        ring.write(2);
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for seq in 3..=5 {
                    ring.write(seq);
                }
            })
        };
        let other = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut r = Follower::new(1);
                r.poll(&ring);
                r.got
            })
        };
        let mut r = Follower::new(3);
        r.poll(&ring);
        writer.join().unwrap();
        let got = other.join().unwrap();
        assert!(got.is_empty() || got == [1]);
        assert!(r.got.is_empty() || r.got == [3]);
    });
}

/// How a backpressure writer decides a write: the real `Gate`, or a weakened copy that keeps
/// its bound in the `u64`.
type AdmitFn = fn(&mut Gate, &mut u64, &Ring, u64, u64) -> bool;
/// How a reader registers: returns its first sequence (the real `activate`, or a weakened copy).
type RegisterFn = fn(&Ring, StartAt) -> u64;

fn admit(gate: &mut Gate, _: &mut u64, ring: &Ring, seq: u64, capacity: u64) -> bool {
    gate.admit(ring, seq, capacity, |_, _| false).is_ok()
}

fn register(ring: &Ring, start: StartAt) -> u64 {
    let slot = ring.reader();
    assert!(registry::try_claim(slot, 0, PID));
    registry::activate(slot, &ring.cursor, PID, 0, start, ring.capacity(), true, 1)
        .expect("a valid cursor")
        .first
}

/// A backpressure writer writing `WRITES` records into a ring of 2 while a reader registers
/// and reads: no record from the reader's first sequence on may be overwritten under it.
fn registration_with(start: StartAt, admit_fn: AdmitFn, register_fn: RegisterFn) {
    builder().check(move || {
        const CAP: u64 = 2;
        const WRITES: u64 = 4;
        let ring = Arc::new(Ring::new(CAP));
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let (mut gate, mut copy) = (Gate::new(), 0);
                for seq in 1..=WRITES {
                    while seq > CAP && !admit_fn(&mut gate, &mut copy, &ring, seq, CAP) {
                        thread::yield_now();
                    }
                    ring.write(seq);
                }
            })
        };
        let first = register_fn(&ring, start);
        let mine = registry::owner_word(PID, ACTIVE);
        let mut r = Follower::new(first);
        while r.next <= WRITES {
            match r.poll(&ring) {
                SlotRead::Ready => registry::store_cursor(ring.reader(), r.next),
                SlotRead::NotYet => thread::yield_now(),
                other => panic!(
                    "a record promised to a reader that starts at {first} was overwritten: \
                     {other:?} reading {}",
                    r.next
                        - if matches!(other, SlotRead::Ready) {
                            1
                        } else {
                            0
                        }
                ),
            }
        }
        registry::release(ring.reader(), mine);
        writer.join().unwrap();
    });
}

#[test]
fn registration_latest_is_never_overwritten() {
    registration_with(StartAt::Latest, admit, register);
}

#[test]
fn registration_oldest_is_never_overwritten() {
    registration_with(StartAt::Oldest, admit, register);
}

/// The writer evicts a reader whose heartbeat it judged stale while the reader refreshes it:
/// the reader must end up holding its slot, whichever order the two take.
fn eviction_race_with(
    evict_fn: fn(&[AtomicU64]) -> bool,
    heartbeat_fn: fn(&[AtomicU64], u64) -> bool,
) {
    builder().check(move || {
        let ring = Arc::new(Ring::new(2));
        let mine = registry::owner_word(PID, ACTIVE);
        let slot = ring.reader();
        assert!(registry::try_claim(slot, 0, PID));
        // Registered at time 0 with cursor 1; the writer looks at time 100 with a limit of 10.
        registry::activate(slot, &ring.cursor, PID, 0, StartAt::Latest, 2, false, 0).unwrap();
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || evict_fn(ring.reader()))
        };
        let took_back = heartbeat_fn(ring.reader(), mine);
        let left_evicted = writer.join().unwrap();
        let owner = ring.reader()[0].load(Ordering::Acquire);
        assert_eq!(owner, mine, "the live reader lost its slot");
        assert!(
            !left_evicted || took_back,
            "evicted, and the reader did not notice"
        );
    });
}

fn evict(slot: &[AtomicU64]) -> bool {
    registry::evict_if_dead(slot, 1, 100, 10, |_, _| true)
}

fn heartbeat(slot: &[AtomicU64], mine: u64) -> bool {
    registry::heartbeat(slot, mine, 100, 0, 0)
}

#[test]
fn a_reader_refreshing_its_heartbeat_is_never_left_evicted() {
    eviction_race_with(evict, heartbeat);
}

/// Weakened copies of the protocol: each must make loom find a violation.
mod broken {
    use super::*;
    use loom::sync::atomic::fence;

    /// `write_slot` without the release fence after the busy stamp.
    fn write_no_release_fence(slot: &[AtomicU64], seq: u64, payload: &[u64]) {
        slot[0].store(seq | BUSY, Ordering::Release);
        for (dst, &src) in slot[1..].iter().zip(&payload[1..]) {
            dst.store(src, Ordering::Relaxed);
        }
        slot[0].store(seq, Ordering::Release);
    }

    /// `write_slot` with a relaxed busy stamp (as before lap recovery checked stamps against
    /// the cursor): a reader may see the busy stamp of `s` and a cursor older than `s - 1`,
    /// and take a true lap for a corrupt slot.
    fn write_relaxed_busy_stamp(slot: &[AtomicU64], seq: u64, payload: &[u64]) {
        slot[0].store(seq | BUSY, Ordering::Relaxed);
        fence(Ordering::Release);
        for (dst, &src) in slot[1..].iter().zip(&payload[1..]) {
            dst.store(src, Ordering::Relaxed);
        }
        slot[0].store(seq, Ordering::Release);
    }

    /// `write_slot` publishing the clean stamp with a relaxed store.
    fn write_relaxed_publish(slot: &[AtomicU64], seq: u64, payload: &[u64]) {
        slot[0].store(seq | BUSY, Ordering::Release);
        fence(Ordering::Release);
        for (dst, &src) in slot[1..].iter().zip(&payload[1..]) {
            dst.store(src, Ordering::Relaxed);
        }
        slot[0].store(seq, Ordering::Relaxed);
    }

    /// `read_slot` with its steps in place but the loads and fence given as arguments.
    fn read_with(
        slot: &[AtomicU64],
        expected: u64,
        out: &mut [u64],
        first: Ordering,
        acquire_fence: bool,
    ) -> SlotRead {
        let before = slot[0].load(first);
        if before != expected {
            let seq = before & !BUSY;
            return if seq <= expected {
                SlotRead::NotYet
            } else {
                SlotRead::Overwritten { found: seq }
            };
        }
        for (dst, src) in out[1..].iter_mut().zip(&slot[1..]) {
            *dst = src.load(Ordering::Relaxed);
        }
        if acquire_fence {
            fence(Ordering::Acquire);
        }
        let after = slot[0].load(Ordering::Relaxed);
        if after != before {
            return SlotRead::Torn {
                found: after & !BUSY,
            };
        }
        out[0] = expected;
        SlotRead::Ready
    }

    fn read_no_acquire_fence(slot: &[AtomicU64], expected: u64, out: &mut [u64]) -> SlotRead {
        read_with(slot, expected, out, Ordering::Acquire, false)
    }

    fn read_relaxed_first_load(slot: &[AtomicU64], expected: u64, out: &mut [u64]) -> SlotRead {
        read_with(slot, expected, out, Ordering::Relaxed, true)
    }

    #[test]
    #[should_panic(expected = "torn copy accepted")]
    fn seqlock_without_the_writers_release_fence() {
        reader_racing_a_write_with(write_no_release_fence, read_slot);
    }

    #[test]
    #[should_panic(expected = "the writer's own stamps are never corrupt")]
    fn seqlock_with_a_relaxed_busy_stamp() {
        reader_racing_a_write_with(write_relaxed_busy_stamp, read_slot);
    }

    #[test]
    #[should_panic(expected = "torn copy accepted")]
    fn seqlock_with_a_relaxed_publishing_store() {
        reader_racing_a_write_with(write_relaxed_publish, read_slot);
    }

    #[test]
    #[should_panic(expected = "torn copy accepted")]
    fn seqlock_without_the_readers_acquire_fence() {
        reader_racing_a_write_with(write_slot, read_no_acquire_fence);
    }

    #[test]
    #[should_panic(expected = "torn copy accepted")]
    fn seqlock_with_a_relaxed_first_stamp_load() {
        reader_racing_a_write_with(write_slot, read_relaxed_first_load);
    }

    /// The registration of the crate before the fix: the start chosen from the cursor before
    /// the slot is claimed, no fence and no second look at the cursor.
    fn register_old(ring: &Ring, start: StartAt) -> u64 {
        let c0 = ring.cursor.load(Ordering::Acquire);
        let next = registry::start_position(start, c0, ring.capacity()).unwrap();
        let slot = ring.reader();
        assert!(registry::try_claim(slot, 0, PID));
        slot[2].store(next, Ordering::Relaxed);
        slot[0].store(registry::owner_word(PID, ACTIVE), Ordering::Release);
        next
    }

    /// The gate of the crate before the fix: no fence before the scan, and a bound cached up to
    /// the sequence being written.
    fn admit_old(_: &mut Gate, cached: &mut u64, ring: &Ring, seq: u64, capacity: u64) -> bool {
        let overwritten = seq - capacity;
        if *cached > overwritten {
            return true;
        }
        let slot = ring.reader();
        let g = if slot[0].load(Ordering::Acquire) & 0xFFFF_FFFF == ACTIVE {
            slot[2].load(Ordering::Acquire)
        } else {
            u64::MAX
        };
        *cached = g.min(seq);
        g > overwritten
    }

    /// The fixed reader with the writer's scan fence removed (a bound still cached at most half
    /// a ring below the sequence written).
    fn admit_no_fence(
        _: &mut Gate,
        cached: &mut u64,
        ring: &Ring,
        seq: u64,
        capacity: u64,
    ) -> bool {
        let overwritten = seq - capacity;
        if *cached > overwritten {
            return true;
        }
        let slot = ring.reader();
        let g = if slot[0].load(Ordering::Acquire) & 0xFFFF_FFFF == ACTIVE {
            slot[2].load(Ordering::Acquire)
        } else {
            u64::MAX
        };
        *cached = g.min(seq - capacity / 2);
        g > overwritten
    }

    /// The fixed writer with the reader's fence and second look at the cursor removed.
    fn register_no_fence(ring: &Ring, start: StartAt) -> u64 {
        let slot = ring.reader();
        assert!(registry::try_claim(slot, 0, PID));
        registry::activate(slot, &ring.cursor, PID, 0, start, ring.capacity(), false, 1)
            .unwrap()
            .first
    }

    #[test]
    #[should_panic(expected = "was overwritten")]
    fn registration_as_before_the_fix() {
        registration_with(StartAt::Latest, admit_old, register_old);
    }

    #[test]
    #[should_panic(expected = "was overwritten")]
    fn registration_oldest_as_before_the_fix() {
        registration_with(StartAt::Oldest, admit_old, register_old);
    }

    #[test]
    #[should_panic(expected = "was overwritten")]
    fn registration_without_the_writers_scan_fence() {
        registration_with(StartAt::Latest, admit_no_fence, register);
    }

    #[test]
    #[should_panic(expected = "was overwritten")]
    fn registration_without_the_readers_fence() {
        registration_with(StartAt::Oldest, admit, register_no_fence);
    }

    /// The eviction before the fix: no fence and no second look at the heartbeat.
    fn evict_old(slot: &[AtomicU64]) -> bool {
        let owner = slot[0].load(Ordering::Acquire);
        if owner & 0xFFFF_FFFF != ACTIVE || slot[2].load(Ordering::Acquire) > 1 {
            return false;
        }
        let heartbeat = slot[1].load(Ordering::Acquire);
        if 100u64.saturating_sub(heartbeat) <= 10 {
            return false;
        }
        let evicted = (owner & !0xFFFF_FFFF) | EVICTED;
        slot[0]
            .compare_exchange(owner, evicted, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The reader's heartbeat before the fix: no fence between the heartbeat and the owner.
    fn heartbeat_old(slot: &[AtomicU64], mine: u64) -> bool {
        slot[1].store(100, Ordering::Release);
        let current = slot[0].load(Ordering::Acquire);
        let evicted = (mine & !0xFFFF_FFFF) | EVICTED;
        current == evicted
            && slot[0]
                .compare_exchange(current, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    #[test]
    #[should_panic(expected = "the live reader lost its slot")]
    fn eviction_as_before_the_fix() {
        eviction_race_with(evict_old, heartbeat_old);
    }

    #[test]
    #[should_panic(expected = "the live reader lost its slot")]
    fn eviction_without_the_readers_fence() {
        eviction_race_with(evict, heartbeat_old);
    }
}
