//! Carrying out a chaos plan: the faults a generator thread injects itself (a stall, a
//! corrupted record, a restarted writer, a network burst) and what it says it did; the engine
//! injects the faults on processes and the file system (see [`crate::run::engine`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use alphapulse_bus::now_ns;

use crate::plan::chaos::{show_bytes, show_ns, ChaosPlan, Fault, FaultKind, FILL_ALL};
use crate::report::chaos::ChaosLog;
pub use crate::report::chaos::{Action, ActionKind};
use crate::report::timeline::{Timeline, SLICE_NS};
use crate::run::reader_wire::{Order, Position};
use crate::run::readers::ReaderHandle;

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

/// What the injector thread tells the engine.
#[derive(Debug)]
pub enum InjectorNote {
    /// Something it did.
    Action(Action),
    /// It is killing reader `reader` for fault `fault`: its death is the fault's detection.
    Killed {
        /// The reader's index.
        reader: usize,
        /// The fault.
        fault: usize,
    },
    /// The kill it announced could not be done: the reader lives on.
    NotKilled {
        /// The reader's index.
        reader: usize,
    },
}

/// The readers as the injector acts on them: index `i` is reader `i` (the engine puts a
/// replacement's handle in the dead one's place).
pub type Handles = Arc<Mutex<Vec<ReaderHandle>>>;

/// The faults a thread of its own injects on reader processes and the file system, at their
/// times: the engine's thread merges reports at the lowest priority and may run late by
/// seconds on a busy machine; this one sleeps at the priority the run started with.
///
/// Invariants: `faults` are in time order and `next` indexes the first not injected;
/// `conts` and `fill` hold what is to be undone, with when (absolute ns).
struct Injector {
    /// The run's start, ns (`CLOCK_MONOTONIC`).
    start_ns: u64,
    /// kill-reader, stop-reader, slow-reader and fill-shm faults.
    faults: Vec<Fault>,
    /// Index of the next one to inject.
    next: usize,
    /// Stopped readers to continue: (when, reader, fault).
    conts: Vec<(u64, usize, usize)>,
    /// The fill in place: its file, when it goes, the fault.
    fill: Option<(PathBuf, u64, usize)>,
    /// The run directory, where a fill's file goes.
    run_dir: PathBuf,
    /// Largest ring of the run, bytes: what a restart needs free.
    ring_bytes: u64,
    /// The readers.
    handles: Handles,
}

/// Name of the file a fill-shm fault takes space with, in the run directory.
pub const FILL_NAME: &str = "chaos-fill";

/// Who the engine and its injector are in the chaos log.
pub const TESTER: &str = "tester";

/// Starts the injector of `plan`'s reader and file-system faults for a run starting at
/// `start_ns`, whose largest ring takes `ring_bytes`; it tells `note` what it does, and ends
/// (undoing what is still in place: stopped readers continue, a fill is released) when `done`
/// is set or the run is over.
pub fn spawn_injector(
    plan: &ChaosPlan,
    start_ns: u64,
    run_dir: &Path,
    ring_bytes: u64,
    handles: Handles,
    done: Arc<AtomicBool>,
    note: impl Fn(InjectorNote) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut inj = Injector {
        start_ns,
        faults: plan
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
            .collect(),
        next: 0,
        conts: Vec::new(),
        fill: None,
        run_dir: run_dir.to_owned(),
        ring_bytes,
        handles,
    };
    std::thread::Builder::new()
        .name("chaos".into())
        .spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let now = now_ns();
                let due = inj.next_due();
                if due == u64::MAX && inj.conts.is_empty() && inj.fill.is_none() {
                    break;
                }
                if now < due {
                    // Short sleeps: the end of the run is seen within 10 ms.
                    std::thread::sleep(std::time::Duration::from_nanos(
                        (due - now).min(10_000_000),
                    ));
                    continue;
                }
                inj.tick(now, &note);
            }
            inj.undo(&note);
        })
}

impl Injector {
    /// When it next has something to do, ns (absolute; `u64::MAX`: nothing).
    fn next_due(&self) -> u64 {
        let f = self
            .faults
            .get(self.next)
            .map_or(u64::MAX, |f| self.start_ns + f.at_ns);
        let c = self.conts.iter().map(|c| c.0).min().unwrap_or(u64::MAX);
        let fill = self.fill.as_ref().map_or(u64::MAX, |f| f.1);
        f.min(c).min(fill)
    }

    fn say(&self, note: &dyn Fn(InjectorNote), fault: usize, what: ActionKind, detail: String) {
        note(InjectorNote::Action(Action {
            fault,
            at_ns: now_ns().saturating_sub(self.start_ns),
            what,
            by: TESTER.into(),
            detail,
        }));
    }

