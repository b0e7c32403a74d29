//! The `load-tester` binary from the outside: bad input is refused before anything runs, real runs
//! exit with their verdict's code and clean up after themselves, signals stop a run with a report,
//! and `clean` removes what dead runs left.
//!
//! Every test gives the binary its own base directory under /dev/shm (`--shm-dir` and
//! `$ALPHAPULSE_SHM_DIR`), never /dev/shm/alphapulse, so that it can check what is left there.
//! Every child process has a timeout; real runs last 1 to 3 seconds.

mod common;

use common::{assert_no_panic, describe, outcome_code, read_json, BIN, CHILD_TIMEOUT};

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

/// Bad input must be refused within this, although the run asked for is 60 s long.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

/// A private base directory for run directories: `<tmp under /dev/shm>/alphapulse`, which does
/// not exist until the tester creates it. The whole tree is removed on drop.
struct Shm {
    root: tempfile::TempDir,
    base: PathBuf,
}

impl Shm {
    fn new() -> Self {
        let (root, base) = common::shm_base("lt-cli-test-");
        Self { root, base }
    }

    /// Creates the base directory 0700, as the tester would.
    fn create_base(&self) {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.base)
            .unwrap();
    }

    /// What is in the base directory (empty if it does not exist).
    fn entries(&self) -> Vec<PathBuf> {
        common::entries(&self.base)
    }

    fn assert_empty(&self) {
        common::assert_empty(&self.base);
    }

    /// The tester with this base directory, a clean colour environment and a timeout.
    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        self.prepare(c.timeout(CHILD_TIMEOUT));
        c
    }

    /// The tester as a plain child process (for tests that signal it).
    fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        c.env("ALPHAPULSE_SHM_DIR", &self.base)
            .env("RUST_BACKTRACE", "1")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("RUST_LOG")
            .arg("--shm-dir")
            .arg(&self.base);
        c
    }

    fn prepare(&self, c: &mut Command) {
        c.env("ALPHAPULSE_SHM_DIR", &self.base)
            // A panic would then print a backtrace, which the checks below refuse.
            .env("RUST_BACKTRACE", "1")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("RUST_LOG");
    }

    /// `load-tester --shm-dir <base> <args>`.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .arg("--shm-dir")
            .arg(&self.base)
            .args(args)
            .output()
            .expect("running load-tester")
    }

    /// `load-tester clean --shm-dir <base>`.
    fn clean(&self) -> Output {
        self.cmd()
            .arg("clean")
            .arg("--shm-dir")
            .arg(&self.base)
            .output()
            .expect("running load-tester clean")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the tester with `args` (plus `-d 60` unless a duration is given) and checks that it is
/// refused the way every bad input must be: exit status 2 before the run starts, one `error:`
/// line (the first) naming `flag` and containing every one of `also`, no panic, nothing on
/// stdout, and nothing created in the shared-memory directory.
fn assert_refused(args: &[&str], flag: &str, also: &[&str]) {
    let shm = Shm::new();
    let mut all: Vec<&str> = args.to_vec();
    if !args.iter().any(|a| *a == "-d" || *a == "--duration-secs") {
        all.extend(["-d", "60"]);
    }
    let started = Instant::now();
    let out = shm.run(&all);
    let took = started.elapsed();
    let what = format!("load-tester {}\n{}", all.join(" "), describe(&out));
    assert_eq!(out.status.code(), Some(2), "{what}");
    assert!(
        took < REFUSAL_BOUND,
        "refusing took {took:?}: the check must come before the run\n{what}"
    );
    let stderr = text(&out.stderr);
    assert_no_panic(&stderr);
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("error"))
        .collect();
    assert_eq!(
        error_lines.len(),
        1,
        "exactly one error line expected\n{what}"
    );
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert_eq!(first, error_lines[0], "the error must come first\n{what}");
    assert!(
        first.contains(flag),
        "the error line must name {flag}\n{what}"
    );
    for part in also {
        assert!(
            first.contains(part),
            "the error line must say {part:?}\n{what}"
        );
    }
    assert!(out.stdout.is_empty(), "nothing belongs on stdout\n{what}");
    assert!(
        !shm.base.exists(),
        "a refused run must not create {}: {:?}",
        shm.base.display(),
        shm.entries()
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn zero_exchanges_is_refused() {
    assert_refused(&["-e", "0"], "--exchanges", &["1 to 256"]);
}

#[test]
fn both_rates_zero_is_refused() {
    assert_refused(
        &["-t", "0", "-o", "0"],
        "--trades-per-second",
        &["--orderbook-updates-per-second"],
    );
}

#[test]
fn negative_number_is_refused() {
    assert_refused(&["-e", "-5"], "--exchanges", &["-5"]);
}

#[test]
fn non_numeric_number_is_refused() {
    assert_refused(&["-d", "abc"], "--duration-secs", &["abc"]);
}

#[test]
fn overflowing_number_is_refused() {
    assert_refused(
        &["-s", "99999999999999999999999"],
        "--symbol-count",
        &["99999999999999999999999"],
    );
}

#[test]
fn too_high_rate_is_refused() {
    assert_refused(
        &["-t", "100000000000"],
        "--trades-per-second",
        &["50000000"],
    );
}

#[test]
fn too_high_total_rate_is_refused() {
    assert_refused(
        &["-e", "256", "-t", "50000000"],
        "--exchanges",
        &["--trades-per-second"],
    );
}

#[test]
fn zero_duration_is_refused() {
    assert_refused(&["-d", "0"], "--duration-secs", &[]);
}

#[test]
fn zero_symbols_is_refused() {
    assert_refused(&["-s", "0"], "--symbol-count", &[]);
}

#[test]
fn too_many_symbols_is_refused() {
    assert_refused(&["-s", "10000000"], "--symbol-count", &["10000"]);
}

#[test]
fn ring_capacity_not_power_of_two_is_refused() {
    assert_refused(&["--ring-capacity", "1000"], "--ring-capacity", &["1024"]);
}

#[test]
fn json_output_into_missing_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("missing").join("results.json");
    assert_refused(
        &["--json-output", path.to_str().unwrap()],
        "--json-output",
        &["does not exist"],
    );
    assert!(!tmp.path().join("missing").exists());
}

#[test]
fn json_output_under_a_regular_file_is_refused() {
    // Fails for root too: a file cannot hold a directory entry.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "not a directory").unwrap();
    let path = file.join("results.json");
    assert_refused(
        &["--json-output", path.to_str().unwrap()],
        "--json-output",
        &["not a directory"],
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn json_output_into_proc_is_refused() {
    // Nobody, root included, can create files in /proc.
    assert_refused(
        &["--json-output", "/proc/load-tester-results.json"],
        "--json-output",
        &["/proc"],
    );
    assert!(!Path::new("/proc/load-tester-results.json").exists());
}

#[test]
fn json_output_naming_a_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    assert_refused(
        &["--json-output", tmp.path().to_str().unwrap()],
        "--json-output",
        &["is a directory"],
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn unknown_flags_are_refused() {
    assert_refused(&["--bogus"], "--bogus", &[]);
    assert_refused(&["-x"], "-x", &[]);
    // A near miss of a real flag.
    assert_refused(&["--exchange", "2"], "--exchange", &[]);
}

#[test]
fn targets_file_with_unknown_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("targets.toml");
    std::fs::write(&path, "write_p99_ns = 10\nbogus = 1\n").unwrap();
    assert_refused(
        &["--targets", path.to_str().unwrap()],
        "--targets",
        &["targets.toml", "bogus", "line 2"],
    );
}

#[test]
fn targets_file_with_wrong_type_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("targets.toml");
    std::fs::write(&path, "max_cpu_pct = 50.0\nwrite_p99_ns = \"fast\"\n").unwrap();
    assert_refused(
        &["--targets", path.to_str().unwrap()],
        "--targets",
        &["targets.toml", "line 2", "invalid type"],
    );
}

#[test]
fn targets_file_with_bad_syntax_or_value_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("targets.toml");
    std::fs::write(&path, "write_p99_ns = \n").unwrap();
    assert_refused(
        &["--targets", path.to_str().unwrap()],
        "--targets",
        &["line 1"],
    );
    std::fs::write(&path, "max_cpu_pct = -1.0\n").unwrap();
    assert_refused(
        &["--targets", path.to_str().unwrap()],
        "--targets",
        &["max_cpu_pct"],
    );
}

#[test]
fn configuration_that_is_no_regular_file_or_too_big_is_refused_at_once() {
    // /dev/zero never ends and a FIFO never opens: both are refused before any read.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("scenario.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (flag, file) in [
        ("--scenario", "/dev/zero"),
        ("--targets", "/dev/zero"),
        ("--scenario", fifo.to_str().unwrap()),
    ] {
        assert_refused(&[flag, file], flag, &["not a regular file"]);
    }
    let big = dir.path().join("targets.toml");
    std::fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    assert_refused(
        &["--targets", big.to_str().unwrap()],
        "--targets",
        &["larger than"],
    );
}

