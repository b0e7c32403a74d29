//! Helpers shared by the bus's integration tests: per-test directories under /dev/shm,
//! deterministic records that a reader can verify, and child processes (the test binary itself,
//! re-executed with a role) with deadlines.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use alphapulse_bus::{checksum_of, BookUpdate, Level, Record, Trade, MAX_LEVELS};

/// Environment variable that tells a re-executed test binary which child role to play.
pub const ROLE_ENV: &str = "APBUS_TEST_ROLE";
/// Environment variable carrying the test's base directory to a child.
pub const BASE_ENV: &str = "APBUS_TEST_BASE";
/// Prefix of every line a child reports to its parent on stdout.
pub const LINE_PREFIX: &str = "APBUS ";

/// A unique directory for one test, `/dev/shm/apbus-test-<pid>-<name>`, removed on drop.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Path of the directory for `name`, not created: `RunDir::create` creates it 0700.
    pub fn new(name: &str) -> Self {
        let path = PathBuf::from(format!(
            "/dev/shm/apbus-test-{}-{}",
            std::process::id(),
            name
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self { path }
    }

    /// Like [`Self::new`], and creates the directory 0700.
    pub fn created(name: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = Self::new(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir.path)
            .expect("creating the test directory");
        dir
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A record whose every field is derived from its sequence and a tag, so that a reader can
/// check that what it got is exactly what the writer wrote for that sequence.
pub trait TestRecord: Record + PartialEq + std::fmt::Debug {
    /// The sealed record the writer writes as sequence `seq`.
    fn make(seq: u64, tag: u16) -> Self;

    /// Checks a record read back: its checksum, and every field against [`Self::make`].
    fn verify(&self, tag: u16) -> Result<(), String> {
        if checksum_of(self) != self.checksum() {
            return Err(format!(
                "sequence {}: checksum {:#x} stored, {:#x} computed",
                self.sequence(),
                self.checksum(),
                checksum_of(self)
            ));
        }
        let want = Self::make(self.sequence(), tag);
        if *self != want {
            return Err(format!(
                "sequence {}: got {self:?}, want {want:?}",
                self.sequence()
            ));
        }
        Ok(())
    }
}

impl TestRecord for Trade {
    fn make(seq: u64, tag: u16) -> Self {
        let mut t = Trade {
            sequence: seq,
            send_ts_ns: seq.wrapping_mul(1_000),
            exchange_id: tag,
            side: 1 + (seq % 2) as u8,
            reserved0: 0,
            symbol_id: (seq % 13) as u32,
            trade_id: seq,
            price: (seq as i64).wrapping_mul(3) + 100,
            size: seq as i64 + 1,
            book_version: !seq,
            checksum: 0,
        };
        t.seal();
        t
    }
}

impl TestRecord for BookUpdate {
    fn make(seq: u64, tag: u16) -> Self {
        let count = (seq % (MAX_LEVELS as u64 + 1)) as usize;
        let mut levels = [Level::default(); MAX_LEVELS];
        for (i, level) in levels.iter_mut().enumerate().take(count) {
            *level = Level {
                price: (seq as i64).wrapping_mul(100) + i as i64,
                size: i as i64 + 1,
                side: 1 + (i % 2) as u8,
                action: 1 + (i % 3) as u8,
                reserved: [0; 6],
            };
        }
        let mut u = BookUpdate {
            sequence: seq,
            send_ts_ns: seq.wrapping_mul(1_000),
            exchange_id: tag,
            level_count: count as u8,
            reserved0: 0,
            symbol_id: (seq % 7) as u32,
            version: seq,
            prev_version: seq - 1,
            levels,
            reserved1: [0; 2],
            checksum: 0,
        };
        u.seal();
        u
    }
}

/// The role this process plays, when it is a child re-executed by a test.
pub fn child_role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// The base directory a child was given.
pub fn child_base() -> PathBuf {
    PathBuf::from(std::env::var(BASE_ENV).expect("child without a base directory"))
}

/// Reports a line to the parent.
pub fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE_PREFIX}{line}");
    let _ = out.flush();
}

/// A child process: this test binary re-executed to run only `test_name`, with a role.
///
/// It is killed and reaped on drop, so a failing or timed-out test never leaves one behind.
pub struct Child {
    name: String,
    child: std::process::Child,
    lines: Receiver<String>,
    status: Option<ExitStatus>,
}

impl Child {
    pub fn spawn(test_name: &str, role: &str, base: &Path, extra_env: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("locating the test binary");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(BASE_ENV, base)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning a child test process");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: role.to_owned(),
            child,
            lines: rx,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the child reports a line starting with `word`, and returns the rest of it.
    /// Panics on a reported `ERROR`, on end of output, or at `deadline`.
    pub fn expect(&mut self, word: &str, deadline: Instant) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    // The test harness may have printed "test <name> ... " on the same line.
                    let Some(at) = line.find(LINE_PREFIX) else {
                        continue;
                    };
                    let msg = &line[at + LINE_PREFIX.len()..];
                    if let Some(err) = msg.strip_prefix("ERROR") {
                        panic!("child {} reported an error:{err}", self.name);
                    }
                    if let Some(rest) = msg.strip_prefix(word) {
                        return rest.trim().to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    panic!("child {} did not report {word:?} in time", self.name);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.kill();
                    panic!(
                        "child {} ended ({status}) before reporting {word:?}",
                        self.name
                    );
                }
            }
        }
    }

    /// Sends a line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{line}").expect("writing to a child");
        stdin.flush().expect("writing to a child");
    }

    /// Closes the child's stdin (it reads end of file).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Kills the child (SIGKILL) and reaps it, so that its pid no longer exists.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("reaping a child");
        self.status = Some(status);
        status
    }

    /// Waits for the child to exit by itself; kills it and panics at `deadline`.
    pub fn wait(&mut self, deadline: Instant) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for a child") {
                self.status = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("child {} did not exit in time", self.name);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// In a child: blocks until the parent closes stdin, kills us, or `limit` passes.
pub fn child_wait_for_parent(limit: Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
            line.clear();
        }
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(limit);
}

/// In a child: blocks until the parent sends a line; `None` on end of input or after `limit`.
pub fn child_read_line(limit: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let got = matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0);
        let _ = tx.send(got.then_some(line));
    });
    rx.recv_timeout(limit).ok().flatten()
}

/// Polls `f` until it returns `Some`, or panics with `what` at `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A manifest for run `run_id` listing trade rings `rings` of capacity 8 (exchange 0).
pub fn trades_manifest(run_id: &str, rings: &[&str]) -> alphapulse_bus::Manifest {
    alphapulse_bus::Manifest {
        version: alphapulse_bus::MANIFEST_VERSION,
        run_id: run_id.into(),
        writer_pid: std::process::id(),
        exchanges: vec!["x".into()],
        symbols: vec!["BTC-USD".into()],
        rings: rings
            .iter()
            .map(|file| alphapulse_bus::ManifestRing {
                file: (*file).into(),
                exchange_id: 0,
                stream: "trades".into(),
                record_type: alphapulse_bus::RecordType::Trade as u32,
                record_size: 64,
                capacity: 8,
                mode: alphapulse_bus::WriterMode::Overwrite,
            })
            .collect(),
    }
}
