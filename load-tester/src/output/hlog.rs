//! HdrHistogram's own file formats: the interval log (`--hlog`) and the percentile distribution
//! (`.hgrm`, `--hgrm-dir`).
//!
//! The interval log is written while the run goes, one line per tag and interval, flushed at the
//! end of each interval, so a run that crashes still leaves a valid log of every interval it
//! finished. Its format is the one of HdrHistogram's `HistogramLogWriter` (log format version
//! 1.3): a `#[StartTime: ...]` and `#[BaseTime: ...]` header, the legend line, then
//! `Tag=<tag>,<start s>,<length s>,<max ms>,<base64 V2-compressed histogram>` lines whose
//! timestamps are seconds since the BaseTime. Values are nanoseconds. HdrHistogram's
//! `HistogramLogProcessor` and the log readers of its other implementations read it:
//!
//! ```text
//! java -cp hdrhistogram.jar org.HdrHistogram.HistogramLogProcessor -i run.hlog \
//!      -tag trades.service -start 1 -outputValueUnitRatio 1000
//! ```
//!
//! Tags are `<stream>.<kind>`: `trades.service`, `trades.response`, `trades.lag`,
//! `book.service`, `book.response`, `book.lag`, and, when the run has reader processes,
//! `trades.e2e` and `book.e2e` (end-to-end latency, all readers merged). The untagged line of each interval (the one
//! `HistogramLogProcessor` reads without `-tag`) is the service time of both streams, the
//! "write latency" that the targets judge. Warm-up intervals are logged too; a comment line gives
//! the warm-up length (skip it with `-start`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::plan::{Plan, Stream};
use crate::report::histogram::new_histogram;
use crate::report::observe::{Observer, RunStart};
use crate::report::{IntervalReport, Kind, SourceReport};
use crate::results::Results;

use super::files::Target;

/// The log format version this writer follows (that of HdrHistogram's Java `HistogramLogWriter`).
pub const LOG_FORMAT_VERSION: &str = "1.3";

/// The legend line every HdrHistogram interval log carries before its first interval.
pub const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// The interval-max column is the maximum divided by this (ns to ms), as HdrHistogram's writer
/// does by default.
pub const MAX_VALUE_UNIT_RATIO: f64 = 1_000_000.0;

/// The tag of a stream's latency kind in the log: `trades.service`, `book.lag`, ...
pub fn tag(stream: Stream, kind: Kind) -> String {
    format!("{}.{}", stream.name(), kind.name())
}

/// Where the log's lines go.
enum Sink {
    /// A regular file: a temporary file beside it until the load starts, renamed over it then,
    /// so a run that fails before its load starts leaves an existing log untouched.
    File {
        /// The temporary file, while it has not been renamed; `None` once it has.
        tmp: Option<PathBuf>,
        /// The real file the temporary one becomes.
        real: PathBuf,
        /// The open file (the same open file before and after the rename).
        file: File,
    },
    /// Standard output or a device, written in place.
    Stream(Box<dyn Write + Send>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File { file, .. } => file.write(buf),
            Sink::Stream(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File { file, .. } => file.flush(),
            Sink::Stream(w) => w.flush(),
        }
    }
}

/// Writes an HdrHistogram interval log while the run goes. An [`Observer`]: tee it with the
/// progress view.
pub struct HlogWriter {
    /// The log's path as the user gave it (`-` for standard output).
    path: PathBuf,
    /// The log, buffered; flushed after the header and after every interval's lines.
    out: BufWriter<Sink>,
    /// The first error writing, flushing or serializing; once set nothing more is written, and
    /// `finish` returns it.
    error: Option<std::io::Error>,
    /// Reused V2 deflate serializer.
    serializer: V2DeflateSerializer,
    /// Reused buffer: the serialized histogram of the line being formatted.
    scratch: Vec<u8>,
    /// Reused standard histogram for the untagged line: both streams' service time of the last
    /// interval logged (empty before the first).
    both: Histogram<u64>,
    /// An empty standard histogram, logged for a tag with no histogram; never recorded into.
    empty: Histogram<u64>,
    /// Intervals logged while no error was set (one that failed midway included).
    intervals: u64,
    /// Whether `e2e` tags are logged: the plan has readers. False until `started`.
    e2e: bool,
}

