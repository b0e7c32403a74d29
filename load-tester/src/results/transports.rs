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
    /// The highest rate this transport sustained, when the comparison searched for it
    /// (`--max-rate-secs`).
    #[serde(default)]
    pub max_rate: Option<MaxRate>,
}

/// The search for the highest rate a transport sustains: short runs of the same load scaled up
/// (and down), each judged by [`sustained`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxRate {
    /// Measured seconds of each probe (after a 1 s warm-up).
    pub probe_secs: u64,
    /// The achieved rate of the highest sustained probe, msgs/s (both streams); `None` when no
    /// probe was sustained.
    pub rate: Option<f64>,
    /// Whether the highest sustained probe was at the search's ceiling (the tester's own
    /// limit on rates): the transport may sustain more.
    pub at_ceiling: bool,
    /// Every probe, in the order run.
    pub probes: Vec<RateProbe>,
}

/// One probe of a [`MaxRate`] search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateProbe {
    /// The load offered, msgs/s (both streams).
    pub offered: f64,
    /// What was written, msgs/s.
    pub achieved: f64,
    /// Why it was not sustained; `None` when it was.
    pub failed: Option<String>,
}

/// Whether the run `r` sustained its load: `None` if so, else why not. Sustained means the
/// tester kept its schedule (not INVALID), at least [`SUSTAINED_PCT`] of what was due was
/// written, no write failed or was refused, and the readers lost nothing the impairment does
/// not explain, saw no violation and stayed alive. The run's other targets (CPU, latency) do not
/// count: a rate can be sustained at any cost.
pub fn sustained(r: &Results) -> Option<String> {
    if r.verdict.outcome == Outcome::Invalid {
        return Some(format!(
            "invalid: {}",
            r.verdict
                .invalid_reason
                .as_deref()
                .unwrap_or("the tester fell behind")
        ));
    }
    if r.throughput.total.achievement_pct < SUSTAINED_PCT {
        return Some(format!(
            "achievement {:.2}%",
            r.throughput.total.achievement_pct
        ));
    }
    let refused = r.errors.buffer_overflows + r.errors.write_failures;
    if refused > 0 {
        return Some(format!("{refused} write(s) refused or failed"));
    }
    for name in ["Readers Alive", "Records Lost", "Integrity Violations"] {
        if let Some(c) = r
            .verdict
            .checks
            .iter()
            .find(|c| c.name == name && !c.passed)
        {
            return Some(format!("{}: {} {}", c.name, c.measured, c.unit));
        }
    }
    None
}

/// Of what was due, the least share written for a probe to count as sustained, percent.
pub const SUSTAINED_PCT: f64 = 99.0;

/// Growth steps of a [`search_max_rate`]: the load times 4 each, at most this many times.
const GROW_STEPS: u32 = 6;
/// Shrink steps below the offered load: divided by 4 each, at most this many times.
const SHRINK_STEPS: u32 = 3;
/// Bisections between the highest sustained and the lowest failed load (each halves the
/// distance in log scale: 3 of them leave a step of 4^(1/8), 19%).
const BISECTIONS: u32 = 3;

