//! Judging a chaos run's faults from what it observed: for each fault, when it was injected,
//! when and by whom it was detected, how long the stream took to be healthy again, and
//! exactly what it cost.
//!
//! "Healthy" is judged per 10 ms slice against the stream's own level before the fault: a
//! slice of a producer is healthy when its largest end-to-end latency (a reader) or lag (the
//! generator) is at most `max(4 x p99, p99 + 1 ms, max)` of its slices in the two seconds before
//! the fault (seconds no other fault's window covers), it lost nothing, it saw no integrity violation, no write failed, and a reader
//! that received records in most slices before received some. A fault is detected by the
//! first unhealthy slice after its injection (the reader or generator that had it), or by the
//! tester (a reader's death, a full file system), whichever comes first; it has recovered at
//! the start of the first 100 ms of healthy slices after its end. Its cost is what the
//! producers it acts on lost, saw corrupted and failed to write from its injection to the end
//! of those 100 ms.

use serde::{Deserialize, Serialize};

use crate::plan::chaos::{show_ns, Fault, FaultKind};
use crate::report::chaos::{Action, ActionKind, ChaosLog, GENERATOR};
use crate::report::timeline::{History, Slice, SLICE_NS};

/// Healthy slices in a row that make a recovery (100 ms).
pub const HOLD_SLICES: u64 = 10;
/// How long after a fault's end its detection is looked for, at the least, ns (the budget,
/// when longer).
pub const DETECT_NS: u64 = 1_000_000_000;
/// Slices before a fault its baseline is taken from (2 s).
pub const BASELINE_SLICES: u64 = 200;

/// How one fault went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultOutcome {
    /// Its id in the schedule.
    pub id: usize,
    /// Its kind.
    pub kind: FaultKind,
    /// The spec it came from.
    pub spec: String,
    /// What it did, in words.
    pub description: String,
    /// When it was scheduled, s after the start.
    pub scheduled_s: f64,
    /// When it took effect, s after the start (absent: it never did).
    pub injected_s: Option<f64>,
    /// When it was first noticed, s after the start.
    pub detected_s: Option<f64>,
    /// Who noticed it first: `reader 1`, `tester`, `generator`.
    pub detected_by: Option<String>,
    /// What they noticed.
    pub detection: Option<String>,
    /// When its cause ended (a continued reader, a replacement attached, a new epoch), s.
    pub ended_s: Option<f64>,
    /// When the stream was healthy again, s after the start.
    pub recovered_s: Option<f64>,
    /// From its end to the recovery, ms.
    pub recovery_ms: Option<f64>,
    /// The recovery budget, ms.
    pub budget_ms: f64,
    /// Records the producers it acts on counted lost, from its injection to its recovery.
    pub lost: u64,
    /// Integrity violations they counted (corrupted records, chain gaps, ...).
    pub violations: u64,
    /// Writes refused or failed.
    pub failed_writes: u64,
    /// Largest end-to-end latency of a record in that time, ns.
    pub max_e2e_ns: u64,
    /// The end-to-end level before the fault (p99 of the slices' maxima), ns.
    pub baseline_e2e_ns: u64,
    /// Largest generator lag in that time, ns.
    pub max_lag_ns: u64,
    /// Detected, recovered within its budget.
    pub passed: bool,
    /// Why it did not pass, or how it went.
    pub verdict: String,
    /// Everything the tester, the generators and the readers did or said about it, in time
    /// order.
    pub log: Vec<Action>,
}

/// A chaos run's faults, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosResults {
    /// The seed of random times and targets.
    pub seed: u64,
    /// Killed readers were started again.
    pub restart_readers: bool,
    /// Every fault, in schedule order.
    pub faults: Vec<FaultOutcome>,
    /// Records lost that the faults explain (summed over readers).
    pub explained_lost: u64,
    /// Integrity violations the faults explain.
    pub explained_violations: u64,
}

impl FaultOutcome {
    /// The name of its check in the verdict: `Fault 0 kill-reader@10s`.
    pub fn check_name(&self) -> String {
        format!("Fault {} {}", self.id, self.spec)
    }

