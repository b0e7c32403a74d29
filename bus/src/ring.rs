//! A ring file: creating it safely, mapping it, and validating one that another process made.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::clock::now_ns;
use crate::error::Error;
use crate::layout::*;
use crate::record::{Record, RecordType};
use crate::registry;

/// What a writer does when a write would overwrite a record that a reader has not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(not(loom), derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(not(loom), serde(rename_all = "lowercase"))]
#[repr(u32)]
pub enum WriterMode {
    /// Market-data semantics: the writer never waits or fails; a reader that falls a whole ring
    /// behind is lapped and counts exactly how many records it lost.
    #[default]
    Overwrite = 0,
    /// The writer refuses ([`crate::WriteError::BufferFull`]) a write that would overwrite a
    /// record that the slowest live registered reader has not read.
    Backpressure = 1,
}

impl WriterMode {
    fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Overwrite),
            1 => Some(Self::Backpressure),
            _ => None,
        }
    }
}

/// A shared, writable mapping of a whole ring file.
///
/// Invariant: `len` is the mapping's length, at least [`HEADER_SIZE`], and the mapping stays valid
/// while `self` lives. All access to the mapped bytes goes through atomics, because other
/// processes write them concurrently: no `&[u8]` or `&mut` to the mapping is ever created.
pub(crate) struct Mapping {
    /// The shared (`MAP_SHARED`), read-write mapping of the file from offset 0; page-aligned.
    map: MmapRaw,
    /// Length of `map`, bytes: the file's length when mapped, at least [`HEADER_SIZE`].
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: u64, path: &Path) -> Result<Self, Error> {
        let len = usize::try_from(len).map_err(|_| Error::LengthMismatch {
            path: path.to_owned(),
            actual: len,
            expected: usize::MAX as u64,
        })?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(file)
            .map_err(|e| Error::io(path, "mapping the ring", e))?;
        Ok(Self { map, len })
    }

    /// The `u64` at byte offset `off`.
    ///
    /// Panics if `off` is not 8-aligned or out of bounds; offsets are the layout constants.
    pub(crate) fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "offset {off} outside ring"
        );
        // SAFETY: `off + 8 <= len` keeps the access inside the live mapping (invariant of
        // `Mapping`); the mapping is page-aligned and `off` 8-aligned, so the pointer is aligned
        // for `AtomicU64`, which has the size and layout of `u64`. Any bit pattern is a valid
        // `u64`. The reference cannot outlive `self`, which owns the mapping.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// The `u32` at byte offset `off`. Same contract as [`Self::u64_at`].
    pub(crate) fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "offset {off} outside ring"
        );
        // SAFETY: as in `u64_at`, with 4-byte size and alignment.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// Slot `index` as `words` atomic words.
    ///
    /// The caller guarantees `HEADER_SIZE + (index + 1) * words * 8 <= len`: rings compute
    /// `index` as `sequence & mask` with `mask + 1 == capacity` and validated
    /// `len == HEADER_SIZE + capacity * words * 8`, never from bytes in shared memory.
    #[inline]
    pub(crate) fn slot(&self, index: usize, words: usize) -> &[AtomicU64] {
        let off = HEADER_SIZE + index * words * 8;
        debug_assert!(off + words * 8 <= self.len);
        // SAFETY: in bounds by the caller's guarantee above; 8-aligned because the mapping is
        // page-aligned, HEADER_SIZE is a multiple of 8 and so is every slot; `AtomicU64` has the
        // layout of `u64` and every bit pattern is valid. The slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off).cast::<AtomicU64>(), words) }
    }

    pub(crate) fn reader_field(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.u64_at(OFF_READERS + slot * READER_SLOT_SIZE + field)
    }

    /// Reader slot `i` as its [`registry::SLOT_WORDS`] words.
    ///
    /// Panics if `i >= MAX_READERS`.
    pub(crate) fn reader_slot(&self, i: usize) -> &[AtomicU64] {
        assert!(i < MAX_READERS, "reader slot {i} out of range");
        let off = OFF_READERS + i * READER_SLOT_SIZE;
        const _: () = assert!(registry::SLOT_WORDS * 8 == READER_SLOT_SIZE);
        // SAFETY: `off + READER_SLOT_SIZE <= OFF_READERS + MAX_READERS * READER_SLOT_SIZE`,
        // which is at most `HEADER_SIZE <= len` (layout assertion and `Mapping` invariant);
        // `off` is 8-aligned in a page-aligned mapping; `AtomicU64` has the layout of `u64`
        // and every bit pattern is valid. The slice borrows `self`, which owns the mapping.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(off).cast::<AtomicU64>(),
                registry::SLOT_WORDS,
            )
        }
    }
}

