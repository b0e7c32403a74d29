//! The per-slot seqlock: the whole concurrency protocol of a ring, over plain words.
//!
//! A slot is `n` 64-bit words. Word 0 is the *stamp*: the sequence number of the record the slot
//! holds, with [`BUSY`] set while the writer is overwriting it. Sequence numbers start at 1, so a
//! stamp of 0 means "never written". Words `1..n` are the record's remaining payload.
//!
//! This module knows nothing about files or mappings, which is what lets the loom model
//! (`tests/loom.rs`) check this very code with loom's atomics.
//!
//! Memory ordering follows Boehm, "Can seqlocks get along with programming language memory
//! models?" (MSPC 2012): the writer stores the busy stamp (with release, so that it also
//! publishes the previous write's cursor), issues a release fence, stores the payload relaxed
//! and publishes the clean stamp with release; the reader loads the stamp with
//! acquire, loads the payload relaxed, issues an acquire fence and reloads the stamp. Payload
//! words are atomics rather than plain memory because another process writes them concurrently:
//! a racy non-atomic read would be undefined behaviour even though the seqlock discards it.

use crate::sync::{fence, AtomicU64, Ordering};

/// Bit set in a slot's stamp while the writer is writing that slot.
pub const BUSY: u64 = 1 << 63;

/// The largest sequence number: sequences are `1..=MAX_SEQUENCE`, so that a sequence never has
/// the [`BUSY`] bit. A write cursor or a stamp's sequence above it can only be corruption.
pub const MAX_SEQUENCE: u64 = BUSY - 1;

/// The outcome of trying to read sequence `expected` from its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRead {
    /// The record was copied out intact.
    Ready,
    /// The slot does not hold `expected` yet (it holds an older lap, or the write is in progress).
    NotYet,
    /// The slot already holds a later sequence `found`: the writer lapped the reader.
    Overwritten {
        /// The sequence number found in the slot.
        found: u64,
    },
    /// The copy raced with the writer starting to overwrite the slot with sequence `found`; the
    /// copy was discarded. This is a lap observed mid-copy.
    Torn {
        /// The sequence number the writer is writing into the slot.
        found: u64,
    },
}

/// Writes `payload[1..]` into `slot` and publishes it as sequence `seq`.
///
/// `payload[0]` is ignored: word 0 of a slot is always the stamp. `seq` must be non-zero, have
/// the [`BUSY`] bit clear, and be larger than any sequence previously written to this slot; only
/// one writer may call this on a slot at a time.
#[inline]
pub fn write_slot(slot: &[AtomicU64], seq: u64, payload: &[u64]) {
    debug_assert!(seq != 0 && seq & BUSY == 0);
    debug_assert_eq!(slot.len(), payload.len());
    // Release: a reader that sees the busy stamp also sees the write cursor of the previous
    // write, which lap recovery (`recover_lap`) relies on to tell a lap from a corrupt stamp.
    slot[0].store(seq | BUSY, Ordering::Release);
    // Orders the busy stamp before every payload store: a reader that sees any new payload word
    // and then re-reads the stamp sees at least the busy stamp.
    fence(Ordering::Release);
    for (dst, &src) in slot[1..].iter().zip(&payload[1..]) {
        dst.store(src, Ordering::Relaxed);
    }
    slot[0].store(seq, Ordering::Release);
}

/// Copies sequence `expected` out of `slot` into `out`, or says why it cannot.
///
/// On [`SlotRead::Ready`], `out[0] == expected` and `out[1..]` is exactly what the writer wrote
/// for that sequence: never a mix of two writes. On any other outcome `out` holds garbage and
/// must be ignored.
#[inline]
pub fn read_slot(slot: &[AtomicU64], expected: u64, out: &mut [u64]) -> SlotRead {
    debug_assert_eq!(slot.len(), out.len());
    // A larger `expected` could match a stamp with the BUSY bit set; callers never pass one.
    debug_assert!(expected != 0 && expected <= MAX_SEQUENCE);
    let before = slot[0].load(Ordering::Acquire);
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
    // Orders the payload loads before the stamp reload: if the writer touched any payload word we
    // copied, the reload sees its busy stamp (or later).
    fence(Ordering::Acquire);
    let after = slot[0].load(Ordering::Relaxed);
    if after != before {
        return SlotRead::Torn {
            found: after & !BUSY,
        };
    }
    out[0] = expected;
    SlotRead::Ready
}

/// What a reader does after learning that the slot of `next` does not hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Skip to `resume` (`> next`): every sequence in `next..resume` is lost to the reader.
    Skip {
        /// The sequence to read next.
        resume: u64,
        /// The skip is because of a slot whose stamp the writer cannot have written (corrupt
        /// shared memory), not because of a lap.
        corrupt: bool,
    },
    /// Do nothing now and poll again: the record has not been written yet, or the write cursor
    /// is not trustworthy at the moment (the writer's next write repairs it).
    Wait,
}

