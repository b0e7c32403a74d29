//! Bad input and hostile files: opening anything that is not a valid ring, creating rings where
//! that would be unsafe or impossible (symlinks, existing files, a full tmpfs), and the modes of
//! what is created. Every refusal must be a typed error naming the file, never a panic or SIGBUS.
#![cfg(not(loom))]

mod common;

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use alphapulse_bus::layout::{
    HEADER_SIZE, OFF_CAPACITY, OFF_HEADER_SIZE, OFF_MAGIC, OFF_MAX_READERS, OFF_MODE,
    OFF_RECORD_SIZE, OFF_RECORD_TYPE, OFF_VERSION, OFF_WRITER_STATE, OFF_WRITE_CURSOR,
};
use alphapulse_bus::{
    BookUpdate, Error, Manifest, ManifestRing, Poll, Reader, RunDir, StartAt, Trade, WriterMode,
    MANIFEST_VERSION,
};
use common::{TestDir, TestRecord};
use proptest::prelude::*;

const CAP: u64 = 8;

/// The bytes of a valid trade ring of capacity [`CAP`] holding 5 records.
fn valid_image(dir: &TestDir) -> Vec<u8> {
    let mut run = RunDir::create(dir.path(), "image").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Overwrite)
        .unwrap();
    for seq in 1..=5 {
        w.write(&Trade::make(seq, 1)).unwrap();
    }
    let bytes = std::fs::read(w.path()).unwrap();
    assert_eq!(bytes.len(), HEADER_SIZE + CAP as usize * 64);
    bytes
}

