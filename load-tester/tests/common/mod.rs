//! What the binary-level tests share: a private base directory for run directories under
//! /dev/shm, so that a test can check what the tester leaves behind, the tester run against it,
//! and the checks every test makes of a child's output.
// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A new temporary directory under /dev/shm named `<prefix>...`, removed on drop, and the base
/// directory for run directories inside it (`<tmp>/alphapulse`), which does not exist until
/// the tester creates it.
pub fn shm_base(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/dev/shm")
        .expect("creating a temporary directory under /dev/shm");
    let base = root.path().join("alphapulse");
    (root, base)
}

/// What is in `base`, sorted (empty if it does not exist).
pub fn entries(base: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(base) {
        Ok(dir) => {
            let mut v: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
            v.sort();
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", base.display()),
    }
}

/// Fails the test if anything is left in `base`.
pub fn assert_empty(base: &Path) {
    let left = entries(base);
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        base.display()
    );
}

/// Runs that measure latency hold this exclusively and every other run of a test crate holds
/// it shared: on a 2-core machine a concurrent run (a max-rate search saturates both cores)
/// moves an end-to-end median by a millisecond, the size of the effects being measured.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A share of the machine, for a test whose assertions are counts, not latencies.
pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The whole machine, for a test whose assertions are latencies or times.
pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_load-tester");

/// Longest any child process may live before it is killed and the test fails.
pub const CHILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A private base directory for run directories (see [`shm_base`]), and the tester run against
/// it with a clean colour environment and a timeout.
pub struct Shm {
    /// The temporary directory under /dev/shm; removed on drop.
    pub root: tempfile::TempDir,
    /// `<root>/alphapulse`, the base directory the tester is pointed at.
    pub base: PathBuf,
}

impl Shm {
    /// A new base under /dev/shm, named after `prefix`.
    pub fn new(prefix: &str) -> Self {
        let (root, base) = shm_base(prefix);
        Self { root, base }
    }

    /// The tester with this base directory (`--shm-dir` is not added: see [`Self::run`]).
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(BIN);
        c.timeout(CHILD_TIMEOUT)
            .env("ALPHAPULSE_SHM_DIR", &self.base)
            // A panic would then print a backtrace, which `assert_no_panic` refuses.
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("RUST_LOG");
        c
    }

    /// `load-tester --shm-dir <base> <args>`, to the end.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd()
            .arg("--shm-dir")
            .arg(&self.base)
            .args(args)
            .output()
            .expect("running load-tester")
    }

    /// Fails the test if anything is left in the base directory.
    pub fn assert_empty(&self) {
        assert_empty(&self.base);
    }
}

/// The output of a child as text: status, stdout and stderr, for assertion messages.
pub fn describe(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails the test if `stderr` shows a panic or a backtrace.
pub fn assert_no_panic(stderr: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(bad), "{bad} in stderr:\n{stderr}");
    }
}

/// Whether the external `tool` a test needs is there. Outside CI a missing tool prints
/// `SKIPPED <test>: <why>` and the test passes; in CI (`CI=true`, where `.ci/run` installs every
/// tool) a missing tool fails the test.
pub fn have_tool(test: &str, found: bool, why: &str) -> bool {
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; CI=true, where .ci/run installs it, so this is a failure");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
    false
}

/// A results or reader JSON file, parsed; fails the test with the path when it cannot be.
pub fn read_json(path: &Path) -> serde_json::Value {
    let body =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The exit status a verdict outcome (`passed`, `failed`, `invalid`) maps to.
pub fn outcome_code(outcome: &str) -> i32 {
    match outcome {
        "passed" => 0,
        "failed" => 1,
        "invalid" => 3,
        other => panic!("unknown verdict outcome {other:?}"),
    }
}

/// The exit status the verdict of a results file maps to.
pub fn verdict_code(results: &serde_json::Value) -> i32 {
    outcome_code(
        results["verdict"]["outcome"]
            .as_str()
            .unwrap_or_else(|| panic!("no verdict.outcome: {}", results["verdict"])),
    )
}

/// What a child that ran to its end left: exit code, output, and how long it took.
pub struct Out {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: std::time::Duration,
}

/// Runs `cmd` to its end with stdin closed and `NO_COLOR` set; kills it and fails the test
/// when it takes longer than `limit`.
pub fn run_bounded(mut cmd: std::process::Command, limit: std::time::Duration) -> Out {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .env("NO_COLOR", "1")
        .spawn()
        .expect("spawning");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Out {
        code: status.code(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
        took: start.elapsed(),
    }
}