    fn handle(&self, r: usize) -> Option<ReaderHandle> {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(r)
            .cloned()
    }

    /// Injects and undoes what is due by `now`.
    fn tick(&mut self, now: u64, note: &dyn Fn(InjectorNote)) {
        let conts: Vec<_> = self.conts.iter().copied().filter(|c| c.0 <= now).collect();
        self.conts.retain(|c| c.0 > now);
        for (_, r, fault) in conts {
            let result = self
                .handle(r)
                .map(|h| h.signal(rustix::process::Signal::CONT));
            match result {
                Some(Ok(())) => self.say(
                    note,
                    fault,
                    ActionKind::Ended,
                    format!("continued reader {r} (SIGCONT)"),
                ),
                Some(Err(e)) => self.say(
                    note,
                    fault,
                    ActionKind::Trouble,
                    format!("cannot continue reader {r}: {e}"),
                ),
                None => {}
            }
        }
        if self.fill.as_ref().is_some_and(|f| f.1 <= now) {
            let (path, _, fault) = self.fill.take().expect("checked");
            match std::fs::remove_file(&path) {
                Ok(()) => self.say(
                    note,
                    fault,
                    ActionKind::Ended,
                    format!("released the fill ({})", free_text(&self.run_dir)),
                ),
                Err(e) => self.say(
                    note,
                    fault,
                    ActionKind::Trouble,
                    format!("cannot remove {}: {e}", path.display()),
                ),
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
            let handle = self.handle(r);
            match (f.kind, handle) {
                (FaultKind::FillShm, _) => self.fill(&f, note),
                (_, None) => self.say(
                    note,
                    f.id,
                    ActionKind::Trouble,
                    format!("reader {r} is not running"),
                ),
                (FaultKind::KillReader, Some(h)) => {
                    // Said before the signal: the engine must know the death is a fault's
                    // by the time it sees it.
                    note(InjectorNote::Killed {
                        reader: r,
                        fault: f.id,
                    });
                    let kill = (rustix::process::Signal::KILL, "SIGKILL");
                    if !self.signal(note, &f, r, &h, kill, "killed") {
                        note(InjectorNote::NotKilled { reader: r });
                    }
                }
                (FaultKind::StopReader, Some(h)) => {
                    let stop = (rustix::process::Signal::STOP, "SIGSTOP");
                    if self.signal(note, &f, r, &h, stop, "stopped") {
                        self.conts.push((self.start_ns + f.end_ns(), r, f.id));
                    }
                }
                (FaultKind::SlowReader, Some(h)) => {
                    h.order(&Order::Slow {
                        extra_ns: f.amount,
                        until_ns: self.start_ns + f.end_ns(),
                    });
                    self.say(
                        note,
                        f.id,
                        ActionKind::Injected,
                        format!(
                            "ordered reader {r} to spend {} more per record for {}",
                            show_ns(f.amount),
                            show_ns(f.duration_ns)
                        ),
                    );
                }
                _ => {}
            }
        }
    }

    /// Sends reader `r` `signal` (`name`) for fault `f` and says so (`done`: what it did,
    /// `killed`, `stopped`); whether it was sent.
    fn signal(
        &self,
        note: &dyn Fn(InjectorNote),
        f: &Fault,
        r: usize,
        h: &ReaderHandle,
        (signal, name): (rustix::process::Signal, &str),
        done: &str,
    ) -> bool {
        let (what, detail) = match h.signal(signal) {
            Ok(()) => (
                ActionKind::Injected,
                format!("{done} reader {r} (pid {}, {name})", h.pid),
            ),
            Err(e) => (
                ActionKind::Trouble,
                format!("cannot send reader {r} {name}: {e}"),
            ),
        };
        let sent = what == ActionKind::Injected;
        self.say(note, f.id, what, detail);
        sent
    }

    /// Takes `f.amount` bytes (or all that is free) in the run directory's file system, then
    /// looks, as a restarting writer would, whether a new ring would still fit.
    fn fill(&mut self, f: &Fault, note: &dyn Fn(InjectorNote)) {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.run_dir.join(FILL_NAME);
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
                    note,
                    f.id,
                    ActionKind::Trouble,
                    format!("cannot create {}: {e}", path.display()),
                );
                return;
            }
        };
        let want = if f.amount == FILL_ALL {
            free_bytes(&self.run_dir)
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
        self.fill = Some((path, self.start_ns + f.end_ns(), f.id));
        self.say(
            note,
            f.id,
            ActionKind::Injected,
            format!(
                "took {} of the run's file system ({})",
                show_bytes(taken),
                free_text(&self.run_dir)
            ),
        );
        let free = free_bytes(&self.run_dir);
        if free < self.ring_bytes {
            self.say(
                note,
                f.id,
                ActionKind::Detected,
                format!(
                    "the run's file system has {} free: a new ring of {} would not fit",
                    show_bytes(free),
                    show_bytes(self.ring_bytes)
                ),
            );
        }
    }

    /// Gives back what is still taken at the end: stopped readers continue, a fill goes.
    fn undo(&mut self, note: &dyn Fn(InjectorNote)) {
        for (_, r, fault) in std::mem::take(&mut self.conts) {
            if let Some(h) = self.handle(r) {
                let _ = h.signal(rustix::process::Signal::CONT);
                self.say(
                    note,
                    fault,
                    ActionKind::Ended,
                    format!("continued reader {r} (SIGCONT) as the run ended"),
                );
            }
        }
        if let Some((path, _, fault)) = self.fill.take() {
            let _ = std::fs::remove_file(path);
            self.say(
                note,
                fault,
                ActionKind::Ended,
                "released the fill as the run ended".into(),
            );
        }
    }
}

