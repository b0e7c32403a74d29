//! The capture file format (docs/capture-format.md): what every byte means, and the checks
//! that refuse a file that is not one, is truncated, or comes from a newer version.
//!
//! ```text
//! file    = magic "APCAPTUR" (8) | version u32 | header_len u32 | header (JSON, header_len)
//!           | chunk* | index | footer
//! chunk   = "APCK" | exchange u16 | stream u8 | 0 u8 | records u32 | first_ts u64
//!           | last_ts u64 | compressed_len u32 | raw_len u32 | zstd frame (compressed_len)
//! index   = "APIX" | entries u32 | entry* ; entry = offset u64 | exchange u16 | stream u8
//!           | 0 u8 | records u32 | first_ts u64 | last_ts u64
//! footer  = index_offset u64 | magic "APCAPEND" (8)
//! ```
//!
//! Integers are little-endian. A chunk holds consecutive records of one source (exchange and
//! stream), as the bus stores them (docs/bus-format.md), in the order they were written; each
//! record's `send_ts_ns` is its time.

use std::fmt;

use alphapulse_bus::{BookUpdate, Trade};
use serde::{Deserialize, Serialize};

use crate::plan::Stream;

/// The first eight bytes of every capture file.
pub const MAGIC: &[u8; 8] = b"APCAPTUR";
/// The last eight bytes of a complete capture file.
pub const END_MAGIC: &[u8; 8] = b"APCAPEND";
/// The version this build writes and the only one it reads.
pub const VERSION: u32 = 1;
/// Start of every chunk.
pub const CHUNK_MAGIC: &[u8; 4] = b"APCK";
/// Start of the index.
pub const INDEX_MAGIC: &[u8; 4] = b"APIX";
/// Bytes of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 36;
/// Bytes of an index entry.
pub const INDEX_ENTRY_LEN: usize = 32;
/// Bytes of the footer.
pub const FOOTER_LEN: usize = 16;
/// Largest header accepted, bytes.
pub const MAX_HEADER_LEN: u32 = 16 << 20;
/// Records a writer puts in one chunk (the last chunk of a source may hold fewer).
pub const CHUNK_RECORDS: usize = 4096;
/// Largest uncompressed chunk accepted: [`CHUNK_RECORDS`] book updates, times 4 for chunks of
/// other writers.
pub const MAX_RAW_LEN: u32 = (CHUNK_RECORDS * 256 * 4) as u32;
/// Most chunks an index may list.
pub const MAX_CHUNKS: u32 = 64 << 20;

/// Size of one record of `stream`, bytes.
pub fn record_size(stream: Stream) -> usize {
    match stream {
        Stream::Trades => std::mem::size_of::<Trade>(),
        Stream::Book => std::mem::size_of::<BookUpdate>(),
    }
}

/// The stream byte of a chunk or index entry.
pub fn stream_byte(stream: Stream) -> u8 {
    match stream {
        Stream::Trades => 1,
        Stream::Book => 2,
    }
}

/// The stream a byte names.
pub fn stream_of(byte: u8) -> Option<Stream> {
    match byte {
        1 => Some(Stream::Trades),
        2 => Some(Stream::Book),
        _ => None,
    }
}

/// The JSON header of a capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// `"alphapulse-capture"`.
    pub format: String,
    /// The tool and version that wrote it.
    pub tool: String,
    /// When writing began, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Exchange names, indexed by exchange id (an empty name: an id with no records).
    pub exchanges: Vec<String>,
    /// Symbol names, indexed by symbol id.
    pub symbols: Vec<String>,
    /// Where the records came from: `run <run id>`, `tardis <files>`, ...
    pub origin: String,
    /// What the records' `send_ts_ns` are: `monotonic` (a recorded run's clock) or `unix`
    /// (an import's exchange or receive times), both ns; replay uses only their differences.
    pub clock: String,
}

/// The `format` of every header.
pub const FORMAT_NAME: &str = "alphapulse-capture";

