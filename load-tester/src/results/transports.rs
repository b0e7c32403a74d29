//! A comparison of transports: the same load run on each in turn, one row per run.

use serde::{Deserialize, Serialize};

use crate::results::verdict::Outcome;
use crate::results::Results;

/// Identifies a comparison document (`--transport a,b,... --json-output`).
pub const COMPARISON_KIND: &str = "alphapulse-transport-comparison";

/// One transport's figures, all from its run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportRow {
    /// `shm`, `udp` or `uds`.
    pub transport: String,
    /// End-to-end latency over the measured intervals, all readers: p50, p90, p99, p99.9 and
    /// max, ns (0 without readers).
    pub e2e_ns: [u64; 5],
    /// Write (service) time: p50 and p99, ns.
    pub write_ns: [u64; 2],
    /// Records written per second over the measured time, both streams.
    pub achieved_rate: f64,
    /// Of what was due, percent.
    pub achievement_pct: f64,
    /// Records the readers lost (summed over readers).
    pub lost: u64,
    /// Integrity violations the readers counted.
    pub violations: u64,
    /// The tester process's average CPU (the writer side), percent of one core.
    pub writer_cpu_pct: f64,
    /// The readers' average CPU, summed over readers, percent of one core.
    pub readers_cpu_pct: f64,
    /// The run's verdict.
    pub outcome: Outcome,
}

impl TransportRow {
    /// The row of `r`.
    pub fn of(r: &Results) -> Self {
        let e = r.delivery.as_ref().map(|d| &d.e2e.all);
        let (lost, violations, readers_cpu) = r.delivery.as_ref().map_or((0, 0, 0.0), |d| {
            (
                d.streams.values().map(|i| i.lost).sum(),
                d.streams.values().map(|i| i.violations()).sum(),
                d.per_reader.iter().map(|p| p.cpu_avg_pct).sum(),
            )
        });
        Self {
            transport: r.plan.transport.kind.name().into(),
            e2e_ns: e.map_or([0; 5], |e| [e.p50, e.p90, e.p99, e.p999, e.max]),
            write_ns: [r.latency.service.all.p50, r.latency.service.all.p99],
            achieved_rate: r.throughput.total.actual_rate,
            achievement_pct: r.throughput.total.achievement_pct,
            lost,
            violations,
            writer_cpu_pct: r.resources.cpu_avg_pct,
            readers_cpu_pct: readers_cpu,
            outcome: r.verdict.outcome,
        }
    }
}

/// The comparison document: a row per transport, and each run's complete results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransportComparison {
    /// [`COMPARISON_KIND`].
    pub kind: String,
    /// One row per transport, in the order they ran.
    pub rows: Vec<TransportRow>,
    /// Each run's results (the results schema), in the same order.
    pub runs: Vec<Results>,
}

impl TransportComparison {
    /// The comparison of `runs`.
    pub fn of(runs: Vec<Results>) -> Self {
        Self {
            kind: COMPARISON_KIND.into(),
            rows: runs.iter().map(TransportRow::of).collect(),
            runs,
        }
    }

    /// The worst outcome of the runs: invalid, then failed, then passed.
    pub fn worst(&self) -> Outcome {
        let rank = |o: Outcome| match o {
            Outcome::Invalid => 2,
            Outcome::Failed => 1,
            Outcome::Passed => 0,
        };
        self.rows
            .iter()
            .map(|r| r.outcome)
            .max_by_key(|&o| rank(o))
            .unwrap_or(Outcome::Passed)
    }
}
