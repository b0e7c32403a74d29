//! Carrying out a chaos plan: the faults a generator thread injects itself (a stall, a
//! corrupted record, a restarted writer, a network burst) and what it says it did; the engine
//! injects the faults on processes and the file system (see [`crate::run::engine`]).

use std::collections::BTreeMap;
use std::path::Path;

use alphapulse_bus::now_ns;

use crate::plan::chaos::{show_bytes, show_ns, ChaosPlan, Fault, FaultKind, FILL_ALL};
use crate::report::chaos::ChaosLog;
pub use crate::report::chaos::{Action, ActionKind};
use crate::report::timeline::{Timeline, SLICE_NS};
use crate::run::reader_wire::{Order, Position};
use crate::run::readers::ReaderChild;

/// The faults one generator thread injects itself, in time order, and where it is in them.
///
/// Invariant: `faults[next..]` are the ones not injected yet, ordered by `at_ns`; `due_ns`
/// is the absolute time of `faults[next]` (`u64::MAX` when none is left).
#[derive(Debug, Clone, Default)]
pub struct GeneratorFaults {
    /// The plan's faults a generator injects: stalls, corruptions, writer restarts, network
    /// bursts and spikes (of this thread's exchanges, where they name one).
    pub faults: Vec<Fault>,
    /// Index of the next one to inject.
    pub next: usize,
    /// When it is due, ns (absolute, `CLOCK_MONOTONIC`).
    pub due_ns: u64,
}

impl GeneratorFaults {
    /// The faults of `all` that a generator thread driving exchanges `exchanges` injects, for
    /// a run starting at `start_ns`.
    pub fn new(all: &[Fault], exchanges: &[u16], start_ns: u64) -> Self {
        let faults: Vec<Fault> = all
            .iter()
            .filter(|f| match f.kind {
                FaultKind::StallGenerator | FaultKind::NetLossBurst | FaultKind::NetDelaySpike => {
                    true
                }
                FaultKind::CorruptRecord | FaultKind::RestartWriter => {
                    f.exchange.is_some_and(|e| exchanges.contains(&e))
                }
                _ => false,
            })
            .cloned()
            .collect();
        let due_ns = faults.first().map_or(u64::MAX, |f| start_ns + f.at_ns);
        Self {
            faults,
            next: 0,
            due_ns,
        }
    }

    /// The fault due now, if `now` reached it; moves to the next.
    pub fn take_due(&mut self, now: u64, start_ns: u64) -> Option<Fault> {
        if now < self.due_ns {
            return None;
        }
        let f = self.faults.get(self.next).cloned();
        self.next += 1;
        self.due_ns = self
            .faults
            .get(self.next)
            .map_or(u64::MAX, |f| start_ns + f.at_ns);
        f
    }
}

/// The faults the engine injects itself (on reader processes and the file system), and what
/// it saw of all of them.
///
/// Invariants: `faults[next..]` are the engine's faults not injected yet, in time order;
/// `conts` and `fill` hold what is to be undone, with when (absolute ns).
pub struct EngineChaos {
    /// The run's start, ns (`CLOCK_MONOTONIC`).
    start_ns: u64,
    /// The engine's faults: kill-reader, stop-reader, slow-reader, fill-shm.
    faults: Vec<Fault>,
    /// Index of the next one to inject.
    next: usize,
    /// Stopped readers to continue: (when, reader, fault).
    conts: Vec<(u64, usize, usize)>,
    /// The fill in place: its file, when it goes, the fault.
    fill: Option<(std::path::PathBuf, u64, usize)>,
    /// Killed readers whose death is awaited: reader index to fault.
    killed: BTreeMap<usize, usize>,
    /// Readers started in place of killed ones that have not said ready: index to fault.
    restarting: BTreeMap<usize, usize>,
    /// Per reader, its positions as of its last report.
    pub positions: BTreeMap<usize, Vec<Position>>,
    /// Replace killed readers.
    pub restart_readers: bool,
    /// Everything observed.
    pub log: ChaosLog,
    /// Slices of the run, for refusing timelines that reach past it.
    slices: u64,
    /// Largest ring of the run, bytes: what a restart needs free.
    ring_bytes: u64,
}

/// Name of the file a fill-shm fault takes space with, in the run directory.
pub const FILL_NAME: &str = "chaos-fill";

impl EngineChaos {
    /// The engine's side of `plan` for a run starting at `start_ns` of `run_ns`, whose largest
    /// ring takes `ring_bytes`.
    pub fn new(plan: &ChaosPlan, start_ns: u64, run_ns: u64, ring_bytes: u64) -> Self {
        let faults = plan
            .faults
            .iter()
            .filter(|f| {
                matches!(
                    f.kind,
                    FaultKind::KillReader
                        | FaultKind::StopReader
                        | FaultKind::SlowReader
                        | FaultKind::FillShm
                )
            })
            .cloned()
            .collect();
        Self {
            start_ns,
            faults,
            next: 0,
            conts: Vec::new(),
            fill: None,
            killed: BTreeMap::new(),
            restarting: BTreeMap::new(),
            positions: BTreeMap::new(),
            restart_readers: plan.restart_readers,
            log: ChaosLog {
                plan: Some(plan.clone()),
                ..ChaosLog::default()
            },
            slices: run_ns.div_ceil(SLICE_NS) + 100,
            ring_bytes,
        }
    }

