//! Writing a capture: records are buffered per source and handed, a chunk at a time, to a
//! thread that compresses and writes them, so that the reading loop never waits on zstd or the
//! disk unless that thread is a whole queue behind (then the reader falls behind its rings and
//! counts what it lost, as any slow reader does). Memory is bounded: one chunk per source being
//! filled, and [`QUEUE`] chunks in flight.
//!
//! The file is written as `<path>.partial` and renamed over `path` once its index and footer
//! are on disk: a capture that exists is complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use crate::plan::Stream;
use crate::source::capture::format::{
    record_size, CaptureError, ChunkInfo, Header, CHUNK_RECORDS, END_MAGIC, INDEX_MAGIC, MAGIC,
    VERSION,
};

/// Chunks queued for the writing thread before a push waits.
pub const QUEUE: usize = 4;

/// zstd level: fast enough to keep up with a reader at a million records a second on one core.
const LEVEL: i32 = 1;

/// What a finished capture holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    /// Records written.
    pub records: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Records left out because their time was before the previous record's of their source
    /// (a capture's times never go back within a source).
    pub backwards: u64,
}

/// One source's chunk being filled.
struct Filling {
    /// The records, as they are in memory, back to back.
    raw: Vec<u8>,
    /// Records in `raw`; fewer than `CHUNK_RECORDS` while it is filling.
    records: u32,
    /// Send time of the first record in `raw`, ns (meaningful while `records > 0`).
    first_ts: u64,
    /// Send time of the last record in `raw`, ns; never below `first_ts`.
    last_ts: u64,
}

/// A full chunk on its way to the compressing thread.
struct Job {
    /// Its source's exchange.
    exchange: u16,
    /// Its source's stream.
    stream: Stream,
    /// The chunk.
    filling: Filling,
}

