//! The final report, in the layout of the original design's "Output Example", followed by the
//! targets table, response time and generator lag, and with `-v` per-exchange tables.

use std::fmt::Write as _;

use ::console::{style, StyledObject};

use super::{human_ns, thousands};
use crate::report::end::ReaderEnd;
use crate::report::histogram::decode;
use crate::report::Integrity;
use crate::results::verdict::Outcome;
use crate::results::{Delivery, LatencySummary, Results, StreamThroughput};

const RULE: &str = "═══════════════════════════════════════";

/// Green for 95% and above, yellow for 80-94%, red below 80%.
fn achievement(pct: f64) -> StyledObject<String> {
    let text = format!("{pct:.0}%");
    if pct >= 95.0 {
        style(text).green()
    } else if pct >= 80.0 {
        style(text).yellow()
    } else {
        style(text).red()
    }
}

/// A duration beside its exact nanoseconds, in the unit that reads best: `0.487 μs`,
/// `24.607 μs`, `4.719 ms`, `1.234 s`.
fn beside(ns: u64) -> String {
    match ns {
        0..=999_999 => format!("{:.3} μs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.3} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

fn latency_lines(out: &mut String, title: &str, s: &LatencySummary) {
    let _ = writeln!(out, "{title}:");
    for (name, v) in [
        ("P50", s.p50),
        ("P90", s.p90),
        ("P99", s.p99),
        ("P99.9", s.p999),
        ("Max", s.max),
    ] {
        let _ = writeln!(
            out,
            "  {:<7}{:>13} ns ({})",
            format!("{name}:"),
            thousands(v),
            beside(v)
        );
    }
}

/// The target rate of one stream: `10000 per exchange (30000 total)` for a constant rate,
/// the pattern otherwise.
fn target_line(plan: &crate::plan::Plan, stream: crate::plan::Stream) -> String {
    let Some(first) = plan.exchanges.first() else {
        return "none".into();
    };
    let pattern = first.pattern(stream);
    match pattern.constant_rate() {
        Some(_) if plan.replay.is_some() => format!("{} total", plan.target_rate(stream)),
        Some(_) => format!(
            "{} per exchange ({} total)",
            first.rate(stream),
            plan.target_rate(stream)
        ),
        None => format!("{} per exchange", pattern.describe()),
    }
}

fn stream_row(name: &str, t: &StreamThroughput) -> String {
    format!(
        "  {name:<16} sent {:>13}  target {:>11}/s  actual {:>11}/s  peak {:>11}/s  {}",
        thousands(t.sent),
        thousands(t.target_rate as u64),
        thousands(t.actual_rate.round() as u64),
        thousands(t.peak_rate as u64),
        achievement(t.achievement_pct)
    )
}

/// Renders the report.
pub fn render(r: &Results, verbose: bool) -> String {
    let mut out = String::new();
    let plan = &r.plan;
    let _ = writeln!(out, "\n{RULE}\n       LOAD TEST RESULTS\n{RULE}\n");
    let _ = writeln!(out, "Configuration:");
    if let Some(sc) = &plan.scenario {
        let _ = writeln!(out, "  Scenario: {sc}");
    }
    if let Some(rp) = &plan.replay {
        let _ = writeln!(
            out,
            "  Replay: {} at speed {}{}, {:.3} s of recorded time (rates below: the capture's mean, estimated from its chunks)",
            rp.file,
            rp.speed,
            if rp.looped { ", looped" } else { "" },
            (rp.to_ns - rp.from_ns) as f64 / 1e9,
        );
    }
    if let Some(path) = &plan.record {
        let _ = writeln!(out, "  Recording into: {path}");
    }
    let _ = writeln!(out, "  Exchanges: {}", plan.exchanges.len());
    let _ = writeln!(
        out,
        "  Target TPS: {}",
        target_line(plan, crate::plan::Stream::Trades)
    );
    let _ = writeln!(
        out,
        "  Target OPS: {}",
        target_line(plan, crate::plan::Stream::Book)
    );
    let _ = writeln!(
        out,
        "  Duration: {}s (+{}s warm-up)",
        plan.duration_secs, plan.warmup_secs
    );
    let _ = writeln!(out, "  Symbols: {}", plan.symbols.len());
    let g = &r.generator;
    let window = if g.spin_window_ns > 0 {
        format!(
            ", spin window {} (sleeps ended up to {} late, p99)",
            human_ns(g.spin_window_ns),
            human_ns(g.sleep_late_p99_ns)
        )
    } else {
        String::new()
    };
    let _ = writeln!(out, "  Pacing: {}{window}", plan.pacing.describe());
    if r.workers.is_some() {
        let _ = writeln!(out, "  Placement: each worker's own (below)");
    } else {
        let _ = writeln!(out, "  Placement: {}", placement(plan));
    }
    if verbose {
        let _ = writeln!(
            out,
            "  Threads {}, writer mode {}, seed {}",
            plan.threads,
            match plan.writer_mode {
                crate::plan::WriterMode::Backpressure => "backpressure",
                crate::plan::WriterMode::Overwrite => "overwrite",
            },
            plan.seed
        );
    }
    if let Some(signal) = &r.interrupted {
        let _ = writeln!(
            out,
            "  {}",
            style(format!(
                "Interrupted by {signal} after {:.1}s of measurement",
                r.measured_secs
            ))
            .yellow()
        );
    }

    if let Some(w) = &r.workers {
        workers(&mut out, w);
    }

    let tp = &r.throughput;
    let _ = writeln!(out, "\nThroughput:");
    let _ = writeln!(out, "  Total Trades: {}", thousands(tp.trades.sent));
    let _ = writeln!(
        out,
        "  Total Orderbook Updates: {}",
        thousands(tp.book.sent)
    );
    let _ = writeln!(out, "  Actual TPS: {:.0}", tp.trades.actual_rate);
    let _ = writeln!(out, "  Actual OPS: {:.0}", tp.book.actual_rate);
    let _ = writeln!(
        out,
        "  Peak 1-second rate: {} msgs/s",
        thousands(tp.total.peak_rate as u64)
    );
    if tp.total.backlog > 0 {
        let _ = writeln!(
            out,
            "  Due but never sent: {}",
            style(thousands(tp.total.backlog)).red()
        );
    }

    let _ = writeln!(out);
    latency_lines(&mut out, "Write Latency", &r.latency.service.all);
    let _ = writeln!(out);
    latency_lines(
        &mut out,
        "Response Time (from intended send time, coordinated omission included)",
        &r.latency.response.all,
    );
    let _ = writeln!(out);
    latency_lines(
        &mut out,
        "Generator Lag (how late the tester started each write)",
        &r.latency.lag.all,
    );
    let _ = writeln!(
        out,
        "  Budget: P99 <= {}; generator time {:.0}% waiting, {:.0}% in writes, {:.0}% generating and measuring",
        human_ns(g.lag_budget_ns),
        g.wait_pct,
        g.write_pct,
        g.overhead_pct
    );

    let res = &r.resources;
    let _ = writeln!(
        out,
        "\nResource Usage ({}; CPU 100% = one core):",
        if r.workers.is_some() {
            "the busiest worker's tester process, figure by figure"
        } else {
            "tester process"
        }
    );
    let _ = writeln!(out, "  Peak CPU: {:.1}%", res.cpu_peak_pct);
    let _ = writeln!(out, "  Avg CPU:  {:.1}%", res.cpu_avg_pct);
    let _ = writeln!(
        out,
        "  Avg CPU working: {:.1}% (the rest spinning for send times; the CPU target judges this)",
        res.cpu_working_avg_pct
    );
    let _ = writeln!(out, "  Peak Mem: {:.0} MiB", res.rss_peak_mib);
    let _ = writeln!(out, "  Avg Mem:  {:.0} MiB", res.rss_avg_mib);
    if verbose {
        let _ = writeln!(
            out,
            "  Of peak: {:.1} MiB private, {:.1} MiB ring pages; system CPU {:.1}% of all cores",
            res.rss_anon_peak_mib, res.rss_shmem_peak_mib, res.system_cpu_avg_pct
        );
        let _ = writeln!(
            out,
            "  Page faults {} minor / {} major; context switches {} voluntary / {} involuntary",
            thousands(res.minor_faults),
            thousands(res.major_faults),
            thousands(res.voluntary_switches),
            thousands(res.involuntary_switches)
        );
    }

    if let Some(d) = &r.delivery {
        delivery(&mut out, d, r.workers.as_ref().map(|w| w.workers.len()));
    }
    if let Some(b) = &r.bursts {
        let _ = writeln!(out, "\nBursts (whole seconds inside vs outside bursts):");
        for (name, inside, outside) in [
            ("Write", &b.inside_service, &b.outside_service),
            ("Response", &b.inside_response, &b.outside_response),
        ] {
            let _ = writeln!(
                out,
                "  {name:<9} inside: p50 {} p99 {} max {} ({} writes) | outside: p50 {} p99 {} max {} ({} writes)",
                human_ns(inside.p50), human_ns(inside.p99), human_ns(inside.max), thousands(inside.count),
                human_ns(outside.p50), human_ns(outside.p99), human_ns(outside.max), thousands(outside.count)
            );
        }
    }

    if let Some(c) = &r.chaos {
        chaos_section(&mut out, c);
    }

    let e = &r.errors;
    let _ = writeln!(out, "\nErrors:");
    let _ = writeln!(out, "  Write failures: {}", thousands(e.write_failures));
    let _ = writeln!(out, "  Buffer overflows: {}", thousands(e.buffer_overflows));
    let _ = writeln!(out, "  Error rate: {:.4}%", e.error_rate_pct);
    if let Some(d) = &r.degradation {
        let _ = writeln!(
            out,
            "  Degradation (first vs last tenth): write P99 {} -> {}, rate {:.0} -> {:.0} msgs/s, RSS {:.1} -> {:.1} MiB ({})",
            human_ns(d.service_p99_first_ns),
            human_ns(d.service_p99_last_ns),
            d.rate_first,
            d.rate_last,
            d.rss_first_mib,
            d.rss_last_mib,
            match d.rss_slope_mib_per_hour {
                Some(slope) => format!("{slope:+.1} MiB/h"),
                None => format!(
                    "growth not judged over {:.0} s: it takes {:.0} s of measurement",
                    d.span_secs,
                    crate::results::MIN_GROWTH_SPAN_SECS
                ),
            }
        );
    }

    if verbose {
        let _ = writeln!(out, "\nPer stream:");
        let _ = writeln!(out, "{}", stream_row("trades", &tp.trades));
        let _ = writeln!(out, "{}", stream_row("book", &tp.book));
        let _ = writeln!(out, "{}", stream_row("total", &tp.total));
        let _ = writeln!(out, "\nPer exchange:");
        for ex in &tp.per_exchange {
            let _ = writeln!(out, "  {}", style(&ex.name).bold());
            for (name, tp, service) in [
                ("trades", &ex.trades, &ex.trades_service),
                ("book", &ex.book, &ex.book_service),
            ] {
                let _ = writeln!(
                    out,
                    "{}  write p50 {} p99 {} max {}",
                    stream_row(name, tp),
                    human_ns(service.p50),
                    human_ns(service.p99),
                    human_ns(service.max)
                );
            }
        }
        let _ = writeln!(
            out,
            "\nClock: {:?}; one CLOCK_MONOTONIC read costs {:.1} ns through the vDSO.",
            plan.clock, g.clock_cost_ns
        );
        let _ = writeln!(
            out,
            "Warm-up: {}s, {} records, write p50 {} p99 {} (not judged)",
            r.warmup.secs,
            thousands(r.warmup.sent),
            human_ns(r.warmup.service.p50),
            human_ns(r.warmup.service.p99)
        );
    }
    let _ = writeln!(out, "\nTargets:");
    for c in &r.verdict.checks {
        let mark = if c.passed {
            style("✓".to_string()).green()
        } else {
            style("✗".to_string()).red()
        };
        let _ = writeln!(
            out,
            "  {mark} {:<40} {:>14} {:<7} target {}",
            c.name,
            check_value(c),
            c.unit,
            crate::output::format::format_target(&c.target, &c.unit)
        );
    }

    for w in &r.warnings {
        let _ = writeln!(out, "{} {w}", style("warning:").yellow());
    }
    let _ = writeln!(out, "\n{RULE}");
    // A run cut short passed or failed only on what it measured: it says so.
    let cut = r.interrupted.as_ref().map_or(String::new(), |signal| {
        format!(
            " (interrupted by {signal} after {:.1} of {} s)",
            r.measured_secs, plan.duration_secs
        )
    });
    let status = match r.verdict.outcome {
        Outcome::Passed => style(format!("✓ PASSED{cut}")).green().bold(),
        Outcome::Failed => style(format!("✗ FAILED{cut}")).red().bold(),
        Outcome::Invalid => style(format!("⚠ INVALID{cut}")).yellow().bold(),
    };
    let _ = writeln!(out, "Status: {status}");
    if let Some(reason) = &r.verdict.invalid_reason {
        let _ = writeln!(out, "  {reason}");
    }
    let _ = writeln!(
        out,
        "TPS Achievement: {}",
        achievement(tp.trades.achievement_pct)
    );
    let _ = writeln!(
        out,
        "OPS Achievement: {}",
        achievement(tp.book.achievement_pct)
    );

    out
}

/// A check's measured value as the targets table shows it; signed where it can be negative.
fn check_value(c: &crate::results::verdict::Check) -> String {
    match c.unit.as_str() {
        "%" => format!("{:.3}", c.measured),
        "MiB" => format!("{:.1}", c.measured),
        "MiB/h" => format!("{:+.1}", c.measured),
        _ if c.measured < 0.0 => format!("{:.0}", c.measured),
        _ => thousands(c.measured.round() as u64),
    }
}

fn integrity_line(i: &Integrity) -> String {
    format!(
        "{} (corrupted {}, out of order {}, chain gaps {}, book errors {}, digest mismatches {}, unaccounted {})",
        thousands(i.violations()),
        thousands(i.corrupted),
        thousands(i.out_of_order),
        thousands(i.gaps),
        thousands(i.book_errors),
        thousands(i.digest_mismatches),
        thousands(i.unaccounted)
    )
}

/// The workers of a distributed run, one line each.
fn workers(out: &mut String, w: &crate::results::workers::Workers) {
    let _ = writeln!(
        out,
        "\nWorkers ({}, split by {}; clock offsets accepted up to {}; coordinator CPU {:.1}% of a core):",
        w.workers.len(),
        match w.split {
            crate::plan::segments::Split::Exchanges => "exchanges",
            crate::plan::segments::Split::Rates => "rates",
        },
        human_ns(w.clock_offset_budget_ns),
        w.coordinator_cpu_pct
    );
    for x in &w.workers {
        let ids: Vec<String> = x.exchanges.iter().map(|e| e.to_string()).collect();
        let figures = x.results.as_ref().map_or_else(
            || "reported nothing".to_string(),
            |r| {
                format!(
                    "sent {} ({:.1}%), write p99 {}, lag p99 {}, CPU {:.0}% ({:.0}% working)",
                    thousands(r.throughput.total.sent),
                    r.throughput.total.achievement_pct,
                    human_ns(r.latency.service.all.p99),
                    human_ns(r.latency.lag.all.p99),
                    r.resources.cpu_avg_pct,
                    r.resources.cpu_working_avg_pct
                )
            },
        );
        let _ = writeln!(
            out,
            "  w{} {} exchanges {} at {} msgs/s, offset {:+.3} ms: {figures}",
            x.index,
            x.identity,
            ids.join(","),
            thousands(x.target_rate),
            x.clock_offset_ns as f64 / 1e6
        );
        if let Some(l) = &x.lost {
            let _ = writeln!(
                out,
                "     {} {:.1} s into the run: {}",
                style("LOST").red().bold(),
                l.at_secs,
                l.reason
            );
        }
    }
}

/// `workers`: in a distributed run, each worker's readers read that worker's rings only.
fn delivery(out: &mut String, d: &Delivery, workers: Option<usize>) {
    let _ = writeln!(out);
    latency_lines(
        out,
        &format!(
            "Delivery ({} reader{}; end-to-end: send timestamp to copied out by a reader)",
            d.readers,
            if d.readers == 1 { "" } else { "s" }
        ),
        &d.e2e.all,
    );
    let total = d.total();
    let written: u64 = d.written.values().sum();
    let reported = d.readers - d.dead;
    let _ = match workers {
        None => writeln!(
            out,
            "  Received: {} of {} written x {} reader{} that reported",
            thousands(total.received),
            thousands(written),
            reported,
            if reported == 1 { "" } else { "s" }
        ),
        Some(n) => writeln!(
            out,
            "  Received: {} of {} written over {n} workers, each read by its own {} reader{} \
             ({reported} of {} reported)",
            thousands(total.received),
            thousands(written),
            d.readers / n.max(1),
            if d.readers / n.max(1) == 1 { "" } else { "s" },
            d.readers
        ),
    };
    let lost = if total.lost == 0 {
        style(thousands(0)).green()
    } else if d.loss_allowed {
        style(format!("{} (allowed)", thousands(total.lost))).yellow()
    } else {
        style(thousands(total.lost)).red()
    };
    let _ = writeln!(
        out,
        "  Lost: {lost} (torn copies discarded: {})",
        thousands(total.torn)
    );
    let _ = writeln!(out, "  Integrity violations: {}", integrity_line(&total));
    let _ = writeln!(
        out,
        "  Books verified against the writers' final digests: {}",
        thousands(total.digests_checked)
    );
    for r in &d.per_reader {
        let _ = writeln!(
            out,
            "  Reader {} (pid {}): CPU avg {:.1}% peak {:.1}% of one core, peak RSS {:.1} MiB, ended: {}",
            r.index, r.pid, r.cpu_avg_pct, r.cpu_peak_pct, r.rss_peak_mib, r.ended
        );
        if let Some(why) = &r.died {
            let _ = writeln!(out, "    {}", style(why).red());
        }
        if let Some(c) = &r.capture {
            capture_line(out, c);
        }
        if r.foreign_datagrams > 0 {
            let _ = writeln!(
                out,
                "    {} datagrams not of this run's feed were counted and ignored",
                thousands(r.foreign_datagrams)
            );
        }
    }
}

/// What a recording reader wrote: one line, red when records are missing from the capture.
fn capture_line(out: &mut String, c: &crate::report::end::CaptureOutcome) {
    let line = match &c.error {
        Some(e) => format!("Recording failed: {e}"),
        None => format!(
            "Recorded {} records into {} ({:.1} MB){}",
            thousands(c.records),
            c.path,
            c.bytes as f64 / 1e6,
            if c.lost > 0 {
                format!(
                    "; {} records lost by the recording reader are not in it",
                    thousands(c.lost)
                )
            } else {
                String::new()
            } + &if c.backwards > 0 {
                format!(
                    "; {} records whose time went back were left out",
                    thousands(c.backwards)
                )
            } else {
                String::new()
            }
        ),
    };
    if c.error.is_some() || c.lost > 0 || c.backwards > 0 {
        let _ = writeln!(out, "    {}", style(line).red());
    } else {
        let _ = writeln!(out, "    {line}");
    }
}

/// Renders a comparison of transports: one row per transport.
pub fn render_transports(c: &crate::results::transports::TransportComparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{RULE}\n       TRANSPORT COMPARISON\n{RULE}\n");
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>12} {:>7} {:>13} {:>8} {:>6} {:>8} {:>8}  verdict",
        "transport", "e2e p50", "p90", "p99", "p99.9", "max", "write p50", "p99", "rate/s", "achv", "max rate/s", "lost", "viol", "CPU wr", "CPU rd"
    );
    for r in &c.rows {
        let [p50, p90, p99, p999, max] = r.e2e_ns;
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>12} {:>6.1}% {:>13} {:>8} {:>6} {:>7.0}% {:>7.0}%  {}",
            r.transport,
            human_ns(p50),
            human_ns(p90),
            human_ns(p99),
            human_ns(p999),
            human_ns(max),
            human_ns(r.write_ns[0]),
            human_ns(r.write_ns[1]),
            thousands(r.achieved_rate.round() as u64),
            r.achievement_pct,
            crate::output::format::format_max_rate(r.max_rate.as_ref()),
            thousands(r.lost),
            thousands(r.violations),
            r.writer_cpu_pct,
            r.readers_cpu_pct,
            match r.outcome {
                crate::results::verdict::Outcome::Passed => "PASSED",
                crate::results::verdict::Outcome::Failed => "FAILED",
                crate::results::verdict::Outcome::Invalid => "INVALID",
            }
        );
    }
    let _ = writeln!(
        out,
        "\nEnd-to-end: send timestamp to copied out by a reader; write: the send call. rate/s: \
         records written per second at the offered load; max rate/s: the highest rate a probe \
         sustained (--max-rate-secs; - not searched); CPU: percent of one core (writer: the \
         tester process; readers: summed)."
    );
    out
}

