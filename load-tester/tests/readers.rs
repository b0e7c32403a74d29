//! Reader processes from the outside, through the `load-tester` binary: a reader killed or
//! stopped mid-run, a slow reader in both writer modes, the writer killed under a standalone
//! reader, readers pointed at things that are not runs, a standalone reader on a live run, and
//! the Python reader of examples/python-reader (written only from docs/bus-format.md) checked
//! against the Rust readers on the same records.
//!
//! Every run uses its own base directory under /dev/shm. Every child process is waited for with
//! a bound and killed when the test ends, however it ends, so nothing hangs or lingers. The runs
//! take a few seconds each and, because they load the machine (readers spin), they run one at a
//! time. Timing assertions are generous: the machine has two cores shared with other work.
//! Every run gets a huge lag budget so that a busy machine cannot turn the verdict into INVALID
//! where a test checks for FAILED.

mod common;

use common::{assert_no_panic, read_json, verdict_code, BIN};

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alphapulse_load_tester::report::histogram::decode as decode_histogram;
use serde_json::Value;

/// The Python reader, relative to the workspace root.
const PY_READER: &str = "examples/python-reader/apbus_reader.py";

/// Keeps a loaded machine from making a run INVALID (exit 3) where the test expects FAILED.
const NO_INVALID: [&str; 2] = ["--lag-budget-us", "60000000"];

/// Longest any run may take, start to exit, before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

/// One run at a time (a failed test must not block the others).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A private base directory for run directories, under /dev/shm; removed on drop.
struct Shm {
    _root: tempfile::TempDir,
    base: PathBuf,
    /// Where the children's output and JSON files go.
    out: tempfile::TempDir,
}