/// Searches for the highest sustained multiple of the offered load `offered` (msgs/s), up to
/// `ceiling`: `probe(rate)` runs the load scaled to `rate` and returns its achieved rate and
/// [`sustained`]'s answer, or `None` to stop the search (the run could not be made, or was
/// interrupted). Grows by 4 from the offered load while sustained (or shrinks by 4 until
/// sustained), then bisects geometrically between the last sustained and the first failed.
pub fn search_max_rate(
    offered: f64,
    ceiling: f64,
    probe_secs: u64,
    mut probe: impl FnMut(f64) -> Option<(f64, Option<String>)>,
) -> MaxRate {
    let mut out = MaxRate {
        probe_secs,
        rate: None,
        at_ceiling: false,
        probes: Vec::new(),
    };
    // (offered, achieved) of the highest sustained probe; the lowest failed offered load.
    let mut best: Option<(f64, f64)> = None;
    let mut failed: Option<f64> = None;
    let mut run = |rate: f64, out: &mut MaxRate| -> Option<bool> {
        let (achieved, why) = probe(rate)?;
        let ok = why.is_none();
        out.probes.push(RateProbe {
            offered: rate,
            achieved,
            failed: why,
        });
        Some(ok)
    };
    let Some(first) = run(offered, &mut out) else {
        return out;
    };
    if first {
        best = Some((offered, out.probes[0].achieved));
        let mut rate = offered;
        for _ in 0..GROW_STEPS {
            if rate >= ceiling {
                out.at_ceiling = true;
                break;
            }
            rate = (rate * 4.0).min(ceiling);
            match run(rate, &mut out) {
                Some(true) => best = Some((rate, out.probes.last().expect("pushed").achieved)),
                Some(false) => {
                    failed = Some(rate);
                    break;
                }
                None => return finish(out, best),
            }
        }
    } else {
        failed = Some(offered);
        let mut rate = offered;
        for _ in 0..SHRINK_STEPS {
            rate /= 4.0;
            match run(rate, &mut out) {
                Some(true) => {
                    best = Some((rate, out.probes.last().expect("pushed").achieved));
                    break;
                }
                Some(false) => failed = Some(rate),
                None => return finish(out, best),
            }
        }
    }
    if let (Some(_), Some(_)) = (best, failed) {
        for _ in 0..BISECTIONS {
            let (lo, hi) = (best.expect("checked").0, failed.expect("checked"));
            let mid = (lo * hi).sqrt();
            match run(mid, &mut out) {
                Some(true) => best = Some((mid, out.probes.last().expect("pushed").achieved)),
                Some(false) => failed = Some(mid),
                None => break,
            }
        }
    }
    finish(out, best)
}

fn finish(mut out: MaxRate, best: Option<(f64, f64)>) -> MaxRate {
    out.rate = best.map(|b| b.1);
    out
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
            max_rate: None,
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

#[cfg(test)]
mod tests {
    use super::search_max_rate;

    /// A transport that sustains up to `limit` msgs/s.
    fn upto(limit: f64) -> impl FnMut(f64) -> Option<(f64, Option<String>)> {
        move |rate| {
            Some((
                rate.min(limit),
                (rate > limit).then(|| "behind".to_string()),
            ))
        }
    }

    #[test]
    fn the_search_brackets_the_limit_within_a_fifth() {
        for limit in [750.0, 12_345.0, 400_000.0, 3_000_000.0] {
            let m = search_max_rate(10_000.0, 50e6, 1, upto(limit));
            let found = m.rate.unwrap();
            assert!(found <= limit, "{limit}: {found}");
            assert!(
                found >= limit / 4f64.powf(1.0 / 8.0) - 1e-6,
                "{limit}: {found}"
            );
            assert!(!m.at_ceiling);
            // Every probe is recorded, the failed ones with their reason.
            assert!(m.probes.iter().any(|p| p.failed.is_some()));
            assert!(m.probes.len() <= 1 + 6 + 3, "{}", m.probes.len());
        }
    }

    #[test]
    fn a_transport_that_keeps_up_stops_at_the_ceiling() {
        let m = search_max_rate(10_000.0, 1e6, 1, upto(1e9));
        assert_eq!(m.rate, Some(1e6));
        assert!(m.at_ceiling);
    }

    #[test]
    fn nothing_sustained_gives_no_rate_and_a_stopped_search_keeps_what_it_found() {
        let m = search_max_rate(10_000.0, 1e6, 1, upto(1.0));
        assert_eq!(m.rate, None);
        let mut n = 0;
        let m = search_max_rate(10_000.0, 1e6, 1, |r| {
            n += 1;
            (n <= 2).then_some((r, None))
        });
        assert_eq!(m.rate, Some(40_000.0));
        assert_eq!(m.probes.len(), 2);
    }
}
