//! The results as JSON.

use super::files::Target;
use crate::results::Results;

/// Writes `results` to `target` (see [`Target::write`]).
pub fn write(results: &Results, target: &Target) -> std::io::Result<()> {
    write_value(results, target)
}

/// Writes any serializable `value`, pretty-printed, as [`write`] does.
pub fn write_value<T: serde::Serialize>(value: &T, target: &Target) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    target.write(&json)
}