    /// One line for a report: what happened, and why it did not pass.
    pub fn summary(&self) -> String {
        let at = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} s"));
        format!(
            "{}: injected {}, detected {} by {} ({}); {}; {} lost, {} integrity violations",
            self.description,
            at(self.injected_s),
            at(self.detected_s),
            self.detected_by.as_deref().unwrap_or("nobody"),
            self.detection.as_deref().unwrap_or("-"),
            self.verdict,
            self.lost,
            self.violations
        )
    }
}

/// Threshold above which a slice's maximum is unhealthy: well above the baseline's p99, and
/// above anything the baseline saw at all.
fn threshold(p99: u64, max: u64) -> u64 {
    (4 * p99).max(p99 + 1_000_000).max(max)
}

fn p99(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * 0.99).round() as usize]
}

/// One producer's level before a fault.
struct Baseline {
    /// Unhealthy above this, ns (end-to-end for a reader, lag for the generator).
    limit_ns: u64,
    /// The p99 it came from, ns.
    p99_ns: u64,
    /// A silent slice is unhealthy (it received in most slices before).
    steady: bool,
}

fn baseline(h: &History, slices: &[u64], generator: bool) -> Baseline {
    // Only what was shipped and seen live: a slice never reported, or one the reader did not
    // run through, is not silence.
    let slices: Vec<Slice> = slices
        .iter()
        .filter_map(|&i| h.known(i))
        .filter(|s| s.paused == 0)
        .collect();
    let maxima: Vec<u64> = slices
        .iter()
        .map(|s| {
            if generator {
                s.max_lag_ns
            } else {
                s.max_e2e_ns
            }
        })
        .collect();
    let worst = maxima.iter().copied().max().unwrap_or(0);
    let level = p99(maxima);
    let busy = slices
        .iter()
        .filter(|s| {
            if generator {
                s.attempts > 0
            } else {
                s.received > 0
            }
        })
        .count();
    Baseline {
        limit_ns: threshold(level, worst),
        p99_ns: level,
        steady: !slices.is_empty() && busy * 10 >= slices.len() * 9,
    }
}

/// Why slice `s` of a producer is unhealthy, if it is.
fn unhealthy(s: &Slice, b: &Baseline, generator: bool) -> Option<String> {
    if generator {
        if s.max_lag_ns > b.limit_ns {
            return Some(format!(
                "generator lag {} (before: {})",
                show_ns(s.max_lag_ns),
                show_ns(b.p99_ns)
            ));
        }
        if s.failed > 0 {
            return Some(format!("{} write(s) failed", s.failed));
        }
        return None;
    }
    if s.violations > 0 {
        return Some(format!("{} integrity violation(s)", s.violations));
    }
    if s.lost > 0 {
        return Some(format!("{} record(s) lost", s.lost));
    }
    if s.max_e2e_ns > b.limit_ns {
        return Some(format!(
            "end-to-end {} (before: {})",
            show_ns(s.max_e2e_ns),
            show_ns(b.p99_ns)
        ));
    }
    if b.steady && s.received == 0 {
        return Some("no record for 10 ms".into());
    }
    None
}

