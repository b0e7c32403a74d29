//! The fixed-size records carried by the bus.
//!
//! Both records are `#[repr(C)]`, little-endian, made only of integers, with no implicit padding
//! (checked by `bytemuck::Pod`), and a multiple of the 64-byte cache line. Prices and sizes are
//! fixed-point integers scaled by [`PRICE_SCALE`] and [`SIZE_SCALE`]. The first word of every
//! record is its sequence number, which doubles as the slot's seqlock stamp (see
//! [`crate::protocol`]); the ring assigns it, whatever the caller put there.

use bytemuck::{Pod, Zeroable};

/// Fixed-point scale of every price: a price of `p` means `p / PRICE_SCALE` quote units.
pub const PRICE_SCALE: i64 = 100_000_000;
/// Fixed-point scale of every size: a size of `s` means `s / SIZE_SCALE` base units.
pub const SIZE_SCALE: i64 = 100_000_000;

/// Which record a ring carries; stored in the ring header as a `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RecordType {
    /// [`Trade`], 64 bytes.
    Trade = 1,
    /// [`BookUpdate`], 256 bytes.
    BookUpdate = 2,
}

impl RecordType {
    /// The record type stored as `raw` in a header, if it is one we know.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Trade),
            2 => Some(Self::BookUpdate),
            _ => None,
        }
    }

    /// Size in bytes of one record of this type.
    pub const fn size(self) -> usize {
        match self {
            Self::Trade => core::mem::size_of::<Trade>(),
            Self::BookUpdate => core::mem::size_of::<BookUpdate>(),
        }
    }

    /// The stream name used in ring file names and the manifest: `trades` or `book`.
    pub const fn stream_name(self) -> &'static str {
        match self {
            Self::Trade => "trades",
            Self::BookUpdate => "book",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Trade {}
    impl Sealed for super::BookUpdate {}
}

/// A record that a ring can carry.
///
/// Sealed: the byte layout of each record is part of the documented wire format
/// (docs/bus-format.md), so only the types defined here implement it. Every bit pattern is a
/// valid value (`Pod`), which is what makes copying one out of memory written by another process
/// sound; whether its *fields* make sense is for the reader to check.
pub trait Record: Pod + sealed::Sealed + Send + 'static {
    /// The type tag written in the ring header.
    const TYPE: RecordType;
    /// Size in 64-bit words.
    const WORDS: usize = core::mem::size_of::<Self>() / 8;

    /// The sequence number (word 0).
    fn sequence(&self) -> u64;
    /// The send timestamp, `CLOCK_MONOTONIC` nanoseconds (see [`crate::now_ns`]).
    fn send_ts_ns(&self) -> u64;
    /// The stored checksum.
    fn checksum(&self) -> u64;
    /// Sets the checksum field to [`checksum_of`] the record.
    fn seal(&mut self);
}

/// Aggressor side of a trade, or side of a book level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Side {
    /// Buy (bid).
    Buy = 1,
    /// Sell (ask).
    Sell = 2,
}

impl Side {
    /// Decodes a wire byte; `None` for anything but 1 or 2.
    pub fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Buy),
            2 => Some(Self::Sell),
            _ => None,
        }
    }
}

/// What a [`Level`] change does to the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    /// A price level that did not exist now has `size`.
    Insert = 1,
    /// An existing price level now has `size`.
    Update = 2,
    /// An existing price level is removed; `size` is 0.
    Delete = 3,
}

impl Action {
    /// Decodes a wire byte; `None` for anything but 1, 2 or 3.
    pub fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Insert),
            2 => Some(Self::Update),
            3 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// One executed trade. 64 bytes, one cache line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
#[repr(C)]
pub struct Trade {
    /// Sequence number in this ring, from 1, assigned by the writer.
    pub sequence: u64,
    /// When the writer sent it: `CLOCK_MONOTONIC` nanoseconds.
    pub send_ts_ns: u64,
    /// Exchange id, an index into the manifest's `exchanges`.
    pub exchange_id: u16,
    /// Aggressor [`Side`] as a byte.
    pub side: u8,
    /// Zero.
    pub reserved0: u8,
    /// Symbol id, an index into the manifest's `symbols`.
    pub symbol_id: u32,
    /// Per-symbol trade id, from 1, incremented by one per trade of that symbol on that exchange.
    pub trade_id: u64,
    /// Price, fixed-point ([`PRICE_SCALE`]).
    pub price: i64,
    /// Size, fixed-point ([`SIZE_SCALE`]), > 0.
    pub size: i64,
    /// Version of the symbol's published book when the trade executed (see [`BookUpdate`]); the
    /// liquidity it took shows in the next book update of the symbol.
    pub book_version: u64,
    /// [`checksum_of`] this record.
    pub checksum: u64,
}

/// One change to a price level of a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
#[repr(C)]
pub struct Level {
    /// Price, fixed-point ([`PRICE_SCALE`]).
    pub price: i64,
    /// New size at that price, fixed-point ([`SIZE_SCALE`]); 0 for a delete.
    pub size: i64,
    /// [`Side`] as a byte.
    pub side: u8,
    /// [`Action`] as a byte.
    pub action: u8,
    /// Zero.
    pub reserved: [u8; 6],
}

/// Most level changes one [`BookUpdate`] carries.
pub const MAX_LEVELS: usize = 8;

