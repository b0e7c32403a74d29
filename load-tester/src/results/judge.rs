//! Judges results against targets: PASSED, FAILED, or INVALID when the tester itself could not
//! keep the schedule (so a saturated generator never passes for a slow system, nor the reverse).

use crate::results::targets::Targets;
use crate::results::verdict::{Check, Outcome, Verdict};
use crate::results::Results;

fn at_most(name: &str, measured: f64, max: f64, unit: &str) -> Check {
    Check {
        name: name.into(),
        target: format!("< {max}"),
        measured,
        unit: unit.into(),
        passed: measured < max,
    }
}

fn at_least(name: &str, measured: f64, min: f64, unit: &str) -> Check {
    Check {
        name: name.into(),
        target: format!(">= {min}"),
        measured,
        unit: unit.into(),
        passed: measured >= min,
    }
}

/// Judges `results` against `targets`.
///
/// The run is invalid when nothing was measured, or when the generator fell behind (lag P99
/// above the budget, or more than 1% of the due messages never sent) while spending less than
/// half of its time inside writes: then the tester, not the bus, was the bottleneck. When the
/// writes themselves took the time, the bus is slow and the run fails on its targets instead.
pub fn judge(results: &Results, targets: &Targets) -> Verdict {
    let r = results;
    let service = &r.latency.service.all;
    let checks = vec![
        at_least(
            "Throughput",
            r.throughput.total.actual_rate,
            targets.min_throughput,
            "msgs/s",
        ),
        at_least(
            "Achievement",
            r.throughput.total.achievement_pct,
            targets.min_achievement_pct,
            "%",
        ),
        at_most(
            "Write Latency P50",
            service.p50 as f64,
            targets.write_p50_ns as f64,
            "ns",
        ),
        at_most(
            "Write Latency P99",
            service.p99 as f64,
            targets.write_p99_ns as f64,
            "ns",
        ),
        at_most(
            "Write Latency P99.9",
            service.p999 as f64,
            targets.write_p999_ns as f64,
            "ns",
        ),
        at_most(
            "CPU Usage (avg working, % of one core)",
            r.resources.cpu_working_avg_pct,
            targets.max_cpu_pct,
            "%",
        ),
        at_most(
            "Memory Usage (peak RSS)",
            r.resources.rss_peak_mib,
            targets.max_memory_mib,
            "MiB",
        ),
        at_most(
            "Error Rate",
            r.errors.error_rate_pct,
            targets.max_error_rate_pct.max(f64::MIN_POSITIVE),
            "%",
        ),
    ];
    let mut checks = checks;
    if let Some(d) = &r.delivery {
        let total = d.total();
        checks.push(Check {
            name: "Readers Alive".into(),
            target: format!(">= {}", d.readers),
            measured: (d.readers - d.dead) as f64,
            unit: "readers".into(),
            passed: d.dead == 0,
        });
        // An impaired feed drops records on purpose: each reader must count exactly those; so
        // must it what the faults of a chaos run cost, and nothing more.
        // A loss burst's drops are the impairment's too (counted dropped by the sender): they
        // are explained once.
        let chaos_lost: u64 = r
            .chaos
            .iter()
            .flat_map(|c| &c.faults)
            .filter(|f| f.kind != crate::plan::chaos::FaultKind::NetLossBurst)
            .map(|f| f.lost)
            .sum();
        let chaos_violations = r.chaos.as_ref().map_or(0, |c| c.explained_violations);
        let explained = d.impairment_lost + chaos_lost;
        checks.push(Check {
            name: if d.loss_allowed {
                "Records Lost (allowed)".into()
            } else if chaos_lost > 0 {
                "Records Lost (= what the faults cost)".into()
            } else if explained > 0 {
                "Records Lost (= dropped by --net-loss, per reader)".into()
            } else {
                "Records Lost".into()
            },
            target: if d.loss_allowed {
                "any".into()
            } else {
                format!("= {explained}")
            },
            measured: total.lost as f64,
            unit: "records".into(),
            passed: d.loss_allowed || total.lost == explained,
        });
        checks.push(Check {
            name: if chaos_violations > 0 {
                "Integrity Violations (= what the faults cost)".into()
            } else {
                "Integrity Violations".into()
            },
            target: format!("= {chaos_violations}"),
            measured: total.violations() as f64,
            unit: "records".into(),
            passed: total.violations() == chaos_violations,
        });
    }
    for f in r.chaos.iter().flat_map(|c| &c.faults) {
        checks.push(Check {
            name: f.check_name(),
            target: format!("detected, recovered <= {}", f.budget_ms),
            measured: f.recovery_ms.unwrap_or(-1.0),
            unit: "ms".into(),
            passed: f.passed,
        });
    }
    if let Some(d) = &r.degradation {
        // Judged only over a span long enough for a slope to mean growth.
        if let (Some(max), Some(slope)) = (
            targets.max_rss_growth_mib_per_hour,
            d.rss_slope_mib_per_hour,
        ) {
            checks.push(at_most("Memory Growth (RSS slope)", slope, max, "MiB/h"));
        }
        if let Some(max) = targets.max_p99_degradation_pct {
            let change = if d.service_p99_first_ns > 0 {
                100.0 * (d.service_p99_last_ns as f64 - d.service_p99_first_ns as f64)
                    / d.service_p99_first_ns as f64
            } else {
                0.0
            };
            checks.push(at_most(
                "Write P99 Degradation (last vs first tenth)",
                change,
                max,
                "%",
            ));
        }
        if let Some(max) = targets.max_throughput_degradation_pct {
            let drop = if d.rate_first > 0.0 {
                100.0 * (d.rate_first - d.rate_last) / d.rate_first
            } else {
                0.0
            };
            checks.push(at_most(
                "Throughput Degradation (last vs first tenth)",
                drop,
                max,
                "%",
            ));
        }
    }
    let invalid_reason = invalid_reason(r);
    let outcome = if invalid_reason.is_some() {
        Outcome::Invalid
    } else if checks.iter().all(|c| c.passed) {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    Verdict {
        outcome,
        checks,
        invalid_reason,
    }
}

fn invalid_reason(r: &Results) -> Option<String> {
    if let Some(lost) = lost_workers(r) {
        return Some(lost);
    }
    let attempts = r.errors.attempts;
    if attempts == 0 || r.measured_secs <= 0.0 {
        return Some("nothing was measured (the run ended before the warm-up was over)".into());
    }
    let g = &r.generator;
    let lag_p99 = g.lag_p99_outside_stalls_ns.unwrap_or(r.latency.lag.all.p99);
    let due = attempts + g.backlog;
    let backlog_pct = 100.0 * g.backlog as f64 / due as f64;
    let behind = lag_p99 > g.lag_budget_ns || backlog_pct > 1.0;
    if !behind || g.write_pct >= 50.0 {
        return None;
    }
    Some(format!(
        "the generator fell behind its schedule (lag P99{} {} against a budget of {}, {backlog_pct:.2}% \
         of due messages unsent) while spending only {:.0}% of its time in writes: the tester, not \
         the bus, was the bottleneck. {} {}",
        if g.lag_p99_outside_stalls_ns.is_some() {
            " outside the stall-generator faults"
        } else {
            ""
        },
        human(lag_p99),
        human(g.lag_budget_ns),
        g.write_pct,
        who_used_the_cpu(r),
        advice(r)
    ))
}

/// A distributed run that lost a worker measured only part of its load after that: which
/// worker, when and why.
fn lost_workers(r: &Results) -> Option<String> {
    let w = r.workers.as_ref()?;
    let lost: Vec<String> = w
        .workers
        .iter()
        .filter_map(|w| {
            w.lost.as_ref().map(|l| {
                format!(
                    "worker {} ({}) was lost {:.1} s into the run: {}",
                    w.index, w.identity, l.at_secs, l.reason
                )
            })
        })
        .collect();
    (!lost.is_empty()).then(|| {
        format!(
            "{}. The other workers were stopped; the results cover what was measured up to \
             then, and do not show the load the plan asked for.",
            lost.join("; ")
        )
    })
}

/// Nanoseconds in the unit that reads best (the judge cannot use the output layer's helper).
fn human(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// Which of the tester's own processes used how much CPU, and what else used the machine.
fn who_used_the_cpu(r: &Results) -> String {
    let res = &r.resources;
    if let Some(w) = &r.workers {
        // The busiest worker's figures, one host's: the machine-wide share cannot be told here.
        return format!(
            "CPU over the measured time, the busiest of {} workers: tester process {:.0}% of a \
             core ({:.0}% working, the rest spinning for send times), its host {:.0}% busy.",
            w.workers.len(),
            res.cpu_avg_pct,
            res.cpu_working_avg_pct,
            res.system_cpu_avg_pct
        );
    }
    let mut ours = res.cpu_avg_pct;
    let mut parts = vec![format!(
        "tester process {:.0}% of a core ({:.0}% working, the rest spinning for send times)",
        res.cpu_avg_pct, res.cpu_working_avg_pct
    )];
    if let Some(d) = &r.delivery {
        for reader in &d.per_reader {
            ours += reader.cpu_avg_pct;
            parts.push(format!(
                "reader {} {:.0}%",
                reader.index, reader.cpu_avg_pct
            ));
        }
    }
    let cores = r.generator.cores.max(1);
    let machine = res.system_cpu_avg_pct * cores as f64;
    let others = (machine - ours).max(0.0);
    format!(
        "CPU over the measured time, of {cores} core{}: {}; everything else on the machine {:.0}% \
         of a core.",
        if cores == 1 { "" } else { "s" },
        parts.join(", "),
        others
    )
}

/// What could make the next run valid, given how this one was set up.
fn advice(r: &Results) -> String {
    let p = &r.plan;
    let mut tips = Vec::new();
    // A hybrid run that spun nearly all of its time would gain nothing from spinning always.
    if p.pacing.mode != crate::plan::PacingMode::Spin && r.generator.spin_pct < 90.0 {
        tips.push("use --pacing spin".to_string());
    }
    let busy = p.threads + p.consumers;
    if r.workers.is_some() {
        tips.push(
            "give each worker cores of its own (its --pin-cores and --reader-pin-cores), add \
             workers"
                .to_string(),
        );
    } else if r.generator.cores > busy {
        tips.push(format!(
            "add --threads (this machine has {} cores, the run used {} for its generator threads \
             and readers)",
            r.generator.cores, busy
        ));
    }
    tips.push("lower the rate".into());
    tips.push("or run on a quieter machine".into());
    format!("To measure the bus: {}.", tips.join(", "))
}
