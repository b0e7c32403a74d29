//! The results as JSON, written atomically.

use std::path::Path;

use crate::results::Results;

/// Writes `results` to `path` atomically (see [`super::files::write_atomic`]).
pub fn write(results: &Results, path: &Path) -> std::io::Result<()> {
    write_value(results, path)
}

/// Writes any serializable `value`, pretty-printed, as [`write`] does.
pub fn write_value<T: serde::Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    super::files::write_atomic(path, &json)
}
