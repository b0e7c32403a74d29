//! `--transport a,b,...`: the same load on each transport in turn, one comparison table.

use super::error;
use crate::output;
use crate::report::observe::Observer;
use crate::results::accumulate::RunAccumulator;
use crate::results::transports::TransportComparison;

/// Runs the comparison `args` asks for; returns the exit status (of the worst run).
pub(super) fn run(args: &mut crate::config::cli::RunArgs) -> i32 {
    let kinds = args.net.transport.clone();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = kinds.iter().find(|k| !seen.insert(**k)) {
        return error(format!(
            "--transport lists {dup:?} twice; each transport runs once"
        ));
    }
    let unsupported = [
        ("--hlog", args.hlog.is_some()),
        ("--hgrm-dir", args.hgrm_dir.is_some()),
        ("--junit", args.junit.is_some()),
        ("--baseline", args.baseline.is_some()),
        ("--metrics-addr", args.metrics_addr.is_some()),
        ("--record", args.replay.record.is_some()),
    ];
    if let Some((flag, _)) = unsupported.iter().find(|(_, given)| *given) {
        return error(format!(
            "{flag} is for one run: a comparison of transports writes its table, \
             --json-output (every run's results) and --html-report; run one --transport for \
             {flag}"
        ));
    }
    // Every plan is checked before the first run starts.
    let mut plans = Vec::new();
    for i in 0..kinds.len() {
        args.net.transport_run = i;
        match crate::config::build(args) {
            Ok(v) => plans.push(v),
            Err(e) => return error(e),
        }
    }
    if args.net.max_rate_secs > 0 {
        let plan = &plans[0].0;
        if plan.replay.is_some() || !plan.rates_are_constant() {
            return error(
                "--max-rate-secs scales a constant load (-t, -o): a replay or an arrival pattern \
                 has rates of its own"
                    .to_string(),
            );
        }
    }
    let html = match &args.html_report {
        Some(p) => match output::files::Target::resolve(p, false) {
            Ok(t) => Some(t),
            Err(e) => return error(format!("--html-report {}: {e}", p.display())),
        },
        None => None,
    };
    let json = match &args.json_output {
        Some(p) => match output::files::Target::resolve(p, true) {
            Ok(t) => Some(t),
            Err(e) => return error(format!("--json-output {}: {e}", p.display())),
        },
        None => None,
    };
    if args.verbose {
        super::load_test::logs_on_stderr();
    }
    let signals = super::signals::Signals::install();
    let stop = &signals.stop;
    eprintln!(
        "🚀 Comparing transports under the same load: {}",
        plans
            .iter()
            .map(|(p, _)| p.transport.kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let netem = plans[0].1.netem.as_deref().map(super::netem::Netem::apply);
    if let Some(n) = &netem {
        eprintln!("note: {}", n.said);
    }
    let mut runs = Vec::new();
    let mut max_rates = Vec::new();
    for (plan, settings) in &plans {
        for note in &settings.notes {
            eprintln!("note: {note}");
        }
        eprintln!("== {}", plan.transport.kind.name());
        let mut progress = output::progress::Progress::new();
        let mut accumulator = RunAccumulator::new(plan);
        let observers: Vec<&mut dyn Observer> = vec![&mut accumulator, &mut progress];
        let end = crate::run::engine::run(
            plan,
            &settings.shm_dir,
            settings.keep_shm,
            stop,
            &mut crate::report::observe::Tee(observers),
        );
        progress.finish();
        let end = match end {
            Ok(e) => e,
            Err(crate::run::engine::EngineError::Aborted) => {
                let (_, code) = signals.first().unwrap_or(("SIGINT", crate::exit::SIGINT));
                eprintln!("Stopped at once: no results were written");
                return code;
            }
            Err(e) => return error(format!("{}: {e}", plan.transport.kind.name())),
        };
        let signal = signals.first();
        let mut results =
            accumulator.finish(&end, signal.map(|s| s.0.to_string()), settings.allow_loss);
        if let (Some(n), crate::plan::transport::TransportKind::Udp) = (&netem, plan.transport.kind)
        {
            results.warnings.push(n.said.clone());
        }
        results.verdict = crate::results::judge::judge(&results, &settings.targets);
        runs.push(results);
        if signal.is_some() {
            eprintln!("Interrupted: the transports not run yet are left out");
            break;
        }
        if args.net.max_rate_secs > 0 {
            let run = runs.len() - 1;
            max_rates.push(max_rate(args, run, stop));
            if signals.first().is_some() {
                eprintln!("Interrupted: the transports not run yet are left out");
                break;
            }
        }
    }
    let mut comparison = TransportComparison::of(runs);
    for (row, m) in comparison.rows.iter_mut().zip(max_rates) {
        row.max_rate = Some(m);
    }
    let table = output::console::render_transports(&comparison);
    if json.as_ref().is_some_and(output::files::Target::is_stdout) {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(t) = &json {
        if let Err(e) = output::json::write_value(&comparison, t) {
            return error(format!("--json-output {}: {e}", t.path().display()));
        }
        if !t.is_stdout() {
            eprintln!("Comparison written to {}", t.path().display());
        }
    }
    if let Some(t) = &html {
        if let Err(e) = t.write(output::html::render_transports(&comparison).as_bytes()) {
            return error(format!("--html-report {}: {e}", t.path().display()));
        }
        eprintln!("Comparison page written to {}", t.path().display());
    }
    crate::exit::of_run(comparison.worst(), signals.first().map(|s| s.1), false)
}

/// Searches for the highest rate transport `run` of the list sustains (see
/// [`crate::results::transports::search_max_rate`]): each probe is the comparison's load with
/// its per-exchange rates scaled, run for `--max-rate-secs` after a 1 s warm-up, with no output
/// but a line of its own.
fn max_rate(
    args: &mut crate::config::cli::RunArgs,
    run: usize,
    stop: &crate::run::Stop,
) -> crate::results::transports::MaxRate {
    use crate::plan::limits::{MAX_RATE_PER_STREAM, MAX_TOTAL_RATE};
    let secs = args.net.max_rate_secs;
    let (t, o) = (
        args.trades_per_second as f64,
        args.orderbook_updates_per_second as f64,
    );
    let exchanges = args.exchanges as f64;
    let offered = (t + o) * exchanges;
    // The tester's own limits on one stream and on the whole load.
    let ceiling = (MAX_TOTAL_RATE as f64).min(MAX_RATE_PER_STREAM as f64 * (t + o) / t.max(o));
    eprintln!("   searching for the highest rate sustained ({secs} s a probe)");
    // What the probes change, put back afterwards.
    let kept = (
        args.trades_per_second,
        args.orderbook_updates_per_second,
        args.duration_secs,
        args.warmup_secs,
        args.net.transport_run,
    );
    let found = crate::results::transports::search_max_rate(offered, ceiling, secs, |rate| {
        if stop.stopping() {
            return None;
        }
        let f = rate / offered;
        // Scaled down, a stream keeps at least one message a second.
        let scale = |r: u64| {
            if r == 0 {
                0
            } else {
                ((r as f64 * f).round() as u64).max(1)
            }
        };
        args.trades_per_second = scale(kept.0);
        args.orderbook_updates_per_second = scale(kept.1);
        args.duration_secs = secs;
        args.warmup_secs = 1;
        args.net.transport_run = run;
        let built = crate::config::build(args);
        let (plan, settings) = match built {
            Ok(v) => v,
            Err(e) => {
                eprintln!("   {:>14} msgs/s: cannot run ({e})", thousands(rate));
                return None;
            }
        };
        let mut accumulator = RunAccumulator::new(&plan);
        let end = crate::run::engine::run(&plan, &settings.shm_dir, false, stop, &mut accumulator);
        let end = match end {
            Ok(e) => e,
            Err(e) => {
                eprintln!("   {:>14} msgs/s: cannot run ({e})", thousands(rate));
                return None;
            }
        };
        if end.interrupted {
            return None;
        }
        let mut results = accumulator.finish(&end, None, settings.allow_loss);
        results.verdict = crate::results::judge::judge(&results, &settings.targets);
        let why = crate::results::transports::sustained(&results);
        let achieved = results.throughput.total.actual_rate;
        eprintln!(
            "   {:>14} msgs/s offered: {:>14} written, {}",
            thousands(rate),
            thousands(achieved),
            why.as_deref().unwrap_or("sustained")
        );
        Some((achieved, why))
    });
    (
        args.trades_per_second,
        args.orderbook_updates_per_second,
        args.duration_secs,
        args.warmup_secs,
        args.net.transport_run,
    ) = kept;
    found
}

fn thousands(v: f64) -> String {
    crate::output::format::thousands(v.round().max(0.0) as u64)
}
