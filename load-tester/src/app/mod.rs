//! The program: parses the command line, runs the chosen command, prints, and turns the outcome
//! into the exit status. `main.rs` only calls [`main`].

use clap::{CommandFactory, FromArgMatches};

use crate::config::cli::{Cli, Command, RunMode};
use crate::output;

mod clean;
mod compare;
mod coordinator;
mod load_test;
mod read;
mod signals;
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
        None => match cli.run.mode {
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