    /// When the engine next has something to do, ns (absolute; `u64::MAX`: nothing).
    pub fn next_due(&self) -> u64 {
        let f = self
            .faults
            .get(self.next)
            .map_or(u64::MAX, |f| self.start_ns + f.at_ns);
        let c = self.conts.iter().map(|c| c.0).min().unwrap_or(u64::MAX);
        let fill = self.fill.as_ref().map_or(u64::MAX, |f| f.1);
        f.min(c).min(fill)
    }

    fn say(&mut self, fault: usize, at: u64, what: ActionKind, by: &str, detail: String) {
        self.log.actions.push(Action {
            fault,
            at_ns: at.saturating_sub(self.start_ns),
            what,
            by: by.into(),
            detail,
        });
    }

    /// A generator thread's action.
    pub fn heard(&mut self, a: Action) {
        self.log.actions.push(a);
    }

    /// Merges a producer's timeline; a timeline that does not fit the run is dropped.
    pub fn timeline(&mut self, producer: &str, t: &Timeline) {
        let slices = self.slices;
        let h = self.log.histories.entry(producer.to_string()).or_default();
        if let Err(e) = h.add(t, slices) {
            tracing::warn!("{producer}: {e}; dropped");
        }
    }

    /// Injects and undoes what is due by `now` on `readers` and in `run_dir`. Returns the
    /// readers just killed.
    pub fn tick(&mut self, now: u64, readers: &mut [ReaderChild], run_dir: &Path) -> Vec<usize> {
        let mut killed = Vec::new();
        let conts: Vec<_> = self.conts.iter().copied().filter(|c| c.0 <= now).collect();
        self.conts.retain(|c| c.0 > now);
        for (_, r, fault) in conts {
            let result = readers[r].signal(rustix::process::Signal::CONT);
            let t = now_ns();
            match result {
                Ok(()) => self.say(
                    fault,
                    t,
                    ActionKind::Ended,
                    TESTER,
                    format!("continued reader {r} (SIGCONT)"),
                ),
                Err(e) => self.say(
                    fault,
                    t,
                    ActionKind::Trouble,
                    TESTER,
                    format!("cannot continue reader {r}: {e}"),
                ),
            }
        }
        if let Some((path, until, fault)) = self.fill.take() {
            if until <= now {
                let result = std::fs::remove_file(&path);
                let t = now_ns();
                match result {
                    Ok(()) => self.say(
                        fault,
                        t,
                        ActionKind::Ended,
                        TESTER,
                        format!("released the fill ({})", free_text(run_dir)),
                    ),
                    Err(e) => self.say(
                        fault,
                        t,
                        ActionKind::Trouble,
                        TESTER,
                        format!("cannot remove {}: {e}", path.display()),
                    ),
                }
            } else {
                self.fill = Some((path, until, fault));
            }
        }
        while let Some(f) = self
            .faults
            .get(self.next)
            .filter(|f| self.start_ns + f.at_ns <= now)
            .cloned()
        {
            self.next += 1;
            let r = f.reader.unwrap_or(0);
            match f.kind {
                FaultKind::KillReader | FaultKind::StopReader
                    if !readers.get(r).is_some_and(ReaderChild::running) =>
                {
                    self.say(
                        f.id,
                        now,
                        ActionKind::Trouble,
                        TESTER,
                        format!("reader {r} is not running"),
                    );
                }
                FaultKind::KillReader => {
                    let result = readers[r].signal(rustix::process::Signal::KILL);
                    let t = now_ns();
                    match result {
                        Ok(()) => {
                            self.say(
                                f.id,
                                t,
                                ActionKind::Injected,
                                TESTER,
                                format!("killed reader {r} (pid {}, SIGKILL)", readers[r].pid),
                            );
                            self.killed.insert(r, f.id);
                            killed.push(r);
                        }
                        Err(e) => self.say(
                            f.id,
                            t,
                            ActionKind::Trouble,
                            TESTER,
                            format!("cannot kill reader {r}: {e}"),
                        ),
                    }
                }
                FaultKind::StopReader => {
                    let result = readers[r].signal(rustix::process::Signal::STOP);
                    let t = now_ns();
                    match result {
                        Ok(()) => {
                            self.say(
                                f.id,
                                t,
                                ActionKind::Injected,
                                TESTER,
                                format!("stopped reader {r} (pid {}, SIGSTOP)", readers[r].pid),
                            );
                            self.conts.push((self.start_ns + f.end_ns(), r, f.id));
                        }
                        Err(e) => self.say(
                            f.id,
                            t,
                            ActionKind::Trouble,
                            TESTER,
                            format!("cannot stop reader {r}: {e}"),
                        ),
                    }
                }
                FaultKind::SlowReader => {
                    readers[r].order(&Order::Slow {
                        extra_ns: f.amount,
                        until_ns: self.start_ns + f.end_ns(),
                    });
                    self.say(
                        f.id,
                        now_ns(),
                        ActionKind::Injected,
                        TESTER,
                        format!(
                            "ordered reader {r} to spend {} more per record for {}",
                            show_ns(f.amount),
                            show_ns(f.duration_ns)
                        ),
                    );
                }
                FaultKind::FillShm => self.fill(&f, run_dir),
                _ => {}
            }
        }
        killed
    }