/// A chunk's header, or an index entry (which repeats it with the chunk's offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Byte offset of the chunk's header in the file.
    pub offset: u64,
    /// Exchange id of its records.
    pub exchange: u16,
    /// Their stream.
    pub stream: Stream,
    /// How many records it holds.
    pub records: u32,
    /// `send_ts_ns` of its first record.
    pub first_ts: u64,
    /// `send_ts_ns` of its last record.
    pub last_ts: u64,
    /// Bytes of its zstd frame (chunk headers only; 0 in an index entry).
    pub compressed_len: u32,
}

impl ChunkInfo {
    /// Its raw (uncompressed) length, bytes.
    pub fn raw_len(&self) -> u64 {
        u64::from(self.records) * record_size(self.stream) as u64
    }

    /// The chunk header's bytes.
    pub fn header_bytes(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[0..4].copy_from_slice(CHUNK_MAGIC);
        b[4..6].copy_from_slice(&self.exchange.to_le_bytes());
        b[6] = stream_byte(self.stream);
        b[8..12].copy_from_slice(&self.records.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_ts.to_le_bytes());
        b[20..28].copy_from_slice(&self.last_ts.to_le_bytes());
        b[28..32].copy_from_slice(&self.compressed_len.to_le_bytes());
        b[32..36].copy_from_slice(&(self.raw_len() as u32).to_le_bytes());
        b
    }

    /// Parses a chunk header read at `offset`.
    pub fn parse_header(b: &[u8; CHUNK_HEADER_LEN], offset: u64) -> Result<Self, String> {
        if &b[0..4] != CHUNK_MAGIC {
            return Err("not a chunk header".into());
        }
        let stream = stream_of(b[6]).ok_or_else(|| format!("unknown stream byte {}", b[6]))?;
        let info = ChunkInfo {
            offset,
            exchange: u16::from_le_bytes([b[4], b[5]]),
            stream,
            records: u32_at(b, 8),
            first_ts: u64_at(b, 12),
            last_ts: u64_at(b, 20),
            compressed_len: u32_at(b, 28),
        };
        let raw = u32_at(b, 32);
        if u64::from(raw) != info.raw_len() || raw > MAX_RAW_LEN || info.records == 0 {
            return Err(format!(
                "{} records of {} bytes do not make {raw} bytes (or exceed {MAX_RAW_LEN})",
                info.records,
                record_size(stream)
            ));
        }
        if info.last_ts < info.first_ts {
            return Err("its last timestamp is before its first".into());
        }
        Ok(info)
    }

    /// The index entry's bytes.
    pub fn entry_bytes(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut b = [0u8; INDEX_ENTRY_LEN];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..10].copy_from_slice(&self.exchange.to_le_bytes());
        b[10] = stream_byte(self.stream);
        b[12..16].copy_from_slice(&self.records.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_ts.to_le_bytes());
        b[24..32].copy_from_slice(&self.last_ts.to_le_bytes());
        b
    }

    /// Parses an index entry.
    pub fn parse_entry(b: &[u8]) -> Result<Self, String> {
        let stream = stream_of(b[10]).ok_or_else(|| format!("unknown stream byte {}", b[10]))?;
        Ok(ChunkInfo {
            offset: u64_at(b, 0),
            exchange: u16::from_le_bytes([b[8], b[9]]),
            stream,
            records: u32_at(b, 12),
            first_ts: u64_at(b, 16),
            last_ts: u64_at(b, 24),
            compressed_len: 0,
        })
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// What is wrong with a capture file: its path, where (a byte offset, when one applies) and
/// what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// The file.
    pub path: String,
    /// Byte offset of the problem, when one applies.
    pub offset: Option<u64>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{}: at byte {o}: {}", self.path, self.problem),
            None => write!(f, "{}: {}", self.path, self.problem),
        }
    }
}

impl std::error::Error for CaptureError {}
