//! The program: parses the command line, runs the chosen command, prints, and turns the outcome
//! into the exit status. `main.rs` only calls [`main`].

use clap::{CommandFactory, FromArgMatches};

use crate::config::cli::{Cli, Command, RunMode};
use crate::output;

mod clean;
mod compare;
mod coordinator;
mod import;
mod load_test;
mod netem;
mod read;
mod signals;
mod transports;
mod worker;

/// Runs the program with the process's arguments and returns its exit status.
pub fn main() -> i32 {
    output::honour_no_color();
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (mut cli, matches) = match parsed {
        Ok(v) => v,
        Err(e) => {
            let code = if e.use_stderr() {
                crate::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    if cli.command.is_none() {
        if let Err(e) = crate::config::distributed::check_mode_flags(cli.run.mode, &matches) {
            return error(e);
        }
    }
    cli.run.duration_from_replay = cli.run.replay.replay.is_some()
        && !cli.run.replay.looped
        && matches.value_source("duration_secs") != Some(clap::parser::ValueSource::CommandLine);
    if let Some(name) = cli.run.scenario.clone() {
        let applied = crate::config::scenario::load(&name).and_then(|(origin, text)| {
            crate::config::scenario::apply(&origin, &text, &mut cli.run, &matches)
        });
        if let Err(e) = applied {
            return error(e);
        }
    }
    match cli.command {
        Some(Command::Clean { shm_dir }) => clean::run(shm_dir),
        Some(Command::Compare(a)) => compare::run(&a),
        Some(Command::Read(args)) => read::run(&args),
        Some(Command::Record(a)) => read::run(&crate::config::cli::ReadArgs {
            run_dir: a.run_dir,
            pin_core: None,
            delay_ns: 0,
            duration_secs: a.duration_secs,
            stale_after_ms: a.stale_after_ms,
            json_output: None,
            protocol: false,
            record: Some(a.output),
            timeline: false,
            resume: Vec::new(),
        }),
        Some(Command::ImportTardis(a)) => import::run(&a),
        None => match cli.run.mode {
            RunMode::Standalone if cli.run.net.transport.len() > 1 => transports::run(&mut cli.run),
            RunMode::Standalone => load_test::run(&cli.run),
            RunMode::Coordinator => coordinator::run(&cli.run),
            RunMode::Worker => worker::run(&cli.run),
        },
    }
}

/// Prints `message` as one error line and returns the usage exit status.
pub(crate) fn error(message: impl std::fmt::Display) -> i32 {
    eprintln!("{} {message}", console::style("error:").red().bold());
    crate::exit::USAGE
}