#[test]
fn missing_targets_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no-such-targets.toml");
    assert_refused(
        &["--targets", path.to_str().unwrap()],
        "--targets",
        &["no-such-targets.toml"],
    );
}

// ---------------------------------------------------------------------------------------------
// Real runs

/// A short, light run: 1 s, no warm-up, 2 exchanges x 3,000 msgs/s.
const SHORT_RUN: [&str; 10] = [
    "-d",
    "1",
    "--warmup-secs",
    "0",
    "-e",
    "2",
    "-t",
    "2000",
    "-o",
    "1000",
];

#[test]
fn short_run_reports_writes_json_and_cleans_up() {
    let shm = Shm::new();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("results.json");
    let mut args: Vec<&str> = SHORT_RUN.to_vec();
    args.extend(["--json-output", json.to_str().unwrap()]);
    let out = shm.run(&args);
    let what = describe(&out);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed\n{what}"));
    assert!(
        [0, 1, 3].contains(&code),
        "exit status must be a verdict's\n{what}"
    );
    assert_no_panic(&text(&out.stderr));

    let v = read_json(&json);
    let outcome = v["verdict"]["outcome"].as_str().expect("verdict.outcome");
    assert_eq!(
        outcome_code(outcome),
        code,
        "verdict {outcome} vs exit status\n{what}"
    );
    assert_eq!(
        v["schema_version"],
        alphapulse_load_tester::results::SCHEMA_VERSION
    );
    assert!(
        v["throughput"]["trades"]["sent"].as_u64().unwrap() > 0,
        "{what}"
    );
    assert!(v["throughput"]["book"]["sent"].as_u64().unwrap() > 0);
    assert!(v["interrupted"].is_null());
    assert_eq!(v["plan"]["exchanges"].as_array().unwrap().len(), 2);

    let mode = std::fs::metadata(&json).unwrap().permissions().mode() & 0o777;
    // SAFETY: umask(2) cannot fail and has no memory-safety preconditions; the second call
    // restores the value the first one read.
    let umask = unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old
    };
    assert_eq!(
        mode,
        0o666 & !umask,
        "results file mode {mode:o}, umask {umask:o}"
    );
    // The atomic write leaves no temporary file beside the results.
    let beside: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("results.json")]);

    let stdout = text(&out.stdout);
    for part in ["LOAD TEST RESULTS", "Write Latency", "Status:"] {
        assert!(stdout.contains(part), "report lacks {part:?}\n{what}");
    }
    assert!(text(&out.stderr).contains("Results written to"), "{what}");
    shm.assert_empty();
}

