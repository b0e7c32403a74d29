//! Where outputs go, decided and checked before the run so that a bad path fails at once, and
//! how they are written without destroying what is there.
//!
//! An output path is resolved to a [`Target`]:
//! - `-`: standard output (for the outputs that allow it);
//! - a regular file, or a name that does not exist yet: written atomically, into a temporary file
//!   beside the *real* file (a symlink is followed, not replaced) that is renamed over it, so a
//!   reader sees the old file or the whole new one. A new file gets the mode `0666` less the
//!   umask; a replaced file keeps its mode;
//! - `/dev/stdout`, `/dev/fd/1` or `/proc/self/fd/1`: standard output as `-` is, where it is
//!   allowed; any other of the process's own descriptors (`/dev/stderr`, `/dev/fd/N`): written in
//!   place, appended, never replaced (replacing the file a descriptor of this process has open, a
//!   shell's `> out.txt`, would lose what was written to it);
//! - a character device or a FIFO (`/dev/null`, a named pipe): written in place, never replaced;
//! - anything else (a directory, a socket, a block device): refused.
//!
//! Two outputs that resolve to the same file (same device and inode, or the same canonical path
//! for files yet to be created) are refused, however they are spelled.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Where one output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A regular file, written atomically.
    File {
        /// The path as the user gave it.
        path: PathBuf,
        /// The file it names, symlinks resolved; the temporary file goes beside it.
        real: PathBuf,
        /// The existing file's permission bits, kept when it is replaced; `None` for a new file.
        mode: Option<u32>,
    },
    /// A character device or a FIFO, written in place.
    Device {
        /// The path as the user gave it.
        path: PathBuf,
    },
}

/// What identifies the file behind a target, to tell two spellings of one file apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Standard output.
    Stdout,
    /// An existing file: device and inode.
    Inode(u64, u64),
    /// A file yet to be created: its canonical path.
    Path(PathBuf),
}

/// Most symlinks followed to find an output's real file.
const MAX_LINKS: usize = 16;

impl Target {
    /// Resolves `path` for an output: `-` is standard output when `stdout_ok`. Fails with what is
    /// wrong (without the flag's name): a directory, a socket, a missing or unwritable
    /// directory, a symlink loop.
    pub fn resolve(path: &Path, stdout_ok: bool) -> Result<Target, String> {
        if path.as_os_str() == "-" {
            return if stdout_ok {
                Ok(Target::Stdout)
            } else {
                Err("`-` (standard output) is not accepted here; name a file".into())
            };
        }
        if let Some(fd) = own_descriptor(path) {
            if fd == 1 && stdout_ok {
                return Ok(Target::Stdout);
            }
            return Ok(Target::Device {
                path: path.to_path_buf(),
            });
        }
        let real = follow_links(path)?;
        match std::fs::metadata(&real) {
            Ok(m) => {
                let t = m.file_type();
                if t.is_file() {
                    check_dir_writable(parent_of(&real))?;
                    Ok(Target::File {
                        path: path.to_path_buf(),
                        real,
                        mode: Some(m.mode() & 0o7777),
                    })
                } else if t.is_char_device() || t.is_fifo() {
                    Ok(Target::Device {
                        path: path.to_path_buf(),
                    })
                } else {
                    Err(format!("is {}; name a regular file", kind_of(&m)))
                }
            }
            // A missing file, or a path through something that is not a directory: whether a
            // file can be made there is the question, and the parent's check says why not.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                check_dir_writable(parent_of(&real))?;
                Ok(Target::File {
                    path: path.to_path_buf(),
                    real,
                    mode: None,
                })
            }
            Err(e) => Err(format!("cannot be examined: {e}")),
        }
    }

    /// The path as the user gave it (`-` for standard output).
    pub fn path(&self) -> &Path {
        match self {
            Target::Stdout => Path::new("-"),
            Target::File { path, .. } | Target::Device { path } => path,
        }
    }

    /// Whether this is standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Target::Stdout)
    }

    /// What identifies the file behind the target.
    pub fn identity(&self) -> Identity {
        match self {
            Target::Stdout => Identity::Stdout,
            Target::File { real, .. } => match std::fs::metadata(real) {
                Ok(m) => Identity::Inode(m.dev(), m.ino()),
                Err(_) => Identity::Path(
                    std::fs::canonicalize(parent_of(real))
                        .unwrap_or_else(|_| parent_of(real).to_path_buf())
                        .join(real.file_name().unwrap_or_default()),
                ),
            },
            Target::Device { path } => match std::fs::metadata(path) {
                Ok(m) => Identity::Inode(m.dev(), m.ino()),
                Err(_) => Identity::Path(path.clone()),
            },
        }
    }

    /// Writes `contents` as the whole output.
    pub fn write(&self, contents: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(contents)?;
                out.flush()
            }
            Target::Device { path } => open_device(path)?.write_all(contents),
            Target::File { real, mode, .. } => {
                let (tmp, mut file) = create_temp(real, *mode)?;
                let result = file
                    .write_all(contents)
                    .and_then(|()| file.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, real));
                if result.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                result
            }
        }
    }
}