/// The engine's side of a chaos run: what it heard (actions, timelines, positions) and the
/// replacement of killed readers.
///
/// Invariants: `killed` holds the readers killed whose death has not been seen; `restarting`
/// those started in their place that have not said ready.
pub struct EngineChaos {
    /// The run's start, ns (`CLOCK_MONOTONIC`).
    start_ns: u64,
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
}

impl EngineChaos {
    /// The engine's side of `plan` for a run starting at `start_ns` of `run_ns`.
    pub fn new(plan: &ChaosPlan, start_ns: u64, run_ns: u64) -> Self {
        Self {
            start_ns,
            killed: BTreeMap::new(),
            restarting: BTreeMap::new(),
            positions: BTreeMap::new(),
            restart_readers: plan.restart_readers,
            log: ChaosLog {
                plan: Some(plan.clone()),
                ..ChaosLog::default()
            },
            slices: run_ns.div_ceil(SLICE_NS) + 100,
        }
    }

    fn say(&mut self, fault: usize, what: ActionKind, by: &str, detail: String) {
        self.say_at(now_ns(), fault, what, by, detail);
    }

    fn say_at(&mut self, at: u64, fault: usize, what: ActionKind, by: &str, detail: String) {
        self.log.actions.push(Action {
            fault,
            at_ns: at.saturating_sub(self.start_ns),
            what,
            by: by.into(),
            detail,
        });
    }

    /// An action of a generator thread or of the injector.
    pub fn heard(&mut self, a: Action) {
        self.log.actions.push(a);
    }

    /// The injector killed reader `r` for `fault`.
    pub fn killed(&mut self, r: usize, fault: usize) {
        self.killed.insert(r, fault);
    }

    /// The kill of reader `r` failed: its death is no longer awaited.
    pub fn not_killed(&mut self, r: usize) {
        self.killed.remove(&r);
    }

    /// Whether reader `r` was killed and is to be replaced once its death is seen.
    pub fn replaces(&self, r: usize) -> bool {
        self.restart_readers && self.killed.contains_key(&r)
    }

    /// Merges a producer's timeline; a timeline that does not fit the run is dropped.
    pub fn timeline(&mut self, producer: &str, t: &Timeline) {
        let slices = self.slices;
        let h = self.log.histories.entry(producer.to_string()).or_default();
        if let Err(e) = h.add(t, slices) {
            tracing::warn!("{producer}: {e}; dropped");
        }
    }

    /// Reader `r`'s stdout closed at `at_ns`: a kill of it is detected. Returns the fault if it
    /// was one and the reader is to be replaced.
    pub fn reader_closed(&mut self, r: usize, how: &str, at_ns: u64) -> Option<usize> {
        let fault = self.killed.remove(&r)?;
        self.say_at(
            at_ns,
            fault,
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
            ActionKind::Ended,
            TESTER,
            format!(
                "started reader {r} again (pid {pid}), resuming where the killed one last reported"
            ),
        );
        self.restarting.insert(r, fault);
    }

    /// Reader `r` said it is ready: a replacement has attached.
    pub fn reader_ready(&mut self, r: usize) {
        if let Some(fault) = self.restarting.remove(&r) {
            self.say(
                fault,
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
            ActionKind::Trouble,
            TESTER,
            format!("cannot start reader {r} again: {why}"),
        );
    }
}

fn free_bytes(dir: &Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

fn free_text(dir: &Path) -> String {
    format!("{} free", show_bytes(free_bytes(dir)))
}
