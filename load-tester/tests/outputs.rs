//! The result files of a real run from the outside: the HdrHistogram interval log and percentile
//! distributions (checked against HdrHistogram's own Java `HistogramLogProcessor` when it is
//! installed), JUnit XML, `load-tester compare` and `--baseline` on good and bad input, output
//! paths refused before the run, and `scripts/check-performance.py`.
//!
//! One real run (3 s) is shared by the tests that only read its files.

mod common;

use common::{run_bounded, Out, BIN};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use alphapulse_load_tester::report::histogram::decode as decode_histogram;
use alphapulse_load_tester::results::SCHEMA_VERSION;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde_json::Value;

fn tester(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

fn shm() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lt-outputs-test-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

/// The flags of the shared run (and of runs that compare against it).
const RUN: [&str; 10] = [
    "-d",
    "2",
    "--warmup-secs",
    "1",
    "-e",
    "1",
    "-t",
    "1000",
    "-o",
    "500",
];

struct Shared {
    dir: tempfile::TempDir,
    code: i32,
}

impl Shared {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn results(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("results.json")).unwrap()).unwrap()
    }
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hgrm")).unwrap();
        let shm = shm();
        let mut cmd = tester(&RUN);
        cmd.arg("--shm-dir").arg(shm.path());
        for (flag, name) in [
            ("--json-output", "results.json"),
            ("--hlog", "run.hlog"),
            ("--hgrm-dir", "hgrm"),
            ("--junit", "junit.xml"),
        ] {
            cmd.arg(flag).arg(dir.path().join(name));
        }
        let out = run_bounded(cmd, Duration::from_secs(90));
        assert!(
            matches!(out.code, Some(0 | 1 | 3)),
            "exit {:?}\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        Shared {
            dir,
            code: out.code.unwrap(),
        }
    })
}

struct Interval {
    tag: Option<String>,
    start: f64,
    histogram: hdrhistogram::Histogram<u64>,
}