impl HlogWriter {
    /// Prepares the log at `target`: for a file, a temporary file beside it that replaces it
    /// when the load starts ([`Observer::started`]); a device or standard output is written in
    /// place from then on.
    pub fn create(target: &Target) -> std::io::Result<Self> {
        let sink = match target {
            Target::File { real, mode, .. } => {
                let (tmp, file) = super::files::create_temp(real, *mode)?;
                Sink::File {
                    tmp: Some(tmp),
                    real: real.clone(),
                    file,
                }
            }
            Target::Device { path } => Sink::Stream(Box::new(
                std::fs::OpenOptions::new().write(true).open(path)?,
            )),
            Target::Stdout => Sink::Stream(Box::new(std::io::stdout())),
        };
        Ok(Self {
            path: target.path().to_path_buf(),
            out: BufWriter::new(sink),
            error: None,
            serializer: V2DeflateSerializer::new(),
            scratch: Vec::new(),
            both: new_histogram(),
            empty: new_histogram(),
            intervals: 0,
            e2e: false,
        })
    }

    /// Where the log goes, as the user named it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the log to disk and returns the number of intervals written, or the first error
    /// that stopped the writing.
    pub fn finish(mut self) -> std::io::Result<u64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        if let Sink::File { file, .. } = self.out.get_ref() {
            file.sync_all()?;
        }
        Ok(self.intervals)
    }

    /// Puts the log in place: the temporary file replaces the real one.
    fn publish(&mut self) {
        if let Sink::File { tmp, real, .. } = self.out.get_mut() {
            if let Some(t) = tmp.take() {
                if let Err(e) = std::fs::rename(&t, &*real) {
                    let _ = std::fs::remove_file(&t);
                    self.error.get_or_insert(e);
                }
            }
        }
    }

    fn write(&mut self, text: &str) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(text.as_bytes()) {
                self.error = Some(e);
            }
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }

    /// Formats one interval line (`tag` empty for the untagged line) into `line`.
    fn line(&mut self, line: &mut String, tag: &str, start: f64, secs: f64, h: &Histogram<u64>) {
        self.scratch.clear();
        if let Err(e) = self.serializer.serialize(h, &mut self.scratch) {
            self.error
                .get_or_insert_with(|| std::io::Error::other(format!("{e:?}")));
            return;
        }
        if !tag.is_empty() {
            let _ = write!(line, "Tag={tag},");
        }
        let _ = write!(
            line,
            "{start:.3},{secs:.3},{:.3},",
            h.max() as f64 / MAX_VALUE_UNIT_RATIO
        );
        base64::engine::general_purpose::STANDARD.encode_string(&self.scratch, line);
        line.push('\n');
    }
}

impl Observer for HlogWriter {
    fn started(&mut self, plan: &Plan, start: &RunStart) {
        self.publish();
        let at = start.started_unix_ms as f64 / 1e3;
        self.e2e = plan.consumers > 0;
        let mut tags: Vec<String> = Stream::ALL
            .iter()
            .flat_map(|&s| Kind::WRITE.iter().map(move |&k| tag(s, k)))
            .collect();
        if self.e2e {
            tags.extend(Stream::ALL.iter().map(|&s| tag(s, Kind::E2e)));
        }
        let header = format!(
            "#[Logged with {} {}]\n\
             #[Histogram log format version {LOG_FORMAT_VERSION}]\n\
             #[StartTime: {at:.3} (seconds since epoch)]\n\
             #[BaseTime: {at:.3} (seconds since epoch)]\n\
             #[Values in nanoseconds; interval max column in milliseconds]\n\
             #[Tags: {}; the untagged histogram is the service time of both streams]\n\
             #[Warm-up: intervals starting before {:.3} s are warm-up, kept out of the verdict]\n\
             {LEGEND}\n",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            tags.join(" "),
            plan.warmup_secs as f64 * plan.interval_ns as f64 / 1e9
        );
        self.write(&header);
        self.flush();
    }