/// Where a lapped reader resumes: a sixteenth of the ring after the oldest sequence that may
/// still be intact in a ring whose last published sequence is `published`, and at least one
/// past `next`.
///
/// The oldest intact sequence, `published - capacity + 1`, is the next the writer overwrites;
/// the head start gives the reader room to catch up instead of being lapped again at once.
/// Every skipped sequence is counted as lost, so the choice affects how much is lost, never the
/// accounting. Never overflows for `next, published <= MAX_SEQUENCE`.
pub fn lapped_resume(next: u64, published: u64, capacity: u64) -> u64 {
    published
        .saturating_sub(capacity)
        .saturating_add(1 + capacity / 16)
        .min(published)
        .max(next.saturating_add(1))
}

/// Decides how a reader at `next` recovers when [`read_slot`] reported that its slot holds the
/// later sequence `found` (a lap, or a torn copy).
///
/// `stamp_of(s)` loads (acquire) the stamp of the slot that holds sequence `s`; `cursor` is the
/// ring's write cursor. Both are shared memory that anyone may have scribbled on, so nothing is
/// taken on trust:
///
/// - The cursor is believed only if it is at most `believable` (the caller's bound of what the
///   writer can have published: the Rust reader allows one record per nanosecond since it
///   attached) and its own slot holds it or a later lap: the writer publishes a slot before it
///   moves the cursor past it, so a true cursor always passes. Otherwise [`Recovery::Wait`].
/// - `found` is a lap only if it is a later sequence of the same slot and at most one past the
///   cursor (the writer moves the cursor right after each slot it publishes). Then the reader
///   resumes per [`lapped_resume`] of the larger of the two.
/// - Otherwise the stamp is corrupt. If the cursor says `next` was published and is still in
///   the ring, only that record is unreadable: skip it alone (`corrupt`). If the cursor says
///   `next` was overwritten anyway, recover from the lap the cursor shows. If `next` is not
///   published yet, [`Recovery::Wait`]: the writer's write of `next` replaces the bad stamp.
///
/// The resulting skip is at most to one past the believed cursor, so a loss is never larger
/// than `believable` allows: a lone corrupt word never makes a reader skip records the writer
/// has not written, and no forgery makes it count an absurd loss.
pub fn recover_lap(
    next: u64,
    found: u64,
    cursor: &AtomicU64,
    stamp_of: impl Fn(u64) -> u64,
    capacity: u64,
    believable: u64,
) -> Recovery {
    // `found` may come from a relaxed load (a torn copy's second stamp load); this fence makes
    // the writer's release store of that stamp, and so its cursor of the write before,
    // visible to the cursor load below: a true lap always passes the check against the cursor.
    fence(Ordering::Acquire);
    let Some(published) = trusted_cursor(cursor, &stamp_of, believable) else {
        return Recovery::Wait;
    };
    let mask = capacity - 1;
    let a_lap = found > next && found & mask == next & mask && found <= published.saturating_add(1);
    if a_lap {
        return Recovery::Skip {
            resume: lapped_resume(next, published.max(found), capacity),
            corrupt: false,
        };
    }
    corrupt_slot(next, published, capacity)
}

/// Checks, for a reader at `next` whose slot keeps answering "not yet", whether the slot was
/// damaged: the (believed, see [`recover_lap`]) cursor says `next` was published, yet the slot,
/// loaded after the cursor, holds an earlier sequence. The writer stores a slot before the
/// cursor that covers it, so that cannot happen unless the slot was overwritten by someone
/// else. Returns [`Recovery::Wait`] when all is well.
///
/// Costs two or three shared loads: call it now and then (the Rust reader does at each idle
/// heartbeat), not per poll.
pub fn check_unpublished(
    next: u64,
    cursor: &AtomicU64,
    stamp_of: impl Fn(u64) -> u64,
    capacity: u64,
    believable: u64,
) -> Recovery {
    let Some(published) = trusted_cursor(cursor, &stamp_of, believable) else {
        return Recovery::Wait;
    };
    if next > published || stamp_of(next) & !BUSY >= next {
        return Recovery::Wait;
    }
    corrupt_slot(next, published, capacity)
}

/// The write cursor, if it passes the checks of [`recover_lap`].
fn trusted_cursor(
    cursor: &AtomicU64,
    stamp_of: &impl Fn(u64) -> u64,
    believable: u64,
) -> Option<u64> {
    let c = cursor.load(Ordering::Acquire);
    // The acquire load of the cursor orders the writer's store of its slot before the stamp
    // load below, so a true cursor's slot always holds it or a later lap.
    (c <= MAX_SEQUENCE.min(believable) && stamp_of(c) & !BUSY >= c).then_some(c)
}

/// Recovery from a slot of `next` whose stamp cannot be the writer's, given a trusted cursor.
fn corrupt_slot(next: u64, published: u64, capacity: u64) -> Recovery {
    if next > published {
        Recovery::Wait
    } else if next.saturating_add(capacity) > published {
        Recovery::Skip {
            resume: next + 1,
            corrupt: true,
        }
    } else {
        Recovery::Skip {
            resume: lapped_resume(next, published, capacity),
            corrupt: false,
        }
    }
}