/// Waits until the child has created its run directory (with the manifest, so the bus is up and
/// the signal handlers are installed), then until `at` after its start.
fn wait_for_run(shm: &Shm, child: &mut Child, started: Instant, at: Duration) {
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("load-tester ended before it was signalled: {status:?}");
        }
        let up = shm
            .entries()
            .iter()
            .any(|d| d.join("manifest.json").exists());
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no run directory appeared in {}",
            shm.base.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // At least a second of measurement before the signal.
    let until = (started + at).max(Instant::now() + Duration::from_secs(1));
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
}

/// Waits for `child` for at most `limit`; kills it and fails if it takes longer.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("load-tester did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a 30 s run, sends `signal` after about 2.5 s, and checks that the run stops at once
/// with `code`, reports and writes what it measured, and cleans up.
fn interrupted_run(signal: libc::c_int, name: &str, code: i32) {
    let shm = Shm::new();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("results.json");
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let started = Instant::now();
    let mut child = shm
        .std_cmd()
        .args([
            "-d",
            "30",
            "--warmup-secs",
            "0",
            "-e",
            "2",
            "-t",
            "2000",
            "-o",
            "1000",
        ])
        .arg("--json-output")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting load-tester");
    wait_for_run(&shm, &mut child, started, Duration::from_millis(2500));

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, not yet reaped.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let signalled = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    let took = signalled.elapsed();

    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let what = format!("status {status:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(status.code(), Some(code), "{what}");
    assert!(
        took < Duration::from_secs(10),
        "stopping took {took:?}\n{what}"
    );
    assert_no_panic(&stderr);
    assert!(stdout.contains(&format!("Interrupted by {name}")), "{what}");
    assert!(stdout.contains("LOAD TEST RESULTS"), "{what}");

    let v = read_json(&json);
    assert_eq!(v["interrupted"], name, "{what}");
    assert_eq!(
        v["schema_version"],
        alphapulse_load_tester::results::SCHEMA_VERSION
    );
    assert!(v["throughput"]["trades"]["sent"].as_u64().unwrap() > 0);
    let measured = v["measured_secs"].as_f64().unwrap();
    assert!(
        measured > 0.5 && measured < 20.0,
        "measured_secs {measured}\n{what}"
    );
    // The time series ends where the run did: no points for the seconds it never ran.
    let series = v["series"].as_array().unwrap();
    let covered: f64 = series.iter().map(|p| p["secs"].as_f64().unwrap()).sum();
    assert!(
        series.len() as f64 <= measured.ceil() + 1.0,
        "{} points for {measured} s",
        series.len()
    );
    assert!(
        series.iter().all(|p| p["secs"].as_f64().unwrap() > 0.0),
        "a point of no time: {series:?}"
    );
    assert!((covered - measured).abs() < 1.0, "{covered} vs {measured}");
    assert!(
        !stdout.contains("TPS 0 OPS 0") && !stderr.contains("TPS 0 OPS 0"),
        "progress for seconds that never ran\n{what}"
    );
    shm.assert_empty();
}

#[test]
fn sigint_stops_the_run_with_130_and_a_report() {
    interrupted_run(libc::SIGINT, "SIGINT", 130);
}

#[test]
fn sigterm_stops_the_run_with_143_and_a_report() {
    interrupted_run(libc::SIGTERM, "SIGTERM", 143);
}

/// Two SIGTERMs in a row (as `timeout` and then a kill deliver them) while the tester waits for
/// a slow reader to drain: the second ends the run at once, still removes the shared memory,
/// writes no results and says so.
#[test]
fn a_second_signal_ends_the_run_at_once_and_still_cleans_up() {
    let shm = Shm::new();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("results.json");
    let started = Instant::now();
    let mut child = shm
        .std_cmd()
        .args([
            "-d",
            "30",
            "--warmup-secs",
            "0",
            "-e",
            "1",
            "-t",
            "2000",
            "-o",
            "1000",
        ])
        // A reader that needs seconds to drain what was written: the tester is waiting for it
        // when the second signal comes.
        .args(["--reader-delay-ns", "2000000", "--ring-capacity", "65536"])
        .arg("--json-output")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting load-tester");
    wait_for_run(&shm, &mut child, started, Duration::from_millis(1500));
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    for _ in 0..2 {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        std::thread::sleep(Duration::from_millis(300));
    }
    let signalled = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let what = format!("status {status:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(status.code(), Some(143), "{what}");
    assert!(stderr.contains("no results were written"), "{what}");
    assert!(!stdout.contains("LOAD TEST RESULTS"), "{what}");
    assert!(!json.exists(), "{what}");
    assert_no_panic(&stderr);
    shm.assert_empty();
}

/// Another process of the same user truncates a ring the tester writes: the next write faults
/// (SIGBUS) and kills the tester, but not before it removed its run directory and said why.
#[test]
fn a_truncated_ring_kills_the_run_but_leaves_no_shared_memory() {
    use std::os::unix::process::ExitStatusExt as _;
    let shm = Shm::new();
    let started = Instant::now();
    let mut child = shm
        .std_cmd()
        .args([
            "-d",
            "30",
            "--warmup-secs",
            "0",
            "-e",
            "1",
            "--consumers",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting load-tester");
    wait_for_run(&shm, &mut child, started, Duration::from_millis(1000));
    let run = shm
        .entries()
        .into_iter()
        .find(|d| d.join("manifest.json").exists())
        .expect("the run directory");
    let ring = run.join("binance.trades");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ring)
        .unwrap()
        .set_len(0)
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("SIGBUS") && stderr.contains("run directory was removed"),
        "{stderr}"
    );
    shm.assert_empty();
}

#[test]
fn keep_shm_leaves_the_rings_and_clean_removes_them() {
    let shm = Shm::new();
    let mut args: Vec<&str> = SHORT_RUN.to_vec();
    args.extend(["--keep-shm", "-v"]);
    let out = shm.run(&args);
    let what = describe(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 3)),
        "exit status must be a verdict's\n{what}"
    );
    let stderr = text(&out.stderr);
    assert_no_panic(&stderr);
    assert!(stderr.contains("Shared memory kept in"), "{what}");
    // Logs on a pipe are plain text, without colour codes.
    assert!(
        !stderr.contains("\x1b["),
        "ANSI escapes on a piped stderr\n{what}"
    );

    let runs = shm.entries();
    assert_eq!(runs.len(), 1, "one run directory expected: {runs:?}");
    let run = &runs[0];
    let mode = std::fs::metadata(run).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "run directory mode {mode:o}");
    let manifest = read_json(&run.join("manifest.json"));
    let rings = manifest["rings"].as_array().expect("manifest.rings");
    assert_eq!(rings.len(), 2 * 2, "2 rings per exchange: {manifest}");
    assert_eq!(manifest["exchanges"].as_array().unwrap().len(), 2);
    for stream in ["trades", "book"] {
        assert_eq!(
            rings.iter().filter(|r| r["stream"] == stream).count(),
            2,
            "{manifest}"
        );
    }
    for ring in rings {
        let file = run.join(ring["file"].as_str().unwrap());
        let meta =
            std::fs::metadata(&file).unwrap_or_else(|e| panic!("ring {}: {e}", file.display()));
        assert!(meta.len() > 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    let out = shm.clean();
    let what = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{what}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("removed: {}", run.display())),
        "{what}"
    );
    assert!(stdout.contains("1 stale run directory removed"), "{what}");
    shm.assert_empty();
}