impl registry::ReaderTable for Mapping {
    fn slots(&self) -> usize {
        MAX_READERS
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        self.reader_slot(i)
    }
}

/// The geometry and identity of a ring, validated once and then kept locally: nothing on the hot
/// path re-reads these from shared memory, where another process could change them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    /// Slots in the ring, records: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub(crate) capacity: u64,
    /// `capacity - 1`: sequence `s` lives in slot `s & mask`.
    pub(crate) mask: u64,
    /// The writer mode, as created or as the (validated) header declares it.
    pub(crate) mode: WriterMode,
    /// The ring's epoch, as created or as the header held it when opened (any value is
    /// accepted); a ring created later under the same name almost surely has another.
    pub(crate) epoch: u64,
}

/// An open ring file: the file (which carries the writer's lock in the writer's process), its
/// mapping and validated geometry, for records of type `R`.
pub(crate) struct RingFile<R> {
    /// The path the ring was created at or opened from (it may name another file later).
    pub(crate) path: PathBuf,
    /// The open ring file. Created by [`Self::create`]: holds the writer's exclusive `flock`
    /// until dropped; opened by [`Self::open`]: holds no lock.
    pub(crate) file: File,
    /// The mapping of the whole of `file`, of `ring_len(geo.capacity, R::TYPE.size())` bytes.
    pub(crate) map: Mapping,
    /// The geometry, validated once; never re-read from the header.
    pub(crate) geo: Geometry,
    /// `(st_dev, st_ino)` of `file`: tells whether `path` still names this ring.
    pub(crate) identity: (u64, u64),
    /// The record type the header was validated for; `fn() -> R` adds no auto-trait bounds.
    _record: PhantomData<fn() -> R>,
}

fn identity(file: &File, path: &Path) -> Result<(u64, u64), Error> {
    let st = rustix::fs::fstat(file).map_err(|e| Error::io(path, "reading file status", e))?;
    Ok((st.st_dev, st.st_ino))
}

/// Checks that `capacity` is a power of two in the allowed range.
pub(crate) fn check_capacity(capacity: u64) -> Result<(), Error> {
    if capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(Error::InvalidCapacity {
            capacity,
            min: MIN_CAPACITY,
            max: MAX_CAPACITY,
        })
    }
}

