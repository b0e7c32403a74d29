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
    let mut results =
        accumulator.finish(&end, signal.map(|s| s.0.to_string()), settings.allow_loss);
    results.verdict = crate::results::judge::judge(&results, &settings.targets);
    if settings.keep_shm {
        eprintln!(
            "Shared memory kept in {} (remove with `load-tester clean` once no reader needs it)",
            end.location
        );
    }
    deliver(&results, &settings, reports, signal.map(|s| s.1))
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
