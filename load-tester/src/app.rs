//! The program: parses the command line, runs the chosen command, prints, and turns the outcome
//! into the exit status. `main.rs` only calls [`main`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::output;

/// Exit status of a usage, configuration or environment error.
pub const EXIT_USAGE: i32 = 2;

/// Runs the program with the process's arguments and returns its exit status.
pub fn main() -> i32 {
    output::honour_no_color();
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (mut cli, matches) = match parsed {
        Ok(v) => v,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if let Some(name) = cli.run.scenario.clone() {
        let applied = crate::scenario::load(&name).and_then(|(origin, text)| {
            crate::scenario::apply(&origin, &text, &mut cli.run, &matches)
        });
        if let Err(e) = applied {
            return error(e);
        }
    }
    match cli.command {
        Some(Command::Clean { shm_dir }) => clean(shm_dir),
        Some(Command::Compare(a)) => crate::compare::run(
            &a.baseline,
            &a.current,
            &crate::compare::Options {
                thresholds_file: a.thresholds,
                threshold: a.threshold,
                allow_config_change: a.allow_config_change,
            },
        ),
        Some(Command::Read(args)) => read(&args),
        None => load_test(&cli.run),
    }
}

/// `load-tester read`: a consumer of a run, standalone or (with `--protocol`) for the tester.
fn read(args: &crate::cli::ReadArgs) -> i32 {
    use std::io::{BufRead, Write};

    use crate::consumer::{read_run, ReadOptions, ReaderMessage};

    if let Some(path) = &args.json_output {
        if let Err(m) = crate::config::check_writable(path) {
            return error(format!("--json-output {}: {m}", path.display()));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let options = ReadOptions {
        run_dir: args.run_dir.clone(),
        interval_ns: args.interval_ns,
        pin_core: args.pin_core.map(|c| c as usize),
        delay_ns: args.delay_ns,
        stale_after: std::time::Duration::from_millis(args.stale_after_ms),
        max_duration: args.duration_secs.map(std::time::Duration::from_secs),
    };
    let result = if args.protocol {
        // The tester handles Ctrl-C for the whole run: a reader keeps reading until the writers
        // close. It stops when the tester closes its stdin, sends SIGTERM, or dies.
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGINT,
            Arc::new(AtomicBool::new(false)),
        );
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop));
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
        let stdout = std::io::stdout();
        let mut emit = |m: ReaderMessage| {
            let mut out = stdout.lock();
            let _ = serde_json::to_writer(&mut out, &m);
            let _ = out.write_all(b"\n").and_then(|()| out.flush());
        };
        let stop_on_eof = Arc::clone(&stop);
        let mut start = || {
            let mut stdin = std::io::stdin().lock();
            let mut line = String::new();
            let start = match stdin.read_line(&mut line) {
                Ok(n) if n > 0 => line
                    .trim()
                    .strip_prefix("start ")
                    .and_then(|v| v.parse().ok()),
                _ => {
                    stop_on_eof.store(true, Ordering::Relaxed);
                    None
                }
            };
            let stop = Arc::clone(&stop_on_eof);
            let _ = std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || {
                    let mut sink = String::new();
                    while matches!(std::io::stdin().lock().read_line(&mut sink), Ok(n) if n > 0) {
                        sink.clear();
                    }
                    stop.store(true, Ordering::Relaxed);
                });
            start
        };
        read_run(&options, &stop, &mut emit, &mut start)
    } else {
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop));
        eprintln!("Reading {} (Ctrl-C to stop)", args.run_dir.display());
        read_run(&options, &stop, &mut |_| {}, &mut || None)
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return error(e),
    };
    if args.protocol {
        return 0;
    }
    print!("{}", output::console::render_reader(&outcome));
    if let Some(path) = &args.json_output {
        if let Err(e) = output::json::write_value(&outcome, path) {
            return error(format!("--json-output {}: {e}", path.display()));
        }
    }
    let failed = outcome
        .streams
        .values()
        .any(|s| s.integrity.lost > 0 || s.integrity.violations() > 0);
    i32::from(failed)
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
    let mut reports = match output::reports::Reports::prepare(args, &plan) {
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
    let mut observers: Vec<&mut dyn crate::engine::Observer> = vec![&mut progress];
    if let Some(hlog) = reports.hlog.as_mut() {
        observers.push(hlog);
    }
    let run = crate::engine::run(
        &plan,
        &settings.shm_dir,
        settings.keep_shm,
        &stop,
        &mut crate::engine::Tee(observers),
    );
    let data = match run {
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
    let mut results = crate::results::build(&data, signal, settings.allow_loss);
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
    let (comparison, errors) = reports.finish(&results);
    if !errors.is_empty() {
        errors.iter().for_each(|e| {
            error(e);
        });
        return EXIT_USAGE;
    }
    let code = interrupted_code.unwrap_or_else(|| results.verdict.outcome.exit_code());
    output::reports::exit_code(code, comparison.as_ref())
}