/// Renders the report of a standalone `load-tester read`.
pub fn render_reader(o: &ReaderEnd) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{RULE}\n       READER RESULTS\n{RULE}\n");
    for (stream, d) in &o.streams {
        let title = format!("{} end-to-end latency", stream.name());
        match decode(&d.e2e) {
            Ok(h) => latency_lines(&mut out, &title, &LatencySummary::of(&h)),
            Err(e) => {
                let _ = writeln!(out, "{title}: {e}");
            }
        }
        let i = &d.integrity;
        let _ = writeln!(out, "  Received: {}", thousands(i.received));
        let _ = writeln!(
            out,
            "  Lost: {} (torn copies discarded: {})",
            thousands(i.lost),
            thousands(i.torn)
        );
        let _ = writeln!(out, "  Integrity violations: {}", integrity_line(i));
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "Rings:");
    for r in &o.rings {
        let _ = writeln!(
            out,
            "  {:<28} received {:>12}  lost {:>10}  writer {}",
            r.file,
            thousands(r.integrity.received),
            thousands(r.integrity.lost),
            r.writer
        );
        if r.started_at > 1 {
            let _ = writeln!(
                out,
                "  {:<28} started at sequence {}: the {} records before were written before \
                 this reader attached (not counted as lost)",
                "",
                thousands(r.started_at),
                thousands(r.started_at - 1)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nEnded: {}; writer digests compared: {}",
        o.ended,
        if o.digests_compared { "yes" } else { "no" }
    );
    if let Some(c) = &o.capture {
        capture_line(&mut out, c);
    }
    out
}

/// Where the generator threads and readers ran.
fn placement(plan: &crate::plan::Plan) -> String {
    let list = |cores: &[usize]| {
        cores
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match (plan.pin_cores.is_empty(), plan.reader_pin_cores.is_empty()) {
        (true, true) => "left to the scheduler".into(),
        (false, true) => format!("generator threads on cores {}", list(&plan.pin_cores)),
        (true, false) => format!("readers on cores {}", list(&plan.reader_pin_cores)),
        (false, false) => format!(
            "generator threads on cores {}, readers on cores {}",
            list(&plan.pin_cores),
            list(&plan.reader_pin_cores)
        ),
    }
}

/// The chaos section: one line per fault (injected, detected by whom, recovered, cost), then
/// what went wrong with those that failed.
fn chaos_section(out: &mut String, c: &crate::results::chaos::ChaosResults) {
    let _ = writeln!(
        out,
        "\nChaos (seed {}{}):",
        c.seed,
        if c.restart_readers {
            ", killed readers restarted"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  {:<3} {:<34} {:>9} {:>9} {:<16} {:>11} {:>8} {:>8} {:>6}",
        "#", "fault", "injected", "detected", "by", "recovery", "lost", "corrupt", "result"
    );
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}s"));
    for f in &c.faults {
        let _ = writeln!(
            out,
            "  {:<3} {:<34} {:>9} {:>9} {:<16} {:>11} {:>8} {:>8} {:>6}",
            f.id,
            truncate(&f.description, 34),
            s(f.injected_s),
            s(f.detected_s),
            f.detected_by.as_deref().unwrap_or("-"),
            f.recovery_ms
                .map_or("-".to_string(), |ms| format!("{ms:.1} ms")),
            thousands(f.lost),
            thousands(f.violations),
            if f.passed { "ok" } else { "FAILED" }
        );
    }
    for f in &c.faults {
        let _ = writeln!(
            out,
            "  {}: {}{}",
            f.id,
            f.verdict,
            f.detection
                .as_ref()
                .map_or(String::new(), |d| format!("; detected: {d}"))
        );
    }
    let _ = writeln!(
        out,
        "  Explained by the faults: {} lost, {} integrity violations",
        thousands(c.explained_lost),
        thousands(c.explained_violations)
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
