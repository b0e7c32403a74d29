//! Run directories: where a run's rings live, the manifest that lists them, and cleaning up
//! after runs whose writer died (without ever removing anything that is not provably a run).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::name::check_name;
use crate::record::{Record, RecordType};
use crate::ring::{check_regular, RingFile, WriterMode};
use crate::writer::Writer;

/// Name of the manifest file in a run directory.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Name of the lock file that the run's owner holds locked for the run's whole life.
pub const LOCK_NAME: &str = "writer.lock";
/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;
/// Environment variable that overrides [`default_base_dir`].
pub const BASE_DIR_ENV: &str = "ALPHAPULSE_SHM_DIR";
/// Largest manifest a reader accepts.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Where run directories go: `$ALPHAPULSE_SHM_DIR` if set, else `/dev/shm/alphapulse`.
pub fn default_base_dir() -> PathBuf {
    std::env::var_os(BASE_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm/alphapulse"))
}

/// One ring of a run, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRing {
    /// File name inside the run directory, `<exchange>.<stream>`.
    pub file: String,
    /// Exchange id: the `exchange_id` its records carry and an index into `exchanges`.
    pub exchange_id: u16,
    /// `trades` or `book`.
    pub stream: String,
    /// Record type number (1 trade, 2 book update).
    pub record_type: u32,
    /// Record size in bytes.
    pub record_size: u32,
    /// Capacity in records.
    pub capacity: u64,
    /// Writer mode.
    pub mode: WriterMode,
}

impl ManifestRing {
    /// The record type, if known.
    pub fn record_type(&self) -> Option<RecordType> {
        RecordType::from_raw(self.record_type)
    }
}

/// The manifest of a run directory: what a reader needs to find and name every ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The run's id, also the directory's name.
    pub run_id: String,
    /// Pid of the process that owns the run.
    pub writer_pid: u32,
    /// Exchange names, indexed by exchange id.
    pub exchanges: Vec<String>,
    /// Symbol names, indexed by symbol id.
    pub symbols: Vec<String>,
    /// The rings.
    pub rings: Vec<ManifestRing>,
}

impl Manifest {
    /// Reads and validates the manifest of the run directory `dir`.
    ///
    /// Refuses a symlink, anything but a regular file (without blocking on a FIFO), a file over
    /// 16 MiB, invalid JSON, unknown fields, another manifest
    /// version, ring file names that are not plain names, and rings whose record type and size
    /// disagree.
    pub fn read(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(MANIFEST_NAME);
        let bad = |reason: String| Error::BadManifest {
            path: path.clone(),
            reason,
        };
        // Non-blocking, so that a FIFO in its place cannot hang the open; the type check
        // below then refuses it. For a regular file the flag changes nothing.
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT => bad(format!(
                "no manifest: is {} a run directory?",
                dir.display()
            )),
            e => Error::io(&path, "opening the manifest", e),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(&path, "reading file status", e))?;
        check_regular(st.st_mode, &path)?;
        let mut text = String::new();
        File::from(fd)
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(&path, "reading the manifest", e))?;
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(bad(format!(
                "manifest version {}; this build reads version {MANIFEST_VERSION}",
                manifest.version
            )));
        }
        if dir.file_name().and_then(|n| n.to_str()) != Some(manifest.run_id.as_str()) {
            return Err(bad(format!(
                "run_id {:?} is not the name of its directory",
                manifest.run_id
            )));
        }
        for ring in &manifest.rings {
            check_name(&ring.file).map_err(|e| bad(e.to_string()))?;
            if usize::from(ring.exchange_id) >= manifest.exchanges.len() {
                return Err(bad(format!(
                    "ring {:?}: exchange_id {} but only {} exchanges are listed",
                    ring.file,
                    ring.exchange_id,
                    manifest.exchanges.len()
                )));
            }
            if ring.record_type().map(RecordType::stream_name) != Some(ring.stream.as_str()) {
                return Err(bad(format!(
                    "ring {:?}: stream {:?} does not match record type {}",
                    ring.file, ring.stream, ring.record_type
                )));
            }
            match ring.record_type() {
                Some(t) if t.size() == ring.record_size as usize => {}
                _ => {
                    return Err(bad(format!(
                        "ring {:?}: record type {} with size {} is not one this build reads",
                        ring.file, ring.record_type, ring.record_size
                    )))
                }
            }
        }
        Ok(manifest)
    }
}

