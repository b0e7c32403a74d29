//! The load test: configuration, plan, run, results, outputs, exit status.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::error;
use crate::output;
use crate::report::observe::{Observer, Tee};
use crate::results::accumulate::RunAccumulator;
use crate::run::engine::EngineError;
use crate::run::{Stop, StopRequest};

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

    // First signal: stop the load and report what was measured. Second: end the run at once
    // (readers killed, shared memory removed, no results). A third, should the run still not
    // end, exits on the spot.
    let stop = Arc::new(Stop::default());
    let which = Arc::new(AtomicUsize::new(0));
    for (signal, code) in [
        (signal_hook::consts::SIGINT, crate::exit::SIGINT),
        (signal_hook::consts::SIGTERM, crate::exit::SIGTERM),
    ] {
        let (stop, which) = (Arc::clone(&stop), Arc::clone(&which));
        let handler = move || {
            // Only the first signal names the interruption.
            let _ = which.compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst);
            if stop.request() == StopRequest::Again {
                signal_hook::low_level::exit(code);
            }
        };
        // SAFETY: the handler does only atomic operations and, at the third signal, `_exit`,
        // all async-signal-safe; it allocates and locks nothing.
        let _ = unsafe { signal_hook::low_level::register(signal, handler) };
    }

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
        &stop,
        &mut Tee(observers),
    );
    let signal_name = |which: usize| {
        if which == signal_hook::consts::SIGTERM as usize {
            ("SIGTERM", crate::exit::SIGTERM)
        } else {
            ("SIGINT", crate::exit::SIGINT)
        }
    };
    let end = match run {
        Ok(d) => d,
        Err(EngineError::Aborted) => {
            progress.finish();
            let (name, code) = signal_name(which.load(Ordering::Relaxed));
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
