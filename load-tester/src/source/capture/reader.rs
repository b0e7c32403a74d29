//! Reading a capture: [`CaptureFile::open`] checks everything that can be checked without
//! decompressing (magic, version, header, footer, index, every chunk header against its index
//! entry, timestamps in order per source) so that a bad file fails before a run starts; a chunk
//! that fails to decompress or holds records of the wrong shape fails when it is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::plan::Stream;
use crate::source::capture::format::{
    record_size, CaptureError, ChunkInfo, Header, CHUNK_HEADER_LEN, END_MAGIC, FOOTER_LEN,
    FORMAT_NAME, INDEX_ENTRY_LEN, INDEX_MAGIC, MAGIC, MAX_CHUNKS, MAX_HEADER_LEN, VERSION,
};

/// One source of a capture: its chunks, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedSource {
    /// Exchange id.
    pub exchange: u16,
    /// Stream.
    pub stream: Stream,
    /// Its chunks, in file (and time) order.
    pub chunks: Vec<ChunkInfo>,
    /// Records over all its chunks.
    pub records: u64,
}

/// A capture file, opened and checked.
#[derive(Debug, Clone)]
pub struct CaptureFile {
    /// Its path.
    pub path: PathBuf,
    /// Its header.
    pub header: Header,
    /// Its sources, by (exchange, stream).
    pub sources: BTreeMap<(u16, Stream), CapturedSource>,
    /// The earliest record's time, ns.
    pub first_ts: u64,
    /// The latest record's time, ns.
    pub last_ts: u64,
}

