//! The load test: configuration, plan, run, results, outputs, exit status.

use std::io::IsTerminal;

use super::error;
use crate::output;
use crate::report::observe::{Observer, Tee};
use crate::results::accumulate::RunAccumulator;
use crate::run::engine::EngineError;

/// Runs the load test `args` describe; returns the exit status.
pub(super) fn run(args: &crate::config::cli::RunArgs) -> i32 {
    let (plan, settings) = match crate::config::build(args) {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    let mut reports = match output::reports::Reports::prepare(&settings.outputs, &plan) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    if settings.verbose {
        logs_on_stderr();
    }
    let mut metrics = match bind_metrics(&settings) {
        Ok(m) => m,
        Err(e) => return error(e),
    };
    if let Some((group, port)) = &plan.transport.group {
        if let Err(e) = crate::run::feed_reader::check_group(group, *port) {
            return error(format!("--multicast {group}:{port}: {e}"));
        }
    }

    let signals = super::signals::Signals::install();
    let stop = &signals.stop;

    eprintln!("🚀 Starting AlphaPulse Load Tester");
    for note in &settings.notes {
        eprintln!("note: {note}");
    }
    tracing::info!(
        exchanges = plan.exchanges.len(),
        rate = plan.total_target_rate(),
        "plan ready"
    );
    let mut progress = output::progress::Progress::new();
    let mut accumulator = RunAccumulator::new(&plan);
    let mut observers: Vec<&mut dyn Observer> = vec![&mut accumulator, &mut progress];
    if let Some(hlog) = reports.hlog.as_mut() {
        observers.push(hlog);
    }
    if let Some(m) = metrics.as_mut() {
        observers.push(m);
    }
    let netem = settings.netem.as_deref().map(super::netem::Netem::apply);
    if let Some(n) = &netem {
        eprintln!("note: {}", n.said);
    }
    let run = crate::run::engine::run(
        &plan,
        &settings.shm_dir,
        settings.keep_shm,
        stop,
        &mut Tee(observers),
    );
    let end = match run {
        Ok(d) => d,
        Err(EngineError::Aborted) => {
            progress.finish();
            let (name, code) = signals.first().unwrap_or(("SIGINT", crate::exit::SIGINT));
            eprintln!(
                "Stopped at once by {name}: readers killed, shared memory removed; \
                 no results were written"
            );
            return code;
        }
        Err(e) => {
            progress.finish();
            return error(e);
        }
    };
    progress.finish();
    let signal = signals.first();
    let stopped_by = signal
        .map(|s| s.0.to_string())
        .or_else(|| end.failure.as_ref().map(|_| "a replay error".to_string()));
    let mut results = accumulator.finish(&end, stopped_by, settings.allow_loss);
    if let Some(n) = netem {
        results.warnings.push(n.said.clone());
    }
    results.verdict = crate::results::judge::judge(&results, &settings.targets);
    if settings.keep_shm {
        eprintln!(
            "Shared memory kept in {} (remove with `load-tester clean` once no reader needs it)",
            end.location
        );
    }
    let mut code = deliver(&results, &settings, reports, signal.map(|s| s.1));
    linger(metrics, &results, &settings, stop);
    if let Some(f) = &end.failure {
        code = error(format!(
            "--replay {f} (the run stopped there; the results so far were written)"
        ));
    }
    let capture = results
        .delivery
        .iter()
        .flat_map(|d| &d.per_reader)
        .find_map(|r| r.capture.as_ref());
    match (&plan.record, capture) {
        (_, Some(c)) if c.error.is_some() => {
            code = error(format!(
                "--record {}",
                c.error.as_deref().unwrap_or_default()
            ));
        }
        (Some(path), None) => {
            code = error(format!(
                "--record {path}: the recording reader ended without finishing the capture \
                 (its {path}.partial is left for inspection)"
            ));
        }
        _ => {}
    }
    code
}

/// The metrics server of `--metrics-addr`, bound now (so that a port in use fails before the
/// run), or `None` without the flag.
pub(super) fn bind_metrics(
    settings: &crate::config::Settings,
) -> Result<Option<output::metrics::Metrics>, String> {
    let Some(addr) = &settings.metrics_addr else {
        return Ok(None);
    };
    let m = output::metrics::Metrics::bind(addr, crate::run::placement::lower_this_thread)
        .map_err(|e| format!("--metrics-addr {e}"))?;
    eprintln!("Metrics: http://{}/metrics", m.addr());
    Ok(Some(m))
}

/// Sets the metrics' outcome and keeps serving for `--metrics-linger` seconds (a signal ends
/// the wait).
pub(super) fn linger(
    metrics: Option<output::metrics::Metrics>,
    results: &crate::results::Results,
    settings: &crate::config::Settings,
    stop: &crate::run::Stop,
) {
    let Some(m) = metrics else { return };
    let outcome = if results.interrupted.is_some() {
        "interrupted"
    } else {
        match results.verdict.outcome {
            crate::results::verdict::Outcome::Passed => "passed",
            crate::results::verdict::Outcome::Failed => "failed",
            crate::results::verdict::Outcome::Invalid => "invalid",
        }
    };
    m.finish(outcome);
    if settings.metrics_linger_secs == 0 {
        return;
    }
    eprintln!(
        "Serving the final metrics at http://{}/metrics for {} s (--metrics-linger)",
        m.addr(),
        settings.metrics_linger_secs
    );
    let was = stop.stopping();
    let until =
        std::time::Instant::now() + std::time::Duration::from_secs(settings.metrics_linger_secs);
    while std::time::Instant::now() < until && stop.stopping() == was && !stop.aborted() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Sends the logs (`RUST_LOG`, default `info`) to stderr: `-v`.
pub(super) fn logs_on_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && ::console::colors_enabled_stderr())
        .try_init();
}

/// Prints the report of `results`, writes the outputs and returns the exit status (of the
/// verdict, the interruption, the baseline comparison, or of an output that failed).
pub(super) fn deliver(
    results: &crate::results::Results,
    settings: &crate::config::Settings,
    reports: output::reports::Reports,
    interrupted_code: Option<i32>,
) -> i32 {
    let report = output::console::render(results, settings.verbose);
    if reports.stdout_taken() {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    let (comparison, errors) = reports.finish(results);
    if !errors.is_empty() {
        errors.iter().for_each(|e| {
            error(e);
        });
        return crate::exit::USAGE;
    }
    crate::exit::of_run(
        results.verdict.outcome,
        interrupted_code,
        comparison.as_ref().is_some_and(|c| c.regressed()),
    )
}
