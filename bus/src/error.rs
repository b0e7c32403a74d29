//! Errors of the bus. Every variant names the file it concerns and says what is wrong with it.

use std::io;
use std::path::PathBuf;

/// Why creating, opening or attaching to a ring or run directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is shorter than a ring header (an empty file included).
    #[error("{}: {len} bytes, too short to be a ring (the header alone is {min} bytes)", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The least length a ring can have.
        min: u64,
    },
    /// The header does not start with the ring magic.
    #[error("{}: not an AlphaPulse ring (bad magic), or its writer has not finished creating it", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The ring was written in a format version this build does not read.
    #[error("{}: ring format version {found}; this build reads version {supported} only", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version in the header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A header field has a value the format does not allow, or not the one the caller expects.
    #[error("{}: invalid header: {field} is {found}, {expected}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// The header field.
        field: &'static str,
        /// Its value.
        found: u64,
        /// What was expected, in words.
        expected: String,
    },
    /// The path names something other than a regular file (a FIFO, a directory, a device...).
    #[error("{}: is {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is: "a directory", "a FIFO", "a socket", "a character device", "a block
        /// device", "a symlink" or "of an unknown file type".
        kind: &'static str,
    },
    /// The file's length does not match the geometry its header describes.
    #[error("{}: file is {actual} bytes but its header describes a {expected}-byte ring", path.display())]
    LengthMismatch {
        /// The file.
        path: PathBuf,
        /// Length of the file.
        actual: u64,
        /// Length implied by the header.
        expected: u64,
    },
    /// Every reader slot of the ring is taken by a live reader.
    #[error("{}: all {max} reader slots are in use by live readers", path.display())]
    NoReaderSlot {
        /// The ring.
        path: PathBuf,
        /// Number of reader slots.
        max: usize,
    },
    /// The file system has too little free space for the ring.
    #[error("{}: needs {needed} bytes but the file system has {available} free; free space in it or ask for a smaller capacity", path.display())]
    NoSpace {
        /// The ring that could not be created.
        path: PathBuf,
        /// Bytes the ring needs.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// A requested capacity is not a power of two in the allowed range.
    #[error("capacity {capacity} is not a power of two between {min} and {max}")]
    InvalidCapacity {
        /// The capacity asked for.
        capacity: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A name that would become a file name is not a plain file name.
    #[error("{name:?} is not a valid ring or run name (use letters, digits, '.', '-', '_'; at most 100)")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// A directory we would create files in is unsafe (a symlink, not ours, or open to others).
    #[error("{}: {reason}", path.display())]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A directory given to `clean_stale_runs` holds something other than run directories, so
    /// it is not a base of runs (a mistyped `--shm-dir`, say a home directory): nothing was
    /// removed.
    #[error("{}: refusing to clean it: {entry:?} {reason}; a base directory of runs holds only run directories, so nothing was removed", path.display())]
    NotARunBase {
        /// The directory.
        path: PathBuf,
        /// The first entry (in name order) that is not a run directory.
        entry: String,
        /// What it is instead.
        reason: String,
    },
    /// A run directory's manifest is missing, unreadable or invalid.
    #[error("{}: invalid manifest: {reason}", path.display())]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        what: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        Self::Io {
            path: path.into(),
            what,
            source: source.into(),
        }
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Backpressure mode: the write would overwrite a record that the slowest live registered
    /// reader has not read yet. Nothing was written; the caller may retry later.
    #[error("buffer full: reader slot {reader} is {lag} records behind a ring of {capacity}")]
    BufferFull {
        /// Reader slot index of the slowest reader.
        reader: usize,
        /// How many records that reader is behind.
        lag: u64,
        /// The ring's capacity.
        capacity: u64,
    },
}