impl Shm {
    fn new() -> Self {
        let (root, base) = common::shm_base("lt-readers-test-");
        Self {
            _root: root,
            base,
            out: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    /// What is in the base directory (empty if it does not exist).
    fn entries(&self) -> Vec<PathBuf> {
        common::entries(&self.base)
    }

    fn assert_empty(&self) {
        common::assert_empty(&self.base);
    }

    /// `load-tester --shm-dir <base> <args> <NO_INVALID>` with stdout and stderr to files.
    fn tester(&self, name: &str, args: &[&str]) -> Proc {
        let mut c = Command::new(BIN);
        c.arg("--shm-dir")
            .arg(&self.base)
            .args(args)
            .args(NO_INVALID);
        self.spawn(name, c)
    }

    /// `load-tester read --run-dir <dir> <args>`.
    fn reader(&self, name: &str, run_dir: &Path, args: &[&str]) -> Proc {
        let mut c = Command::new(BIN);
        c.arg("read").arg("--run-dir").arg(run_dir).args(args);
        self.spawn(name, c)
    }

    fn spawn(&self, name: &str, mut c: Command) -> Proc {
        let out = self.file(&format!("{name}.stdout"));
        let err = self.file(&format!("{name}.stderr"));
        c.env("ALPHAPULSE_SHM_DIR", &self.base)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let what = format!("{c:?}");
        let child = c.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Proc {
            child,
            started: Instant::now(),
            out,
            err,
            what,
            status: None,
        }
    }

    /// Waits until the tester `p` has a run directory with a manifest; returns the directory.
    fn wait_for_run(&self, p: &mut Proc) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(dir) = self
                .entries()
                .into_iter()
                .find(|d| d.join("manifest.json").exists())
            {
                return dir;
            }
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!(
                    "the tester ended before its run appeared: {status:?}\n{}",
                    p.describe()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no run directory appeared in {}\n{}",
                self.base.display(),
                p.describe()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `load-tester clean --shm-dir <base>`.
    fn clean(&self) -> (ExitStatus, String) {
        let mut c = Command::new(BIN);
        c.arg("clean").arg("--shm-dir").arg(&self.base);
        let mut p = self.spawn("clean", c);
        let status = p.wait(Duration::from_secs(20));
        (status, p.stdout())
    }
}

/// A child process whose output goes to files; killed and reaped on drop if still running.
struct Proc {
    child: Child,
    started: Instant,
    out: PathBuf,
    err: PathBuf,
    what: String,
    status: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Waits at most `limit`; on timeout kills it and fails the test.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("did not exit within {limit:?}: killed\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "{}\nstatus {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// The pids of its child processes.
    fn children(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return out;
        };
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a process this test started
    // (or one of its children) and is still waited for, so the pid was not reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a whole number: {v}"))
}

/// The verdict check called `name` (an exact name).
fn check<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["verdict"]["checks"]
        .as_array()
        .expect("verdict.checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no verdict check {name:?}: {}", results["verdict"]))
}

/// Pids registered as ACTIVE readers in the header of the ring file at `path` (bus-format §3.5).
fn registered_readers(path: &Path) -> Vec<u32> {
    let mut header = vec![0u8; 4096];
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    if f.read_exact(&mut header).is_err() {
        return Vec::new();
    }
    (0..32)
        .filter_map(|i| {
            let off = 256 + 64 * i;
            let owner = u64::from_le_bytes(header[off..off + 8].try_into().unwrap());
            (owner & 0xFFFF_FFFF == 1).then_some((owner >> 32) as u32)
        })
        .collect()
}

/// The first ring file listed in the run's manifest.
fn first_ring(run_dir: &Path) -> PathBuf {
    let manifest = read_json(&run_dir.join("manifest.json"));
    run_dir.join(
        manifest["rings"][0]["file"]
            .as_str()
            .expect("rings[0].file"),
    )
}

/// Waits until `count` reader processes of the tester `p` are attached to the rings (registered
/// in the first ring's header); returns their pids.
fn wait_for_readers(p: &mut Proc, run_dir: &Path, count: usize) -> Vec<i32> {
    let ring = first_ring(run_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let children = p.children();
        let attached: Vec<i32> = registered_readers(&ring)
            .into_iter()
            .map(|pid| pid as i32)
            .filter(|pid| children.contains(pid))
            .collect();
        if attached.len() >= count {
            return attached;
        }
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!("the tester ended early: {status:?}\n{}", p.describe());
        }
        assert!(
            Instant::now() < deadline,
            "{count} readers never attached (children {children:?})\n{}",
            p.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that no integrity violation was counted in `integrity` (a consumer::Integrity).
fn assert_intact(integrity: &Value, what: &str) {
    for field in [
        "corrupted",
        "out_of_order",
        "gaps",
        "book_errors",
        "digest_mismatches",
        "unaccounted",
    ] {
        assert_eq!(
            u64_of(&integrity[field]),
            0,
            "{field} must be 0: {integrity}\n{what}"
        );
    }
}

/// For each stream: received + lost == written x readers (every record written was either
/// received or counted lost, by each reader), with no violation. Returns the total lost.
fn assert_accounted(results: &Value, readers: u64, what: &str) -> u64 {
    let d = &results["delivery"];
    let mut lost = 0;
    for stream in ["trades", "book"] {
        let written = u64_of(&d["written"][stream]);
        let i = &d["streams"][stream];
        assert!(written > 0, "nothing written on {stream}\n{what}");
        assert_eq!(
            u64_of(&i["received"]) + u64_of(&i["lost"]),
            written * readers,
            "{stream}: received + lost must equal written ({written}) x {readers}: {i}\n{what}"
        );
        assert_eq!(
            u64_of(&i["accounted"]),
            written * readers,
            "{stream}: {i}\n{what}"
        );
        assert_intact(i, what);
        lost += u64_of(&i["lost"]);
    }
    lost
}

// ---------------------------------------------------------------------------------------------
// Faults in the tester's own readers

/// A reader SIGKILLed mid-run: the tester notices at once, runs to the end, names the dead
/// reader in the report, fails "Readers Alive" and exits 1, and removes its shared memory.
#[test]
fn killed_reader_is_noticed_named_and_fails_the_verdict() {
    let _serial = serial();
    let shm = Shm::new();
    let json = shm.file("results.json");
    let mut tester = shm.tester(
        "tester",
        &[
            "--consumers",
            "2",
            "-d",
            "4",
            "-e",
            "1",
            "-t",
            "2000",
            "-o",
            "1000",
            "--json-output",
            json.to_str().unwrap(),
        ],
    );
    let run_dir = shm.wait_for_run(&mut tester);
    let readers = wait_for_readers(&mut tester, &run_dir, 2);
    // Well into the run (the warm-up is 1 s, then 4 s measured).
    let kill_at = tester.started + Duration::from_millis(2000);
    std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
    let victim = readers[0];
    signal(victim, libc::SIGKILL);
    let killed_after = tester.started.elapsed().as_secs_f64();

    let status = tester.wait(RUN_LIMIT);
    let what = tester.describe();
    assert_no_panic(&tester.stderr());
    assert_eq!(status.code(), Some(1), "the verdict must fail\n{what}");
    let v = read_json(&json);
    assert_eq!(verdict_code(&v), 1, "{what}");
    assert!(v["interrupted"].is_null(), "{what}");
    // The run went on to its end.
    let measured = v["measured_secs"].as_f64().unwrap();
    assert!(
        measured > 3.5,
        "measured_secs {measured}: the run stopped early\n{what}"
    );

    let d = &v["delivery"];
    assert_eq!(u64_of(&d["readers"]), 2, "{what}");
    assert_eq!(u64_of(&d["dead"]), 1, "{what}");
    let per_reader = d["per_reader"].as_array().expect("per_reader");
    let dead = per_reader
        .iter()
        .find(|r| r["pid"] == victim)
        .unwrap_or_else(|| panic!("no reader with pid {victim}: {d}"));
    let died = dead["died"]
        .as_str()
        .unwrap_or_else(|| panic!("died not set: {dead}"));
    assert!(died.contains("SIGKILL"), "{died}");
    assert!(died.contains(&format!("pid {victim}")), "{died}");
    assert_eq!(dead["ended"], "died", "{dead}");
    // "died after X s", X counted from the start of the run, which is after the tester started:
    // X can exceed the kill's time since the tester started only by the detection delay.
    let x: f64 = died
        .split("died after ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no \"died after X s\" in {died:?}"));
    assert!(
        x > 0.0 && x < killed_after + 1.5,
        "noticed at {x} s of the run, killed {killed_after:.2} s after the tester started: \
         more than about a second late\n{what}"
    );

    // The other reader read on to the end and accounted for every record.
    let alive = per_reader.iter().find(|r| r["pid"] != victim).unwrap();
    assert!(alive["died"].is_null(), "{alive}");
    assert_eq!(alive["ended"], "writers closed", "{alive}");
    let written: u64 = ["trades", "book"]
        .iter()
        .map(|s| u64_of(&d["written"][*s]))
        .sum();
    assert_eq!(
        u64_of(&alive["received"]) + u64_of(&alive["lost"]),
        written,
        "{alive}\n{what}"
    );
    assert_eq!(u64_of(&alive["violations"]), 0, "{alive}");

    let c = check(&v, "Readers Alive");
    assert_eq!(c["passed"], false, "{c}");
    assert_eq!(c["measured"].as_f64(), Some(1.0), "{c}");

    // The console report names it too.
    let stdout = tester.stdout();
    assert!(
        stdout.contains(&format!("pid {victim}")) && stdout.contains("SIGKILL"),
        "the report must name the dead reader\n{what}"
    );
    assert!(stdout.contains("Readers Alive"), "{what}");
    shm.assert_empty();
}

/// Runs one exchange at 7k msgs/s on 1024-record rings with one reader, SIGSTOPs the reader
/// for 1 s in the middle, and returns the exit status and the results.
fn stopped_reader_run(allow_loss: bool) -> (ExitStatus, Value, String) {
    let shm = Shm::new();
    let json = shm.file("results.json");
    let mut args = vec![
        "--consumers",
        "1",
        "-e",
        "1",
        "-t",
        "5000",
        "-o",
        "2000",
        "-d",
        "4",
        "--ring-capacity",
        "1024",
        "--json-output",
        json.to_str().unwrap(),
    ];
    if allow_loss {
        args.push("--allow-loss");
    }
    let mut tester = shm.tester("tester", &args);
    let run_dir = shm.wait_for_run(&mut tester);
    let readers = wait_for_readers(&mut tester, &run_dir, 1);
    let stop_at = tester.started + Duration::from_millis(2000);
    std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
    signal(readers[0], libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(1));
    signal(readers[0], libc::SIGCONT);

    let status = tester.wait(RUN_LIMIT);
    let what = tester.describe();
    assert_no_panic(&tester.stderr());
    let v = read_json(&json);
    assert_eq!(status.code(), Some(verdict_code(&v)), "{what}");
    shm.assert_empty();
    (status, v, what)
}

/// A reader stopped for 1 s while the writer laps it: it reports exactly what it lost
/// (received + lost == written on every stream), with no integrity violation; --allow-loss
/// lets the verdict pass that, and without it the run fails.
#[test]
fn stopped_reader_counts_its_losses_exactly() {
    let _serial = serial();
    let (status, v, what) = stopped_reader_run(true);
    let lost = assert_accounted(&v, 1, &what);
    let d = &v["delivery"];
    // 1 s of 5k trades/s laps a 1024-record ring several times over.
    let trades_lost = u64_of(&d["streams"]["trades"]["lost"]);
    assert!(trades_lost > 1024, "trades lost {trades_lost}\n{what}");
    let reader = &d["per_reader"][0];
    assert!(reader["died"].is_null(), "{reader}");
    assert_eq!(reader["ended"], "writers closed", "{reader}");
    assert_eq!(u64_of(&reader["lost"]), lost, "{reader}");
    assert_eq!(u64_of(&reader["violations"]), 0, "{reader}");
    assert_eq!(d["loss_allowed"], true);
    let c = check(&v, "Records Lost (allowed)");
    assert_eq!(c["passed"], true, "{c}");
    assert_eq!(c["measured"].as_f64(), Some(lost as f64), "{c}");
    assert_eq!(check(&v, "Integrity Violations")["passed"], true);
    assert_eq!(check(&v, "Readers Alive")["passed"], true);
    assert_ne!(status.code(), Some(3), "{what}");

    // The same without --allow-loss fails the verdict.
    let (status, v, what) = stopped_reader_run(false);
    let lost = assert_accounted(&v, 1, &what);
    assert!(lost > 0, "{what}");
    let c = check(&v, "Records Lost");
    assert_eq!(c["passed"], false, "{c}");
    assert_eq!(status.code(), Some(1), "{what}");
}

/// A reader slowed to at most 5,000 records/s (200 us per record) behind 12,000 msgs/s on
/// 1024-record rings: in overwrite mode it loses records, counted exactly; in backpressure mode
/// the writer refuses writes instead (buffer overflows) and the reader receives every record,
/// intact, although one generator thread drives two exchanges whose refused records wait for
/// their retry while the other exchange writes.
#[test]
fn slow_reader_loses_exactly_in_overwrite_and_blocks_in_backpressure() {
    let _serial = serial();
    let base = [
        "--consumers",
        "1",
        "--reader-delay-ns",
        "200000",
        "-e",
        "2",
        "--threads",
        "1",
        "-t",
        "5000",
        "-o",
        "1000",
        "-d",
        "2",
        "--ring-capacity",
        "1024",
        "--allow-loss",
    ];
    for mode in ["overwrite", "backpressure"] {
        let shm = Shm::new();
        let json = shm.file("results.json");
        let mut args = base.to_vec();
        args.extend([
            "--writer-mode",
            mode,
            "--json-output",
            json.to_str().unwrap(),
        ]);
        let mut tester = shm.tester(mode, &args);
        let status = tester.wait(RUN_LIMIT);
        let what = tester.describe();
        assert_no_panic(&tester.stderr());
        let v = read_json(&json);
        assert_eq!(status.code(), Some(verdict_code(&v)), "{what}");
        let lost = assert_accounted(&v, 1, &what);
        let overflows = u64_of(&v["errors"]["buffer_overflows"]);
        let reader = &v["delivery"]["per_reader"][0];
        assert!(reader["died"].is_null(), "{reader}\n{what}");
        if mode == "overwrite" {
            assert!(lost > 0, "a slow reader must be lapped\n{what}");
            assert_eq!(overflows, 0, "{what}");
        } else {
            assert_eq!(lost, 0, "backpressure must not lose records\n{what}");
            assert!(overflows > 0, "the writer must have been refused\n{what}");
            for stream in ["trades", "book"] {
                assert_eq!(
                    v["delivery"]["streams"][stream]["received"], v["delivery"]["written"][stream],
                    "{stream}: every record must be delivered\n{what}"
                );
            }
            assert_eq!(check(&v, "Error Rate")["passed"], false, "{what}");
        }
        shm.assert_empty();
    }
}

// ---------------------------------------------------------------------------------------------
// Standalone readers

/// A standalone reader slowed to one record a second still obeys its time limit and SIGTERM at
/// once: both are checked between records, not between batches.
#[test]
fn a_slow_standalone_reader_obeys_its_time_limit_and_sigterm() {
    let _serial = serial();
    let shm = Shm::new();
    let mut tester = shm.tester(
        "tester",
        &[
            "-d",
            "30",
            "--consumers",
            "0",
            "-e",
            "1",
            "-t",
            "2000",
            "-o",
            "1000",
        ],
    );
    let run_dir = shm.wait_for_run(&mut tester);
    let mut limited = shm.reader(
        "limited",
        &run_dir,
        &["--delay-ns", "1000000000", "-d", "1"],
    );
    limited.wait(Duration::from_secs(10));
    let took = limited.started.elapsed();
    // A second's limit, with room for a loaded machine; a reader that ignored it would sleep
    // past its 10 s wait.
    assert!(
        took < Duration::from_secs(6),
        "took {took:?}\n{}",
        limited.describe()
    );
    assert!(
        limited.stdout().contains("Ended: time limit"),
        "{}",
        limited.describe()
    );
    let mut stopped = shm.reader("stopped", &run_dir, &["--delay-ns", "1000000000"]);
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    signal(stopped.pid(), libc::SIGTERM);
    stopped.wait(Duration::from_secs(10));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}\n{}",
        signalled.elapsed(),
        stopped.describe()
    );
    assert!(
        stopped.stdout().contains("Ended: stopped"),
        "{}",
        stopped.describe()
    );
    signal(tester.pid(), libc::SIGINT);
    tester.wait(RUN_LIMIT);
    shm.assert_empty();
}

/// A reader that joins late, on a live run whose rings have long wrapped and on a finished one,
/// starts where it can read, counts nothing written before it as lost and finds no chain gaps.
#[test]
fn late_readers_start_where_they_can_and_lose_nothing() {
    let _serial = serial();
    let shm = Shm::new();
    let mut tester = shm.tester(
        "tester",
        &[
            "-d",
            "5",
            "--warmup-secs",
            "0",
            "--keep-shm",
            "--consumers",
            "0",
            "-e",
            "1",
        ],
    );
    let run_dir = shm.wait_for_run(&mut tester);
    std::thread::sleep(Duration::from_millis(2500));
    for (name, extra) in [("live", vec!["-d", "1"]), ("finished", vec![])] {
        if name == "finished" {
            tester.wait(RUN_LIMIT);
        }
        let json = shm.file(&format!("{name}.json"));
        let mut args = extra.clone();
        args.extend(["--json-output", json.to_str().unwrap()]);
        let mut reader = shm.reader(name, &run_dir, &args);
        let status = reader.wait(Duration::from_secs(20));
        let what = reader.describe();
        assert_eq!(status.code(), Some(0), "{what}");
        let v = read_json(&json);
        for stream in ["trades", "book"] {
            let i = &v["streams"][stream]["integrity"];
            assert_intact(i, &what);
            assert_eq!(u64_of(&i["lost"]), 0, "{name} {stream}: {i}\n{what}");
            assert!(u64_of(&i["received"]) > 0, "{name} {stream}: {i}");
        }
        for ring in v["rings"].as_array().unwrap() {
            assert!(u64_of(&ring["started_at"]) > 1, "{name}: {ring}");
        }
        assert!(
            reader.stdout().contains("before this reader attached"),
            "{what}"
        );
        if name == "finished" {
            assert_eq!(v["ended"], "writers closed", "{what}");
            assert_eq!(v["digests_compared"], true, "{what}");
        }
    }
    let (status, out) = shm.clean();
    assert_eq!(status.code(), Some(0), "{out}");
    shm.assert_empty();
}

/// The writer SIGKILLed under a standalone reader: the reader notices within a second or two,
/// reports "writer died" having accounted for every published record, and exits 0 (nothing
/// lost, no violation); `load-tester clean` then removes the dead run.
#[test]
fn standalone_reader_notices_the_writer_died() {
    let _serial = serial();
    let shm = Shm::new();
    let json = shm.file("reader.json");
    let mut tester = shm.tester(
        "tester",
        &[
            "-d",
            "30",
            "--consumers",
            "0",
            "--keep-shm",
            "-e",
            "1",
            "-t",
            "2000",
            "-o",
            "1000",
            "--ring-capacity",
            "65536",
        ],
    );
    let run_dir = shm.wait_for_run(&mut tester);
    let mut reader = shm.reader(
        "reader",
        &run_dir,
        &["--json-output", json.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        matches!(reader.child.try_wait(), Ok(None)),
        "the reader ended while its writer was alive\n{}",
        reader.describe()
    );
    signal(tester.pid(), libc::SIGKILL);
    let killed = Instant::now();
    tester.wait(Duration::from_secs(10));
    let status = reader.wait(Duration::from_secs(20));
    let took = killed.elapsed();
    let what = reader.describe();
    assert!(
        took < Duration::from_secs(5),
        "the reader took {took:?} to notice the writer died\n{what}"
    );
    assert_no_panic(&reader.stderr());
    assert_eq!(status.code(), Some(0), "{what}");
    let v = read_json(&json);
    assert_eq!(v["ended"], "writer died", "{what}");
    assert_eq!(v["digests_compared"], false, "{what}");
    let mut received = 0;
    for ring in v["rings"].as_array().expect("rings") {
        assert_eq!(ring["writer"], "dead", "{ring}");
        let i = &ring["integrity"];
        assert_eq!(u64_of(&i["lost"]), 0, "{ring}");
        assert_eq!(i["received"], i["published"], "{ring}");
        assert_intact(i, &what);
        received += u64_of(&i["received"]);
    }
    assert!(received > 1000, "received only {received}\n{what}");
    let stdout = reader.stdout();
    assert!(stdout.contains("READER RESULTS"), "{what}");
    assert!(stdout.contains("Ended: writer died"), "{what}");

    // The dead run is still there (the tester could not clean up); `clean` removes it.
    assert!(run_dir.exists());
    let (status, out) = shm.clean();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("removed: {}", run_dir.display())),
        "{out}"
    );
    shm.assert_empty();
}

/// Runs `load-tester read --run-dir dir` and checks it is refused: exit 2, exactly one
/// `error:` line, which names `file` and contains `problem`, and no panic.
fn assert_read_refused(shm: &Shm, dir: &Path, file: &Path, problem: &str) {
    let mut p = shm.reader("refused", dir, &[]);
    let status = p.wait(Duration::from_secs(20));
    let what = p.describe();
    assert_eq!(status.code(), Some(2), "{what}");
    let stderr = p.stderr();
    assert_no_panic(&stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected\n{what}");
    assert!(
        errors[0].contains(&file.display().to_string()),
        "the error must name {}\n{what}",
        file.display()
    );
    assert!(
        errors[0].contains(problem),
        "the error must say {problem:?}\n{what}"
    );
    assert!(!p.stdout().contains("READER RESULTS"), "{what}");
}

/// Directories that are not runs, and a ring of a newer format, are refused with a clear error.
#[test]
fn reader_refuses_what_is_not_a_run() {
    let _serial = serial();
    let shm = Shm::new();
    let scratch = shm.out.path();

    let empty = scratch.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_read_refused(&shm, &empty, &empty.join("manifest.json"), "no manifest");

    let missing = scratch.join("missing");
    assert_read_refused(
        &shm,
        &missing,
        &missing.join("manifest.json"),
        "no manifest",
    );

    let text = scratch.join("text");
    std::fs::create_dir(&text).unwrap();
    std::fs::write(text.join("manifest.json"), "this is not a manifest\n").unwrap();
    assert_read_refused(&shm, &text, &text.join("manifest.json"), "invalid manifest");

    let binary = scratch.join("binary");
    std::fs::create_dir(&binary).unwrap();
    let noise: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(binary.join("manifest.json"), noise).unwrap();
    assert_read_refused(&shm, &binary, &binary.join("manifest.json"), "manifest");

    let newer = scratch.join("newer-manifest");
    std::fs::create_dir(&newer).unwrap();
    std::fs::write(
        newer.join("manifest.json"),
        r#"{"version": 2, "run_id": "newer-manifest", "writer_pid": 1, "exchanges": [],
            "symbols": [], "rings": []}"#,
    )
    .unwrap();
    assert_read_refused(&shm, &newer, &newer.join("manifest.json"), "version 2");

    // A real run, kept, whose first ring claims format version 99 (bus-format §3.3: u32 at 8).
    let mut tester = shm.tester(
        "tester",
        &[
            "--consumers",
            "0",
            "--keep-shm",
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
        ],
    );
    tester.wait(RUN_LIMIT);
    let runs = shm.entries();
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", tester.describe());
    let run_dir = &runs[0];
    let ring = first_ring(run_dir);
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&ring).unwrap();
        f.seek(SeekFrom::Start(8)).unwrap();
        f.write_all(&99u32.to_le_bytes()).unwrap();
    }
    assert_read_refused(&shm, run_dir, &ring, "version 99");
    let (status, out) = shm.clean();
    assert_eq!(status.code(), Some(0), "{out}");
    shm.assert_empty();
}