/// A lighter one: 1 s, no warm-up, 1 exchange x 1,000 msgs/s.
const ONE_EXCHANGE_RUN: [&str; 10] = [
    "-d",
    "1",
    "--warmup-secs",
    "0",
    "-e",
    "1",
    "-t",
    "500",
    "-o",
    "500",
];

/// Rings on disk work but are not what the user meant: the run says so before it starts.
#[test]
fn a_base_directory_on_disk_is_named_in_a_note() {
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let st = rustix::fs::statfs(disk.path()).unwrap();
    if st.f_type as i64 == 0x0102_1994 {
        eprintln!(
            "not checked: {} is itself on a tmpfs",
            disk.path().display()
        );
        return;
    }
    let base = disk.path().join("alphapulse");
    let out = Command::new(BIN)
        .timeout(CHILD_TIMEOUT)
        .env("NO_COLOR", "1")
        .args([
            "--shm-dir",
            base.to_str().unwrap(),
            "-d",
            "1",
            "--warmup-secs",
            "0",
            "-e",
            "1",
        ])
        .args(["--consumers", "0", "--lag-budget-us", "60000000"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("note: the shared-memory base") && stderr.contains("not on a tmpfs"),
        "{}",
        describe(&out)
    );
    assert!(common::entries(&base).is_empty(), "the run cleaned up");

    // A relative $ALPHAPULSE_SHM_DIR is the same base, named as the absolute path it is.
    let out = Command::new(BIN)
        .timeout(CHILD_TIMEOUT)
        .current_dir(disk.path())
        .env("NO_COLOR", "1")
        .env("ALPHAPULSE_SHM_DIR", "relative-base")
        .args(ONE_EXCHANGE_RUN)
        .args(["--consumers", "0", "--lag-budget-us", "60000000"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let absolute = disk.path().join("relative-base");
    assert!(
        stderr.contains(&format!(
            "note: the shared-memory base {}",
            absolute.display()
        )) && stderr.contains("not on a tmpfs"),
        "{}",
        describe(&out)
    );
    assert!(common::entries(&absolute).is_empty(), "the run cleaned up");
}

#[test]
fn no_color_keeps_escape_codes_out() {
    let light = ONE_EXCHANGE_RUN;

    // Control: with colours forced on, the report has escape codes, so the check below means
    // something even though stdout is a pipe.
    let shm = Shm::new();
    let out = shm
        .cmd()
        .env("CLICOLOR_FORCE", "1")
        .arg("--shm-dir")
        .arg(&shm.base)
        .args(light)
        .output()
        .unwrap();
    let what = describe(&out);
    assert!(matches!(out.status.code(), Some(0 | 1 | 3)), "{what}");
    assert!(
        text(&out.stdout).contains("\x1b["),
        "CLICOLOR_FORCE=1 should colour the report\n{what}"
    );
    shm.assert_empty();

    // NO_COLOR wins, on stdout and (with -v logs) on stderr.
    let shm = Shm::new();
    let out = shm
        .cmd()
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .arg("--shm-dir")
        .arg(&shm.base)
        .args(light)
        .arg("-v")
        .output()
        .unwrap();
    let what = describe(&out);
    assert!(matches!(out.status.code(), Some(0 | 1 | 3)), "{what}");
    assert!(text(&out.stdout).contains("LOAD TEST RESULTS"), "{what}");
    assert!(
        !text(&out.stdout).contains("\x1b["),
        "escape codes on stdout\n{what}"
    );
    assert!(
        !text(&out.stderr).contains("\x1b["),
        "escape codes on stderr\n{what}"
    );
    shm.assert_empty();
}

// ---------------------------------------------------------------------------------------------
// clean

#[test]
fn clean_removes_dead_runs_and_keeps_live_ones() {
    let shm = Shm::new();
    shm.create_base();
    // A run as the tester makes it: a lock file, a manifest naming the run and its ring, the ring.
    let make_run = |name: &str| {
        let dir = shm.base.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let lock = dir.join("writer.lock");
        File::create(&lock).unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
        let manifest = serde_json::json!({
            "version": 1, "run_id": name, "writer_pid": 1, "exchanges": ["ex0"],
            "symbols": ["BTC/USD"],
            "rings": [{"file": "ex0.trades", "exchange_id": 0, "stream": "trades",
                       "record_type": 1, "record_size": 64, "capacity": 8, "mode": "overwrite"}]
        });
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.join("ex0.trades"), [0u8; 64]).unwrap();
        dir
    };
    // A run whose owner died: a lock file that nobody holds, and the tester's own files beside
    // the bus's: a feed's description, and what a fill-shm fault left when the tester was killed.
    let stale = make_run("run-1-1");
    std::fs::write(stale.join("feed.json"), "{}").unwrap();
    std::fs::write(stale.join("chaos-fill"), [0u8; 4096]).unwrap();
    // A dead run holding a file that no run makes is kept whole, and clean says why.
    let foreign = make_run("run-3-3");
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    // A live run: this test process holds its lock, as a running tester would.
    let live = make_run("run-2-2");
    let lock = File::open(live.join("writer.lock")).unwrap();
    // SAFETY: flock(2) on a descriptor that `lock` owns and keeps open; no memory is involved.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());

    // A base that holds anything but runs is not cleaned at all: it may be the wrong directory.
    let other = shm.base.join("notes.txt");
    std::fs::write(&other, "keep me").unwrap();
    let out = shm.clean();
    let what = describe(&out);
    assert_eq!(out.status.code(), Some(2), "{what}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("notes.txt") && stderr.contains("nothing was removed"),
        "{what}"
    );
    assert!(
        stale.exists() && other.exists(),
        "nothing may be removed\n{what}"
    );
    std::fs::remove_file(&other).unwrap();

    let out = shm.clean();
    let what = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{what}");
    assert_no_panic(&text(&out.stderr));
    assert!(!stale.exists(), "the dead run must be removed\n{what}");
    assert!(
        live.join("writer.lock").exists(),
        "the live run must be kept\n{what}"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("removed: {}", stale.display())),
        "{what}"
    );
    assert!(stdout.contains(&live.display().to_string()), "{what}");
    assert!(stdout.contains("1 stale run directory removed"), "{what}");
    assert!(
        foreign.join("notes.txt").exists() && foreign.join("ex0.trades").exists(),
        "a run holding a foreign file must be kept whole\n{what}"
    );
    assert!(
        stdout.contains(&format!("refused: {}", foreign.display())) && stdout.contains("notes.txt"),
        "{what}"
    );
    std::fs::remove_dir_all(&foreign).unwrap();

    // Once its owner lets go, the live run is stale too. (A child that another test forks
    // while we hold the lock shares our descriptor until its exec closes it, so the lock may
    // outlive our `drop` by a moment: retry for a while.)
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = shm.clean();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        if !live.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the released run was never removed\n{}",
            describe(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(shm.entries().is_empty());
}

/// `clean --shm-dir ~` by mistake: a home directory is no base of runs, and nothing in it is
/// touched, however old (the old rule removed any plain-named directory over a minute old).
#[test]
fn clean_of_a_home_directory_refuses_and_deletes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for dir in [".ssh", "docs", "run-1-1"] {
        let d = home.path().join(dir);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("file"), "precious").unwrap();
        File::open(&d).unwrap().set_modified(old).unwrap();
    }
    std::fs::write(home.path().join("notes.txt"), "precious").unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(BIN)
        .timeout(CHILD_TIMEOUT)
        .env("NO_COLOR", "1")
        .args(["clean", "--shm-dir"])
        .arg(home.path())
        .output()
        .unwrap();
    let what = describe(&out);
    assert_eq!(out.status.code(), Some(2), "{what}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line\n{what}");
    assert!(stderr.contains("nothing was removed"), "{what}");
    for dir in [".ssh", "docs", "run-1-1"] {
        assert_eq!(
            std::fs::read_to_string(home.path().join(dir).join("file")).unwrap(),
            "precious",
            "{dir}\n{what}"
        );
    }
    assert!(home.path().join("notes.txt").exists());
}