    fn interval(&mut self, report: &IntervalReport) {
        if self.error.is_some() {
            return;
        }
        let start = report.index as f64 * report.length_ns as f64 / 1e9;
        let secs = report.covered_ns as f64 / 1e9;
        let per_stream: Vec<(Stream, SourceReport)> = Stream::ALL
            .iter()
            .map(|&s| (s, report.by_stream(s)))
            .collect();
        let mut text = String::new();
        let mut both = std::mem::replace(&mut self.both, Histogram::new(1).expect("valid"));
        both.reset();
        for (_, s) in &per_stream {
            if let Some(h) = s.latency.get(Kind::Service) {
                // Same configuration on both sides (report::histogram), so adding cannot fail.
                let _ = both.add(h);
            }
        }
        self.line(&mut text, "", start, secs, &both);
        self.both = both;
        let empty = std::mem::replace(&mut self.empty, Histogram::new(1).expect("valid"));
        for (stream, s) in &per_stream {
            for kind in Kind::WRITE {
                let h = s.latency.get(kind).unwrap_or(&empty);
                self.line(&mut text, &tag(*stream, kind), start, secs, h);
            }
        }
        if self.e2e {
            for (stream, s) in &per_stream {
                let h = s.latency.get(Kind::E2e).unwrap_or(&empty);
                self.line(&mut text, &tag(*stream, Kind::E2e), start, secs, h);
            }
        }
        self.empty = empty;
        self.write(&text);
        self.flush();
        self.intervals += 1;
    }
}

/// Divisor of the values in `.hgrm` files: ns to microseconds.
pub const HGRM_UNIT_RATIO: f64 = 1_000.0;

/// Percentile ticks per half distance of `.hgrm` files (HdrHistogram's default).
pub const HGRM_TICKS_PER_HALF: u32 = 5;

/// One step of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileStep {
    /// The highest value equivalent to the step's bucket, ns.
    pub value: u64,
    /// The percentile level reached, 0 to 100.
    pub percentile: f64,
    /// Values recorded up to and including this step.
    pub total_count: u64,
}

/// The steps of HdrHistogram's percentile iteration, exactly as its reference (Java)
/// `PercentileIterator` takes them: `ticks` steps per halving of the distance to 100%, levels
/// accumulated in percent, and a last step at 100%. (The Rust crate's quantile iterator sums
/// fractions instead, and its rounding differs from the reference at some levels.)
pub fn percentile_steps(h: &Histogram<u64>, ticks: u32) -> Vec<PercentileStep> {
    let total = h.len();
    let mut steps = Vec::new();
    if total == 0 {
        return steps;
    }
    let ticks = i64::from(ticks.max(1));
    let mut level = 0.0f64;
    let mut running = 0u64;
    let mut last = 0u64;
    for v in h.iter_recorded() {
        running += v.count_at_value();
        last = v.value_iterated_to();
        let current = 100.0 * running as f64 / total as f64;
        while current >= level {
            steps.push(PercentileStep {
                value: last,
                percentile: level,
                total_count: running,
            });
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
            let reporting_ticks = ticks.saturating_mul(2f64.powi((halvings + 1) as i32) as i64);
            level += 100.0 / reporting_ticks as f64;
            if running >= total {
                break;
            }
        }
    }
    steps.push(PercentileStep {
        value: last,
        percentile: 100.0,
        total_count: total,
    });
    steps
}

