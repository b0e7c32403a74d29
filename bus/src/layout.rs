//! The byte layout of a ring file: constants shared by writer, reader and docs/bus-format.md.
//!
//! ```text
//! offset 0     header, 4096 bytes
//!   0    line 0: identity (written once, before MAGIC is published)
//!   64   line 1: writer heartbeat and state
//!   128  line 2: write cursor
//!   256  reader slots, MAX_READERS x 64 bytes
//! offset 4096  capacity x record_size bytes of slots; slot i holds sequences s with s % capacity == i
//! ```
//! Every integer is little-endian and naturally aligned.

/// First 8 bytes of every ring file.
pub const MAGIC: u64 = u64::from_le_bytes(*b"APBUSRNG");
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header; slots start here.
pub const HEADER_SIZE: usize = 4096;
/// Number of reader slots in the header.
pub const MAX_READERS: usize = 32;
/// Smallest capacity (records) a ring may have.
pub const MIN_CAPACITY: u64 = 2;
/// Largest capacity (records) a ring may have.
pub const MAX_CAPACITY: u64 = 1 << 30;

/// `u64` magic.
pub const OFF_MAGIC: usize = 0;
/// `u32` format version.
pub const OFF_VERSION: usize = 8;
/// `u32` record type ([`crate::RecordType`]).
pub const OFF_RECORD_TYPE: usize = 12;
/// `u32` record size in bytes.
pub const OFF_RECORD_SIZE: usize = 16;
/// `u32` header size in bytes (offset of slot 0).
pub const OFF_HEADER_SIZE: usize = 20;
/// `u64` capacity in records, a power of two.
pub const OFF_CAPACITY: usize = 24;
/// `u32` number of reader slots.
pub const OFF_MAX_READERS: usize = 32;
/// `u32` writer mode ([`crate::WriterMode`]).
pub const OFF_MODE: usize = 36;
/// `u64` epoch: differs between two writers that created a ring under the same name.
pub const OFF_EPOCH: usize = 40;
/// `u32` pid of the writer process.
pub const OFF_WRITER_PID: usize = 48;
/// `u64` creation time, `CLOCK_MONOTONIC` ns.
pub const OFF_CREATED_NS: usize = 56;
/// `u64` writer heartbeat, `CLOCK_MONOTONIC` ns.
pub const OFF_WRITER_HEARTBEAT: usize = 64;
/// `u64` writer state: [`WRITER_OPEN`] or [`WRITER_CLOSED`].
pub const OFF_WRITER_STATE: usize = 72;
/// `u64` inode of the writer's pid namespace (`/proc/self/ns/pid`), 0 if unknown. Written once
/// at creation, like line 0; readers written before it existed ignore it (it was reserved zero).
pub const OFF_WRITER_PID_NS: usize = 80;
/// `u64` last published sequence (0: none yet).
pub const OFF_WRITE_CURSOR: usize = 128;
/// First reader slot.
pub const OFF_READERS: usize = 256;
/// Size of one reader slot.
pub const READER_SLOT_SIZE: usize = 64;

/// Writer state: writing.
pub const WRITER_OPEN: u64 = 1;
/// Writer state: closed cleanly; no more records will come.
pub const WRITER_CLOSED: u64 = 2;

/// Reader slot field offsets, relative to the slot.
pub mod reader_slot {
    /// `u64` owner: `pid << 32 | state`.
    pub const OWNER: usize = 0;
    /// `u64` heartbeat, `CLOCK_MONOTONIC` ns.
    pub const HEARTBEAT: usize = 8;
    /// `u64` next sequence the reader wants.
    pub const CURSOR: usize = 16;
    /// `u64` records lost (lapped) so far.
    pub const LOST: usize = 24;
    /// `u64` records received so far (published every 64 records and on detach).
    pub const RECEIVED: usize = 32;
    /// `u64` attach time, `CLOCK_MONOTONIC` ns.
    pub const ATTACHED_NS: usize = 40;
    /// `u64` torn copies discarded so far.
    pub const TORN: usize = 48;
    /// `u64` inode of the reader's pid namespace, 0 if unknown (or written by a reader that
    /// predates the field: it was reserved zero). A pid is only judged by `kill(pid, 0)` by a
    /// process of the same namespace.
    pub const PID_NS: usize = 56;

    /// Owner state: free.
    pub const FREE: u64 = 0;
    /// Owner state: a live reader holds it.
    pub const ACTIVE: u64 = 1;
    /// Owner state: the writer judged the reader dead and no longer waits for it.
    pub const EVICTED: u64 = 2;
    /// Owner state: a reader has claimed the slot and is initializing its fields; it becomes
    /// ACTIVE once they are written. Nobody else writes a claimed slot.
    pub const CLAIMING: u64 = 3;
}

const _: () = assert!(OFF_READERS + MAX_READERS * READER_SLOT_SIZE <= HEADER_SIZE);

/// Total file length of a ring, or `None` on overflow.
pub fn ring_len(capacity: u64, record_size: usize) -> Option<u64> {
    capacity
        .checked_mul(record_size as u64)?
        .checked_add(HEADER_SIZE as u64)
}