#[test]
fn clean_of_a_missing_base_directory_is_a_no_op() {
    let shm = Shm::new();
    let out = shm.clean();
    let what = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{what}");
    assert!(
        text(&out.stdout).contains("0 stale run directories removed"),
        "{what}"
    );
    assert!(!shm.base.exists());
    assert!(shm.root.path().exists());
}

// ---------------------------------------------------------------------------------------------
// Help and version

/// The original design's options: the flag, the words its help starts with, its default.
const ORIGINAL_FLAGS: [(&str, &str, &str); 8] = [
    (
        "-e, --exchanges <NUM>",
        "Number of simulated exchanges",
        "[default: 3]",
    ),
    (
        "-t, --trades-per-second <TPS>",
        "Target trades per second per exchange",
        "[default: 10000]",
    ),
    (
        "-o, --orderbook-updates-per-second <OPS>",
        "Target orderbook updates per second",
        "[default: 5000]",
    ),
    (
        "-d, --duration-secs <SECS>",
        "Test duration in seconds",
        "[default: 60]",
    ),
    (
        "-s, --symbol-count <COUNT>",
        "Number of symbols to simulate",
        "[default: 10]",
    ),
    ("-v, --verbose", "Enable verbose output", ""),
    ("--json-output <FILE>", "Save results to JSON file", ""),
    ("-h, --help", "Print help", ""),
];

