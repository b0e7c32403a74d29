//! What a run knows only at its end, beside its interval reports: how each reader process
//! ended, what went wrong without stopping the run, and the facts of the run itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Integrity, ProcessUsage, Stream};
use crate::plan::segments::Split;
use crate::plan::{ClockSource, Plan};

/// One ring as a reader saw it at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingOutcome {
    /// Ring file name.
    pub file: String,
    /// Stream.
    pub stream: Stream,
    /// Its counts over the reader's whole life.
    pub integrity: Integrity,
    /// What the reader last knew of its writer: `alive`, `closed`, `stale`, `dead`, `replaced`.
    pub writer: String,
    /// The first sequence this reader read: the `started_at - 1` records before it were
    /// written before it attached (or overwritten before it could reach them) and are not its
    /// losses.
    #[serde(default)]
    pub started_at: u64,
}

/// What one reader measured of one stream over its whole life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDelivery {
    /// End-to-end latency, HdrHistogram V2 compressed, base64.
    pub e2e: String,
    /// Counts.
    pub integrity: Integrity,
}

/// Everything a reader counted over its whole life, as it reports at its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderEnd {
    /// Reader pid.
    pub pid: u32,
    /// Per stream.
    pub streams: BTreeMap<Stream, StreamDelivery>,
    /// Per ring.
    pub rings: Vec<RingOutcome>,
    /// Why it stopped: `writers closed`, `writer died`, `stopped`, `time limit`.
    pub ended: String,
    /// Whether the writer's final digests were found and compared.
    pub digests_compared: bool,
    /// Datagram feeds: datagrams that were not of this run's feed (garbage, another sender's
    /// session), counted and ignored.
    #[serde(default)]
    pub foreign_datagrams: u64,
    /// What this reader recorded, if it was asked to (`--record`, `load-tester record`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureOutcome>,
}

/// What a recording reader wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureOutcome {
    /// The capture file.
    pub path: String,
    /// Records written.
    pub records: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Records the reader lost (lapped by the writer) and so are not in the capture.
    pub lost: u64,
    /// Records left out because their time went back within their source.
    #[serde(default)]
    pub backwards: u64,
    /// Why the capture could not be finished, if it could not (the file then does not exist;
    /// its `.partial` is left for inspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReaderEnd {
    /// Counts of both streams.
    pub fn total(&self) -> Integrity {
        let mut t = Integrity::default();
        for s in self.streams.values() {
            t.add(&s.integrity);
        }
        t
    }
}

/// How one reader process of the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderProcessEnd {
    /// Its index among the run's readers.
    pub index: usize,
    /// Its pid.
    pub pid: u32,
    /// Its final report, if it sent one.
    pub outcome: Option<ReaderEnd>,
    /// How it died, if it did (it then sent no final report).
    pub died: Option<String>,
}

/// What the pacer of one thread ended up doing, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacingReport {
    /// The spin window at the end, ns (0 in sleep mode; the whole wait in spin mode).
    pub window_ns: u64,
    /// The 99th percentile of how late sleeps ended, last measured, ns (0 if it never slept).
    pub late_p99_ns: u64,
    /// Whether the window was calibrated (not fixed by `--spin-us`).
    pub calibrated: bool,
}

/// The facts of a run that are not measurements of an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    /// Wall-clock start of interval 0, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Where the run's transport lived (the bus's run directory).
    pub location: String,
    /// The clock the generator threads read.
    pub clock: ClockSource,
    /// Cost of one clock read, ns (measured at start).
    pub clock_cost_ns: f64,
    /// How each generator thread paced, by thread index.
    pub pacing: Vec<PacingReport>,
    /// CPU cores the tester process could run on.
    pub cores: usize,
    /// Whether the run was stopped before its planned end.
    pub interrupted: bool,
    /// Things that went wrong without stopping the run.
    pub warnings: Vec<String>,
    /// Every reader process.
    pub readers: Vec<ReaderProcessEnd>,
    /// Reader output lines that could not be understood.
    pub garbage_lines: u64,
    /// Why the run stopped itself before its planned end, if it did (a replayed capture
    /// turned bad): the results so far are kept, and the exit status says input error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The workers, when this is the end of a distributed run as its coordinator saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedEnd>,
    /// A chaos run: what was injected and seen (kept in this process; not sent anywhere).
    #[serde(skip)]
    pub chaos: Option<crate::report::chaos::ChaosLog>,
}

/// Why and when a worker was lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLoss {
    /// When, seconds from the start of interval 0 (negative: before the load started).
    pub at_secs: f64,
    /// What happened: its stream ended, it stayed silent, it sent what does not convert, ...
    pub reason: String,
}

/// How one worker of a distributed run took part, as its coordinator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEnd {
    /// Its index among the run's workers: the one it asked for when free, else the lowest free.
    pub index: usize,
    /// What it called itself: host and job index (or pid), unique in the run.
    pub identity: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Its tool version.
    pub tool_version: String,
    /// Its segment of the plan.
    pub segment: Plan,
    /// The coordinator's clock minus the worker's, ns, from the round with the shortest trip.
    pub clock_offset_ns: i64,
    /// That round's trip time, ns: the offset is good to half of it.
    pub round_trip_ns: u64,
    /// CPU cores it could run on.
    pub cores: u32,
    /// Where its transport lived (its bus run directory, on its host).
    pub location: String,
    /// Its own end of the run, when it finished and said so.
    pub end: Option<RunEnd>,
    /// Set when the worker was lost before it finished.
    pub lost: Option<WorkerLoss>,
}

/// The distributed part of a run's end, as its coordinator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedEnd {
    /// How the plan was split among the workers.
    pub split: Split,
    /// The largest clock offset the run accepted, ns.
    pub clock_offset_budget_ns: u64,
    /// Every worker that joined, by index.
    pub workers: Vec<WorkerEnd>,
    /// The coordinator process's own resource use from the start of the load to its end.
    pub coordinator: ProcessUsage,
}
