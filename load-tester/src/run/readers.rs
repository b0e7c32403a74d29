//! The tester's side of its reader processes: starting them, hearing from them, watching them
//! die, and collecting what they counted.
//!
//! Each reader is this same binary run as `load-tester read --protocol`. It attaches to every
//! ring, says it is ready, waits for the `start` line on stdin, then reports every interval
//! and its end (the protocol is [`crate::run::reader_wire`]). Closing its stdin asks it to stop;
//! it also dies with its parent (`PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::report::end::ReaderEnd;
use crate::report::ProcessUsage;
use crate::run::reader_wire::{Start, ToTester, MAX_LINE_BYTES};
use crate::run::sampler::{self, ProcCounters};

/// What a reader's stdout said.
#[derive(Debug)]
pub enum ReaderLine {
    /// A message.
    Message(Box<ToTester>),
    /// A line that is not a message (counted, shown with -v).
    Garbage(String),
    /// End of its stdout: it exited or died, seen at `at_ns` (`CLOCK_MONOTONIC`, by the thread
    /// that reads it, however late the engine hears of it).
    Closed {
        /// When the end was read, ns.
        at_ns: u64,
    },
}

/// How to start the readers.
#[derive(Debug, Clone)]
pub struct ReaderSpec {
    /// How many.
    pub count: usize,
    /// Cores to pin reader i to (`pin_cores[i]`).
    pub pin_cores: Vec<usize>,
    /// Busy delay per record, ns.
    pub delay_ns: u64,
    /// Reader 0 also records every record it reads into this capture file.
    pub record: Option<std::path::PathBuf>,
    /// Readers ship a 10 ms timeline and their ring positions (a chaos run).
    pub timeline: bool,
}

/// One reader process as the tester sees it.
pub struct ReaderChild {
    /// Its index.
    pub index: usize,
    /// Its pid.
    pub pid: u32,
    /// The process; killed if still running and reaped on drop.
    child: Child,
    /// Its stdin pipe; `None` once `stop` closed it, which asks it to stop. Shared with its
    /// [`ReaderHandle`]s.
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    /// Its last 20 stderr lines at most, oldest first, appended by a thread of its own.
    stderr_tail: Arc<Mutex<Vec<String>>>,
    /// It said it is ready.
    pub ready: bool,
    /// Where it receives, for a datagram feed (from its ready message).
    pub listen: Option<String>,
    /// Its final report, once received.
    pub outcome: Option<ReaderEnd>,
    /// Set when its stdout closed without a final report: why, and when (ns after start).
    pub died: Option<String>,
    /// Its `/proc` counters at the last successful read (at spawn, then each sample); `None`
    /// until one succeeds.
    before: Option<ProcCounters>,
}

/// Starts `spec.count` readers of `run_dir`. Each stdout line arrives as `(index, line)` through
/// `send`, from a thread per reader.
pub fn spawn(
    spec: &ReaderSpec,
    run_dir: &Path,
    send: impl Fn(usize, ReaderLine) + Send + Clone + 'static,
) -> Result<Vec<ReaderChild>, String> {
    if spec.count == 0 {
        return Ok(Vec::new());
    }
    if std::env::var_os(READER_CHILD_ENV).is_some() {
        // A reader that runs the engine instead of reading was started from the wrong binary;
        // refusing here is what keeps that from starting readers of its own, and so on.
        return Err(format!(
            "this process was started as a reader (${READER_CHILD_ENV} is set) and must not start readers; set ${READER_EXE_ENV} to the load-tester binary"
        ));
    }
    (0..spec.count)
        .map(|index| spawn_one(spec, run_dir, index, &[], send.clone()))
        .collect()
}