/// `x` with `decimals` digits after the point, as Java's `String.format("%.Nf")` writes it:
/// the shortest decimal that reads back as `x`, rounded half up (Rust's `{:.N}` rounds the
/// exact binary value, which differs in the last digit now and then, e.g. 0.125 or 1.0005).
pub fn java_fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let negative = x.is_sign_negative() && x != 0.0;
    // Shortest round-trip digits and the decimal exponent: "d.ddde-5".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp writes an exponent");
    let exp: i64 = exp.parse().expect("an integer exponent");
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // The value is 0.d1d2d3... x 10^(exp + 1); keep the digits up to `decimals` after the point.
    let point = exp + 1;
    let keep = point + decimals as i64;
    let mut kept: Vec<u8> = if keep <= 0 {
        Vec::new()
    } else {
        let mut v: Vec<u8> = digits.iter().copied().take(keep as usize).collect();
        v.resize(keep as usize, 0);
        v
    };
    let round_up = keep >= 0 && digits.get(keep as usize).is_some_and(|&d| d >= 5);
    let mut point = point;
    if round_up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                point += 1;
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    // Lay the kept digits out around the point.
    let total = (point.max(1) + decimals as i64) as usize;
    let lead = (total as i64 - kept.len() as i64).max(0) as usize;
    let mut all: Vec<u8> = vec![0; lead];
    all.extend(kept);
    all.truncate(total);
    let int_len = total - decimals;
    let mut out = String::new();
    if negative && all.iter().any(|&d| d != 0) {
        out.push('-');
    }
    for d in &all[..int_len] {
        out.push((b'0' + d) as char);
    }
    if decimals > 0 {
        out.push('.');
        for d in &all[int_len..] {
            out.push((b'0' + d) as char);
        }
    }
    out
}

/// The mean and standard deviation of `h` as HdrHistogram's Java implementation computes them:
/// sums over the recorded values' median-equivalent values first, divided at the end.
fn java_mean_stdev(h: &Histogram<u64>) -> (f64, f64) {
    if h.is_empty() {
        return (0.0, 0.0);
    }
    let total = h.len() as f64;
    let mut sum = 0.0f64;
    for v in h.iter_recorded() {
        sum += h.median_equivalent(v.value_iterated_to()) as f64 * v.count_at_value() as f64;
    }
    let mean = sum / total;
    let mut dev = 0.0f64;
    for v in h.iter_recorded() {
        let d = h.median_equivalent(v.value_iterated_to()) as f64 - mean;
        dev += d * d * v.count_at_value() as f64;
    }
    (mean, (dev / total).sqrt())
}

/// The percentile distribution of `h` in the text format of HdrHistogram's
/// `outputPercentileDistribution` (what wrk2 prints and HdrHistogram's plotter reads): values
/// divided by `unit_ratio`, `ticks` percentile ticks per half distance. Every number is computed
/// and formatted as the Java implementation does, so the text is line for line what
/// `HistogramLogProcessor` writes for the same histogram.
pub fn percentile_distribution(h: &Histogram<u64>, unit_ratio: f64, ticks: u32) -> String {
    let digits = usize::from(h.sigfig());
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for step in percentile_steps(h, ticks) {
        let value = java_fixed(step.value as f64 / unit_ratio, digits);
        let q = step.percentile / 100.0;
        let total = step.total_count;
        if step.percentile != 100.0 {
            let _ = writeln!(
                out,
                "{value:>12} {:>2} {total:>10} {:>14}",
                java_fixed(q, 12),
                java_fixed(1.0 / (1.0 - q), 2)
            );
        } else {
            let _ = writeln!(out, "{value:>12} {:>2} {total:>10}", java_fixed(q, 12));
        }
    }
    let (mean, stdev) = java_mean_stdev(h);
    let max = if h.is_empty() { 0.0 } else { h.max() as f64 };
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        java_fixed(mean / unit_ratio, digits),
        java_fixed(stdev / unit_ratio, digits)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:>12}]",
        java_fixed(max / unit_ratio, digits),
        h.len()
    );
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// The `.hgrm` files of a run: `<stream>.<kind>.hgrm` for the streams `trades`, `book` and
/// `all`, from the measured time's histograms, values in microseconds. Returns (file name,
/// contents) pairs, or why a stored histogram could not be decoded.
pub fn hgrm_files(results: &Results) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for (kind, report) in crate::results::file::kind_reports(results) {
        for (stream, summary) in [
            ("trades", &report.trades),
            ("book", &report.book),
            ("all", &report.all),
        ] {
            let h = summary
                .decode()
                .map_err(|e| format!("{stream} {kind} latency: {e}"))?;
            files.push((
                format!("{stream}.{kind}.hgrm"),
                percentile_distribution(&h, HGRM_UNIT_RATIO, HGRM_TICKS_PER_HALF),
            ));
        }
    }
    Ok(files)
}