/// A batch of level changes to one symbol's book. 256 bytes, four cache lines.
///
/// Books are versioned per (exchange, symbol): every book update increments the version by one,
/// from 0 for the empty book. `prev_version` is the version the update applies to, so a reader
/// that sees `prev_version` differ from the last version it knows has missed an update. Trades
/// do not change the version: the level changes a trade causes are published in the symbol's
/// next book update(s), and the trade carries the version of the book it executed against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BookUpdate {
    /// Sequence number in this ring, from 1, assigned by the writer.
    pub sequence: u64,
    /// When the writer sent it: `CLOCK_MONOTONIC` nanoseconds.
    pub send_ts_ns: u64,
    /// Exchange id, an index into the manifest's `exchanges`.
    pub exchange_id: u16,
    /// How many entries of `levels` are used, `0..=MAX_LEVELS`.
    pub level_count: u8,
    /// Zero.
    pub reserved0: u8,
    /// Symbol id, an index into the manifest's `symbols`.
    pub symbol_id: u32,
    /// Book version after this update.
    pub version: u64,
    /// Book version this update applies to.
    pub prev_version: u64,
    /// The changes, applied in order; entries past `level_count` are zero.
    pub levels: [Level; MAX_LEVELS],
    /// Zero.
    pub reserved1: [u64; 2],
    /// [`checksum_of`] this record.
    pub checksum: u64,
}

const _: () = {
    assert!(core::mem::size_of::<Trade>() == 64);
    assert!(core::mem::align_of::<Trade>() == 8);
    assert!(core::mem::size_of::<Level>() == 24);
    assert!(core::mem::size_of::<BookUpdate>() == 256);
    assert!(core::mem::align_of::<BookUpdate>() == 8);
    assert!(core::mem::offset_of!(Trade, checksum) == 56);
    assert!(core::mem::offset_of!(BookUpdate, levels) == 40);
    assert!(core::mem::offset_of!(BookUpdate, checksum) == 248);
};

/// The checksum of a record: a 64-bit hash of every word except the first two (the sequence,
/// which the ring assigns, and the send timestamp, which is taken at the last moment before the
/// write so that sealing stays out of the measured write) and the last (the checksum itself).
///
/// The hash folds each little-endian word `w` as `h = (h ^ w).wrapping_mul(K).rotate_left(29)`,
/// starting from `h = SEED`, then finishes with `h ^ (h >> 32)`; `K` and `SEED` are documented in
/// docs/bus-format.md so that readers in other languages can verify it. It detects corruption and
/// torn copies, not tampering.
pub fn checksum_of<R: Record>(record: &R) -> u64 {
    let words: &[u64] = bytemuck::cast_slice(core::slice::from_ref(record));
    checksum_words(&words[2..words.len() - 1])
}

/// Multiplier of [`checksum_of`].
pub const CHECKSUM_K: u64 = 0x9E37_79B9_7F4A_7C15;
/// Seed of [`checksum_of`].
pub const CHECKSUM_SEED: u64 = 0xA17A_9017_5E5B_0001;

#[inline]
fn checksum_words(words: &[u64]) -> u64 {
    let mut h = CHECKSUM_SEED;
    for &w in words {
        h = (h ^ u64::from_le(w))
            .wrapping_mul(CHECKSUM_K)
            .rotate_left(29);
    }
    h ^ (h >> 32)
}

impl Record for Trade {
    const TYPE: RecordType = RecordType::Trade;
    fn sequence(&self) -> u64 {
        self.sequence
    }
    fn send_ts_ns(&self) -> u64 {
        self.send_ts_ns
    }
    fn checksum(&self) -> u64 {
        self.checksum
    }
    fn seal(&mut self) {
        self.checksum = checksum_of(self);
    }
}

impl Record for BookUpdate {
    const TYPE: RecordType = RecordType::BookUpdate;
    fn sequence(&self) -> u64 {
        self.sequence
    }
    fn send_ts_ns(&self) -> u64 {
        self.send_ts_ns
    }
    fn checksum(&self) -> u64 {
        self.checksum
    }
    fn seal(&mut self) {
        self.checksum = checksum_of(self);
    }
}

impl BookUpdate {
    /// The used level changes, `levels[..level_count]`, clamped to [`MAX_LEVELS`] so that a
    /// corrupt `level_count` read from shared memory cannot index out of bounds.
    pub fn changes(&self) -> &[Level] {
        &self.levels[..usize::from(self.level_count).min(MAX_LEVELS)]
    }
}

#[cfg(test)]
mod tests {
    use crate::record::*;

    #[test]
    fn checksum_ignores_sequence_and_timestamp_and_detects_payload_changes() {
        let mut t = Trade {
            price: 42 * PRICE_SCALE,
            size: SIZE_SCALE,
            ..Trade::zeroed()
        };
        t.seal();
        let sealed = t.checksum;
        t.sequence = 99;
        t.send_ts_ns = 12345;
        assert_eq!(checksum_of(&t), sealed);
        t.price += 1;
        assert_ne!(checksum_of(&t), sealed);
    }

    #[test]
    fn corrupt_level_count_is_clamped() {
        let u = BookUpdate {
            level_count: 200,
            ..BookUpdate::zeroed()
        };
        assert_eq!(u.changes().len(), MAX_LEVELS);
    }
}