/// Starts reader `index` of `spec` (see [`spawn`]); `resume` makes it resume where the reader
/// it replaces stopped ([`crate::run::consumer::ReadOptions::resume`]).
pub fn spawn_one(
    spec: &ReaderSpec,
    run_dir: &Path,
    index: usize,
    resume: &[crate::run::reader_wire::Position],
    send: impl Fn(usize, ReaderLine) + Send + Clone + 'static,
) -> Result<ReaderChild, String> {
    let exe = reader_exe()?;
    {
        let mut cmd = Command::new(&exe);
        cmd.arg("read")
            .arg("--protocol")
            .arg("--run-dir")
            .arg(run_dir)
            .arg("--delay-ns")
            .arg(spec.delay_ns.to_string());
        if let Some(core) = spec.pin_cores.get(index) {
            cmd.arg("--pin-core").arg(core.to_string());
        }
        if let (0, Some(path), true) = (index, &spec.record, resume.is_empty()) {
            cmd.arg("--record").arg(path);
        }
        if spec.timeline {
            cmd.arg("--timeline");
        }
        for p in resume {
            cmd.arg("--resume")
                .arg(format!("{}:{}:{}", p.file, p.epoch, p.next));
        }
        cmd.env(READER_CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start reader process {index}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        std::thread::Builder::new()
            .name(format!("reader-{index}-stderr"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    t.push(line);
                    if t.len() > 20 {
                        t.remove(0);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let send_line = send.clone();
        std::thread::Builder::new()
            .name(format!("reader-{index}-stdout"))
            .spawn(move || {
                let mut out = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match (&mut out)
                        .take(MAX_LINE_BYTES as u64 + 1)
                        .read_until(b'\n', &mut buf)
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf);
                    let msg = match ToTester::parse(line.trim_end()) {
                        Ok(m) => ReaderLine::Message(Box::new(m)),
                        Err(_) => ReaderLine::Garbage(line.chars().take(200).collect()),
                    };
                    send_line(index, msg);
                }
                send_line(
                    index,
                    ReaderLine::Closed {
                        at_ns: alphapulse_bus::now_ns(),
                    },
                );
            })
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        Ok(ReaderChild {
            index,
            pid,
            stdin: Arc::new(Mutex::new(child.stdin.take())),
            child,
            stderr_tail,
            ready: false,
            listen: None,
            outcome: None,
            died: None,
            before: sampler::read(&pid.to_string()),
        })
    }
}

/// Environment variable set in every reader process the tester starts.
pub const READER_CHILD_ENV: &str = "ALPHAPULSE_READER_CHILD";

/// Environment variable naming the `load-tester` binary to start readers with.
pub const READER_EXE_ENV: &str = "ALPHAPULSE_READER_EXE";

/// The `load-tester` binary that runs readers: `$ALPHAPULSE_READER_EXE`, else this program if it
/// is `load-tester`, else a `load-tester` next to it or one directory up (where Cargo puts it
/// for an example or a test of this crate), else this program (a renamed copy).
fn reader_exe() -> Result<std::path::PathBuf, String> {
    if let Some(exe) = std::env::var_os(READER_EXE_ENV) {
        return Ok(exe.into());
    }
    let me = std::env::current_exe()
        .map_err(|e| format!("cannot find this program to start readers: {e}"))?;
    if me
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("load-tester"))
    {
        return Ok(me);
    }
    // An example or a test of this crate: Cargo puts load-tester next to it or one level up.
    // Otherwise (a renamed copy of load-tester) this program itself.
    Ok(me
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("load-tester"))
        .find(|p| p.is_file())
        .unwrap_or(me))
}

impl ReaderChild {
    /// Tells the reader when interval 0 starts and how time is cut; it starts reading.
    pub fn start(&mut self, start: &Start) {
        self.handle().write_line(&start.line());
    }

    /// What another thread needs to act on this reader (a chaos injector).
    pub fn handle(&self) -> ReaderHandle {
        ReaderHandle {
            pid: self.pid,
            stdin: Arc::clone(&self.stdin),
        }
    }

    /// Asks the reader to stop (closes its stdin).
    pub fn stop(&mut self) {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The last lines it wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join(" | ")
    }

    /// Whether it is still expected to report.
    pub fn running(&self) -> bool {
        self.outcome.is_none() && self.died.is_none()
    }

    /// Records that its stdout closed; if no final report came, it died: says how.
    pub fn closed(&mut self, at_secs: f64) {
        if self.outcome.is_some() {
            return;
        }
        // Its stdout is closed, so it has exited or is about to: give the kernel a moment.
        let mut status = None;
        for _ in 0..50 {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let how = match status {
            Some(s) => describe(s),
            None => "closed its output".to_string(),
        };
        let tail = self.stderr_tail();
        self.died = Some(if tail.is_empty() {
            format!(
                "reader {} (pid {}) died after {at_secs:.1} s: {how}",
                self.index, self.pid
            )
        } else {
            format!(
                "reader {} (pid {}) died after {at_secs:.1} s: {how}: {tail}",
                self.index, self.pid
            )
        });
    }

    /// Its resource use since the last sample, if the process can still be read.
    pub fn sample(&mut self, ticks: u64) -> Option<ProcessUsage> {
        let now = sampler::read(&self.pid.to_string())?;
        let usage = self.before.as_ref().map(|b| sampler::usage(b, &now, ticks));
        self.before = Some(now);
        usage
    }

    /// Kills the process if it still runs, and reaps it.
    pub fn reap(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A reader as another thread acts on it: its pid and its stdin.
#[derive(Clone)]
pub struct ReaderHandle {
    /// Its pid.
    pub pid: u32,
    /// Its stdin pipe, shared with its [`ReaderChild`].
    stdin: Arc<Mutex<Option<ChildStdin>>>,
}

impl ReaderHandle {
    /// Sends the reader an order on its stdin.
    pub fn order(&self, order: &crate::run::reader_wire::Order) {
        self.write_line(&order.line());
    }

    fn write_line(&self, line: &str) {
        if let Some(stdin) = self
            .stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            let _ = stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush());
        }
    }

    /// Sends the process `signal`; `Err` says why it could not be sent.
    pub fn signal(&self, signal: rustix::process::Signal) -> Result<(), String> {
        let pid = rustix::process::Pid::from_raw(self.pid as i32)
            .ok_or_else(|| format!("pid {} is not a process", self.pid))?;
        rustix::process::kill_process(pid, signal).map_err(|e| e.to_string())
    }
}

impl Drop for ReaderChild {
    fn drop(&mut self) {
        self.reap();
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!(
            "killed by signal {sig}{}",
            match sig {
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                11 => " (SIGSEGV)",
                7 => " (SIGBUS)",
                6 => " (SIGABRT)",
                _ => "",
            }
        ),
        _ => "ended".to_string(),
    }
}