fn who(producer: &str) -> String {
    match producer.strip_prefix("reader.") {
        Some(i) => format!("reader {i}"),
        None => "generator".into(),
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Judges every fault of `log` for a run of `run_ns`.
pub fn judge(log: &ChaosLog, run_ns: u64) -> Option<ChaosResults> {
    let plan = log.plan.as_ref()?;
    let mut faults = Vec::new();
    for f in &plan.faults {
        faults.push(judge_fault(f, log, run_ns));
    }
    let explained_lost = faults.iter().map(|f| f.lost).sum();
    let explained_violations = faults.iter().map(|f| f.violations).sum();
    Some(ChaosResults {
        seed: plan.seed,
        restart_readers: plan.restart_readers,
        faults,
        explained_lost,
        explained_violations,
    })
}

fn judge_fault(f: &Fault, log: &ChaosLog, run_ns: u64) -> FaultOutcome {
    let mut actions: Vec<Action> = log
        .actions
        .iter()
        .filter(|a| a.fault == f.id)
        .cloned()
        .collect();
    actions.sort_by_key(|a| a.at_ns);
    let first = |what: ActionKind| actions.iter().find(|a| a.what == what);
    let mut out = FaultOutcome {
        id: f.id,
        kind: f.kind,
        spec: f.spec.clone(),
        description: f.describe(),
        scheduled_s: secs(f.at_ns),
        injected_s: None,
        detected_s: None,
        detected_by: None,
        detection: None,
        ended_s: None,
        recovered_s: None,
        recovery_ms: None,
        budget_ms: f.budget_ns as f64 / 1e6,
        lost: 0,
        violations: 0,
        failed_writes: 0,
        max_e2e_ns: 0,
        baseline_e2e_ns: 0,
        max_lag_ns: 0,
        passed: false,
        verdict: String::new(),
        log: actions.clone(),
    };
    let Some(injected) = first(ActionKind::Injected).map(|a| a.at_ns) else {
        out.verdict = match first(ActionKind::Trouble) {
            Some(a) => format!("never injected: {}", a.detail),
            None => "never injected".into(),
        };
        return out;
    };
    out.injected_s = Some(secs(injected));
    // When the cause was gone: a replacement attached, a writer's new epoch is live, a
    // stopped reader continued, a fill released; a time-bounded fault otherwise at its end.
    let ended = match f.kind {
        FaultKind::KillReader | FaultKind::RestartWriter => {
            first(ActionKind::Restored).map(|a| a.at_ns)
        }
        FaultKind::CorruptRecord => Some(injected),
        _ => Some(
            first(ActionKind::Ended)
                .map(|a| a.at_ns)
                .unwrap_or(injected + f.duration_ns),
        ),
    };
    out.ended_s = ended.map(secs);
    // The producers the fault acts on, and whose health says whether it recovered.
    let readers: Vec<&String> = log
        .histories
        .keys()
        .filter(|k| k.starts_with("reader."))
        .collect();
    let mut producers: Vec<&String> = match f.reader {
        Some(r) => readers
            .iter()
            .copied()
            .filter(|k| **k == format!("reader.{r}"))
            .collect(),
        None => readers.clone(),
    };
    let gen_key = GENERATOR.to_string();
    if matches!(f.kind, FaultKind::StallGenerator | FaultKind::RestartWriter)
        && log.histories.contains_key(GENERATOR)
    {
        producers.push(&gen_key);
    }
    let at = injected / SLICE_NS;
    // The level before the fault: the last BASELINE_SLICES slices before it that no other
    // fault's window covers (a stream recovering from the previous fault is not its level).
    let others: Vec<(u64, u64)> = log
        .plan
        .iter()
        .flat_map(|p| &p.faults)
        .filter(|o| o.id != f.id)
        .map(|o| (o.at_ns / SLICE_NS, o.deadline_ns().div_ceil(SLICE_NS)))
        .collect();
    let before: Vec<u64> = (0..at)
        .rev()
        .filter(|i| !others.iter().any(|&(a, b)| (a..b).contains(i)))
        .take(BASELINE_SLICES as usize)
        .collect();
    let last_slice = run_ns.div_ceil(SLICE_NS);
    let deadline = ((ended.unwrap_or(injected) + f.budget_ns) / SLICE_NS + 1).min(last_slice);
    // Detection is looked for at least DETECT_NS past the end, whatever the recovery budget: a
    // tight budget makes a slow recovery fail, not the fault go unseen.
    let detect_until =
        ((ended.unwrap_or(injected) + f.budget_ns.max(DETECT_NS)) / SLICE_NS + 1).min(last_slice);
    let empty = History::default();
    let bases: Vec<(&String, &History, Baseline, bool)> = producers
        .iter()
        .map(|p| {
            let h = log.histories.get(*p).unwrap_or(&empty);
            let generator = p.as_str() == GENERATOR;
            (*p, h, baseline(h, &before, generator), generator)
        })
        .collect();
    out.baseline_e2e_ns = bases
        .iter()
        .filter(|b| !b.3)
        .map(|b| b.2.p99_ns)
        .max()
        .unwrap_or(0);
    // Detection: the tester's, or the first unhealthy slice (or new epoch) after injection.
    let mut detected: Option<(u64, String, String)> =
        first(ActionKind::Detected).map(|a| (a.at_ns, a.by.clone(), a.detail.clone()));
    'find: for i in at..detect_until.max(at + 1) {
        // A slice tells at its end: what the tester saw by then came first.
        if detected.as_ref().is_some_and(|d| d.0 <= (i + 1) * SLICE_NS) {
            break;
        }
        for (p, h, b, generator) in &bases {
            // A slice never reported tells nothing, nor one the reader did not run through:
            // it learns of it when it runs again, in a later slice.
            let Some(s) = h.known(i).filter(|s| s.paused == 0) else {
                continue;
            };
            // A corrupted record is seen as one thing only: a reader's integrity check failing.
            let why = if f.kind == FaultKind::CorruptRecord {
                (s.violations > 0).then(|| format!("{} integrity violation(s)", s.violations))
            } else {
                unhealthy(&s, b, *generator).or_else(|| {
                    (s.epochs > 0).then(|| "followed its ring to a new epoch".to_string())
                })
            };
            if let Some(why) = why {
                detected = Some(((i + 1) * SLICE_NS, who(p), why));
                break 'find;
            }
        }
    }
    if let Some((t, by, what)) = &detected {
        out.detected_s = Some(secs(*t));
        out.detected_by = Some(by.clone());
        out.detection = Some(what.clone());
    }
    // Recovery: the first HOLD healthy slices in a row, for every producer, after the end.
    let mut recovered = None;
    if let Some(end) = ended {
        let mut run = 0;
        let mut start = end / SLICE_NS;
        for i in end / SLICE_NS..last_slice {
            // Healthy needs evidence: a slice never reported is not.
            let healthy = bases
                .iter()
                .all(|(_, h, b, g)| h.known(i).is_some_and(|s| unhealthy(&s, b, *g).is_none()));
            if healthy {
                if run == 0 {
                    start = i;
                }
                run += 1;
                if run >= HOLD_SLICES {
                    recovered = Some((start * SLICE_NS).max(end));
                    break;
                }
            } else {
                run = 0;
            }
        }
    }
    // The cost: everything the fault's producers counted from its injection to the end of the
    // healthy stretch that ended it (or of its window, if it never recovered).
    let cost_end = recovered.map_or(deadline, |r| r / SLICE_NS + HOLD_SLICES);
    for (_, h, _, generator) in &bases {
        for i in at..cost_end {
            let s = h.get(i);
            if *generator {
                out.failed_writes += s.failed;
                out.max_lag_ns = out.max_lag_ns.max(s.max_lag_ns);
            } else {
                out.lost += s.lost;
                out.violations += s.violations;
                out.max_e2e_ns = out.max_e2e_ns.max(s.max_e2e_ns);
            }
        }
    }
    if let (Some(r), Some(e)) = (recovered, ended) {
        out.recovered_s = Some(secs(r));
        out.recovery_ms = Some(r.saturating_sub(e) as f64 / 1e6);
    }
    out.verdict = match (&detected, ended, recovered) {
        (None, _, _) => "not detected: nothing the readers, generators or tester saw differed \
                         from before the fault"
            .into(),
        (_, None, _) if f.kind == FaultKind::KillReader => {
            "not recovered: no reader took the killed one's place (--restart-readers)".into()
        }
        (_, None, _) => match first(ActionKind::Trouble) {
            Some(a) => format!("not recovered: {}", a.detail),
            None => "not recovered: what it broke was never restored".into(),
        },
        (_, Some(_), None) => "not recovered: the stream was not healthy again before the run \
                               ended"
            .into(),
        (_, Some(e), Some(r)) if r - e > f.budget_ns => format!(
            "recovered in {}, over its budget of {}",
            show_ns(r - e),
            show_ns(f.budget_ns)
        ),
        (_, Some(e), Some(r)) => {
            out.passed = true;
            format!("recovered in {}", show_ns(r - e))
        }
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chaos::ChaosPlan;
    use crate::report::timeline::Timeline;

    fn steady(h: &mut History, from: u64, to: u64) {
        let mut t = Timeline::default();
        t.reset(from);
        for i in from..to {
            let s = t.at(i * SLICE_NS);
            s.received = 50;
            s.max_e2e_ns = 20_000;
        }
        h.add(&t, 10_000).unwrap();
    }

    fn fault(kind: FaultKind, at_ns: u64, duration_ns: u64) -> Fault {
        Fault {
            id: 0,
            kind,
            at_ns,
            duration_ns,
            amount: 0,
            reader: Some(0),
            exchange: None,
            budget_ns: 1_000_000_000,
            spec: "test".into(),
        }
    }

    fn log(f: Fault, h: History, actions: Vec<Action>) -> ChaosLog {
        ChaosLog {
            plan: Some(ChaosPlan {
                seed: 1,
                restart_readers: false,
                faults: vec![f],
            }),
            actions,
            histories: [("reader.0".to_string(), h)].into_iter().collect(),
        }
    }

    fn injected(at_ns: u64) -> Action {
        Action {
            fault: 0,
            at_ns,
            what: ActionKind::Injected,
            by: "tester".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn a_stop_is_detected_recovered_and_its_loss_counted() {
        let mut h = History::default();
        steady(&mut h, 0, 300);
        // Stopped from 3.0 s for 200 ms: slices it did not run through (it ships them once it
        // runs again), then a burst with high latency and 7 lost.
        let mut silent = Timeline::default();
        silent.reset(300);
        silent.slices.resize(
            20,
            Slice {
                paused: 1,
                ..Slice::default()
            },
        );
        h.add(&silent, 10_000).unwrap();
        steady(&mut h, 320, 600);
        let mut t = Timeline::default();
        t.reset(320);
        t.at(320 * SLICE_NS).max_e2e_ns = 200_000_000;
        t.at(320 * SLICE_NS).lost = 7;
        t.at(321 * SLICE_NS).max_e2e_ns = 150_000_000;
        h.add(&t, 10_000).unwrap();
        let f = fault(FaultKind::StopReader, 3_000_000_000, 200_000_000);
        let r = judge(&log(f, h, vec![injected(3_000_000_000)]), 6_000_000_000).unwrap();
        let o = &r.faults[0];
        assert!(o.passed, "{o:?}");
        // Noticed when it ran again: not while it was stopped.
        assert_eq!(o.detected_by.as_deref(), Some("reader 0"));
        assert_eq!(o.detected_s, Some(3.21));
        assert_eq!(o.lost, 7);
        assert_eq!(r.explained_lost, 7);
        // Healthy from slice 322 on; the cause ended at 3.2 s.
        assert_eq!(o.recovered_s, Some(3.22));
        assert!((o.recovery_ms.unwrap() - 20.0).abs() < 1e-6);
    }

    #[test]
    fn a_fault_nothing_noticed_fails() {
        let mut h = History::default();
        steady(&mut h, 0, 600);
        let f = fault(FaultKind::SlowReader, 3_000_000_000, 200_000_000);
        let r = judge(&log(f, h, vec![injected(3_000_000_000)]), 6_000_000_000).unwrap();
        assert!(!r.faults[0].passed);
        assert!(
            r.faults[0].verdict.contains("not detected"),
            "{:?}",
            r.faults[0]
        );
    }

    #[test]
    fn a_fault_never_injected_or_never_recovered_fails() {
        let mut h = History::default();
        steady(&mut h, 0, 600);
        let f = fault(FaultKind::KillReader, 3_000_000_000, 0);
        let r = judge(&log(f.clone(), h.clone(), vec![]), 6_000_000_000).unwrap();
        assert!(r.faults[0].verdict.contains("never injected"));
        let mut detected = injected(3_000_000_000);
        detected.what = ActionKind::Detected;
        let r = judge(
            &log(f, h, vec![injected(3_000_000_000), detected]),
            6_000_000_000,
        )
        .unwrap();
        assert!(
            r.faults[0].verdict.contains("--restart-readers"),
            "{:?}",
            r.faults[0]
        );
        assert!(!r.faults[0].passed);
    }
}