/// The help entry of `flag`: its line and the description lines below it, whitespace collapsed.
fn help_entry(help: &str, flag: &str) -> Option<String> {
    let is_flag_line = |l: &str| {
        let indent = l.len() - l.trim_start().len();
        indent <= 6 && l.trim_start().starts_with('-')
    };
    let mut lines = help
        .lines()
        .skip_while(|l| !(is_flag_line(l) && l.trim_start().starts_with(flag)));
    let first = lines.next()?;
    let rest =
        lines.take_while(|l| !is_flag_line(l) && !l.starts_with(|c: char| !c.is_whitespace()));
    let entry: Vec<&str> = std::iter::once(first)
        .chain(rest)
        .flat_map(str::split_whitespace)
        .collect();
    Some(entry.join(" "))
}

#[test]
fn each_mode_refuses_the_flags_of_another() {
    // The load is the coordinator's; a worker's cores are its own; the network is a
    // distributed run's.
    assert_refused(
        &[
            "--mode",
            "worker",
            "--coordinator",
            "127.0.0.1:1",
            "-e",
            "4",
        ],
        "--exchanges",
        &["coordinator"],
    );
    assert_refused(
        &["--mode", "coordinator", "--pin-cores", "0"],
        "--pin-cores",
        &["worker"],
    );
    assert_refused(
        &["--mode", "coordinator", "--coordinator", "h:1"],
        "--coordinator",
        &["worker"],
    );
    assert_refused(&["--port", "9000"], "--port", &["--mode coordinator"]);
    assert_refused(&["--mode", "cluster"], "--mode", &["cluster"]);
}