/// A standalone reader started as soon as a live run's manifest appears receives every record
/// with a sane end-to-end latency and no violation, ends "writers closed" when the writer
/// closes, and compares its books with the writer's digests.
#[test]
fn standalone_reader_on_a_live_run() {
    let _serial = serial();
    let shm = Shm::new();
    let results = shm.file("results.json");
    let json = shm.file("reader.json");
    let mut tester = shm.tester(
        "tester",
        &[
            "--consumers",
            "0",
            "-d",
            "3",
            "--keep-shm",
            "-e",
            "2",
            "-t",
            "2000",
            "-o",
            "1000",
            "--json-output",
            results.to_str().unwrap(),
        ],
    );
    let run_dir = shm.wait_for_run(&mut tester);
    let mut reader = shm.reader(
        "reader",
        &run_dir,
        &["--json-output", json.to_str().unwrap()],
    );
    let status = tester.wait(RUN_LIMIT);
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "{}",
        tester.describe()
    );
    let status = reader.wait(Duration::from_secs(20));
    let what = reader.describe();
    assert_no_panic(&reader.stderr());
    assert_eq!(status.code(), Some(0), "{what}");
    let v = read_json(&json);
    let r = read_json(&results);
    assert_eq!(v["ended"], "writers closed", "{what}");
    assert_eq!(v["digests_compared"], true, "{what}");
    for stream in ["trades", "book"] {
        let d = &v["streams"][stream];
        let i = &d["integrity"];
        assert_intact(i, &what);
        assert_eq!(u64_of(&i["lost"]), 0, "{stream}: {i}");
        // The rings hold 4096 records or more, so nothing was overwritten before the reader
        // started: it received every record published, from sequence 1.
        assert_eq!(
            i["received"], i["published"],
            "{stream}: received vs published\n{what}"
        );
        let h = decode_histogram(d["e2e"].as_str().expect("e2e histogram")).unwrap();
        assert_eq!(
            h.len(),
            u64_of(&i["received"]),
            "{stream}: one latency per record"
        );
        let p50 = h.value_at_quantile(0.5);
        assert!(
            p50 > 0 && p50 < 100_000_000,
            "{stream}: end-to-end p50 {p50} ns is not sane\n{what}"
        );
        assert!(h.max() < 10_000_000_000, "{stream}: max {} ns", h.max());
    }
    // ... which is everything the tester wrote (warm-up included).
    let written = u64_of(&r["warmup"]["sent"]) + u64_of(&r["throughput"]["total"]["sent"]);
    let received: u64 = ["trades", "book"]
        .iter()
        .map(|s| u64_of(&v["streams"][*s]["integrity"]["received"]))
        .sum();
    assert_eq!(
        received, written,
        "received vs the tester's written\n{what}"
    );
    let checked = u64_of(&v["streams"]["book"]["integrity"]["digests_checked"]);
    assert_eq!(
        checked,
        2 * 10,
        "every book of 2 exchanges x 10 symbols\n{what}"
    );
    let stdout = reader.stdout();
    assert!(stdout.contains("READER RESULTS"), "{what}");
    assert!(stdout.contains("Ended: writers closed"), "{what}");
    let (status, out) = shm.clean();
    assert_eq!(status.code(), Some(0), "{out}");
    shm.assert_empty();
}

