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
//! models?" (MSPC 2012): the writer stores the busy stamp, issues a release fence, stores the
//! payload relaxed and publishes the clean stamp with release; the reader loads the stamp with
//! acquire, loads the payload relaxed, issues an acquire fence and reloads the stamp. Payload
//! words are atomics rather than plain memory because another process writes them concurrently:
//! a racy non-atomic read would be undefined behaviour even though the seqlock discards it.

use crate::sync::{fence, AtomicU64, Ordering};

/// Bit set in a slot's stamp while the writer is writing that slot.
pub const BUSY: u64 = 1 << 63;

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
    slot[0].store(seq | BUSY, Ordering::Relaxed);
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
