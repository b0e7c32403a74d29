//! A loom model of the seqlock protocol: the real `protocol::{write_slot, read_slot}` over loom's
//! atomics (under `--cfg loom` the crate's atomics are loom's), explored over every interleaving
//! and every value the memory model lets a relaxed load return.
//!
//! Checked: a `Ready` read is never torn (every payload word is the one written for the sequence
//! read), a reader never returns a sequence twice or out of order, and `Overwritten`/`Torn`
//! only ever report a later lap of the same slot.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p alphapulse-bus --release --target-dir target/loom
//! --test loom`. `LOOM_MAX_PREEMPTIONS` overrides the preemption bound set here.
#![cfg(loom)]

use alphapulse_bus::protocol::{read_slot, write_slot, SlotRead, BUSY};
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

/// Words per slot: the stamp and two payload words, enough for a copy to be half old, half new.
const WORDS: usize = 3;
const K: u64 = 1000;

/// The payload the writer writes for `seq`: word `i` is `seq * K + i` (word 0 is the stamp).
fn payload(seq: u64) -> [u64; WORDS] {
    std::array::from_fn(|i| if i == 0 { 0 } else { seq * K + i as u64 })
}

struct Ring {
    words: Vec<AtomicU64>,
    mask: u64,
}

impl Ring {
    fn new(capacity: u64) -> Self {
        Self {
            words: (0..capacity as usize * WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            mask: capacity - 1,
        }
    }

    fn slot(&self, seq: u64) -> &[AtomicU64] {
        let i = (seq & self.mask) as usize;
        &self.words[i * WORDS..(i + 1) * WORDS]
    }

    fn write(&self, seq: u64) {
        write_slot(self.slot(seq), seq, &payload(seq));
    }
}

/// A reader as `Reader::try_read` drives the protocol, without the file around it.
struct Follower {
    capacity: u64,
    next: u64,
    got: Vec<u64>,
}

impl Follower {
    fn new(capacity: u64, first: u64) -> Self {
        Self {
            capacity,
            next: first,
            got: Vec::new(),
        }
    }

    /// One attempt at `next`; returns the outcome after checking it.
    fn poll(&mut self, ring: &Ring) -> SlotRead {
        let mut out = [0u64; WORDS];
        let expected = self.next;
        let outcome = read_slot(ring.slot(expected), expected, &mut out);
        match outcome {
            SlotRead::Ready => {
                assert_eq!(out[0], expected);
                assert_eq!(out, {
                    let mut want = payload(expected);
                    want[0] = expected;
                    want
                });
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
                    found % self.capacity,
                    expected % self.capacity,
                    "a later lap of the same slot"
                );
                // Resume at the oldest sequence that may still be intact (as `skip_lapped`
                // does, without its head start).
                self.next = found + 1 - self.capacity;
            }
        }
        outcome
    }
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(4);
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
        let mut reader = Follower::new(CAP, 1);
        for _ in 0..3 {
            if reader.next > WRITES {
                break;
            }
            reader.poll(&ring);
        }
        writer.join().unwrap();

        // Once the writer is done, the last `CAP` sequences are all readable, intact.
        let mut last = Follower::new(CAP, WRITES - CAP + 1);
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
#[test]
fn reader_racing_a_write() {
    builder().check(|| {
        const CAP: u64 = 2;
        let ring = Arc::new(Ring::new(CAP));
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
        let mut old = Follower::new(CAP, 1);
        let first = old.poll(&ring);
        assert!(
            matches!(
                first,
                SlotRead::Ready | SlotRead::Overwritten { found: 3 } | SlotRead::Torn { found: 3 }
            ),
            "{first:?}"
        );
        let mut new = Follower::new(CAP, 2);
        let second = new.poll(&ring);
        assert!(
            matches!(second, SlotRead::Ready | SlotRead::NotYet),
            "{second:?}"
        );
        writer.join().unwrap();
        // Whatever happened in the race, sequence 3 is now readable and intact, exactly once.
        let mut after = Follower::new(CAP, 3);
        assert_eq!(after.poll(&ring), SlotRead::Ready);
        assert_eq!(after.got, [3]);
        assert_eq!(after.poll(&ring), SlotRead::NotYet);
    });
}

/// Two readers on one slot while the writer overwrites it twice: each Ready copy is intact and
/// no reader goes backwards.
#[test]
fn two_readers_and_two_overwrites() {
    builder().check(|| {
        const CAP: u64 = 2;
        let ring = Arc::new(Ring::new(CAP));
        ring.write(1);
        let writer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.write(3);
                ring.write(5);
            })
        };
        let other = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut r = Follower::new(CAP, 1);
                r.poll(&ring);
                r.got
            })
        };
        let mut r = Follower::new(CAP, 3);
        r.poll(&ring);
        writer.join().unwrap();
        let got = other.join().unwrap();
        assert!(got.is_empty() || got == [1]);
        assert!(r.got.is_empty() || r.got == [3]);
    });
}