// ---------------------------------------------------------------------------------------------
// The Python reader

/// `python3`, or None (the caller prints SKIPPED).
fn python3() -> Option<PathBuf> {
    let ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| PathBuf::from("python3"))
}

fn py_reader_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(PY_READER)
}

/// Starts the Python reader with `args`.
fn run_python(shm: &Shm, name: &str, python: &Path, args: &[&OsArg]) -> Proc {
    let mut c = Command::new(python);
    c.arg(py_reader_path());
    for a in args {
        c.arg(a);
    }
    shm.spawn(name, c)
}

type OsArg = std::ffi::OsStr;

/// The words of the record with sequence `seq` in the ring file at `path`, read from the file.
fn record_words(path: &Path, seq: u64) -> Vec<u64> {
    let mut f = File::open(path).unwrap();
    let mut header = [0u8; 32];
    f.read_exact(&mut header).unwrap();
    let size = u64::from(u32::from_le_bytes(header[16..20].try_into().unwrap()));
    let capacity = u64::from_le_bytes(header[24..32].try_into().unwrap());
    let mut record = vec![0u8; size as usize];
    f.seek(SeekFrom::Start(4096 + (seq & (capacity - 1)) * size))
        .unwrap();
    f.read_exact(&mut record).unwrap();
    record
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

/// The Python reader computes the document's reference checksums, and answers `--help`.
#[test]
fn python_reader_self_test() {
    let python = python3();
    if !common::have_tool(
        "python_reader_self_test",
        python.is_some(),
        "python3 not found",
    ) {
        return;
    }
    let python = python.unwrap();
    let shm = Shm::new();
    let mut p = run_python(&shm, "self-test", &python, &[OsArg::new("--self-test")]);
    let status = p.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", p.describe());
    assert!(p.stdout().contains("\"passed\""), "{}", p.describe());
    let mut help = run_python(&shm, "help", &python, &[OsArg::new("--help")]);
    assert_eq!(
        help.wait(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        help.describe()
    );
    assert!(help.stdout().contains("RUN_DIR"), "{}", help.describe());
    let mut bad = run_python(&shm, "bad", &python, &[OsArg::new("--bogus")]);
    assert_eq!(
        bad.wait(Duration::from_secs(30)).code(),
        Some(2),
        "{}",
        bad.describe()
    );
}

/// The Python reader, attached to a live run as soon as its manifest appears, reads the same
/// records as the tester's reader and as `load-tester read`: per ring the same count, from
/// sequence 1 to the final write cursor, every checksum valid, nothing lost. A record corrupted
/// afterwards is then caught by both.
#[test]
fn python_reader_reads_the_same_records_as_the_rust_readers() {
    let python = python3();
    if !common::have_tool(
        "python_reader_reads_the_same_records_as_the_rust_readers",
        python.is_some(),
        "python3 not found",
    ) {
        return;
    }
    let python = python.unwrap();
    let _serial = serial();
    let shm = Shm::new();
    let results = shm.file("results.json");
    let mut tester = shm.tester(
        "tester",
        &[
            "--keep-shm",
            "--consumers",
            "1",
            "-d",
            "2",
            "-e",
            "2",
            "-t",
            "2000",
            "-o",
            "1000",
            "--ring-capacity",
            "65536",
            "--json-output",
            results.to_str().unwrap(),
        ],
    );
    let run_dir = shm.wait_for_run(&mut tester);
    let mut py = run_python(
        &shm,
        "python",
        &python,
        &[
            run_dir.as_os_str(),
            OsArg::new("--max-secs"),
            OsArg::new("40"),
        ],
    );
    let status = tester.wait(RUN_LIMIT);
    let tester_what = tester.describe();
    assert!(matches!(status.code(), Some(0 | 1 | 3)), "{tester_what}");
    let py_status = py.wait(Duration::from_secs(45));
    let what = py.describe();
    assert_eq!(py_status.code(), Some(0), "{what}");
    let p: Value = serde_json::from_str(&py.stdout()).expect("the Python reader prints JSON");
    assert_eq!(p["ended"], "writers closed", "{what}");

    // The Rust reader of the same kept run, afterwards: the rings still hold every record.
    let rust_json = shm.file("rust-reader.json");
    let mut rust = shm.reader(
        "rust",
        &run_dir,
        &["--json-output", rust_json.to_str().unwrap()],
    );
    let rust_status = rust.wait(Duration::from_secs(30));
    assert_eq!(rust_status.code(), Some(0), "{}", rust.describe());
    let rust = read_json(&rust_json);
    let r = read_json(&results);

    let manifest = read_json(&run_dir.join("manifest.json"));
    let rings = p["rings"].as_array().expect("rings");
    assert_eq!(
        rings.len(),
        manifest["rings"].as_array().unwrap().len(),
        "{what}"
    );
    let mut per_stream = std::collections::BTreeMap::<String, u64>::new();
    for ring in rings {
        let file = ring["file"].as_str().unwrap();
        let received = u64_of(&ring["received"]);
        assert!(received > 0, "{ring}");
        for zero in [
            "lost",
            "torn",
            "bad_checksums",
            "bad_fields",
            "out_of_order",
        ] {
            assert_eq!(u64_of(&ring[zero]), 0, "{file}: {zero}\n{what}");
        }
        assert_eq!(ring["accounted"], true, "{ring}");
        assert_eq!(ring["writer"], "closed", "{ring}");
        // Every record from sequence 1 to the final write cursor.
        assert_eq!(ring["first_sequence"], 1, "{ring}");
        assert_eq!(ring["first_record"]["sequence"], 1, "{ring}");
        assert_eq!(u64_of(&ring["last_sequence"]), received, "{ring}");
        assert_eq!(u64_of(&ring["write_cursor"]), received, "{ring}");
        assert_eq!(u64_of(&ring["last_record"]["sequence"]), received, "{ring}");
        // The Rust reader received exactly as many from the same ring.
        let rust_ring = rust["rings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["file"] == file)
            .unwrap_or_else(|| panic!("the Rust reader has no ring {file}"));
        assert_eq!(
            u64_of(&rust_ring["integrity"]["received"]),
            received,
            "{file}: Python vs Rust reader"
        );
        assert_eq!(u64_of(&rust_ring["integrity"]["lost"]), 0, "{rust_ring}");
        // The first and last records Python reports are the ones in the file.
        let path = run_dir.join(file);
        for which in ["first_record", "last_record"] {
            let seq = u64_of(&ring[which]["sequence"]);
            let words = record_words(&path, seq);
            assert_eq!(words[0], seq, "{file} {which}");
            assert_eq!(
                *words.last().unwrap(),
                u64_of(&ring[which]["checksum"]),
                "{file} {which}: checksum"
            );
        }
        *per_stream
            .entry(ring["stream"].as_str().unwrap().to_string())
            .or_default() += received;
    }
    // Per stream, what the tester wrote and what its own reader received.
    for stream in ["trades", "book"] {
        let written = u64_of(&r["delivery"]["written"][stream]);
        assert_eq!(per_stream[stream], written, "{stream}: Python vs written");
        assert_eq!(
            u64_of(&p["streams"][stream]["received"]),
            written,
            "{stream}"
        );
        let tester_reader = &r["delivery"]["streams"][stream];
        assert_eq!(
            u64_of(&tester_reader["received"]) + u64_of(&tester_reader["lost"]),
            written,
            "{stream}: {tester_reader}"
        );
    }

    // Corrupt one payload byte of sequence 5 of the first trades ring: the checksum catches it.
    let trades = rings.iter().find(|x| x["stream"] == "trades").unwrap()["file"]
        .as_str()
        .unwrap();
    let path = run_dir.join(trades);
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let at = 4096 + 5 * 64 + 24; // trade_id of sequence 5 (capacity 65536: slot 5)
        f.seek(SeekFrom::Start(at)).unwrap();
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[b[0] ^ 0x40]).unwrap();
    }
    let mut py = run_python(
        &shm,
        "python-corrupt",
        &python,
        &[
            run_dir.as_os_str(),
            OsArg::new("--max-secs"),
            OsArg::new("30"),
        ],
    );
    let status = py.wait(Duration::from_secs(45));
    let what = py.describe();
    assert_eq!(status.code(), Some(1), "{what}");
    let p: Value = serde_json::from_str(&py.stdout()).expect("JSON");
    for ring in p["rings"].as_array().unwrap() {
        let expected = u64::from(ring["file"] == trades);
        assert_eq!(u64_of(&ring["bad_checksums"]), expected, "{ring}");
    }
    let rust_json = shm.file("rust-corrupt.json");
    let mut rust = shm.reader(
        "rust-corrupt",
        &run_dir,
        &["--json-output", rust_json.to_str().unwrap()],
    );
    let status = rust.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", rust.describe());
    let rust = read_json(&rust_json);
    for ring in rust["rings"].as_array().unwrap() {
        let expected = u64::from(ring["file"] == trades);
        assert_eq!(u64_of(&ring["integrity"]["corrupted"]), expected, "{ring}");
    }

    // A directory that is not a run: a clear error, exit 2.
    let mut py = run_python(&shm, "python-bad", &python, &[shm.out.path().as_os_str()]);
    let status = py.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", py.describe());
    assert!(py.stderr().starts_with("error: "), "{}", py.describe());
    assert!(py.stderr().contains("no manifest"), "{}", py.describe());

    let (status, out) = shm.clean();
    assert_eq!(status.code(), Some(0), "{out}");
    shm.assert_empty();
}
