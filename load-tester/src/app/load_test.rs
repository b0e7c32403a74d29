//! The load test: configuration, plan, run, results, outputs, exit status.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::error;
use crate::output;
use crate::report::observe::{Observer, Tee};
use crate::results::accumulate::RunAccumulator;

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
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal() && ::console::colors_enabled_stderr())
            .try_init();
    }

    // First signal: stop the run and report. A second SIGINT/SIGTERM while stopping exits at once
    // (`load-tester clean` removes what that leaves in /dev/shm).
    let stop = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for (signal, code) in [
        (signal_hook::consts::SIGINT, crate::exit::SIGINT),
        (signal_hook::consts::SIGTERM, crate::exit::SIGTERM),
    ] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, code, Arc::clone(&stop));
        let _ = signal_hook::flag::register_usize(signal, Arc::clone(&which), signal as usize);
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }

    eprintln!("🚀 Starting AlphaPulse Load Tester");
    tracing::info!(
        exchanges = plan.exchanges.len(),
        rate = plan.total_target_rate(),
        "plan ready"
    );
    let mut progress = output::progress::Progress::new(settings.verbose);
    let mut accumulator = RunAccumulator::new(&plan);
    let mut observers: Vec<&mut dyn Observer> = vec![&mut accumulator, &mut progress];
    if let Some(hlog) = reports.hlog.as_mut() {
        observers.push(hlog);
    }
    let run = crate::run::engine::run(
        &plan,
        &settings.shm_dir,
        settings.keep_shm,
        &stop,
        &mut Tee(observers),
    );
    let end = match run {
        Ok(d) => d,
        Err(e) => {
            progress.finish();
            return error(e);
        }
    };
    progress.finish();
    let signal = match which.load(Ordering::Relaxed) {
        0 => None,
        s if s == signal_hook::consts::SIGTERM as usize => Some("SIGTERM".to_string()),
        _ => Some("SIGINT".to_string()),
    };
    let interrupted_code = signal.as_deref().map(|s| {
        if s == "SIGTERM" {
            crate::exit::SIGTERM
        } else {
            crate::exit::SIGINT
        }
    });
    let mut results = accumulator.finish(&end, signal, settings.allow_loss);
    results.verdict = crate::results::judge::judge(&results, &settings.targets);
    let report = output::console::render(&results, settings.verbose);
    if reports.stdout_taken() {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    if settings.keep_shm {
        eprintln!(
            "Shared memory kept in {} (remove with `load-tester clean` once no reader needs it)",
            end.location
        );
    }
    let (comparison, errors) = reports.finish(&results);
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