impl<R: Record> RingFile<R> {
    /// Creates ring `name` in the directory `dir` (whose path is `dir_path`), exclusively.
    ///
    /// Never follows a symlink and never reuses an existing file. The file is created 0600,
    /// locked for the writer, and fully allocated before anything is written, so a full tmpfs is
    /// an error here and never a SIGBUS later; on any failure no file is left behind.
    pub(crate) fn create(
        dir: BorrowedFd<'_>,
        dir_path: &Path,
        name: &str,
        capacity: u64,
        mode: WriterMode,
    ) -> Result<Self, Error> {
        crate::name::check_name(name)?;
        check_capacity(capacity)?;
        let path = dir_path.join(name);
        let len = ring_len(capacity, R::TYPE.size()).ok_or(Error::InvalidCapacity {
            capacity,
            min: MIN_CAPACITY,
            max: MAX_CAPACITY,
        })?;
        let available = free_bytes(dir, dir_path)?;
        if len > available {
            return Err(Error::NoSpace {
                path,
                needed: len,
                available,
            });
        }
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| Error::io(&path, "creating the ring (it must not exist yet)", e))?;
        let file = File::from(fd);
        let unlink = || {
            let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
        };
        let result = (|| {
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| Error::io(&path, "locking the ring for its writer", e))?;
            allocate(&file, len, &path, available)?;
            let map = Mapping::new(&file, len, &path)?;
            let epoch = now_ns() ^ (u64::from(std::process::id()) << 40);
            init_header(&map, R::TYPE, capacity, mode, epoch);
            let identity = identity(&file, &path)?;
            Ok(Self {
                path: path.clone(),
                file,
                map,
                geo: Geometry {
                    capacity,
                    mask: capacity - 1,
                    mode,
                    epoch,
                },
                identity,
                _record: PhantomData,
            })
        })();
        if result.is_err() {
            unlink();
        }
        result
    }

    /// Opens and validates the ring at `path`, which another process may have written.
    ///
    /// Refuses, with an error naming the file and the problem, anything that is not a complete
    /// ring of records `R` in this format version: a symlink, an empty or truncated file, wrong
    /// magic, version, record type or size, a capacity that is not a power of two, or a length
    /// that does not match the header.
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        // Non-blocking: opening a FIFO would otherwise wait for a peer. It changes nothing for
        // the regular file that the type check below insists on.
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path, "opening the ring", e))?;
        let file = File::from(fd);
        let st = rustix::fs::fstat(&file).map_err(|e| Error::io(path, "reading file status", e))?;
        check_regular(st.st_mode, path)?;
        let len = st.st_size as u64;
        if len < HEADER_SIZE as u64 {
            return Err(Error::Truncated {
                path: path.to_owned(),
                len,
                min: HEADER_SIZE as u64,
            });
        }
        let map = Mapping::new(&file, len, path)?;
        let geo = validate(&map, path, R::TYPE, len)?;
        // A file that changed length between fstat and mmap would make slot accesses fault.
        let again =
            rustix::fs::fstat(&file).map_err(|e| Error::io(path, "reading file status", e))?;
        if again.st_size as u64 != len {
            return Err(Error::LengthMismatch {
                path: path.to_owned(),
                actual: again.st_size as u64,
                expected: len,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            identity: (st.st_dev, st.st_ino),
            file,
            map,
            geo,
            _record: PhantomData,
        })
    }

    pub(crate) fn cursor(&self) -> &AtomicU64 {
        self.map.u64_at(OFF_WRITE_CURSOR)
    }

    /// The stamp of the slot that holds sequence `seq` (acquire).
    pub(crate) fn stamp(&self, seq: u64) -> u64 {
        self.map.slot((seq & self.geo.mask) as usize, R::WORDS)[0].load(Ordering::Acquire)
    }

    /// Whether the file at `path` is a ring that its writer is still creating: a writer holds
    /// its lock (taken right after the exclusive create, before the header is written).
    pub(crate) fn creation_in_progress(path: &Path) -> bool {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map(|fd| writer_holds_lock(&File::from(fd)))
        .unwrap_or(false)
    }

    /// A snapshot of every occupied reader slot.
    pub(crate) fn readers(&self) -> Vec<ReaderSlot> {
        (0..MAX_READERS)
            .filter_map(|i| {
                let owner = self
                    .map
                    .reader_field(i, reader_slot::OWNER)
                    .load(Ordering::Acquire);
                let state = owner & 0xFFFF_FFFF;
                if state == reader_slot::FREE || state == reader_slot::CLAIMING {
                    return None;
                }
                let pid = (owner >> 32) as u32;
                let get = |f| self.map.reader_field(i, f).load(Ordering::Acquire);
                Some(ReaderSlot {
                    index: i,
                    pid,
                    evicted: state == reader_slot::EVICTED,
                    process_alive: pid_alive(pid),
                    heartbeat_ns: get(reader_slot::HEARTBEAT),
                    cursor: get(reader_slot::CURSOR),
                    lost: get(reader_slot::LOST),
                    received: get(reader_slot::RECEIVED),
                    torn: get(reader_slot::TORN),
                })
            })
            .collect()
    }
}

impl<R> AsFd for RingFile<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// One registered reader as its slot in the ring header shows it.
///
/// Every field was written by the reader's process and is reported as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderSlot {
    /// Index of the slot, `0..MAX_READERS`.
    pub index: usize,
    /// Process id of the reader.
    pub pid: u32,
    /// The writer judged this reader dead (process gone or heartbeat stale) and stopped waiting
    /// for it in backpressure mode. A reader that resumes takes its slot back.
    pub evicted: bool,
    /// Whether a process with that pid exists now.
    pub process_alive: bool,
    /// The reader's last heartbeat, `CLOCK_MONOTONIC` ns.
    pub heartbeat_ns: u64,
    /// The next sequence the reader wants: it has consumed everything before it.
    pub cursor: u64,
    /// Records it lost, as it last published.
    pub lost: u64,
    /// Records it received, as it last published (every 64 records).
    pub received: u64,
    /// Torn copies it discarded.
    pub torn: u64,
}

/// Refuses anything but a regular file, naming what it is instead.
pub(crate) fn check_regular(mode: u32, path: &Path) -> Result<(), Error> {
    use rustix::fs::FileType;
    let kind = match FileType::from_raw_mode(mode) {
        FileType::RegularFile => return Ok(()),
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symlink",
        FileType::Unknown => "of an unknown file type",
    };
    Err(Error::NotRegularFile {
        path: path.to_owned(),
        kind,
    })
}

/// The inode of this process's pid namespace, or 0 if it cannot be read (no `/proc`).
///
/// A process's own pid namespace never changes (`unshare` and `setns` only affect its
/// children), so it is read once.
pub(crate) fn own_pid_namespace() -> u64 {
    static NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NS.get_or_init(|| {
        rustix::fs::stat("/proc/self/ns/pid")
            .map(|st| st.st_ino)
            .unwrap_or(0)
    })
}

/// Whether a process with this pid exists (it may belong to another user).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

