//! The program: parses the command line, runs the chosen command, prints, and turns the outcome
//! into the exit status. `main.rs` only calls [`main`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::output;

/// Exit status of a usage, configuration or environment error.
pub const EXIT_USAGE: i32 = 2;

/// Runs the program with the process's arguments and returns its exit status.
pub fn main() -> i32 {
    output::honour_no_color();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Some(Command::Clean { shm_dir }) => clean(shm_dir),
        None => load_test(&cli.run),
    }
}

fn error(message: impl std::fmt::Display) -> i32 {
    eprintln!("{} {message}", console::style("error:").red().bold());
    EXIT_USAGE
}

fn clean(shm_dir: Option<std::path::PathBuf>) -> i32 {
    let base = shm_dir.unwrap_or_else(alphapulse_bus::default_base_dir);
    match alphapulse_bus::clean_stale_runs(&base) {
        Ok(runs) => {
            let removed = runs.iter().filter(|r| r.removed).count();
            for r in &runs {
                let what = if r.removed {
                    "removed"
                } else {
                    "kept (its process is alive)"
                };
                println!("{what}: {}", r.path.display());
            }
            println!(
                "{removed} stale run director{} removed from {}",
                if removed == 1 { "y" } else { "ies" },
                base.display()
            );
            0
        }
        Err(e) => error(e),
    }
}

fn load_test(args: &crate::cli::RunArgs) -> i32 {
    let (plan, settings) = match crate::config::build(args) {
        Ok(v) => v,
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
        (signal_hook::consts::SIGINT, 130),
        (signal_hook::consts::SIGTERM, 143),
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
    let data = match crate::engine::run(
        &plan,
        &settings.shm_dir,
        settings.keep_shm,
        &stop,
        &mut progress,
    ) {
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
    let interrupted_code = signal
        .as_deref()
        .map(|s| if s == "SIGTERM" { 143 } else { 130 });
    let mut results = crate::results::build(&data, signal);
    results.verdict = crate::verdict::judge(&results, &settings.targets);
    print!("{}", output::console::render(&results, settings.verbose));
    if let Some(path) = &settings.json_output {
        if let Err(e) = output::json::write(&results, path) {
            return error(format!("--json-output {}: {e}", path.display()));
        }
        eprintln!("Results written to {}", path.display());
    }
    if settings.keep_shm {
        eprintln!(
            "Shared memory kept in {} (remove with `load-tester clean` once no reader needs it)",
            data.run_dir.display()
        );
    }
    interrupted_code.unwrap_or_else(|| results.verdict.outcome.exit_code())
}