/// Refuses two targets that are the same file, naming both flags. `targets` pairs each flag
/// with its target.
pub fn check_distinct(targets: &[(&str, &Target)]) -> Result<(), String> {
    let ids: Vec<(&str, Identity, &Target)> = targets
        .iter()
        .map(|(flag, t)| (*flag, t.identity(), *t))
        .collect();
    for (i, (flag, id, t)) in ids.iter().enumerate() {
        // Several outputs may go to /dev/null; only real files (and stdout) must be distinct.
        if matches!(t, Target::Device { .. }) {
            continue;
        }
        if let Some((other, _, _)) = ids[..i].iter().find(|(_, other_id, _)| other_id == id) {
            return Err(if t.is_stdout() {
                format!("{flag} and {other} both write to standard output (`-`); give one of them a file")
            } else {
                format!(
                    "{flag} {} and {other} name the same file; give each output its own file",
                    t.path().display()
                )
            });
        }
    }
    Ok(())
}

/// The directory a file lives in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` with every symlink in its last component followed (relative targets resolved against
/// the link's directory), up to [`MAX_LINKS`] links; a dangling link gives the path it points to.
fn follow_links(path: &Path) -> Result<PathBuf, String> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)
                    .map_err(|e| format!("is a symlink that cannot be read: {e}"))?;
                current = if target.is_absolute() {
                    target
                } else {
                    parent_of(&current).join(target)
                };
            }
            _ => return Ok(current),
        }
    }
    Err(format!(
        "is a chain of more than {MAX_LINKS} symlinks (a loop?)"
    ))
}

/// What a non-regular file is, in words.
fn kind_of(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

/// Opens a device or FIFO for writing in place. A FIFO that no process reads is an error at
/// once instead of a hang.
/// The descriptor `path` names when it is one of this process's own (`/dev/stdout`,
/// `/dev/stderr`, `/dev/stdin`, `/dev/fd/N`, `/proc/self/fd/N`).
fn own_descriptor(path: &Path) -> Option<u32> {
    let s = path.to_str()?;
    match s {
        "/dev/stdin" => return Some(0),
        "/dev/stdout" => return Some(1),
        "/dev/stderr" => return Some(2),
        _ => {}
    }
    let n = s
        .strip_prefix("/dev/fd/")
        .or_else(|| s.strip_prefix("/proc/self/fd/"))?;
    n.parse().ok()
}

fn open_device(path: &Path) -> std::io::Result<File> {
    // Appending: a descriptor alias may lead to a regular file (a shell redirection) that
    // holds what the process already wrote; a device or FIFO ignores it.
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                std::io::Error::other("no process reads this FIFO")
            } else {
                e
            }
        })?;
    // Blocking writes from here on: a slow reader of the FIFO slows the write, it does not fail it.
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

/// Creates the temporary file an output is written to before it is renamed over `real`: a
/// hidden file in the same directory (so the rename is atomic), named after `real` and this
/// process, created exclusively (never through a planted symlink) with `mode`, or `0666` less
/// the umask for a new file.
pub fn create_temp(real: &Path, mode: Option<u32>) -> std::io::Result<(PathBuf, File)> {
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let tmp = parent_of(real).join(format!(".{name}.{}.tmp", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    if let Some(mode) = mode {
        if let Err(e) = rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    Ok((tmp, file))
}

/// Checks, before the run, that `dir` is a directory this process can create files in.
pub fn check_dir_writable(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(if dir.exists() {
            format!("{} is not a directory", dir.display())
        } else {
            format!(
                "directory {} does not exist; create it first",
                dir.display()
            )
        });
    }
    let probe = dir.join(format!(".load-tester-probe-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot create files in {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use crate::output::files::{check_distinct, Target};
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

    #[test]
    fn a_symlinked_file_is_followed_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let t = Target::resolve(&link, false).unwrap();
        t.write(b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "a replaced file keeps its mode");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn devices_are_written_in_place_and_directories_refused() {
        let t = Target::resolve(std::path::Path::new("/dev/null"), false).unwrap();
        assert!(matches!(t, Target::Device { .. }));
        t.write(b"x").unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let dir = tempfile::tempdir().unwrap();
        let e = Target::resolve(dir.path(), false).unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        let e = Target::resolve(std::path::Path::new("-"), false).unwrap_err();
        assert!(e.contains("standard output"), "{e}");
    }

    #[test]
    fn two_spellings_of_one_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Target::resolve(&dir.path().join("r.json"), false).unwrap();
        let b = Target::resolve(&dir.path().join(".").join("r.json"), false).unwrap();
        let e = check_distinct(&[("--json-output", &a), ("--junit", &b)]).unwrap_err();
        assert!(e.contains("--junit") && e.contains("--json-output"), "{e}");
        let null = Target::resolve(std::path::Path::new("/dev/null"), false).unwrap();
        check_distinct(&[("--json-output", &null), ("--junit", &null)]).unwrap();
        let out = Target::resolve(std::path::Path::new("-"), true).unwrap();
        assert!(check_distinct(&[("--json-output", &out), ("--junit", &out)]).is_err());
    }
}