/// Writes the `.hgrm` files of [`hgrm_files`] into `dir`, each as any output file is written
/// (see [`Target`]); returns their paths.
pub fn write_hgrm_dir(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for (name, text) in hgrm_files(results)? {
        let path = dir.join(name);
        Target::resolve(&path, false)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .write(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

impl Drop for HlogWriter {
    fn drop(&mut self) {
        // Never put in place: the run failed before its load started; the old log stays.
        if let Sink::File { tmp: Some(t), .. } = self.out.get_ref() {
            let _ = std::fs::remove_file(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::output::hlog::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    /// Interval `index`, in which trades and book updates took these service times (response
    /// time twice that, lag the same).
    fn report(index: u64, trades: &[u64], book: &[u64]) -> IntervalReport {
        let mut r = IntervalReport::empty(index, 1_000_000_000);
        r.covered_ns = r.length_ns;
        for (stream, values) in [(Stream::Trades, trades), (Stream::Book, book)] {
            if values.is_empty() {
                continue;
            }
            let s = r
                .sources
                .entry(crate::report::SourceId {
                    exchange: 0,
                    stream,
                })
                .or_default();
            for &v in values {
                s.latency.get_mut(Kind::Service).record(v).unwrap();
                s.latency.get_mut(Kind::Response).record(2 * v).unwrap();
                s.latency.get_mut(Kind::Lag).record(v).unwrap();
                s.writer.sent += 1;
            }
        }
        r
    }

    fn start(dir: &Path) -> RunStart {
        RunStart {
            location: dir.display().to_string(),
            started_unix_ms: 1_700_000_000_000,
        }
    }

    /// The plan of a real run with one reader.
    fn plan() -> Plan {
        let plan = crate::results::testdata::sample_results(1).plan;
        assert!(plan.consumers > 0);
        plan
    }

    #[test]
    fn interval_log_is_readable_and_holds_every_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let mut w = HlogWriter::create(&Target::resolve(&path, false).unwrap()).unwrap();
        w.started(&plan(), &start(dir.path()));
        w.interval(&report(0, &[100, 200, 300], &[5_000]));
        // An interval where the book stream wrote nothing.
        w.interval(&report(1, &[100, 200, 300], &[]));
        assert_eq!(w.finish().unwrap(), 2);

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#[Histogram log format version 1.3]"));
        assert!(text.contains(LEGEND));
        let mut intervals = Vec::new();
        let mut start_time = None;
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            match entry.unwrap() {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::BaseTime(_) => {}
                LogEntry::Interval(i) => intervals.push((
                    i.tag().map(|t| t.to_string()),
                    i.start_timestamp().as_secs_f64(),
                    i.max(),
                    i.encoded_histogram().to_string(),
                )),
            }
        }
        assert!(start_time.is_some());
        // The plan has a reader: 3 kinds x 2 streams, end-to-end x 2 streams, and the untagged line.
        assert_eq!(intervals.len(), 2 * 9, "9 lines per interval");
        let decode = |b64: &str| -> Histogram<u64> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .unwrap()
        };
        let find = |tag: Option<&str>, start: f64| {
            intervals
                .iter()
                .find(|(t, s, _, _)| t.as_deref() == tag && *s == start)
                .unwrap_or_else(|| panic!("no line {tag:?} at {start}"))
        };
        // Untagged: service time of both streams.
        let (_, _, max, b64) = find(None, 0.0);
        let h = decode(b64);
        assert_eq!(h.len(), 4);
        assert!(h.equivalent(h.max(), 5_000));
        assert!((max - h.max() as f64 / 1e6).abs() < 1e-3);
        // Per stream and kind: service = v, response = 2v, lag = v (record(0, v, 2v)).
        let h = decode(&find(Some("trades.response"), 0.0).3);
        assert_eq!(h.len(), 3);
        assert!(h.equivalent(h.max(), 600));
        let h = decode(&find(Some("book.lag"), 0.0).3);
        assert!(h.equivalent(h.max(), 5_000));
        let h = decode(&find(Some("book.service"), 1.0).3);
        assert_eq!(h.len(), 0, "an idle stream logs an empty histogram");
        let h = decode(&find(None, 1.0).3);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn a_run_that_never_started_leaves_an_existing_log_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        std::fs::write(&path, "an earlier run's log").unwrap();
        let w = HlogWriter::create(&Target::resolve(&path, false).unwrap()).unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "an earlier run's log"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_crash_leaves_every_finished_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let mut w = HlogWriter::create(&Target::resolve(&path, false).unwrap()).unwrap();
        w.started(&plan(), &start(dir.path()));
        w.interval(&report(0, &[100], &[]));
        // No finish: the file must already hold the interval.
        let text = std::fs::read_to_string(&path).unwrap();
        let n = IntervalLogIterator::new(text.as_bytes())
            .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
            .count();
        assert_eq!(n, 9);
        drop(w);
    }

    #[test]
    fn percentile_distribution_has_hdrhistogram_layout() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        let text = percentile_distribution(&h, 1000.0, 5);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let first = &rows[0];
        assert_eq!(first[1], "0.000000000000");
        assert_eq!(first[2], "1");
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100% line has no 1/(1-p) column");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        let max_us: f64 = last[0].parse().unwrap();
        assert!((max_us - h.max() as f64 / 1000.0).abs() < 1e-9);
        // Percentiles and counts only grow.
        for w in rows.windows(2) {
            assert!(w[0][1].parse::<f64>().unwrap() <= w[1][1].parse::<f64>().unwrap());
            assert!(w[0][2].parse::<u64>().unwrap() <= w[1][2].parse::<u64>().unwrap());
        }
        assert!(text.contains("#[Max     ="));
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn percentile_steps_follow_the_reference_iterator() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let steps = percentile_steps(&h, 5);
        // 10% steps up to 50%, 5% to 75%, 2.5% to 87.5%, ...: the 30% step stops at the 300th
        // value (summing fractions, 0.1 + 0.1 + 0.1 > 0.3, would overshoot to the 301st).
        let at = |pct: f64| steps.iter().find(|s| s.percentile == pct).unwrap();
        assert_eq!(at(30.0).total_count, 300);
        assert_eq!(at(30.0).value, 300);
        assert_eq!(at(50.0).total_count, 500);
        assert_eq!(at(55.0).total_count, 550);
        assert_eq!(at(77.5).total_count, 775);
        let last = steps.last().unwrap();
        assert_eq!(
            (last.percentile, last.total_count, last.value),
            (100.0, 1000, 1000)
        );
        assert!(percentile_steps(&new_histogram(), 5).is_empty());
    }

    #[test]
    fn numbers_are_formatted_as_java_formats_them() {
        // Half up on the shortest decimal, where Rust's `{:.N}` rounds the binary value.
        assert_eq!(java_fixed(0.125, 2), "0.13");
        assert_eq!(format!("{:.2}", 0.125), "0.12");
        assert_eq!(java_fixed(1.0005, 3), "1.001");
        assert_eq!(java_fixed(0.0, 12), "0.000000000000");
        assert_eq!(java_fixed(0.5, 12), "0.500000000000");
        assert_eq!(java_fixed(99.995, 2), "100.00");
        assert_eq!(java_fixed(9.9999, 3), "10.000");
        assert_eq!(java_fixed(123456.789, 3), "123456.789");
        assert_eq!(java_fixed(1e-9, 3), "0.000");
        assert_eq!(java_fixed(0.0005, 3), "0.001");
        assert_eq!(java_fixed(1e20, 2), "100000000000000000000.00");
        assert_eq!(java_fixed(-1.5, 0), "-2");
    }

    #[test]
    fn empty_histogram_gives_a_header_and_zero_footer() {
        let text = percentile_distribution(&new_histogram(), 1000.0, 5);
        assert!(text.contains("Total count    =            0]"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 2);
    }
}
