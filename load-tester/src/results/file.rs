//! Results files read back: `load-tester compare`, `--baseline`, and any tool that takes the
//! `--json-output` of an earlier run. Anything that is not a complete results file of this schema
//! version is refused with one line that names the file and what is wrong with it.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::report::Kind;
use crate::results::verdict::Outcome;
use crate::results::{KindReport, LatencySummary, Results, SCHEMA_VERSION};

/// The `tool.name` of results files this program writes and reads.
pub const TOOL_NAME: &str = env!("CARGO_PKG_NAME");

/// Largest results file read, bytes.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Why an input cannot be used: one line, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The three streams a latency is reported for.
pub const STREAMS: [&str; 3] = ["all", "trades", "book"];

/// A results file (or the results of this run), checked, with its latency histograms decoded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it came from (`this run` for the results in memory).
    pub source: String,
    /// The results.
    pub results: Results,
    /// Histograms by (kind, stream): kind one of [`KINDS`] (`e2e` only for runs with readers),
    /// stream one of [`STREAMS`].
    pub histograms: BTreeMap<(&'static str, &'static str), Histogram<u64>>,
    /// What is odd about the file without making it unusable (e.g. hand-edited summaries).
    pub warnings: Vec<String>,
}

/// The latency kinds a results file may hold, by JSON name: the three of every write, and the
/// end-to-end latency of runs with readers.
pub const KINDS: [&str; 4] = ["service", "response", "lag", "e2e"];

/// The latency reports of `r` by kind name (see [`KINDS`]); `e2e` only when the run had readers.
pub fn kind_reports(r: &Results) -> Vec<(&'static str, &KindReport)> {
    let mut v = vec![
        (Kind::Service.name(), &r.latency.service),
        (Kind::Response.name(), &r.latency.response),
        (Kind::Lag.name(), &r.latency.lag),
    ];
    if let Some(d) = &r.delivery {
        v.push(("e2e", &d.e2e));
    }
    v
}

/// How the reports name a latency kind.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "service" => "Service time (write latency)",
        "response" => "Response time (from intended send time)",
        "lag" => "Generator lag",
        "e2e" => "End-to-end latency (writer to reader)",
        _ => "Latency",
    }
}

fn stream_summary<'a>(k: &'a KindReport, stream: &str) -> &'a LatencySummary {
    match stream {
        "trades" => &k.trades,
        "book" => &k.book,
        _ => &k.all,
    }
}

/// Largest configuration file (scenario, targets, thresholds) read, bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads `path` whole, refusing (with what is wrong, without the file name) anything that is
/// not a regular file (a FIFO or `/dev/zero` would block or never end), a file over
/// `max` bytes, and text that is not UTF-8.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so that opening a FIFO cannot hang; a regular file ignores the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "is a directory, not a file".into()
        } else {
            "is not a regular file (a device, FIFO or socket); name a file".into()
        });
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("is larger than {} KiB", max >> 10));
    }
    Ok(bytes)
}