#[test]
fn a_coordinator_beyond_loopback_needs_a_token() {
    assert_refused(
        &["--mode", "coordinator", "--bind", "0.0.0.0"],
        "--bind",
        &["--token"],
    );
    assert_refused(
        &["--mode", "coordinator", "--bind", "my-host"],
        "--bind",
        &["IP address"],
    );
    assert_refused(
        &["--mode", "coordinator", "--token", ""],
        "--token",
        &["empty"],
    );
    assert_refused(
        &["--mode", "coordinator", "--tls-ca", "/etc/hostname"],
        "--tls-ca",
        &["--tls-cert"],
    );
    assert_refused(
        &["--mode", "coordinator", "--workers", "0"],
        "--workers",
        &["1 to"],
    );
}

#[test]
fn help_lists_the_original_flags() {
    let shm = Shm::new();
    for help in ["--help", "-h"] {
        let out = shm.cmd().arg(help).output().unwrap();
        let what = describe(&out);
        assert_eq!(out.status.code(), Some(0), "{what}");
        assert!(out.stderr.is_empty(), "{what}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("Usage: load-tester"), "{what}");
        for (flag, words, default) in ORIGINAL_FLAGS {
            let entry =
                help_entry(&stdout, flag).unwrap_or_else(|| panic!("{help} lacks {flag}\n{what}"));
            let description = entry[flag.len()..].trim_start();
            assert!(
                description.starts_with(words),
                "{help}: {flag} should be described as {words:?}: {entry:?}"
            );
            assert!(
                entry.contains(default),
                "{help}: {flag} should show {default}: {entry:?}"
            );
        }
    }
    shm.assert_empty();
}

#[test]
fn version_is_printed() {
    let shm = Shm::new();
    for flag in ["--version", "-V"] {
        shm.cmd()
            .arg(flag)
            .assert()
            .code(0)
            .stdout(predicate::str::starts_with("load-tester "))
            .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")))
            .stderr(predicate::str::is_empty());
    }
    shm.assert_empty();
}