impl CaptureFile {
    /// Opens `path` and checks it (see the module docs).
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let fail = |offset: Option<u64>, problem: String| CaptureError {
            path: name.clone(),
            offset,
            problem,
        };
        let mut file = File::open(path).map_err(|e| fail(None, format!("cannot open: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(None, format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(fail(None, "is not a regular file".into()));
        }
        let len = meta.len();
        let mut head = [0u8; 16];
        if len < 16 || file.read_exact(&mut head).is_err() {
            return Err(fail(None, "is too short to be a capture".into()));
        }
        if &head[0..8] != MAGIC {
            return Err(fail(
                Some(0),
                "is not an AlphaPulse capture (no APCAPTUR magic)".into(),
            ));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(fail(
                Some(8),
                format!(
                    "capture format version {version}; this build reads version {VERSION}{}",
                    if version > VERSION {
                        ": use a newer load-tester"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let header_len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        if header_len > MAX_HEADER_LEN || u64::from(header_len) + 16 > len {
            return Err(fail(
                Some(12),
                format!("header length {header_len} is impossible"),
            ));
        }
        let mut json = vec![0u8; header_len as usize];
        file.read_exact(&mut json)
            .map_err(|e| fail(Some(16), format!("cannot read the header: {e}")))?;
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| fail(Some(16), format!("the header is not valid: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(fail(
                Some(16),
                format!("format {:?} is not {FORMAT_NAME:?}", header.format),
            ));
        }
        let data_start = 16 + u64::from(header_len);
        if len < data_start + 8 + FOOTER_LEN as u64 {
            return Err(fail(
                None,
                "is truncated: it ends before its index (was the recorder stopped?)".into(),
            ));
        }
        let mut footer = [0u8; FOOTER_LEN];
        file.seek(SeekFrom::Start(len - FOOTER_LEN as u64))
            .and_then(|_| file.read_exact(&mut footer))
            .map_err(|e| fail(None, format!("cannot read the footer: {e}")))?;
        if &footer[8..16] != END_MAGIC {
            return Err(fail(
                Some(len - 8),
                "is truncated: no APCAPEND footer at its end (was the recorder stopped?)".into(),
            ));
        }
        let index_offset = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
        if index_offset < data_start || index_offset.saturating_add(8) > len - FOOTER_LEN as u64 {
            return Err(fail(
                Some(len - 16),
                format!("index offset {index_offset} is impossible"),
            ));
        }
        let mut ix = [0u8; 8];
        file.seek(SeekFrom::Start(index_offset))
            .and_then(|_| file.read_exact(&mut ix))
            .map_err(|e| fail(Some(index_offset), format!("cannot read the index: {e}")))?;
        if &ix[0..4] != INDEX_MAGIC {
            return Err(fail(
                Some(index_offset),
                "no index where the footer points".into(),
            ));
        }
        let count = u32::from_le_bytes(ix[4..8].try_into().expect("4 bytes"));
        let expected = index_offset + 8 + u64::from(count) * INDEX_ENTRY_LEN as u64;
        if count > MAX_CHUNKS || expected != len - FOOTER_LEN as u64 {
            return Err(fail(
                Some(index_offset),
                format!("an index of {count} chunks does not fit the file"),
            ));
        }
        let mut entries = vec![0u8; count as usize * INDEX_ENTRY_LEN];
        file.read_exact(&mut entries).map_err(|e| {
            fail(
                Some(index_offset + 8),
                format!("cannot read the index: {e}"),
            )
        })?;
        let mut sources: BTreeMap<(u16, Stream), CapturedSource> = BTreeMap::new();
        let (mut first_ts, mut last_ts) = (u64::MAX, 0);
        let mut next_offset = data_start;
        for (i, raw) in entries.chunks_exact(INDEX_ENTRY_LEN).enumerate() {
            let at = index_offset + 8 + (i * INDEX_ENTRY_LEN) as u64;
            let entry = ChunkInfo::parse_entry(raw).map_err(|e| fail(Some(at), e))?;
            if entry.offset != next_offset {
                return Err(fail(
                    Some(at),
                    format!(
                        "index entry {i} points at byte {}, the chunk is at {next_offset}",
                        entry.offset
                    ),
                ));
            }
            let mut h = [0u8; CHUNK_HEADER_LEN];
            file.seek(SeekFrom::Start(entry.offset))
                .and_then(|_| file.read_exact(&mut h))
                .map_err(|e| fail(Some(entry.offset), format!("cannot read a chunk: {e}")))?;
            let chunk = ChunkInfo::parse_header(&h, entry.offset)
                .map_err(|e| fail(Some(entry.offset), e))?;
            if (
                chunk.exchange,
                chunk.stream,
                chunk.records,
                chunk.first_ts,
                chunk.last_ts,
            ) != (
                entry.exchange,
                entry.stream,
                entry.records,
                entry.first_ts,
                entry.last_ts,
            ) {
                return Err(fail(
                    Some(entry.offset),
                    format!("chunk {i} does not match its index entry"),
                ));
            }
            if usize::from(chunk.exchange) >= header.exchanges.len() {
                return Err(fail(
                    Some(entry.offset),
                    format!(
                        "chunk {i}: exchange {} is not in the header",
                        chunk.exchange
                    ),
                ));
            }
            next_offset = chunk.offset + CHUNK_HEADER_LEN as u64 + u64::from(chunk.compressed_len);
            if next_offset > index_offset {
                return Err(fail(
                    Some(entry.offset),
                    format!("chunk {i} runs into the index"),
                ));
            }
            let s = sources
                .entry((chunk.exchange, chunk.stream))
                .or_insert_with(|| CapturedSource {
                    exchange: chunk.exchange,
                    stream: chunk.stream,
                    chunks: Vec::new(),
                    records: 0,
                });
            if let Some(prev) = s.chunks.last() {
                if chunk.first_ts < prev.last_ts {
                    return Err(fail(
                        Some(entry.offset),
                        format!(
                            "chunk {i}: the timestamps of exchange {} {} go backwards",
                            chunk.exchange,
                            chunk.stream.name()
                        ),
                    ));
                }
            }
            s.records += u64::from(chunk.records);
            s.chunks.push(chunk);
            first_ts = first_ts.min(chunk.first_ts);
            last_ts = last_ts.max(chunk.last_ts);
        }
        if next_offset != index_offset {
            return Err(fail(
                Some(next_offset),
                "bytes between the last chunk and the index".into(),
            ));
        }
        if sources.is_empty() {
            return Err(fail(None, "holds no records".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            sources,
            first_ts,
            last_ts,
        })
    }

    /// The records of `chunk`, decompressed from `file` (a handle of this capture's path) and
    /// checked for length; each is [`record_size`] bytes.
    pub fn read_chunk(&self, file: &mut File, chunk: &ChunkInfo) -> Result<Vec<u8>, CaptureError> {
        let mut out = Vec::new();
        self.read_chunk_into(
            file,
            chunk,
            &mut Vec::new(),
            &mut out,
            &mut zstd::bulk::Decompressor::new().map_err(|e| CaptureError {
                path: self.path.display().to_string(),
                offset: Some(chunk.offset),
                problem: format!("cannot start zstd: {e}"),
            })?,
        )?;
        Ok(out)
    }

    /// [`CaptureFile::read_chunk`] into `out` (replacing its contents), reusing `compressed`
    /// and `decompressor`: what a replay calls once per chunk without allocating.
    pub fn read_chunk_into(
        &self,
        file: &mut File,
        chunk: &ChunkInfo,
        compressed: &mut Vec<u8>,
        out: &mut Vec<u8>,
        decompressor: &mut zstd::bulk::Decompressor<'_>,
    ) -> Result<(), CaptureError> {
        let fail = |problem: String| CaptureError {
            path: self.path.display().to_string(),
            offset: Some(chunk.offset),
            problem,
        };
        compressed.resize(chunk.compressed_len as usize, 0);
        file.seek(SeekFrom::Start(chunk.offset + CHUNK_HEADER_LEN as u64))
            .and_then(|_| file.read_exact(compressed))
            .map_err(|e| fail(format!("cannot read the chunk: {e}")))?;
        out.clear();
        out.reserve(chunk.raw_len() as usize);
        let n = decompressor
            .decompress_to_buffer(&compressed[..], out)
            .map_err(|e| fail(format!("the chunk does not decompress: {e}")))?;
        if n as u64 != chunk.raw_len() {
            return Err(fail(format!(
                "the chunk holds {n} bytes, not {} records of {} bytes",
                chunk.records,
                record_size(chunk.stream)
            )));
        }
        Ok(())
    }

    /// Replayable seconds: from the first record to the last.
    pub fn span_ns(&self) -> u64 {
        self.last_ts - self.first_ts
    }
}