/// A run directory that this process owns: it creates the rings in it and removes it on drop.
///
/// The directory is created 0700 under a base directory that must be a real directory (not a
/// symlink) owned by this user; every file in it is created 0600, exclusively, without following
/// symlinks, relative to the directory's own descriptor. A lock file held for the run's life
/// tells [`clean_stale_runs`] that the run is alive.
pub struct RunDir {
    /// `base/run_id`, the path the directory was created at.
    path: PathBuf,
    /// The directory, opened without following symlinks; every file is made relative to it.
    dir: OwnedFd,
    /// `writer.lock`, exclusively `flock`ed for as long as this value lives: the run is alive.
    _lock: File,
    /// Names, in `dir`, that drop unlinks: the lock file, every ring, every `write_file` target
    /// (listed even if its write failed) and, while one is being written, its `.tmp` file.
    files: Vec<String>,
    /// Leave the directory in place on drop; false until [`Self::keep`].
    keep: bool,
}

impl RunDir {
    /// Creates the run directory `base/run_id`, creating `base` (0700) if it does not exist.
    pub fn create(base: &Path, run_id: &str) -> Result<Self, Error> {
        check_name(run_id)?;
        let base_fd = open_base(base)?;
        let path = base.join(run_id);
        rustix::fs::mkdirat(&base_fd, run_id, Mode::RWXU).map_err(|e| {
            Error::io(
                &path,
                "creating the run directory (it must not exist yet)",
                e,
            )
        })?;
        let dir = rustix::fs::openat(
            &base_fd,
            run_id,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(&path, "opening the run directory", e))?;
        let lock = create_file(&dir, &path, LOCK_NAME)
            .and_then(|f| {
                rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive)
                    .map_err(|e| Error::io(path.join(LOCK_NAME), "locking the run", e))?;
                Ok(f)
            })
            .inspect_err(|_| {
                let _ = rustix::fs::unlinkat(&dir, LOCK_NAME, AtFlags::empty());
                let _ = rustix::fs::unlinkat(&base_fd, run_id, AtFlags::REMOVEDIR);
            })?;
        Ok(Self {
            path,
            dir,
            _lock: lock,
            files: vec![LOCK_NAME.to_owned()],
            keep: false,
        })
    }

    /// Creates ring `name` for records `R` with `capacity` records (a power of two) and returns
    /// its writer. See [`Writer`] for the invariants and `RingFile` creation for the file rules:
    /// a full tmpfs is an [`Error::NoSpace`] here, never a SIGBUS later.
    pub fn create_ring<R: Record>(
        &mut self,
        name: &str,
        capacity: u64,
        mode: WriterMode,
    ) -> Result<Writer<R>, Error> {
        let ring = RingFile::<R>::create(self.dir.as_fd(), &self.path, name, capacity, mode)?;
        self.files.push(name.to_owned());
        Ok(Writer::new(ring))
    }

    /// Writes `manifest` atomically (a 0600 temporary file, then a rename) as this run's manifest.
    pub fn write_manifest(&mut self, manifest: &Manifest) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serializes");
        self.write_file(MANIFEST_NAME, &json)
    }

    /// Writes `contents` atomically as file `name` of the run directory: into a new 0600
    /// temporary file (created exclusively, never through a symlink), flushed, then renamed
    /// into place, so readers see the old file or the whole new one. The file is removed with
    /// the directory.
    pub fn write_file(&mut self, name: &str, contents: &[u8]) -> Result<(), Error> {
        check_name(name)?;
        let tmp = format!("{name}.tmp");
        let path = self.path.join(name);
        let mut file = create_file(&self.dir, &self.path, &tmp)?;
        self.files.push(tmp.clone());
        let result = file
            .write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&path, "writing", e))
            .and_then(|()| {
                rustix::fs::renameat(&self.dir, &tmp, &self.dir, name)
                    .map_err(|e| Error::io(&path, "renaming into place", e))
            });
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
        }
        self.files.retain(|f| f != &tmp);
        if !self.files.iter().any(|f| f == name) {
            self.files.push(name.to_owned());
        }
        result
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on drop instead of removing it (for inspection after a run).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for name in &self.files {
            let _ = rustix::fs::unlinkat(&self.dir, name.as_str(), AtFlags::empty());
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn create_file(dir: &OwnedFd, dir_path: &Path, name: &str) -> Result<File, Error> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .map(File::from)
    .map_err(|e| {
        Error::io(
            dir_path.join(name),
            "creating the file (it must not exist yet)",
            e,
        )
    })
}

