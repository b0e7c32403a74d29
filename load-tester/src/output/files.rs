//! Writing output files: atomically, and checked before the run so that a bad path fails at
//! once instead of after the measurement.

use std::path::{Path, PathBuf};

/// Writes `contents` to `path` atomically: into a new 0600 file beside it (created exclusively,
/// so never through a planted symlink), flushed to disk, then renamed over `path`. A reader of
/// `path` sees the old file or the whole new one, never a partial one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = temp_beside(path);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary file an output is written to before it is renamed over `path`: a hidden file
/// in the same directory (so the rename is atomic), named after `path` and this process.
pub fn temp_beside(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Checks, before the run, that a file can be created next to `path` (where the results will
/// be written atomically) and that `path` is not a directory.
pub fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory; name a file".into());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    check_dir_writable(&dir)
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
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot create files in {}: {e}", dir.display())),
    }
}
