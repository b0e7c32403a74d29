//! The results as JSON, written atomically.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::results::Results;

/// Writes `results` to `path` atomically: into a new 0600 file beside it (created exclusively,
/// so never through a planted symlink), flushed to disk, then renamed over `path`. A reader of
/// `path` sees the old file or the whole new one, never a partial one.
pub fn write(results: &Results, path: &Path) -> std::io::Result<()> {
    write_value(results, path)
}

/// Writes any serializable `value` as [`write`] does.
pub fn write_value<T: serde::Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        serde_json::to_writer_pretty(&mut file, value)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
