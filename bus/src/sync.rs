//! Atomics used by the seqlock protocol.
//!
//! Under `--cfg loom` these are loom's model-checked atomics, so that the exact code in
//! [`crate::protocol`] is what the loom model explores; otherwise they are `core`'s.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU64, Ordering};