/// Opens `base`, creating it 0700 if missing, and checks that it is a directory owned by this
/// user that nobody else can write into.
fn open_base(base: &Path) -> Result<OwnedFd, Error> {
    match rustix::fs::mkdir(base, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::io(base, "creating the base directory", e)),
    }
    open_existing_base(base)?.ok_or_else(|| {
        Error::io(
            base,
            "opening the base directory",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// Opens the existing directory `base` (`None` if it does not exist) and checks it as
/// [`open_base`] does.
fn open_existing_base(base: &Path) -> Result<Option<OwnedFd>, Error> {
    let unsafe_dir = |reason: &str| Error::UnsafeDirectory {
        path: base.to_owned(),
        reason: format!("{reason}; remove it or choose another with ${BASE_DIR_ENV}"),
    };
    let fd = match rustix::fs::open(
        base,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Err(unsafe_dir("not a directory (or a symlink)"))
        }
        Err(e) => return Err(Error::io(base, "opening the base directory", e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(base, "reading status", e))?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(unsafe_dir("owned by another user"));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(unsafe_dir("writable by group or others"));
    }
    Ok(Some(fd))
}

/// Name of the file of digests that the load tester writes into a run directory; one of the
/// files [`clean_stale_runs`] accepts in a run.
pub const DIGESTS_NAME: &str = "digests.json";

/// Whether `name` is a run id as the load tester makes them, `run-<pid>-<ns>` (two non-empty
/// runs of ASCII digits): the only directories [`clean_stale_runs`] will ever remove.
pub fn is_run_id(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("run-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, ns)| digits(pid) && digits(ns))
}

/// What [`clean_stale_runs`] did with one run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanOutcome {
    /// No process held its `writer.lock`, it was provably a run and held only the run's own
    /// files: it was removed.
    Removed,
    /// Its owner holds its `writer.lock`: the run is alive and was left alone.
    Alive,
    /// No owner holds it, but it was left alone for this reason (one line, naming the entry
    /// concerned): something in it that a run does not make, or no proof that it is a run.
    Kept {
        /// Why.
        reason: String,
    },
}

/// A run directory that [`clean_stale_runs`] looked at, and what it did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanedRun {
    /// The directory.
    pub path: PathBuf,
    /// Removed, alive, or kept and why.
    pub outcome: CleanOutcome,
}

impl CleanedRun {
    /// Whether it was removed.
    pub fn removed(&self) -> bool {
        self.outcome == CleanOutcome::Removed
    }
}

/// How old (by its modification time) a run without a manifest must be before it may be
/// removed: its owner may still be creating it.
const UNFINISHED_RUN_AGE_S: i64 = 60;

/// Removes the run directories under `base` whose owner is dead, and nothing else.
///
/// `base` must hold nothing but run directories: a real directory named `run-<pid>-<ns>`
/// ([`is_run_id`]). Anything else in it (a file, a symlink, a directory with another name:
/// `base` is the wrong directory, say a home directory) is refused with
/// [`Error::NotARunBase`] naming the first such entry in name order, before anything is removed.
/// A `base` that does not exist is not created, and nothing is done.
///
/// Each run directory is then judged on its own, and removed only if all of this holds:
///
/// - no process holds its `writer.lock` (its owner holds it for the run's whole life and the
///   kernel drops it however the owner ends, so this is immune to pid reuse);
/// - it is provably a run: its `manifest.json` is valid ([`Manifest::read`], whose `run_id` is
///   the directory's name), or it has a `writer.lock`; one without a manifest must also be over
///   a minute old (its owner may still be creating it);
/// - every entry in it is a regular file named `writer.lock`, `manifest.json`, `digests.json`,
///   one of the manifest's ring files, or one of those followed by `.tmp`.
///
/// Otherwise the run is kept whole, and the result says why. Nothing is ever followed or
/// recursed into: entries are judged with `lstat`, and a subdirectory or symlink keeps its run.
/// Every run's entries are checked before any of them is removed.
pub fn clean_stale_runs(base: &Path) -> Result<Vec<CleanedRun>, Error> {
    clean_stale_runs_with(base, &[])
}

/// [`clean_stale_runs`] for a program that writes files of its own into its run directories:
/// a regular file named in `companions` (or that name followed by `.tmp`) is one of the run's
/// files too. Every other rule is the same; a name with a `/` never matches an entry.
pub fn clean_stale_runs_with(base: &Path, companions: &[&str]) -> Result<Vec<CleanedRun>, Error> {
    let Some(base_fd) = open_existing_base(base)? else {
        return Ok(Vec::new());
    };
    let names = list(&base_fd, base)?;
    for name in &names {
        let foreign = |reason: String| Error::NotARunBase {
            path: base.to_owned(),
            entry: name.clone(),
            reason,
        };
        if !is_run_id(name) {
            return Err(foreign("is not named like a run (run-<pid>-<ns>)".into()));
        }
        let st = rustix::fs::statat(&base_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(base.join(name), "reading status", e))?;
        let kind = file_kind(st.st_mode);
        if kind != "a directory" {
            return Err(foreign(format!("is {kind}, not a run directory")));
        }
    }
    let mut out = Vec::new();
    for name in names {
        let path = base.join(&name);
        let outcome = clean_run(&base_fd, &name, &path, companions)?;
        out.push(CleanedRun { path, outcome });
    }
    Ok(out)
}

/// Judges run directory `name` of `base_fd` and removes it if [`clean_stale_runs_with`] allows
/// (`companions` as there).
fn clean_run(
    base_fd: &OwnedFd,
    name: &str,
    path: &Path,
    companions: &[&str],
) -> Result<CleanOutcome, Error> {
    let kept = |reason: String| Ok(CleanOutcome::Kept { reason });
    let dir = rustix::fs::openat(
        base_fd,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(path, "opening the run directory", e))?;
    let entries = list(&dir, path)?;
    let mut kinds = Vec::with_capacity(entries.len());
    for entry in &entries {
        let st = rustix::fs::statat(&dir, entry.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(path.join(entry), "reading status", e))?;
        kinds.push(file_kind(st.st_mode));
    }
    let has = |n: &str| {
        entries
            .iter()
            .zip(&kinds)
            .any(|(e, k)| e == n && *k == "a file")
    };
    // Held from here to the end, so that the run cannot come alive under the removal.
    let _lock = if has(LOCK_NAME) {
        let lock = rustix::fs::openat(
            &dir,
            LOCK_NAME,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path.join(LOCK_NAME), "opening the lock", e))?;
        if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(CleanOutcome::Alive);
        }
        Some(lock)
    } else {
        None
    };
    let manifest = if has(MANIFEST_NAME) {
        match Manifest::read(path) {
            Ok(m) => Some(m),
            Err(e) => return kept(format!("its manifest is not valid ({e})")),
        }
    } else {
        None
    };
    if manifest.is_none() {
        if !has(LOCK_NAME) {
            return kept("neither a writer.lock nor a manifest: not provably a run".into());
        }
        let st = rustix::fs::fstat(&dir).map_err(|e| Error::io(path, "reading status", e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if now - st.st_mtime <= UNFINISHED_RUN_AGE_S {
            return kept(
                "no manifest yet and changed within the last minute: it may still be being created"
                    .into(),
            );
        }
    }
    let mut allowed = vec![LOCK_NAME, MANIFEST_NAME, DIGESTS_NAME];
    allowed.extend(companions.iter().copied());
    if let Some(m) = &manifest {
        allowed.extend(m.rings.iter().map(|r| r.file.as_str()));
    }
    for (entry, kind) in entries.iter().zip(&kinds) {
        if *kind != "a file" {
            return kept(format!("{entry:?} is {kind}, which a run never makes"));
        }
        let base_name = entry.strip_suffix(".tmp").unwrap_or(entry);
        if !allowed.contains(&base_name) {
            return kept(format!("{entry:?} is not a file of this run"));
        }
    }
    for entry in &entries {
        rustix::fs::unlinkat(&dir, entry.as_str(), AtFlags::empty())
            .map_err(|e| Error::io(path.join(entry), "removing", e))?;
    }
    rustix::fs::unlinkat(base_fd, name, AtFlags::REMOVEDIR)
        .map_err(|e| Error::io(path, "removing the run directory", e))?;
    Ok(CleanOutcome::Removed)
}

/// The entries of directory `dir` (whose path is `path`), without `.` and `..`, sorted; a name
/// that is not UTF-8 is kept lossily converted, so that it is still reported.
fn list(dir: &OwnedFd, path: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let listing =
        rustix::fs::Dir::read_from(dir).map_err(|e| Error::io(path, "listing the directory", e))?;
    for entry in listing {
        let entry = entry.map_err(|e| Error::io(path, "listing the directory", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// What a file of mode `mode` is, in words ("a file" for a regular file).
fn file_kind(mode: u32) -> &'static str {
    use rustix::fs::FileType;
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => "a file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use crate::run_dir::*;

    fn write_and_read(dir: &Path, edit: impl FnOnce(&mut Manifest)) -> Result<Manifest, Error> {
        let mut m = Manifest {
            version: MANIFEST_VERSION,
            run_id: "run".into(),
            writer_pid: 1,
            exchanges: vec!["x".into()],
            symbols: vec!["BTC/USD".into()],
            rings: vec![ManifestRing {
                file: "x.trades".into(),
                exchange_id: 0,
                stream: "trades".into(),
                record_type: RecordType::Trade as u32,
                record_size: 64,
                capacity: 8,
                mode: WriterMode::Overwrite,
            }],
        };
        edit(&mut m);
        std::fs::write(dir.join(MANIFEST_NAME), serde_json::to_vec(&m).unwrap()).unwrap();
        Manifest::read(dir)
    }

    #[test]
    fn manifests_that_contradict_themselves_are_refused() {
        let base = std::env::temp_dir().join(format!("apbus-manifest-{}", std::process::id()));
        let dir = base.join("run");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(write_and_read(&dir, |_| {}).is_ok());
        let reason = |edit: fn(&mut Manifest)| write_and_read(&dir, edit).unwrap_err().to_string();
        assert!(reason(|m| m.run_id = "other".into()).contains("run_id"));
        assert!(reason(|m| m.rings[0].exchange_id = 1).contains("exchange_id 1"));
        assert!(reason(|m| m.rings[0].stream = "book".into()).contains("does not match"));
        assert!(reason(|m| m.rings[0].file = "../x".into()).contains("not a valid"));
        assert!(reason(|m| m.rings[0].record_size = 256).contains("record type"));
        assert!(reason(|m| m.version = 9).contains("version 9"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