/// A capture being written.
///
/// Invariant: every buffer of `filling` holds fewer than [`CHUNK_RECORDS`] records; `tx` and
/// `thread` are `Some` until [`CaptureWriter::finish`] or [`CaptureWriter::abort`].
pub struct CaptureWriter {
    /// The capture's final path (written as `<path>.partial` until finished); fixed.
    path: PathBuf,
    /// Set by [`CaptureWriter::abort`]: the thread removes the partial file instead of
    /// finishing it.
    aborted: Arc<AtomicBool>,
    /// Per source, the chunk being filled.
    filling: BTreeMap<(u16, Stream), Filling>,
    /// Per source, the time of the last record pushed.
    last_ts: BTreeMap<(u16, Stream), u64>,
    /// Records refused because their time went back.
    backwards: u64,
    /// Full chunks to the compressing thread (bounded: a recorder that falls behind waits here,
    /// its reader counting what the ring overwrote meanwhile).
    tx: Option<SyncSender<Job>>,
    /// The compressing thread, which writes the file and returns its summary.
    thread: Option<std::thread::JoinHandle<Result<CaptureSummary, CaptureError>>>,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> CaptureError {
    CaptureError {
        path: path.display().to_string(),
        offset: None,
        problem: format!("{what}: {e}"),
    }
}

impl CaptureWriter {
    /// Creates `<path>.partial` (refusing to touch one that exists, or a `path` that exists)
    /// and writes the header. The
    /// writing thread first calls `on_start` (a reader lowers its priority there, so that
    /// compressing yields to reading).
    pub fn create(path: &Path, header: &Header, on_start: fn()) -> Result<Self, CaptureError> {
        let partial = partial_of(path);
        if path.symlink_metadata().is_ok() {
            return Err(CaptureError {
                path: path.display().to_string(),
                offset: None,
                problem: "exists; a capture never overwrites a file (choose another name)".into(),
            });
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| {
                io_error(
                    &partial,
                    "cannot create (remove a partial capture left by an earlier recorder)",
                    e,
                )
            })?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let json = serde_json::to_vec(header).expect("a header serializes");
        let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
            out.write_all(MAGIC)?;
            out.write_all(&VERSION.to_le_bytes())?;
            out.write_all(&(json.len() as u32).to_le_bytes())?;
            out.write_all(&json)
        };
        write(&mut out).map_err(|e| io_error(&partial, "cannot write", e))?;
        let offset = (MAGIC.len() + 8 + json.len()) as u64;
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let final_path = path.to_path_buf();
        let aborted = Arc::new(AtomicBool::new(false));
        let abort_seen = Arc::clone(&aborted);
        let thread = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || {
                on_start();
                let mut offset = offset;
                let mut index: Vec<ChunkInfo> = Vec::new();
                let mut summary = CaptureSummary::default();
                for job in rx {
                    let compressed = zstd::bulk::Compressor::new(LEVEL)
                        .and_then(|mut c| {
                            c.include_checksum(true)?;
                            c.compress(&job.filling.raw)
                        })
                        .map_err(|e| io_error(&partial, "cannot compress", e))?;
                    let info = ChunkInfo {
                        offset,
                        exchange: job.exchange,
                        stream: job.stream,
                        records: job.filling.records,
                        first_ts: job.filling.first_ts,
                        last_ts: job.filling.last_ts,
                        compressed_len: compressed.len() as u32,
                    };
                    out.write_all(&info.header_bytes())
                        .and_then(|()| out.write_all(&compressed))
                        .map_err(|e| io_error(&partial, "cannot write", e))?;
                    offset += (info.header_bytes().len() + compressed.len()) as u64;
                    summary.records += u64::from(info.records);
                    summary.chunks += 1;
                    index.push(info);
                }
                if abort_seen.load(Ordering::SeqCst) {
                    drop(out);
                    let _ = std::fs::remove_file(&partial);
                    return Ok(summary);
                }
                let index_offset = offset;
                let mut tail = Vec::with_capacity(8 + index.len() * 32 + 16);
                tail.extend_from_slice(INDEX_MAGIC);
                tail.extend_from_slice(&(index.len() as u32).to_le_bytes());
                for e in &index {
                    tail.extend_from_slice(&e.entry_bytes());
                }
                tail.extend_from_slice(&index_offset.to_le_bytes());
                tail.extend_from_slice(END_MAGIC);
                out.write_all(&tail)
                    .and_then(|()| out.flush())
                    .and_then(|()| out.get_ref().sync_all())
                    .map_err(|e| io_error(&partial, "cannot write", e))?;
                summary.bytes = offset + tail.len() as u64;
                // Never over a file that appeared meanwhile: the capture stays `.partial`.
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &partial,
                    rustix::fs::CWD,
                    &final_path,
                    rustix::fs::RenameFlags::NOREPLACE,
                )
                .map_err(|e| {
                    io_error(
                        &final_path,
                        &format!(
                            "cannot move the finished capture into place (it stays {})",
                            partial.display()
                        ),
                        e.into(),
                    )
                })?;
                Ok(summary)
            })
            .map_err(|e| io_error(path, "cannot start the writing thread", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            aborted,
            filling: BTreeMap::new(),
            last_ts: BTreeMap::new(),
            backwards: 0,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Adds one record of `stream` from `exchange`, as the bus stores it (its `send_ts_ns` is
    /// bytes 8..16); one whose time is before its source's previous record's is left out and
    /// counted. Waits only when the writing thread is [`QUEUE`] chunks behind.
    pub fn push(&mut self, exchange: u16, stream: Stream, record: &[u8]) {
        debug_assert_eq!(record.len(), record_size(stream));
        let ts = u64::from_le_bytes(record[8..16].try_into().expect("a record has 16 bytes"));
        let last = self.last_ts.entry((exchange, stream)).or_insert(0);
        if ts < *last {
            self.backwards += 1;
            return;
        }
        *last = ts;
        let f = self
            .filling
            .entry((exchange, stream))
            .or_insert_with(|| Filling {
                raw: Vec::with_capacity(CHUNK_RECORDS * record_size(stream)),
                records: 0,
                first_ts: ts,
                last_ts: ts,
            });
        if f.records == 0 {
            f.first_ts = ts;
        }
        f.raw.extend_from_slice(record);
        f.records += 1;
        f.last_ts = ts.max(f.last_ts);
        if f.records as usize >= CHUNK_RECORDS {
            let full = std::mem::replace(
                f,
                Filling {
                    raw: Vec::with_capacity(CHUNK_RECORDS * record_size(stream)),
                    records: 0,
                    first_ts: 0,
                    last_ts: 0,
                },
            );
            self.send(exchange, stream, full);
        }
    }

    fn send(&mut self, exchange: u16, stream: Stream, filling: Filling) {
        if let Some(tx) = &self.tx {
            // A failed writer thread reports its error at `finish`.
            let _ = tx.send(Job {
                exchange,
                stream,
                filling,
            });
        }
    }

    /// Writes what is buffered, the index and the footer, and renames the file into place.
    pub fn finish(mut self) -> Result<CaptureSummary, CaptureError> {
        let filling = std::mem::take(&mut self.filling);
        for ((exchange, stream), f) in filling {
            if f.records > 0 {
                self.send(exchange, stream, f);
            }
        }
        self.tx = None;
        let backwards = self.backwards;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result.map(|s| CaptureSummary { backwards, ..s }),
            _ => Err(CaptureError {
                path: self.path.display().to_string(),
                offset: None,
                problem: "the writing thread failed".into(),
            }),
        }
    }
}

impl CaptureWriter {
    /// Stops writing and removes the partial file (this writer created it): nothing of an
    /// abandoned capture is left behind.
    pub fn abort(mut self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.filling.clear();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // A thread that failed before it saw the abort leaves the partial file: this writer
        // created it (`create_new`), so it goes too.
        let _ = std::fs::remove_file(partial_of(&self.path));
    }
}

/// Where a capture is written until it is complete.
pub fn partial_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}
