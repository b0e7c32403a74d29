//! Everything that renders results: the console report, the live progress view, JSON, the
//! HdrHistogram interval log and percentile distributions, the HTML report, JUnit XML. Outputs
//! only read results; none of them changes what was measured.

pub mod console;
pub mod hlog;
pub mod html;
pub mod json;
pub mod junit;
pub mod progress;
pub mod reports;

/// Writes `contents` to `path` atomically: into a new 0600 file beside it (created exclusively,
/// so never through a planted symlink), flushed to disk, then renamed over `path`. A reader of
/// `path` sees the old file or the whole new one, never a partial one.
pub fn write_atomic(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
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
pub(crate) fn temp_beside(path: &std::path::Path) -> std::path::PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in ns, in the unit that reads best: `812 ns`, `12.3 us`, `4.56 ms`, `1.23 s`.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// Turns colours off when the `NO_COLOR` environment variable is set and not empty
/// (<https://no-color.org>).
pub fn honour_no_color() {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        ::console::set_colors_enabled(false);
        ::console::set_colors_enabled_stderr(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_798_234), "1,798,234");
        assert_eq!(human_ns(812), "812 ns");
        assert_eq!(human_ns(12_345), "12.3 us");
        assert_eq!(human_ns(4_560_000), "4.56 ms");
    }
}