fn intervals(path: &Path) -> Vec<Interval> {
    let text = std::fs::read(path).unwrap();
    IntervalLogIterator::new(&text)
        .filter_map(|e| match e.expect("every line of the log parses") {
            LogEntry::Interval(i) => Some(Interval {
                tag: i.tag().map(|t| t.to_string()),
                start: i.start_timestamp().as_secs_f64(),
                histogram: decode_histogram(i.encoded_histogram()).unwrap(),
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn interval_log_holds_every_interval_and_adds_up_to_the_results() {
    let s = shared();
    let results = s.results();
    let log = intervals(&s.path("run.hlog"));
    let tags = [
        "trades.service",
        "trades.response",
        "trades.lag",
        "book.service",
        "book.response",
        "book.lag",
    ];
    // One line per tag (and the untagged one) for each of the 3 seconds (1 warm-up + 2).
    for tag in tags.iter().map(|t| Some(t.to_string())).chain([None]) {
        let n = log.iter().filter(|i| i.tag == tag).count();
        assert_eq!(n, 3, "{tag:?}");
    }
    // The measured intervals add up to the measured histograms of the results.
    for (tag, stream, kind) in [
        (Some("trades.service"), "trades", "service"),
        (Some("book.response"), "book", "response"),
        (Some("trades.lag"), "trades", "lag"),
        (None, "all", "service"),
    ] {
        let mut sum = alphapulse_load_tester::report::histogram::new_histogram();
        for i in log
            .iter()
            .filter(|i| i.tag.as_deref() == tag && i.start >= 1.0)
        {
            sum.add(&i.histogram).unwrap();
        }
        let stored = decode_histogram(
            results["latency"][kind][stream]["histogram"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(sum, stored, "{tag:?}");
        assert!(!sum.is_empty());
    }
    if !results["delivery"].is_null() {
        for tag in ["trades.e2e", "book.e2e"] {
            assert_eq!(
                log.iter().filter(|i| i.tag.as_deref() == Some(tag)).count(),
                3,
                "{tag}"
            );
        }
    }
}

fn hdrhistogram_jar() -> Option<PathBuf> {
    let java = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("java"))
            .find(|p| p.is_file())
    })?;
    let _ = java;
    [
        "/usr/share/java/hdrhistogram.jar",
        "/usr/share/java/HdrHistogram.jar",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

#[test]
fn hdrhistogram_log_processor_reads_the_log_and_agrees_with_the_hgrm_files() {
    let s = shared();
    let jar = hdrhistogram_jar();
    if !common::have_tool(
        "hdrhistogram_log_processor_reads_the_log",
        jar.is_some(),
        "java or /usr/share/java/hdrhistogram.jar missing (apt-get install default-jre-headless \
         libhdrhistogram-java); the log was checked with the Rust reader only",
    ) {
        return;
    }
    let jar = jar.expect("found");
    for (tag, file) in [
        (Some("trades.service"), "trades.service.hgrm"),
        (Some("book.response"), "book.response.hgrm"),
        (None, "all.service.hgrm"),
    ] {
        let name = format!("hlp-{}", tag.unwrap_or("untagged").replace('.', "-"));
        let out_base = s.path(&name);
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&jar)
            .arg("org.HdrHistogram.HistogramLogProcessor")
            .arg("-i")
            .arg(s.path("run.hlog"))
            .args(["-start", "1", "-outputValueUnitRatio", "1000", "-o"])
            .arg(&out_base);
        if let Some(t) = tag {
            cmd.args(["-tag", t]);
        }
        let out = run_bounded(cmd, Duration::from_secs(120));
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        // Its interval table has one line per measured second.
        let table = std::fs::read_to_string(&out_base).unwrap();
        let lines = table.lines().filter(|l| l.contains(": I:")).count();
        assert_eq!(lines, 2, "{table}");
        // Its overall distribution is ours, line for line, after its own two header comments.
        let theirs = std::fs::read_to_string(s.path(&format!("{name}.hgrm"))).unwrap();
        let theirs: Vec<&str> = theirs
            .lines()
            .filter(|l| !l.starts_with("#[Overall") && !l.starts_with("#[StartTime"))
            .collect();
        let ours = std::fs::read_to_string(s.path("hgrm").join(file)).unwrap();
        let ours: Vec<&str> = ours.lines().collect();
        assert_eq!(theirs, ours, "{file}");
    }
}

/// Over a million values spread over six decades, in three intervals: HdrHistogram's own
/// `HistogramLogProcessor`, reading our interval log, prints exactly our percentile distribution,
/// every digit of every line (the last digits depend on computing and rounding as Java does).
#[test]
fn percentile_distributions_match_hdrhistogram_digit_for_digit_over_a_million_values() {
    use alphapulse_load_tester::output::files::Target;
    use alphapulse_load_tester::output::hlog::{percentile_distribution, HlogWriter};
    use alphapulse_load_tester::report::observe::{Observer, RunStart};
    use alphapulse_load_tester::report::{IntervalReport, Kind, SourceId, Stream};
    use clap::Parser as _;

    let jar = hdrhistogram_jar();
    if !common::have_tool(
        "percentile_distributions_match_hdrhistogram",
        jar.is_some(),
        "java or /usr/share/java/hdrhistogram.jar missing (apt-get install default-jre-headless \
         libhdrhistogram-java)",
    ) {
        return;
    }
    let jar = jar.expect("found");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.hlog");
    let cli = alphapulse_load_tester::config::cli::Cli::parse_from(["load-tester", "-e", "1"]);
    let (plan, _) = alphapulse_load_tester::config::build(&cli.run).unwrap();
    let mut writer = HlogWriter::create(&Target::resolve(&log, false).unwrap()).unwrap();
    writer.started(
        &plan,
        &RunStart {
            location: String::new(),
            started_unix_ms: 1_700_000_000_000,
        },
    );
    let id = SourceId {
        exchange: 0,
        stream: Stream::Trades,
    };
    let mut all = alphapulse_load_tester::report::histogram::new_histogram();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for index in 0..3 {
        let mut r = IntervalReport::empty(index, 1_000_000_000);
        r.covered_ns = r.length_ns;
        let h = r
            .sources
            .entry(id)
            .or_default()
            .latency
            .get_mut(Kind::Service);
        for _ in 0..400_000 {
            // xorshift64*: values from 20 ns to ~20 ms, log-uniform.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            let v = (20.0 * 10f64.powf(6.0 * u)) as u64;
            h.record(v).unwrap();
        }
        all.add(&*h).unwrap();
        writer.interval(&r);
    }
    writer.finish().unwrap();
    assert!(all.len() > 1_000_000);
    let out_base = dir.path().join("hlp");
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(&jar)
        .arg("org.HdrHistogram.HistogramLogProcessor")
        .arg("-i")
        .arg(&log)
        .args([
            "-outputValueUnitRatio",
            "1000",
            "-tag",
            "trades.service",
            "-o",
        ])
        .arg(&out_base);
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let theirs = std::fs::read_to_string(dir.path().join("hlp.hgrm")).unwrap();
    let theirs: Vec<&str> = theirs
        .lines()
        .filter(|l| !l.starts_with("#[Overall") && !l.starts_with("#[StartTime"))
        .collect();
    let ours = percentile_distribution(&all, 1000.0, 5);
    let ours: Vec<&str> = ours.lines().collect();
    assert_eq!(theirs.len(), ours.len());
    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        assert_eq!(t, o, "line {i} differs");
    }
}

#[test]
fn hgrm_files_cover_every_stream_and_kind() {
    let s = shared();
    let results = s.results();
    let mut kinds = vec!["service", "response", "lag"];
    if !results["delivery"].is_null() {
        kinds.push("e2e");
    }
    let mut names: Vec<String> = std::fs::read_dir(s.path("hgrm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3 * kinds.len(), "{names:?}");
    for kind in kinds {
        let section = if kind == "e2e" {
            &results["delivery"]["e2e"]
        } else {
            &results["latency"][kind]
        };
        for stream in ["trades", "book", "all"] {
            let text =
                std::fs::read_to_string(s.path("hgrm").join(format!("{stream}.{kind}.hgrm")))
                    .unwrap();
            let count = section[stream]["count"].as_u64().unwrap();
            assert!(
                text.contains(&format!("Total count    = {count:>12}]")),
                "{stream}.{kind}"
            );
            let max_us = section[stream]["max"].as_u64().unwrap() as f64 / 1000.0;
            assert!(
                text.contains(&format!("#[Max     = {max_us:>12.3},")),
                "{stream}.{kind}"
            );
        }
    }
}

#[test]
fn junit_has_a_case_per_target_and_fails_the_missed_ones() {
    let s = shared();
    let results = s.results();
    let xml = std::fs::read_to_string(s.path("junit.xml")).unwrap();
    assert!(xml.starts_with("<?xml"));
    let checks = results["verdict"]["checks"].as_array().unwrap();
    assert_eq!(xml.matches("<testcase ").count(), checks.len() + 1);
    let invalid = results["verdict"]["outcome"] == "invalid";
    for c in checks {
        let name = c["name"].as_str().unwrap();
        let at = xml
            .find(&format!("name=\"{name}\""))
            .unwrap_or_else(|| panic!("no test case {name}"));
        let rest = &xml[at..];
        let case = &rest[..rest.find("<testcase ").unwrap_or(rest.len())];
        if invalid {
            assert!(case.contains("<skipped "), "{name}: {case}");
        } else {
            assert_eq!(
                case.contains("<failure "),
                c["passed"] == false,
                "{name}: {case}"
            );
        }
    }
    assert_eq!(xml.matches("<error ").count(), usize::from(invalid));
    assert_eq!(
        s.code,
        if invalid {
            3
        } else if checks.iter().all(|c| c["passed"] == true) {
            0
        } else {
            1
        }
    );
}

fn compare(args: &[&Path], extra: &[&str]) -> Out {
    let mut cmd = tester(&["compare"]);
    cmd.args(args).args(extra);
    run_bounded(cmd, Duration::from_secs(30))
}

/// The shared results with every latency histogram's values multiplied by `factor`.
fn scaled(results: &Value, factor: u64) -> Value {
    let mut v = results.clone();
    for kind in ["service", "response", "lag"] {
        for stream in ["trades", "book", "all"] {
            let entry = &mut v["latency"][kind][stream];
            let h = decode_histogram(entry["histogram"].as_str().unwrap()).unwrap();
            let mut out = alphapulse_load_tester::report::histogram::new_histogram();
            for bucket in h.iter_recorded() {
                out.record_n(bucket.value_iterated_to() * factor, bucket.count_at_value())
                    .unwrap();
            }
            let summary = alphapulse_load_tester::results::LatencySummary::of(&out);
            *entry = serde_json::to_value(summary).unwrap();
        }
    }
    v
}

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

#[test]
fn compare_finds_regressions_in_the_histograms() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let base = s.path("results.json");
    let results = s.results();

    let same = compare(&[&base, &base], &[]);
    assert_eq!(same.code, Some(0), "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("no regression"));
    assert!(same.stdout.contains("P99"));

    let slow = write_json(dir.path(), "slow.json", &scaled(&results, 4));
    let out = compare(&[&base, &slow], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("REGRESSED"));
    assert!(
        out.stdout.contains("latency.service.all.p50"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("+300.0%") || out.stdout.contains("+299."),
        "{}",
        out.stdout
    );
    // The other way round it is an improvement, and thresholds can switch a metric off.
    let out = compare(&[&slow, &base], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(out.stdout.contains("improved"));
    let out = compare(&[&base, &slow], &["--threshold", "latency.*.*.*=off"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let thresholds = dir.path().join("t.toml");
    std::fs::write(&thresholds, "\"latency.*.*.*\" = \"off\"\n").unwrap();
    let out = compare(
        &[&base, &slow],
        &["--thresholds", thresholds.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{}", out.stdout);

    // A hand-edited summary: the histogram wins, and the edit is reported.
    let mut edited = results.clone();
    edited["latency"]["service"]["all"]["p99"] = Value::from(1);
    let edited = write_json(dir.path(), "edited.json", &edited);
    let out = compare(&[&base, &edited], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("disagrees with the stored histogram"),
        "{}",
        out.stdout
    );
}

#[test]
fn compare_refuses_unusable_input_with_one_line_and_exit_2() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let base = s.path("results.json");
    let text = std::fs::read_to_string(&base).unwrap();
    let results = s.results();

    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let mut future = results.clone();
    future["schema_version"] = Value::from(SCHEMA_VERSION + 1);
    let future = write_json(dir.path(), "future.json", &future);
    let other_tool = write_json(
        dir.path(),
        "k6.json",
        &serde_json::json!({"metrics": {"http_req_duration": {"p(95)": 12.5}}, "root_group": {}}),
    );
    let mut missing = results.clone();
    missing.as_object_mut().unwrap().remove("latency");
    let missing = write_json(dir.path(), "missing.json", &missing);
    let mut bad_histogram = results.clone();
    bad_histogram["latency"]["response"]["book"]["histogram"] = Value::from("SGVsbG8=");
    let bad_histogram = write_json(dir.path(), "badhist.json", &bad_histogram);
    let mut other_load = results.clone();
    other_load["plan"]["exchanges"][0]["trades_per_sec"] = Value::from(5000);
    let other_load = write_json(dir.path(), "otherload.json", &other_load);
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").unwrap();
    let binary = dir.path().join("binary.json");
    std::fs::write(&binary, [0xff, 0x00, 0x13, 0x37]).unwrap();

    for (file, expected) in [
        (&truncated, "truncated"),
        (&future, "schema_version"),
        (&other_tool, "not a results file"),
        (&missing, "missing field `latency`"),
        (&bad_histogram, "latency.response.book"),
        (&other_load, "--allow-config-change"),
        (&empty, "empty"),
        (&binary, "not JSON"),
        (&dir.path().join("absent.json"), "cannot open"),
        (&dir.path().to_path_buf(), "is a directory"),
    ] {
        let out = compare(&[&base, file], &[]);
        assert_eq!(out.code, Some(2), "{file:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{file:?}: {}", out.stdout);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{file:?}: {}", out.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        assert!(lines[0].contains(expected), "{file:?}: {}", lines[0]);
        assert!(!out.stderr.contains("panicked"));
    }

    // Different loads compare when asked to, with the differences spelled out.
    let out = compare(&[&base, &other_load], &["--allow-config-change"]);
    assert!(matches!(out.code, Some(0 | 1)), "{}", out.stderr);
    assert!(out
        .stdout
        .contains("configuration differs: per-exchange rates"));

    for bad in ["latency.*.*.p98=5", "latency.*.*.p99=-1", "nonsense"] {
        let out = compare(&[&base, &base], &["--threshold", bad]);
        assert_eq!(out.code, Some(2), "{bad}");
        assert!(
            out.stderr.starts_with("error: --threshold"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn baseline_on_a_run_turns_a_regression_into_exit_1() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    // A baseline ten times faster than anything this machine does.
    let mut fast = s.results();
    fast["throughput"]["total"]["actual_rate"] = Value::from(1e9);
    let fast = write_json(dir.path(), "fast.json", &fast);
    let shm = shm();
    let json = dir.path().join("r.json");
    let mut cmd = tester(&RUN);
    cmd.arg("--shm-dir")
        .arg(shm.path())
        .arg("--baseline")
        .arg(&fast)
        .arg("--json-output")
        .arg(&json);
    let out = run_bounded(cmd, Duration::from_secs(90));
    assert!(out.stdout.contains("Comparison:"), "{}", out.stdout);
    assert!(
        out.stdout.contains("throughput.total.rate"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("edited by hand"), "{}", out.stdout);
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let verdict = results["verdict"]["outcome"].as_str().unwrap();
    // A regression gives 1, unless the verdict already gives something worse.
    let expected = if verdict == "invalid" { 3 } else { 1 };
    assert_eq!(
        out.code,
        Some(expected),
        "verdict {verdict}\n{}",
        out.stderr
    );
}

#[test]
fn bad_outputs_and_baselines_are_refused_before_the_run() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/x");
    let missing = missing.to_str().unwrap();
    let same = dir.path().join("same");
    let same = same.to_str().unwrap();
    let mut truncated = std::fs::read_to_string(s.path("results.json")).unwrap();
    truncated.truncate(100);
    let truncated_path = dir.path().join("t.json");
    std::fs::write(&truncated_path, truncated).unwrap();
    let truncated = truncated_path.to_str().unwrap();
    let mut other = s.results();
    other["plan"]["symbols"] = Value::from(vec!["X"; 3]);
    let other = write_json(dir.path(), "other.json", &other);
    let other = other.to_str().unwrap();
    for (args, expected) in [
        (vec!["--hlog", missing], "--hlog"),
        (vec!["--html-report", missing], "--html-report"),
        (vec!["--junit", missing], "--junit"),
        (vec!["--hgrm-dir", missing], "--hgrm-dir"),
        (vec!["--hlog", same, "--json-output", same], "same file"),
        (vec!["--baseline", truncated], "truncated"),
        (vec!["--baseline", other], "symbols"),
        (vec!["--threshold", "latency.*.*.p99=5"], "--baseline"),
    ] {
        let shm = shm();
        let mut cmd = tester(&["-d", "60", "-e", "1", "-t", "1000", "-o", "500"]);
        cmd.arg("--shm-dir").arg(shm.path()).args(&args);
        let out = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("Starting"),
            "{args:?}: the run started"
        );
        assert!(out.took < Duration::from_secs(10), "{args:?}");
        assert!(!Path::new(same).exists());
    }
}

fn python() -> Option<&'static str> {
    Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "python3")
}

#[test]
fn check_performance_script_agrees_with_the_verdict() {
    let s = shared();
    let found = python();
    if !common::have_tool(
        "check_performance_script_agrees_with_the_verdict",
        found.is_some(),
        "python3 not found",
    ) {
        return;
    }
    let python = found.expect("found");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-performance.py");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains(&format!("SCHEMA_VERSION = {SCHEMA_VERSION}\n")),
        "scripts/check-performance.py must read the schema version this tester writes"
    );
    // Every key of a targets file is known to the script.
    let targets =
        serde_json::to_value(alphapulse_load_tester::results::targets::Targets::default()).unwrap();
    for key in targets.as_object().unwrap().keys() {
        assert!(
            text.contains(&format!("\"{key}\":")),
            "scripts/check-performance.py does not know the target {key}"
        );
    }
    let results = s.results();
    let check = |extra: &[&Path]| {
        let mut cmd = Command::new(python);
        cmd.arg(&script).arg(s.path("results.json"));
        for p in extra {
            cmd.arg("--targets").arg(p);
        }
        run_bounded(cmd, Duration::from_secs(30))
    };
    let out = check(&[]);
    let outcome = results["verdict"]["outcome"].as_str().unwrap();
    let expected = match outcome {
        "passed" => 0,
        "failed" => 1,
        _ => 3,
    };
    assert_eq!(out.code, Some(expected), "{}{}", out.stdout, out.stderr);
    for c in results["verdict"]["checks"].as_array().unwrap() {
        assert!(
            out.stdout.contains(c["name"].as_str().unwrap()),
            "{}",
            out.stdout
        );
    }
    // An impossible target is missed: exit 1 (or 3 for an invalid run).
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, "write_p50_ns = 1\n").unwrap();
    let out = check(&[&strict]);
    assert_eq!(
        out.code,
        Some(if outcome == "invalid" { 3 } else { 1 }),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("MISSED"), "{}", out.stdout);
    // A bad targets file or results file: exit 2, one line.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bogus_key = 1\n").unwrap();
    let out = check(&[&bad]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("bogus_key"), "{}", out.stderr);
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(dir.path().join("absent.json"));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(2));
    assert!(!out.stderr.contains("Traceback"), "{}", out.stderr);
}

#[test]
fn a_killed_run_leaves_a_valid_interval_log() {
    let dir = tempfile::tempdir().unwrap();
    let hlog = dir.path().join("run.hlog");
    let shm = shm();
    let mut child = tester(&[
        "-d",
        "60",
        "--warmup-secs",
        "0",
        "-e",
        "1",
        "-t",
        "1000",
        "-o",
        "0",
    ])
    .arg("--shm-dir")
    .arg(shm.path())
    .arg("--hlog")
    .arg(&hlog)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Wait for two finished intervals (7 lines each, or more with readers), then SIGKILL.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let n = std::fs::read(&hlog)
            .map(|t| {
                IntervalLogIterator::new(&t)
                    .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
                    .count()
            })
            .unwrap_or(0);
        if n >= 14 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = intervals(&hlog);
    let untagged: Vec<&Interval> = log.iter().filter(|i| i.tag.is_none()).collect();
    assert!(untagged.len() >= 2, "{} untagged intervals", untagged.len());
    assert!(untagged.iter().any(|i| !i.histogram.is_empty()));
    // Whatever the tester left in /dev/shm, `clean` removes (its process is dead).
    let out = run_bounded(
        {
            let mut c = tester(&["clean", "--shm-dir"]);
            c.arg(shm.path());
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn ci_workflow_runs_real_commands() {
    use clap::Parser as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workflow = std::fs::read_to_string(root.join(".github/workflows/load-test.yml")).unwrap();
    // The load-tester invocation: from `target/release/load-tester` to the end of its
    // backslash-continued lines.
    let at = workflow.find("target/release/load-tester").unwrap();
    let mut words = Vec::new();
    for line in workflow[at..].lines() {
        let continued = line.trim_end().ends_with('\\');
        words.extend(
            line.trim()
                .trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_string),
        );
        if !continued {
            break;
        }
    }
    assert_eq!(words[0], "target/release/load-tester");
    let cli = alphapulse_load_tester::config::cli::Cli::try_parse_from(&words)
        .unwrap_or_else(|e| panic!("the workflow's command does not parse: {e}"));
    let run = &cli.run;
    assert_eq!(
        (run.exchanges, run.trades_per_second, run.duration_secs),
        (3, 50_000, 60)
    );
    assert!(run.json_output.is_some() && run.html_report.is_some());
    for needed in [
        "scripts/check-performance.py load-test-results/results.json",
        "cargo build --release --locked -p alphapulse-load-tester",
        "actions/upload-artifact",
        "cron:",
    ] {
        assert!(workflow.contains(needed), "{needed}");
    }
    assert!(root.join("scripts/check-performance.py").is_file());
}