fn free_bytes(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<u64, Error> {
    let st = rustix::fs::fstatvfs(dir).map_err(|e| Error::io(dir_path, "reading free space", e))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn allocate(file: &File, len: u64, path: &Path, available: u64) -> Result<(), Error> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(Errno::NOSPC) => Err(Error::NoSpace {
            path: path.to_owned(),
            needed: len,
            available,
        }),
        Err(e) => Err(Error::io(path, "allocating the ring", e)),
    }
}

fn init_header(map: &Mapping, ty: RecordType, capacity: u64, mode: WriterMode, epoch: u64) {
    let now = now_ns();
    map.u32_at(OFF_VERSION)
        .store(FORMAT_VERSION, Ordering::Relaxed);
    map.u32_at(OFF_RECORD_TYPE)
        .store(ty as u32, Ordering::Relaxed);
    map.u32_at(OFF_RECORD_SIZE)
        .store(ty.size() as u32, Ordering::Relaxed);
    map.u32_at(OFF_HEADER_SIZE)
        .store(HEADER_SIZE as u32, Ordering::Relaxed);
    map.u64_at(OFF_CAPACITY).store(capacity, Ordering::Relaxed);
    map.u32_at(OFF_MAX_READERS)
        .store(MAX_READERS as u32, Ordering::Relaxed);
    map.u32_at(OFF_MODE).store(mode as u32, Ordering::Relaxed);
    map.u64_at(OFF_EPOCH).store(epoch, Ordering::Relaxed);
    map.u32_at(OFF_WRITER_PID)
        .store(std::process::id(), Ordering::Relaxed);
    map.u64_at(OFF_CREATED_NS).store(now, Ordering::Relaxed);
    map.u64_at(OFF_WRITER_HEARTBEAT)
        .store(now, Ordering::Relaxed);
    map.u64_at(OFF_WRITER_STATE)
        .store(WRITER_OPEN, Ordering::Relaxed);
    map.u64_at(OFF_WRITER_PID_NS)
        .store(own_pid_namespace(), Ordering::Relaxed);
    // Published last: a reader that sees the magic (acquire) sees every field above.
    map.u64_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
}

fn validate(map: &Mapping, path: &Path, want: RecordType, len: u64) -> Result<Geometry, Error> {
    let bad = |field, found: u64, expected: String| Error::BadHeader {
        path: path.to_owned(),
        field,
        found,
        expected,
    };
    if map.u64_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
        return Err(Error::BadMagic {
            path: path.to_owned(),
        });
    }
    let version = map.u32_at(OFF_VERSION).load(Ordering::Relaxed);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let ty = map.u32_at(OFF_RECORD_TYPE).load(Ordering::Relaxed);
    if RecordType::from_raw(ty) != Some(want) {
        return Err(bad(
            "record type",
            ty.into(),
            format!("expected {} ({})", want as u32, want.stream_name()),
        ));
    }
    let size = map.u32_at(OFF_RECORD_SIZE).load(Ordering::Relaxed);
    if size as usize != want.size() {
        return Err(bad(
            "record size",
            size.into(),
            format!("expected {}", want.size()),
        ));
    }
    let header = map.u32_at(OFF_HEADER_SIZE).load(Ordering::Relaxed);
    if header as usize != HEADER_SIZE {
        return Err(bad(
            "header size",
            header.into(),
            format!("expected {HEADER_SIZE}"),
        ));
    }
    let readers = map.u32_at(OFF_MAX_READERS).load(Ordering::Relaxed);
    if readers as usize != MAX_READERS {
        return Err(bad(
            "reader slots",
            readers.into(),
            format!("expected {MAX_READERS}"),
        ));
    }
    let capacity = map.u64_at(OFF_CAPACITY).load(Ordering::Relaxed);
    if check_capacity(capacity).is_err() {
        return Err(bad(
            "capacity",
            capacity,
            format!("expected a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}"),
        ));
    }
    let raw_mode = map.u32_at(OFF_MODE).load(Ordering::Relaxed);
    let mode = WriterMode::from_raw(raw_mode)
        .ok_or_else(|| bad("writer mode", raw_mode.into(), "expected 0 or 1".into()))?;
    let expected = ring_len(capacity, want.size()).unwrap_or(u64::MAX);
    if expected != len {
        return Err(Error::LengthMismatch {
            path: path.to_owned(),
            actual: len,
            expected,
        });
    }
    Ok(Geometry {
        capacity,
        mask: capacity - 1,
        mode,
        epoch: map.u64_at(OFF_EPOCH).load(Ordering::Relaxed),
    })
}

/// Whether `file` is still locked by a live writer: probes the writer's exclusive lock with a
/// shared, non-blocking one and releases it at once.
pub(crate) fn writer_holds_lock(file: &File) -> bool {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(file, FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}