    /// Takes `f.amount` bytes (or all that is free) in `run_dir`'s file system, then looks,
    /// as a restarting writer would, whether a new ring would still fit.
    fn fill(&mut self, f: &Fault, run_dir: &Path) {
        use std::os::unix::fs::OpenOptionsExt;
        let path = run_dir.join(FILL_NAME);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                self.say(
                    f.id,
                    now_ns(),
                    ActionKind::Trouble,
                    TESTER,
                    format!("cannot create {}: {e}", path.display()),
                );
                return;
            }
        };
        let want = if f.amount == FILL_ALL {
            free_bytes(run_dir)
        } else {
            f.amount
        };
        // Whole chunks, halved on ENOSPC: a file system refuses an allocation it cannot take
        // entirely, and "all" is only known to within what others take meanwhile.
        let mut taken = 0u64;
        let mut chunk = want.clamp(1, 256 << 20);
        while taken < want && chunk >= 4096 {
            let len = chunk.min(want - taken);
            match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), taken, len) {
                Ok(()) => taken += len,
                Err(_) => chunk /= 2,
            }
        }
        let t = now_ns();
        self.fill = Some((path, self.start_ns + f.end_ns(), f.id));
        self.say(
            f.id,
            t,
            ActionKind::Injected,
            TESTER,
            format!(
                "took {} of the run's file system ({})",
                show_bytes(taken),
                free_text(run_dir)
            ),
        );
        let free = free_bytes(run_dir);
        if free < self.ring_bytes {
            self.say(
                f.id,
                now_ns(),
                ActionKind::Detected,
                TESTER,
                format!(
                    "the run's file system has {} free: a new ring of {} would not fit",
                    show_bytes(free),
                    show_bytes(self.ring_bytes)
                ),
            );
        }
    }

    /// Reader `r`'s stdout closed: a kill of it is detected. Returns the fault if it was one,
    /// and the reader should be replaced.
    pub fn reader_closed(&mut self, r: usize, how: &str) -> Option<usize> {
        let fault = self.killed.remove(&r)?;
        self.say(
            fault,
            now_ns(),
            ActionKind::Detected,
            TESTER,
            format!("reader {r}'s output closed: {how}"),
        );
        self.restart_readers.then_some(fault)
    }

    /// Reader `r` was started in place of a killed one for `fault`.
    pub fn restarting(&mut self, r: usize, fault: usize, pid: u32) {
        self.say(
            fault,
            now_ns(),
            ActionKind::Trouble,
            TESTER,
            format!(
                "started reader {r} again (pid {pid}), resuming where the killed one last reported"
            ),
        );
        // Not trouble: the start of the recovery. Recorded as an ended cause.
        if let Some(a) = self.log.actions.last_mut() {
            a.what = ActionKind::Ended;
        }
        self.restarting.insert(r, fault);
    }

    /// Reader `r` said it is ready: a replacement has attached.
    pub fn reader_ready(&mut self, r: usize) {
        if let Some(fault) = self.restarting.remove(&r) {
            self.say(
                fault,
                now_ns(),
                ActionKind::Restored,
                &format!("reader {r}"),
                "attached to every ring again".into(),
            );
        }
    }

    /// A replacement for `fault` could not be started.
    pub fn restart_failed(&mut self, r: usize, fault: usize, why: &str) {
        self.say(
            fault,
            now_ns(),
            ActionKind::Trouble,
            TESTER,
            format!("cannot start reader {r} again: {why}"),
        );
    }

    /// Undoes what is still in place (a fill, stopped readers) at the end of the run.
    pub fn finish(&mut self, readers: &mut [ReaderChild]) {
        for (_, r, _) in std::mem::take(&mut self.conts) {
            let _ = readers[r].signal(rustix::process::Signal::CONT);
        }
        if let Some((path, _, _)) = self.fill.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for EngineChaos {
    fn drop(&mut self) {
        // A run that ends early (an error, a second stop) still gives the space back.
        if let Some((path, _, _)) = self.fill.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Who the engine is in the chaos log.
pub const TESTER: &str = "tester";

fn free_bytes(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

fn free_text(dir: &Path) -> String {
    format!("{} free", show_bytes(free_bytes(dir)))
}