fn put_u32(image: &mut [u8], off: usize, v: u32) {
    image[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(image: &mut [u8], off: usize, v: u64) {
    image[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Attaching to `path` must fail; the message must name the file and contain `problem`.
fn refused<R: TestRecord>(path: &Path, problem: &str) -> Error {
    let err = match Reader::<R>::attach(path, StartAt::Oldest) {
        Ok(_) => panic!("{} was accepted as a ring", path.display()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()),
        "error does not name the file: {msg}"
    );
    assert!(
        msg.contains(problem),
        "error does not say {problem:?}: {msg}"
    );
    err
}

#[test]
fn the_valid_image_is_accepted_and_readable() {
    // The baseline that every corruption below departs from: a byte copy of a ring is a ring.
    let dir = TestDir::created("valid-image");
    let image = valid_image(&dir);
    let path = write_file(dir.path(), "copy", &image);
    let mut r = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
    assert_eq!(r.capacity(), CAP);
    for seq in 1..=5 {
        match r.try_read() {
            Poll::Record(t) => {
                assert_eq!(t.sequence, seq);
                t.verify(1).unwrap();
            }
            other => panic!("expected record {seq}, got {other:?}"),
        }
    }
    assert_eq!(r.try_read(), Poll::Empty);
}

#[test]
fn empty_and_truncated_files_are_refused() {
    let dir = TestDir::created("truncated");
    let image = valid_image(&dir);

    let path = write_file(dir.path(), "empty", &[]);
    let e = refused::<Trade>(&path, "too short");
    assert!(matches!(e, Error::Truncated { len: 0, .. }), "{e:?}");

    let path = write_file(dir.path(), "short", &image[..100]);
    let e = refused::<Trade>(&path, "too short");
    assert!(matches!(e, Error::Truncated { len: 100, .. }), "{e:?}");

    let path = write_file(dir.path(), "header-minus-one", &image[..HEADER_SIZE - 1]);
    let e = refused::<Trade>(&path, "too short");
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");

    // A whole header but missing slots: the header describes more than the file holds, which
    // would SIGBUS on the first read of a missing slot if accepted.
    let cut = HEADER_SIZE + 3 * 64;
    let path = write_file(dir.path(), "missing-slots", &image[..cut]);
    let e = refused::<Trade>(&path, "header describes");
    assert!(
        matches!(e, Error::LengthMismatch { actual, expected, .. }
            if actual == cut as u64 && expected == image.len() as u64),
        "{e:?}"
    );

    let path = write_file(dir.path(), "header-only", &image[..HEADER_SIZE]);
    let e = refused::<Trade>(&path, "header describes");
    assert!(matches!(e, Error::LengthMismatch { .. }), "{e:?}");

    let mut longer = image.clone();
    longer.extend_from_slice(&[0u8; 64]);
    let path = write_file(dir.path(), "trailing-bytes", &longer);
    let e = refused::<Trade>(&path, "header describes");
    assert!(matches!(e, Error::LengthMismatch { .. }), "{e:?}");
}

#[test]
fn wrong_magic_version_type_and_size_are_refused() {
    let dir = TestDir::created("header-fields");
    let image = valid_image(&dir);

    let mut bad = image.clone();
    put_u64(&mut bad, OFF_MAGIC, u64::from_le_bytes(*b"NOTARING"));
    let path = write_file(dir.path(), "magic", &bad);
    let e = refused::<Trade>(&path, "bad magic");
    assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");

    // A file of zeros the size of a ring: what a writer that died before publishing the magic
    // leaves behind.
    let path = write_file(dir.path(), "zeros", &vec![0u8; image.len()]);
    let e = refused::<Trade>(&path, "bad magic");
    assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");

    let mut bad = image.clone();
    put_u32(&mut bad, OFF_VERSION, 2);
    let path = write_file(dir.path(), "version", &bad);
    let e = refused::<Trade>(&path, "version 2");
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{e:?}"
    );

    let mut bad = image.clone();
    put_u32(&mut bad, OFF_RECORD_TYPE, 7);
    let path = write_file(dir.path(), "type", &bad);
    let e = refused::<Trade>(&path, "record type is 7");
    assert!(
        matches!(
            e,
            Error::BadHeader {
                field: "record type",
                found: 7,
                ..
            }
        ),
        "{e:?}"
    );

    // A valid trade ring opened as a book ring.
    let path = write_file(dir.path(), "trade-as-book", &image);
    let e = refused::<BookUpdate>(&path, "record type is 1");
    assert!(
        matches!(
            e,
            Error::BadHeader {
                field: "record type",
                found: 1,
                ..
            }
        ),
        "{e:?}"
    );

    let mut bad = image.clone();
    put_u32(&mut bad, OFF_RECORD_SIZE, 128);
    let path = write_file(dir.path(), "size", &bad);
    let e = refused::<Trade>(&path, "record size is 128");
    assert!(
        matches!(
            e,
            Error::BadHeader {
                field: "record size",
                found: 128,
                ..
            }
        ),
        "{e:?}"
    );

    let mut bad = image.clone();
    put_u32(&mut bad, OFF_HEADER_SIZE, 8192);
    let path = write_file(dir.path(), "header-size", &bad);
    let e = refused::<Trade>(&path, "header size is 8192");
    assert!(
        matches!(
            e,
            Error::BadHeader {
                field: "header size",
                ..
            }
        ),
        "{e:?}"
    );

    let mut bad = image.clone();
    put_u32(&mut bad, OFF_MAX_READERS, 64);
    let path = write_file(dir.path(), "readers", &bad);
    let e = refused::<Trade>(&path, "reader slots is 64");
    assert!(
        matches!(
            e,
            Error::BadHeader {
                field: "reader slots",
                ..
            }
        ),
        "{e:?}"
    );

    let mut bad = image.clone();
    put_u32(&mut bad, OFF_MODE, 5);
    let path = write_file(dir.path(), "mode", &bad);
    let e = refused::<Trade>(&path, "writer mode is 5");
    assert!(
        matches!(
            e,
            Error::BadHeader {
                field: "writer mode",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn bad_capacities_are_refused() {
    let dir = TestDir::created("capacity");
    let image = valid_image(&dir);
    for (name, cap) in [
        ("zero", 0),
        ("one", 1),
        ("three", 3),
        ("not-pow2", 12),
        ("too-big", 1u64 << 40),
        ("huge", u64::MAX),
    ] {
        let mut bad = image.clone();
        put_u64(&mut bad, OFF_CAPACITY, cap);
        let path = write_file(dir.path(), name, &bad);
        let e = refused::<Trade>(&path, "power of two");
        assert!(
            matches!(e, Error::BadHeader { field: "capacity", found, .. } if found == cap),
            "{name}: {e:?}"
        );
    }
    // A valid power of two that does not match the file's length, either way.
    for (name, cap) in [("larger", CAP * 2), ("smaller", CAP / 2)] {
        let mut bad = image.clone();
        put_u64(&mut bad, OFF_CAPACITY, cap);
        let path = write_file(dir.path(), name, &bad);
        let e = refused::<Trade>(&path, "header describes");
        assert!(
            matches!(e, Error::LengthMismatch { actual, expected, .. }
                if actual == image.len() as u64
                    && expected == HEADER_SIZE as u64 + cap * 64),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn symlinks_directories_fifos_and_missing_files_are_refused() {
    let dir = TestDir::created("not-files");
    let image = valid_image(&dir);
    let real = write_file(dir.path(), "real", &image);
    Reader::<Trade>::attach(&real, StartAt::Oldest).expect("the target itself is a valid ring");

    // Opening never follows a symlink, even to a valid ring.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = refused::<Trade>(&link, "opening the ring");
    assert!(
        matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ELOOP)),
        "{e:?}"
    );

    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let e = refused::<Trade>(&sub, "opening the ring");
    assert!(matches!(e, Error::Io { .. }), "{e:?}");

    let fifo = dir.path().join("fifo");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo");
    let e = refused::<Trade>(&fifo, "is a FIFO, not a regular file");
    assert!(
        matches!(e, Error::NotRegularFile { kind: "a FIFO", .. }),
        "{e:?}"
    );
    let e = refused::<Trade>(
        Path::new("/dev/null"),
        "is a character device, not a regular file",
    );
    assert!(matches!(e, Error::NotRegularFile { .. }), "{e:?}");

    // A manifest that is a FIFO (or a directory) is refused, not waited on forever: opening a
    // FIFO for reading blocks until a writer opens it.
    let run = dir.path().join("fifo-run");
    std::fs::create_dir(&run).unwrap();
    let c = CString::new(run.join("manifest.json").to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo");
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = run.clone();
    std::thread::spawn(move || {
        let _ = tx.send(
            Manifest::read(&reading)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("Manifest::read blocked on a FIFO");
    let msg = got.unwrap_err();
    assert!(msg.contains("is a FIFO, not a regular file"), "{msg}");
    let run = dir.path().join("dir-run");
    std::fs::create_dir_all(run.join("manifest.json")).unwrap();
    let msg = Manifest::read(&run).unwrap_err().to_string();
    assert!(msg.contains("is a directory, not a regular file"), "{msg}");

    let e = refused::<Trade>(&dir.path().join("missing"), "opening the ring");
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random damage to a ring's header and length: attaching either refuses with a typed error
    /// that names the file, or accepts a file whose geometry is sound; reading an accepted one
    /// never crashes and never returns a record whose sequence is out of order.
    #[test]
    fn damaged_headers_never_panic_or_fault(
        edits in prop::collection::vec((0usize..HEADER_SIZE, any::<u8>()), 0..12),
        field_edits in prop::collection::vec(
            (0usize..10, prop_oneof![any::<u64>(), Just(0), Just(u64::MAX), Just(u64::MAX - 1)]),
            0..3,
        ),
        cut in prop::option::of(0usize..(HEADER_SIZE + CAP as usize * 64 + 64)),
        latest in any::<bool>(),
    ) {
        let dir = TestDir::created(&format!("fuzz-{}", next_case()));
        let mut image = valid_image(&dir);
        for (off, byte) in edits {
            image[off] = byte;
        }
        // Random bytes rarely get past the magic; also hit the fields behind it directly.
        let fields = [OFF_VERSION, OFF_RECORD_TYPE, OFF_RECORD_SIZE, OFF_HEADER_SIZE,
            OFF_CAPACITY, OFF_MAX_READERS, OFF_MODE, OFF_WRITE_CURSOR, OFF_WRITE_CURSOR,
            OFF_WRITER_STATE];
        for (which, value) in field_edits {
            let off = fields[which];
            if off.is_multiple_of(8) {
                put_u64(&mut image, off, value);
            } else {
                put_u32(&mut image, off, value as u32);
            }
        }
        if let Some(cut) = cut {
            image.resize(cut, 0);
        }
        let path = write_file(dir.path(), "damaged", &image);
        let start = if latest { StartAt::Latest } else { StartAt::Oldest };
        match Reader::<Trade>::attach(&path, start) {
            Err(e) => {
                prop_assert!(e.to_string().contains(&*path.to_string_lossy()), "{}", e);
            }
            Ok(mut r) => {
                prop_assert_eq!(
                    image.len() as u64,
                    HEADER_SIZE as u64 + r.capacity() * 64
                );
                let _ = (r.lag(), r.published(), r.readers());
                let mut last = r.next_sequence();
                for _ in 0..(3 * r.capacity()) {
                    match r.try_read() {
                        Poll::Record(t) => {
                            prop_assert_eq!(t.sequence, last);
                            last += 1;
                        }
                        Poll::Lost(n) => last += n,
                        Poll::Empty => break,
                    }
                    prop_assert_eq!(r.next_sequence(), last);
                }
            }
        }
    }
}

fn next_case() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CASE: AtomicU64 = AtomicU64::new(0);
    CASE.fetch_add(1, Ordering::Relaxed)
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn created_directories_are_0700_and_files_0600() {
    let dir = TestDir::new("modes");
    // The base does not exist yet: RunDir creates it.
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let w = run
        .create_ring::<BookUpdate>("x.book", 16, WriterMode::Overwrite)
        .unwrap();
    run.write_manifest(&Manifest {
        version: MANIFEST_VERSION,
        run_id: "run".into(),
        writer_pid: std::process::id(),
        exchanges: vec!["x".into()],
        symbols: vec!["BTC-USD".into()],
        rings: vec![ManifestRing {
            file: "x.book".into(),
            exchange_id: 0,
            stream: "book".into(),
            record_type: 2,
            record_size: 256,
            capacity: 16,
            mode: WriterMode::Overwrite,
        }],
    })
    .unwrap();
    assert_eq!(mode_of(dir.path()), 0o700, "base directory");
    assert_eq!(mode_of(run.path()), 0o700, "run directory");
    for name in ["x.book", "writer.lock", "manifest.json"] {
        assert_eq!(mode_of(&run.path().join(name)), 0o600, "{name}");
    }
    assert_eq!(
        std::fs::metadata(w.path()).unwrap().len(),
        HEADER_SIZE as u64 + 16 * 256,
        "the ring is fully sized at creation"
    );
    assert_eq!(Manifest::read(run.path()).unwrap().rings.len(), 1);
    drop(w);
    let run_path = run.path().to_owned();
    drop(run);
    assert!(!run_path.exists(), "the run directory is removed on drop");
}

#[test]
fn creation_never_follows_symlinks_nor_reuses_files() {
    let dir = TestDir::created("no-follow");
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"precious").unwrap();

    // The base directory itself must not be a symlink.
    let real_base = dir.path().join("real-base");
    std::fs::create_dir(&real_base).unwrap();
    std::fs::set_permissions(&real_base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link_base = dir.path().join("link-base");
    std::os::unix::fs::symlink(&real_base, &link_base).unwrap();
    let e = RunDir::create(&link_base, "run")
        .err()
        .expect("a symlinked base");
    assert!(matches!(e, Error::UnsafeDirectory { .. }), "{e:?}");
    assert!(e.to_string().contains("link-base"), "{e}");
    assert_eq!(std::fs::read_dir(&real_base).unwrap().count(), 0);

    // Nor writable by others.
    let open_base = dir.path().join("open-base");
    std::fs::create_dir(&open_base).unwrap();
    std::fs::set_permissions(&open_base, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = RunDir::create(&open_base, "run")
        .err()
        .expect("a 0777 base");
    assert!(
        matches!(&e, Error::UnsafeDirectory { reason, .. } if reason.contains("writable")),
        "{e:?}"
    );

    // A run directory that exists already is not reused.
    let base = dir.path().join("base");
    let first = RunDir::create(&base, "run").unwrap();
    let e = RunDir::create(&base, "run").err().expect("an existing run");
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{e:?}"
    );
    assert!(
        first.path().join("writer.lock").exists(),
        "the first run is untouched"
    );
    drop(first);

    // A ring name planted as a symlink or as a file is neither followed nor reused nor removed.
    let mut run = RunDir::create(&base, "run2").unwrap();
    let link = run.path().join("x.trades");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let e = run
        .create_ring::<Trade>("x.trades", 8, WriterMode::Overwrite)
        .err()
        .expect("a planted symlink");
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{e:?}"
    );
    assert!(e.to_string().contains("x.trades"), "{e}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");

    let planted = run.path().join("y.trades");
    std::fs::write(&planted, b"not a ring").unwrap();
    let e = run
        .create_ring::<Trade>("y.trades", 8, WriterMode::Overwrite)
        .err()
        .expect("a planted file");
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_eq!(std::fs::read(&planted).unwrap(), b"not a ring");

    // A ring created twice under one name: the second is refused and the first still works.
    let mut w = run
        .create_ring::<Trade>("z.trades", 8, WriterMode::Overwrite)
        .unwrap();
    assert!(run
        .create_ring::<Trade>("z.trades", 8, WriterMode::Overwrite)
        .is_err());
    w.write(&Trade::make(1, 1)).unwrap();
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    assert!(matches!(r.try_read(), Poll::Record(t) if t.sequence == 1));
    drop((r, w));
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&planted).unwrap();
}

#[test]
fn invalid_names_and_capacities_create_nothing() {
    let dir = TestDir::new("invalid-args");
    let long = "n".repeat(101);
    for bad in ["", ".", "..", "a/b", "../x", "sp ace", long.as_str()] {
        let e = RunDir::create(dir.path(), bad).err().expect("a bad run id");
        assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e:?}");
    }
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    for bad in ["", "..", "a/b", "/etc/passwd", "x\0y"] {
        let e = run
            .create_ring::<Trade>(bad, 8, WriterMode::Overwrite)
            .err()
            .expect("a bad ring name");
        assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e:?}");
    }
    for cap in [0, 1, 3, 100, 1 << 31, u64::MAX] {
        let e = run
            .create_ring::<Trade>("x.trades", cap, WriterMode::Overwrite)
            .err()
            .expect("a bad capacity");
        assert!(
            matches!(e, Error::InvalidCapacity { capacity, .. } if capacity == cap),
            "{cap}: {e:?}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(run.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["writer.lock"], "nothing but the lock was created");
}

#[test]
fn a_ring_larger_than_free_space_is_refused_and_leaves_no_file() {
    let dir = TestDir::new("too-big");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    // 2^30 book updates are 256 GiB: more than this machine's /dev/shm can hold.
    let e = run
        .create_ring::<BookUpdate>("x.book", 1 << 30, WriterMode::Overwrite)
        .err()
        .expect("a ring larger than the file system");
    match &e {
        Error::NoSpace {
            path,
            needed,
            available,
        } => {
            assert_eq!(path, &run.path().join("x.book"));
            assert_eq!(*needed, HEADER_SIZE as u64 + (1u64 << 30) * 256);
            assert!(available < needed);
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(e.to_string().contains("x.book"), "{e}");
    assert!(!run.path().join("x.book").exists(), "no file left behind");
}

/// A tmpfs mounted for one test and unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        let target = CString::new(dir.to_str().unwrap()).unwrap();
        let opts = CString::new(format!("size={size},mode=0700")).unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if rc == 0 {
            Ok(Self(dir.to_owned()))
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: `target` is a valid NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn a_full_tmpfs_is_a_clean_error_before_anything_is_written() {
    let dir = TestDir::created("small-tmpfs");
    let mnt = dir.path().join("mnt");
    let _mount = match Mount::tmpfs(&mnt, "1m") {
        Ok(m) => m,
        Err(e) => {
            // Straight to stderr, past the test harness's capture, so that the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED a_full_tmpfs_is_a_clean_error_before_anything_is_written: \
                 cannot mount a 1 MiB tmpfs ({e}); the NoSpace path is still covered by \
                 a_ring_larger_than_free_space_is_refused_and_leaves_no_file"
            );
            return;
        }
    };
    let base = mnt.join("bus");
    let mut run = RunDir::create(&base, "run").unwrap();

    // 2^14 trades are exactly 1 MiB, plus the header: one page too many.
    let e = run
        .create_ring::<Trade>("a.trades", 1 << 14, WriterMode::Overwrite)
        .err()
        .expect("a ring larger than the tmpfs");
    assert!(
        matches!(e, Error::NoSpace { needed, available, .. }
            if needed == HEADER_SIZE as u64 + (1 << 20) && available < needed),
        "{e:?}"
    );
    assert!(e.to_string().contains("a.trades"), "{e}");
    assert!(!run.path().join("a.trades").exists(), "no file left behind");

    // Half the tmpfs fits; a second half then does not, and the first keeps working.
    let mut w = run
        .create_ring::<Trade>("b.trades", 1 << 13, WriterMode::Overwrite)
        .expect("half of the tmpfs fits");
    let e = run
        .create_ring::<Trade>("c.trades", 1 << 13, WriterMode::Overwrite)
        .err()
        .expect("the second half does not fit");
    assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
    assert!(!run.path().join("c.trades").exists(), "no file left behind");

    // The ring that was created is fully allocated: writing every slot, twice over, on a full
    // file system is not a SIGBUS.
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    for seq in 1..=(2 << 13) {
        assert_eq!(w.write(&Trade::make(seq, 3)), Ok(seq));
    }
    // The oldest 2^13 records were overwritten (and a few more skipped to get ahead of the writer).
    assert!(matches!(r.try_read(), Poll::Lost(n) if n >= 1 << 13));
    let mut got = 0;
    while let Poll::Record(t) = r.try_read() {
        t.verify(3).unwrap();
        got += 1;
    }
    let st = r.stats();
    assert_eq!(st.received, got);
    assert_eq!(st.received + st.lost, 2 << 13);
    drop((r, w, run));
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
}

/// Writes `value` over the `u64` at `off` of the ring file, as a hostile process could: through
/// the file, so the writer's and reader's mappings see it.
fn scribble(path: &Path, off: usize, value: u64) {
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&value.to_le_bytes(), off as u64).unwrap();
}

fn stamp_offset(seq: u64) -> usize {
    HEADER_SIZE + (seq % CAP) as usize * 64
}

const BUSY: u64 = 1 << 63;

#[test]
fn a_hostile_stamp_costs_one_record_and_the_reader_follows_on() {
    let dir = TestDir::new("hostile-stamp");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Overwrite)
        .unwrap();
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    for seq in 1..=5 {
        w.write(&Trade::make(seq, 1)).unwrap();
    }
    // Sequence 3's stamp becomes the largest sequence there is: no lap can explain it (the
    // cursor is 5), so only that record is lost, and counted as corrupt.
    scribble(w.path(), stamp_offset(3), BUSY - 1);
    let mut got = Vec::new();
    let mut lost = 0;
    for _ in 0..10 {
        match r.try_read() {
            Poll::Record(t) => got.push(t.sequence),
            Poll::Lost(n) => lost += n,
            Poll::Empty => break,
        }
    }
    assert_eq!((got, lost), (vec![1, 2, 4, 5], 1));
    assert_eq!(r.stats().corrupt, 1);
    // A stamp of a slot the reader has not reached yet, and one with the busy bit: the reader
    // waits (the writer's own write replaces them) and then follows the writer as before.
    scribble(w.path(), stamp_offset(6), u64::MAX);
    scribble(w.path(), stamp_offset(7), BUSY - 1);
    for _ in 0..100 {
        assert_eq!(r.try_read(), Poll::Empty);
    }
    for seq in 6..=12 {
        w.write(&Trade::make(seq, 1)).unwrap();
    }
    for seq in 6..=12 {
        match r.try_read() {
            Poll::Record(t) => {
                assert_eq!(t.sequence, seq);
                t.verify(1).unwrap();
            }
            other => panic!("expected {seq}, got {other:?}"),
        }
    }
    let st = r.stats();
    assert_eq!((st.received, st.lost, st.corrupt), (11, 1, 1));
}

#[test]
fn a_hostile_cursor_is_refused_at_attach_and_ignored_after() {
    let dir = TestDir::new("hostile-cursor");
    let mut run = RunDir::create(dir.path(), "run").unwrap();
    let mut w = run
        .create_ring::<Trade>("x.trades", CAP, WriterMode::Overwrite)
        .unwrap();
    for seq in 1..=5 {
        w.write(&Trade::make(seq, 1)).unwrap();
    }
    let mut r = Reader::<Trade>::attach(w.path(), StartAt::Oldest).unwrap();
    for bad in [u64::MAX, u64::MAX - 3, BUSY] {
        scribble(w.path(), OFF_WRITE_CURSOR, bad);
        for start in [StartAt::Oldest, StartAt::Latest] {
            let e = refused::<Trade>(w.path(), "write cursor");
            assert!(
                matches!(e, Error::BadHeader { found, .. } if found == bad),
                "{e:?}"
            );
            let _ = start;
        }
    }
    // Attached before the damage: it reads what the slots hold, in order, and a lap computed
    // from the bad cursor never happens.
    scribble(w.path(), stamp_offset(4), 4 + 2 * CAP);
    let mut got = Vec::new();
    for _ in 0..20 {
        match r.try_read() {
            Poll::Record(t) => got.push(t.sequence),
            Poll::Lost(n) => panic!("lost {n} on a cursor of {}", u64::MAX - 3),
            Poll::Empty => {}
        }
    }
    assert_eq!(got, [1, 2, 3]);
    // The writer goes on: its next write repairs the cursor and the reader follows it.
    for seq in 6..=8 {
        w.write(&Trade::make(seq, 1)).unwrap();
    }
    let mut rest = Vec::new();
    let mut lost = 0;
    for _ in 0..20 {
        match r.try_read() {
            Poll::Record(t) => rest.push(t.sequence),
            Poll::Lost(n) => lost += n,
            Poll::Empty => break,
        }
    }
    assert_eq!((rest, lost), (vec![5, 6, 7, 8], 1), "4's slot was corrupt");
    // The largest cursor a reader accepts leaves it at the end of the sequence space: empty,
    // never a wrapped sequence.
    scribble(w.path(), OFF_WRITE_CURSOR, BUSY - 1);
    let mut end = Reader::<Trade>::attach(w.path(), StartAt::Latest).unwrap();
    assert_eq!(end.first_sequence(), BUSY);
    scribble(w.path(), stamp_offset(BUSY), BUSY);
    for _ in 0..100 {
        assert_eq!(end.try_read(), Poll::Empty);
    }
}

#[derive(Debug, Clone)]
enum Hostile {
    Write(u8),
    Read(u8),
    /// Overwrites the stamp of slot `slot % CAP` with a value chosen relative to the reader.
    Stamp {
        slot: u64,
        value: Value,
    },
    Cursor(Value),
}

#[derive(Debug, Clone)]
enum Value {
    Any(u64),
    /// The reader's next sequence plus this.
    NearNext(i8),
    /// The writer's true cursor plus this.
    NearCursor(i8),
    Fixed(u64),
}

fn hostile_ops() -> impl Strategy<Value = Vec<Hostile>> {
    let value = prop_oneof![
        any::<u64>().prop_map(Value::Any),
        any::<i8>().prop_map(Value::NearNext),
        (-24i8..24).prop_map(Value::NearCursor),
        prop::sample::select(vec![0, 1, BUSY - 1, BUSY, BUSY + 1, u64::MAX, u64::MAX - 1])
            .prop_map(Value::Fixed),
    ];
    let op = prop_oneof![
        3 => (1u8..20).prop_map(Hostile::Write),
        4 => (1u8..20).prop_map(Hostile::Read),
        2 => (any::<u64>(), value.clone()).prop_map(|(slot, value)| Hostile::Stamp { slot, value }),
        1 => value.prop_map(Hostile::Cursor),
    ];
    prop::collection::vec(op, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// An adversary overwrites stamps and the write cursor between reads while the writer goes
    /// on: the reader never panics, returns sequences strictly in order, keeps
    /// `received + lost == next - first`, never runs further ahead of the writer than forged
    /// values near the reader's or writer's position could take it (an absurd value, say
    /// 2^62, is never believed), and once the adversary stops it follows the writer to its last
    /// record.
    #[test]
    fn hostile_stamps_and_cursors_never_mislead_a_reader(ops in hostile_ops()) {
        let dir = TestDir::new(&format!("hostile-{}", next_case()));
        let mut run = RunDir::create(dir.path(), "run").unwrap();
        let mut w = run
            .create_ring::<Trade>("x.trades", CAP, WriterMode::Overwrite)
            .unwrap();
        let path = w.path().to_owned();
        let mut r = Reader::<Trade>::attach(&path, StartAt::Oldest).unwrap();
        let first = r.first_sequence();
        let mut last_returned = 0u64;
        let mut forged = 0u64;
        let resolve = |v: &Value, next: u64, cursor: u64| match *v {
            Value::Any(x) | Value::Fixed(x) => x,
            Value::NearNext(d) => next.wrapping_add_signed(i64::from(d)),
            Value::NearCursor(d) => cursor.wrapping_add_signed(i64::from(d)),
        };
        let read = |r: &mut Reader<Trade>, last: &mut u64| -> Result<(), TestCaseError> {
            let before = r.next_sequence();
            match r.try_read() {
                Poll::Record(t) => {
                    prop_assert_eq!(t.sequence, before);
                    prop_assert!(t.sequence > *last, "{} after {}", t.sequence, *last);
                    *last = t.sequence;
                }
                Poll::Lost(n) => {
                    prop_assert!(n >= 1);
                    prop_assert_eq!(r.next_sequence(), before + n);
                }
                Poll::Empty => prop_assert_eq!(r.next_sequence(), before),
            }
            let st = r.stats();
            prop_assert_eq!(st.received + st.lost, r.next_sequence() - first);
            prop_assert!(st.corrupt <= st.lost && st.torn <= st.lost);
            Ok(())
        };
        for op in &ops {
            let cursor = w.next_sequence() - 1;
            match op {
                Hostile::Write(n) => {
                    for _ in 0..*n {
                        let seq = w.next_sequence();
                        w.write(&Trade::make(seq, 1)).unwrap();
                    }
                }
                Hostile::Read(n) => {
                    for _ in 0..*n {
                        read(&mut r, &mut last_returned)?;
                    }
                }
                Hostile::Stamp { slot, value } => {
                    forged += 1;
                    let v = resolve(value, r.next_sequence(), cursor);
                    scribble(&path, HEADER_SIZE + (slot % CAP) as usize * 64, v);
                }
                Hostile::Cursor(value) => {
                    forged += 1;
                    let v = resolve(value, r.next_sequence(), cursor);
                    scribble(&path, OFF_WRITE_CURSOR, v);
                }
            }
            // A forged word can only move the reader to a sequence an adversary could make look
            // consistent: within the offsets generated here of the reader or the writer (an
            // arbitrary value is past what a writer can have published since attach and is not
            // believed), plus a ring.
            let bound = (w.next_sequence() - 1) + 1 + forged * (256 + 3 * CAP);
            prop_assert!(
                r.next_sequence() <= bound,
                "reader at {} with the writer at {} after {} forged words",
                r.next_sequence(),
                w.next_sequence() - 1,
                forged
            );
        }
        // The adversary stops; the writer writes past wherever the reader got to, overwriting
        // every slot, and the reader must reach the writer's last record, intact.
        let ahead = r.next_sequence().saturating_sub(w.next_sequence());
        for _ in 0..ahead + 3 * CAP {
            let seq = w.next_sequence();
            w.write(&Trade::make(seq, 1)).unwrap();
        }
        let last = w.next_sequence() - 1;
        let mut reached = false;
        for _ in 0..(4 * CAP + ahead) {
            let before = r.next_sequence();
            read(&mut r, &mut last_returned)?;
            if last_returned == last && before == last {
                reached = true;
                break;
            }
        }
        prop_assert!(reached, "the reader stopped at {} with the writer at {last}", r.next_sequence());
    }
}

#[test]
fn attach_waits_briefly_for_a_ring_its_writer_is_still_creating() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::FileExt as _;
    use std::time::{Duration, Instant};
    let dir = TestDir::created("creating");
    let image = valid_image(&dir);
    let mut unfinished = image.clone();
    put_u64(&mut unfinished, OFF_MAGIC, 0);
    let lock = |path: &Path| {
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: `f` is an open descriptor for the duration of the call.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        f
    };

    // Locked, as by a writer between creating the file and publishing the magic, which it
    // does 50 ms later: attach waits for it.
    let path = write_file(dir.path(), "creating", &unfinished);
    let _held = lock(&path);
    let finish = {
        let path = path.clone();
        let magic = image[..8].to_vec();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(&magic, 0).unwrap();
        })
    };
    let r = Reader::<Trade>::attach(&path, StartAt::Oldest).expect("waited for the magic");
    assert_eq!(r.capacity(), CAP);
    finish.join().unwrap();

    // Locked but never finished: refused with the clear error after about a second.
    let path = write_file(dir.path(), "hung", &unfinished);
    let _held = lock(&path);
    let t = Instant::now();
    let e = refused::<Trade>(&path, "bad magic");
    assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // Nobody holds it (a writer that died before finishing): refused at once.
    let path = write_file(dir.path(), "abandoned", &unfinished);
    let t = Instant::now();
    refused::<Trade>(&path, "bad magic");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}
