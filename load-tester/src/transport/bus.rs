//! The shared-memory bus as a transport: a run directory of rings, one writer per exchange and
//! stream.

use std::path::{Path, PathBuf};

use alphapulse_bus::{
    BookUpdate, Manifest, ManifestRing, Record, RunDir, Trade, WriteError, Writer, DIGESTS_NAME,
    LOCK_NAME, MANIFEST_NAME, MANIFEST_VERSION,
};

use super::{SendError, Transport};
use crate::plan::{Plan, Stream};

/// The bus transport of one exchange: a writer per stream.
pub struct BusExchange {
    /// The sole writer of the exchange's `<exchange>.trades` ring.
    trades: Writer<Trade>,
    /// The sole writer of the exchange's `<exchange>.book` ring.
    book: Writer<BookUpdate>,
}

#[inline]
fn map(r: Result<u64, WriteError>) -> Result<(), SendError> {
    match r {
        Ok(_) => Ok(()),
        Err(WriteError::BufferFull { .. }) => Err(SendError::BufferFull),
        Err(_) => Err(SendError::Failed),
    }
}

impl Transport for BusExchange {
    #[inline]
    fn send_trade(&mut self, trade: &Trade) -> Result<(), SendError> {
        map(self.trades.write(trade))
    }

    #[inline]
    fn send_book(&mut self, update: &BookUpdate) -> Result<(), SendError> {
        map(self.book.write(update))
    }

    fn idle(&mut self) {
        self.trades.heartbeat();
        self.book.heartbeat();
    }

    fn restart(&mut self) -> Result<(), String> {
        // Both or neither: a trades ring of a new epoch beside a book ring of the old one
        // would be a publisher half restarted. The book ring goes first; if the trades ring
        // then fails, the book ring has restarted alone, which the error says.
        self.book.restart().map_err(|e| e.to_string())?;
        self.trades
            .restart()
            .map_err(|e| format!("{e} (the book ring restarted, the trades ring did not)"))
    }
}

/// The bus of one run: its run directory (removed on drop unless kept) and manifest.
pub struct BusRun {
    /// The run directory: every ring of the run and its manifest.
    dir: RunDir,
}

impl BusRun {
    /// Creates the run directory under `base`, one ring per exchange and stream as the plan
    /// sizes them, and the manifest; returns the run and one transport per exchange, by id.
    pub fn create(
        plan: &Plan,
        base: &Path,
    ) -> Result<(Self, Vec<BusExchange>), alphapulse_bus::Error> {
        let run_id = format!("run-{}-{}", std::process::id(), alphapulse_bus::now_ns());
        let mut dir = RunDir::create(base, &run_id)?;
        let mode = plan.writer_mode;
        let mut rings = Vec::new();
        let mut exchanges = Vec::new();
        for e in &plan.exchanges {
            let trades = dir.create_ring::<Trade>(
                &ring_file(&e.name, Stream::Trades),
                e.trades_capacity,
                mode,
            )?;
            let book = dir.create_ring::<BookUpdate>(
                &ring_file(&e.name, Stream::Book),
                e.book_capacity,
                mode,
            )?;
            for (stream, capacity, ty) in [
                (Stream::Trades, e.trades_capacity, Trade::TYPE),
                (Stream::Book, e.book_capacity, BookUpdate::TYPE),
            ] {
                rings.push(ManifestRing {
                    file: ring_file(&e.name, stream),
                    exchange_id: e.id,
                    stream: stream.name().into(),
                    record_type: ty as u32,
                    record_size: ty.size() as u32,
                    capacity,
                    mode,
                });
            }
            exchanges.push(BusExchange { trades, book });
        }
        let mut files: Vec<String> = rings.iter().map(|r| r.file.clone()).collect();
        files.extend(
            [MANIFEST_NAME, LOCK_NAME, DIGESTS_NAME]
                .iter()
                .map(|s| s.to_string()),
        );
        files.extend(
            [MANIFEST_NAME, DIGESTS_NAME]
                .iter()
                .map(|s| format!("{s}.tmp")),
        );
        dir.write_manifest(&Manifest {
            version: MANIFEST_VERSION,
            run_id,
            writer_pid: std::process::id(),
            exchanges: names_by_id(plan),
            symbols: plan.symbols.clone(),
            rings,
        })?;
        super::sigbus::arm(dir.path(), &files);
        Ok((Self { dir }, exchanges))
    }

    /// Creates a run directory under `base` without rings (a run whose records travel
    /// another way): its manifest lists the exchanges and symbols and no ring, and `extra`
    /// names the other files the run will publish into it.
    pub fn create_without_rings(
        plan: &Plan,
        base: &Path,
        extra: &[&str],
    ) -> Result<Self, alphapulse_bus::Error> {
        let run_id = format!("run-{}-{}", std::process::id(), alphapulse_bus::now_ns());
        let mut dir = RunDir::create(base, &run_id)?;
        let mut files: Vec<String> = [MANIFEST_NAME, LOCK_NAME, DIGESTS_NAME]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        files.extend(
            [MANIFEST_NAME, DIGESTS_NAME]
                .iter()
                .chain(extra)
                .map(|s| format!("{s}.tmp")),
        );
        dir.write_manifest(&Manifest {
            version: MANIFEST_VERSION,
            run_id,
            writer_pid: std::process::id(),
            exchanges: names_by_id(plan),
            symbols: plan.symbols.clone(),
            rings: Vec::new(),
        })?;
        super::sigbus::arm(dir.path(), &files);
        Ok(Self { dir })
    }

    /// The run directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Writes file `name` into the run directory atomically (see [`RunDir::write_file`]).
    pub fn publish(&mut self, name: &str, contents: &[u8]) -> Result<(), alphapulse_bus::Error> {
        self.dir.write_file(name, contents)
    }

    /// Keeps the run directory after the run (even if a SIGBUS kills the process).
    pub fn keep(&mut self) {
        super::sigbus::disarm();
        self.dir.keep();
    }
}

/// Exchange names indexed by exchange id, as the manifest lists them. A distributed worker runs
/// some exchanges of a larger plan (ids 1 and 3, say): the ids it has no ring of get an empty
/// name.
fn names_by_id(plan: &Plan) -> Vec<String> {
    let len = plan
        .exchanges
        .iter()
        .map(|e| usize::from(e.id) + 1)
        .max()
        .unwrap_or(0);
    let mut names = vec![String::new(); len];
    for e in &plan.exchanges {
        names[usize::from(e.id)] = e.name.clone();
    }
    names
}

impl Drop for BusRun {
    fn drop(&mut self) {
        // The run directory goes the ordinary way now (unless kept).
        super::sigbus::disarm();
    }
}

/// The ring file name of an exchange's stream: `<exchange>.<stream>`.
pub fn ring_file(exchange: &str, stream: Stream) -> String {
    format!("{exchange}.{}", stream.name())
}
