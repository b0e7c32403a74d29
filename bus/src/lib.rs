//! The AlphaPulse shared-memory market-data bus.
//!
//! Simulated (or real) exchanges publish fixed-size [`Trade`] and [`BookUpdate`] records into
//! lock-free single-producer, multi-consumer rings, one file per (exchange, stream) under
//! `/dev/shm`. Readers in any process, written in any language, attach by mapping the file: the
//! byte layout and protocol are specified in `docs/bus-format.md`.
//!
//! Each slot of a ring is a seqlock ([`protocol`]): the writer never waits for readers (unless
//! asked to, with [`WriterMode::Backpressure`]), and a reader gets every record intact and in
//! order, or learns exactly how many it lost.
//!
//! ```
//! use alphapulse_bus::{Poll, Reader, Record, RunDir, StartAt, Trade, WriterMode};
//! # let base = std::env::temp_dir().join(format!("apbus-doc-{}", std::process::id()));
//! let mut run = RunDir::create(&base, "demo")?;
//! let mut writer = run.create_ring::<Trade>("binance.trades", 1024, WriterMode::Overwrite)?;
//! let mut reader = Reader::<Trade>::attach(&run.path().join("binance.trades"), StartAt::Oldest)?;
//!
//! let mut trade = Trade { price: 42, size: 1, send_ts_ns: alphapulse_bus::now_ns(), ..Default::default() };
//! trade.seal();
//! let seq = writer.write(&trade).expect("overwrite mode never refuses");
//! match reader.try_read() {
//!     Poll::Record(got) => assert_eq!((got.sequence, got.price), (seq, 42)),
//!     other => panic!("expected the record, got {other:?}"),
//! }
//! assert_eq!(reader.try_read(), Poll::Empty);
//! # drop(reader); drop(writer); drop(run); std::fs::remove_dir(&base).ok();
//! # Ok::<(), alphapulse_bus::Error>(())
//! ```
#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("the bus format is little-endian; big-endian hosts are not supported");

mod sync;

pub mod layout;
#[doc(hidden)]
pub mod protocol;
pub mod record;
#[doc(hidden)]
pub mod registry;

#[cfg(not(loom))]
mod clock;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod name;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod ring;
#[cfg(not(loom))]
mod run_dir;
#[cfg(not(loom))]
mod writer;

#[cfg(not(loom))]
pub use clock::now_ns;
#[cfg(not(loom))]
pub use error::{Error, WriteError};
#[cfg(not(loom))]
pub use name::check_name;
#[cfg(not(loom))]
pub use reader::{Poll, Reader, ReaderStats, StartAt, WriterStatus, ATTACH_RETRY};
pub use record::{
    checksum_of, Action, BookUpdate, Level, Record, RecordType, Side, Trade, MAX_LEVELS,
    PRICE_SCALE, SIZE_SCALE,
};
#[cfg(not(loom))]
pub use ring::{ReaderSlot, WriterMode};
#[cfg(not(loom))]
pub use run_dir::{
    clean_stale_runs, clean_stale_runs_with, default_base_dir, is_run_id, CleanOutcome, CleanedRun,
    Manifest, ManifestRing, RunDir, BASE_DIR_ENV, DIGESTS_NAME, LOCK_NAME, MANIFEST_NAME,
    MANIFEST_VERSION,
};
#[cfg(not(loom))]
pub use writer::{Writer, DEFAULT_READER_STALE_NS};
