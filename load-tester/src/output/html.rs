//! HTML report (stub).
use crate::compare::Comparison;
use crate::results::Results;
use std::path::Path;
/// Writes the report.
pub fn write(_r: &Results, _c: Option<&Comparison>, _path: &Path) -> std::io::Result<()> {
    Ok(())
}
