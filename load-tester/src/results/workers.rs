//! The results of a distributed run: the merged results (built, like a standalone run's, from
//! the merged interval reports) completed with what only the workers' own results hold.
//!
//! - Throughput, latencies, errors, generator time and the time series' rates and latencies
//!   come from the merged reports: counters added, histograms added, nothing approximated.
//! - Delivery is the sum of the workers' deliveries: each reader reads its own worker's rings,
//!   and its accounting is checked against what that worker wrote.
//! - Resources are the busiest worker's, figure by figure (a target such as the CPU's holds
//!   for every worker's tester process when it holds for the highest), as the time series' CPU
//!   and memory are (from the merged reports, [`crate::results::series`]). Each worker's own
//!   figures are in `workers.workers[].results`.

use serde::{Deserialize, Serialize};

use crate::plan::segments::Split;
use crate::report::end::{RunEnd, WorkerLoss};
use crate::results::{Delivery, KindReport, LatencySummary, ReaderSummary, Resources, Results};

/// The distributed part of the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workers {
    /// How the plan was split: `exchanges` (whole exchanges per worker) or `rates` (shares of
    /// every exchange's rates).
    pub split: Split,
    /// The largest clock offset the run accepted, ns.
    pub clock_offset_budget_ns: u64,
    /// The coordinator's own CPU from the start of the load to its end, percent of one core.
    pub coordinator_cpu_pct: f64,
    /// The coordinator's resident memory at the end, MiB.
    pub coordinator_rss_mib: f64,
    /// Every worker that joined, by index.
    pub workers: Vec<WorkerSummary>,
}

/// One worker of a distributed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Its index: the one it asked for (`--worker-index`, `JOB_COMPLETION_INDEX`) when that
    /// was free, else the lowest free one.
    pub index: usize,
    /// What it called itself (host and job index, or pid).
    pub identity: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Its tool version.
    pub tool_version: String,
    /// The exchanges its segment ran, by id.
    pub exchanges: Vec<u16>,
    /// Its segment's target rate, messages per second.
    pub target_rate: u64,
    /// The coordinator's clock minus the worker's, ns.
    pub clock_offset_ns: i64,
    /// The round trip that offset was measured over, ns.
    pub round_trip_ns: u64,
    /// CPU cores it could run on.
    pub cores: u32,
    /// Where its transport lived on its host.
    pub location: String,
    /// Set when it was lost: when and why.
    pub lost: Option<WorkerLoss>,
    /// Its own results, from its own reports alone (empty when it reported nothing) and judged
    /// against the same targets; time series left out: the merged one is the run's.
    pub results: Option<Box<Results>>,
}

/// The share of `summaries`' histograms, added; `None` when none decodes.
fn add_latencies<'a>(summaries: impl Iterator<Item = &'a LatencySummary>) -> LatencySummary {
    let mut all = crate::report::histogram::new_histogram();
    for s in summaries {
        if let Ok(h) = s.decode() {
            let _ = all.add(&h);
        }
    }
    LatencySummary::of(&all)
}

fn combine_delivery(ds: &[&Delivery]) -> Delivery {
    let mut out = Delivery {
        readers: 0,
        dead: 0,
        loss_allowed: ds.iter().any(|d| d.loss_allowed),
        e2e: KindReport {
            trades: add_latencies(ds.iter().map(|d| &d.e2e.trades)),
            book: add_latencies(ds.iter().map(|d| &d.e2e.book)),
            all: add_latencies(ds.iter().map(|d| &d.e2e.all)),
        },
        written: Default::default(),
        impairment_lost: ds.iter().map(|d| d.impairment_lost).sum(),
        streams: Default::default(),
        per_reader: Vec::new(),
        garbage_lines: 0,
    };
    for d in ds {
        let offset = out.per_reader.len();
        out.readers += d.readers;
        out.dead += d.dead;
        out.garbage_lines += d.garbage_lines;
        for (s, n) in &d.written {
            *out.written.entry(*s).or_default() += n;
        }
        for (s, i) in &d.streams {
            out.streams.entry(*s).or_default().add(i);
        }
        out.per_reader
            .extend(d.per_reader.iter().map(|r| ReaderSummary {
                index: offset + r.index,
                ..r.clone()
            }));
    }
    out
}

/// Figure by figure, the highest of the workers'.
fn busiest(rs: &[&Resources]) -> Resources {
    let max = |f: fn(&Resources) -> f64| rs.iter().map(|r| f(r)).fold(0.0, f64::max);
    let max_u = |f: fn(&Resources) -> u64| rs.iter().map(|r| f(r)).max().unwrap_or(0);
    Resources {
        samples: rs.iter().map(|r| r.samples).max().unwrap_or(0),
        cpu_avg_pct: max(|r| r.cpu_avg_pct),
        cpu_peak_pct: max(|r| r.cpu_peak_pct),
        cpu_working_avg_pct: max(|r| r.cpu_working_avg_pct),
        cpu_working_peak_pct: max(|r| r.cpu_working_peak_pct),
        system_cpu_avg_pct: max(|r| r.system_cpu_avg_pct),
        rss_avg_mib: max(|r| r.rss_avg_mib),
        rss_peak_mib: max(|r| r.rss_peak_mib),
        rss_anon_peak_mib: max(|r| r.rss_anon_peak_mib),
        rss_shmem_peak_mib: max(|r| r.rss_shmem_peak_mib),
        minor_faults: max_u(|r| r.minor_faults),
        major_faults: max_u(|r| r.major_faults),
        voluntary_switches: max_u(|r| r.voluntary_switches),
        involuntary_switches: max_u(|r| r.involuntary_switches),
    }
}

/// Completes `merged` (the results of the merged reports, with the coordinator's `end`) with
/// the workers' own results, `own[i]` for worker `i` (see the module docs). The verdict is
/// left for [`crate::results::judge::judge`], which finds a lost worker in `workers`.
pub fn combine(mut merged: Results, end: &RunEnd, own: Vec<Option<Results>>) -> Results {
    let Some(d) = &end.distributed else {
        return merged;
    };
    let present: Vec<&Results> = own.iter().flatten().collect();
    merged.resources = busiest(&present.iter().map(|r| &r.resources).collect::<Vec<_>>());
    merged.generator.threads = d.workers.iter().map(|w| w.segment.threads).sum();
    if merged.plan.consumers > 0 {
        let ds: Vec<&Delivery> = present.iter().filter_map(|r| r.delivery.as_ref()).collect();
        merged.delivery = Some(combine_delivery(&ds));
    }
    let coordinator = &d.coordinator;
    let workers = d
        .workers
        .iter()
        .map(|w| {
            let results = own.get(w.index).cloned().flatten().map(|mut r| {
                r.series.clear();
                Box::new(r)
            });
            WorkerSummary {
                index: w.index,
                identity: w.identity.clone(),
                host: w.host.clone(),
                pid: w.pid,
                tool_version: w.tool_version.clone(),
                exchanges: w.segment.exchanges.iter().map(|e| e.id).collect(),
                target_rate: w.segment.total_target_rate(),
                clock_offset_ns: w.clock_offset_ns,
                round_trip_ns: w.round_trip_ns,
                cores: w.cores,
                location: w.location.clone(),
                lost: w.lost.clone(),
                results,
            }
        })
        .collect();
    merged.workers = Some(Workers {
        split: d.split,
        clock_offset_budget_ns: d.clock_offset_budget_ns,
        coordinator_cpu_pct: coordinator.cpu_pct(),
        coordinator_rss_mib: coordinator.rss_bytes as f64 / (1u64 << 20) as f64,
        workers,
    });
    merged
}