/// [`read_bytes`] of a configuration file, as text.
pub fn read_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read_bytes(path, MAX_CONFIG_BYTES)?)
        .map_err(|e| format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

/// Reads and checks a results file. Every failure is one line that names the file and says what
/// is wrong with it: unreadable, empty, truncated, not JSON, not ours, another schema version,
/// fields missing or of the wrong type, or histograms that do not decode.
pub fn load(path: &Path) -> Result<Loaded, InputError> {
    let name = path.display().to_string();
    let fail = |m: String| InputError(format!("{name}: {m}"));
    let bytes = read_bytes(path, MAX_FILE_BYTES).map_err(|m| {
        if m.starts_with("is larger") {
            fail(format!(
                "larger than {} MiB: not a results file of {TOOL_NAME}",
                MAX_FILE_BYTES >> 20
            ))
        } else {
            fail(m)
        }
    })?;
    let results = parse(&bytes).map_err(fail)?;
    Loaded::new(name, results).map_err(|e| InputError(e.0))
}

/// Parses the bytes of a results file; the error is what is wrong, without the file name.
pub fn parse(bytes: &[u8]) -> Result<Results, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("is empty: not a results file".into());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            format!(
                "is truncated (the JSON ends early, at line {} column {}); was the run or the copy cut short?",
                e.line(),
                e.column()
            )
        } else {
            format!(
                "is not JSON (line {} column {}: {e}); expected the --json-output of {TOOL_NAME}",
                e.line(),
                e.column()
            )
        }
    })?;
    let Some(object) = value.as_object() else {
        return Err(format!(
            "is JSON but not a results file of {TOOL_NAME} (the top level is not an object)"
        ));
    };
    let tool = object
        .get("tool")
        .and_then(|t| t.get("name"))
        .and_then(|n| n.as_str());
    let Some(version) = object.get("schema_version") else {
        return Err(match tool {
            Some(t) => format!("was written by {t}, not by {TOOL_NAME} (no schema_version)"),
            None => {
                format!("is JSON but not a results file of {TOOL_NAME} (no schema_version field)")
            }
        });
    };
    if let Some(t) = tool {
        if t != TOOL_NAME {
            return Err(format!("was written by {t}, not by {TOOL_NAME}"));
        }
    }
    match version.as_u64() {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            let by = object
                .get("tool")
                .and_then(|t| t.get("version"))
                .and_then(|v| v.as_str())
                .map(|v| format!(" (written by {TOOL_NAME} {v})"))
                .unwrap_or_default();
            return Err(format!(
                "has schema_version {v}{by}; this {TOOL_NAME} {} reads schema_version {SCHEMA_VERSION} only",
                env!("CARGO_PKG_VERSION")
            ));
        }
        None => return Err(format!("schema_version is {version}, not a whole number")),
    }
    serde_json::from_value::<Results>(value).map_err(|e| {
        format!(
            "does not match results schema {SCHEMA_VERSION}: {e}; the file is damaged or was edited by hand"
        )
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

impl Loaded {
    /// Checks `results` (from a file named `source`, or this run) and decodes its histograms.
    pub fn new(source: String, results: Results) -> Result<Self, InputError> {
        let mut histograms = BTreeMap::new();
        let mut warnings = Vec::new();
        for (kind, report) in kind_reports(&results) {
            for stream in STREAMS {
                let summary = stream_summary(report, stream);
                let field = if kind == "e2e" {
                    format!("delivery.e2e.{stream}")
                } else {
                    format!("latency.{kind}.{stream}")
                };
                let h = summary.decode().map_err(|e| {
                    InputError(format!(
                        "{source}: {field}: {e}; the file is damaged or was edited by hand"
                    ))
                })?;
                let expected = LatencySummary::of(&h);
                let mut differs = Vec::new();
                for (what, stored, actual) in [
                    ("count", summary.count, expected.count),
                    ("p50", summary.p50, expected.p50),
                    ("p90", summary.p90, expected.p90),
                    ("p99", summary.p99, expected.p99),
                    ("p999", summary.p999, expected.p999),
                    ("max", summary.max, expected.max),
                ] {
                    if stored != actual {
                        differs.push(format!("{what} {stored} (histogram: {actual})"));
                    }
                }
                if !differs.is_empty() {
                    warnings.push(format!(
                        "{source}: {field}: the summary disagrees with the stored histogram ({}): \
                         edited by hand? The comparison uses the histogram",
                        differs.join(", ")
                    ));
                }
                histograms.insert((kind, stream), h);
            }
        }
        let tp = &results.throughput;
        if tp.total.sent != tp.trades.sent + tp.book.sent {
            warnings.push(format!(
                "{source}: throughput.total.sent {} is not trades {} + book {}: edited by hand?",
                tp.total.sent, tp.trades.sent, tp.book.sent
            ));
        }
        if results.measured_secs > 0.0
            && !close(
                tp.total.actual_rate,
                tp.total.sent as f64 / results.measured_secs,
            )
        {
            warnings.push(format!(
                "{source}: throughput.total.actual_rate {} is not sent / measured_secs ({:.1}): edited by hand?",
                tp.total.actual_rate,
                tp.total.sent as f64 / results.measured_secs
            ));
        }
        if let Some(signal) = &results.interrupted {
            warnings.push(format!(
                "{source}: the run was interrupted by {signal} after {:.1} s of measurement",
                results.measured_secs
            ));
        }
        if results.verdict.outcome == Outcome::Invalid {
            warnings.push(format!(
                "{source}: the run is INVALID (the tester could not keep its schedule): its figures do not measure the bus"
            ));
        }
        Ok(Self {
            source,
            results,
            histograms,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::results::file::*;

    #[test]
    fn bad_files_are_named_plainly() {
        let e = |bytes: &[u8]| parse(bytes).unwrap_err();
        assert!(e(b"").contains("empty"));
        assert!(e(b"{\"schema_version\": 2, \"tool\": ").contains("truncated"));
        assert!(e(b"hello").contains("not JSON"));
        assert!(e(b"[1,2]").contains("not an object"));
        assert!(e(b"{\"metrics\": {}}").contains("no schema_version"));
        assert!(
            e(b"{\"schema_version\": 2, \"tool\": {\"name\": \"k6\"}}").contains("written by k6")
        );
        let future = e(b"{\"schema_version\": 99, \"tool\": {\"name\": \"alphapulse-load-tester\", \"version\": \"9.0.0\"}}");
        assert!(future.contains("schema_version 99"), "{future}");
        assert!(future.contains("9.0.0"), "{future}");
        assert!(e(b"{\"schema_version\": \"1\"}").contains("not a whole number"));
        let partial = e(b"{\"schema_version\": 2, \"tool\": {\"name\": \"alphapulse-load-tester\", \"version\": \"0\"}}");
        assert!(partial.contains("missing field"), "{partial}");
    }
}
