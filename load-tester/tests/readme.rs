//! The README tells the truth about the command line: its option list is what `load-tester -h`
//! prints, and every `load-tester ...` and `cargo run --release -- ...` command in it parses.

mod common;

use alphapulse_load_tester::config::cli::Cli;
use clap::Parser as _;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

#[test]
fn the_option_list_is_what_help_prints() {
    let out = std::process::Command::new(common::BIN)
        .arg("-h")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let theirs = &help[help.find("Options:").expect("an Options section")..];
    let readme = readme();
    let start = readme
        .find("```\nOptions:")
        .expect("the README lists the options")
        + 4;
    let ours = &readme[start..start + readme[start..].find("\n\nCommands:").unwrap()];
    assert_eq!(
        ours.trim_end(),
        theirs.trim_end(),
        "README.md's option list differs from `load-tester -h`; paste the new one in"
    );
}

#[test]
fn every_command_in_the_readme_parses() {
    let readme = readme();
    let mut lines = readme.lines().peekable();
    let mut checked = 0;
    while let Some(line) = lines.next() {
        let mut cmd = line.trim().to_string();
        let Some(rest) = cmd
            .strip_prefix("cargo run --release -- ")
            .or_else(|| cmd.strip_prefix("load-tester "))
            .map(str::to_string)
        else {
            continue;
        };
        cmd = rest;
        while cmd.ends_with('\\') {
            cmd.pop();
            cmd.push(' ');
            cmd.push_str(lines.next().unwrap_or("").trim());
        }
        // Comments, placeholders and "..." are the README's, not arguments.
        let cmd = cmd.split(" #").next().unwrap_or("");
        if cmd.contains("...") || cmd.contains('<') || cmd.trim().is_empty() {
            continue;
        }
        let words = std::iter::once("load-tester").chain(cmd.split_whitespace());
        if let Err(e) = Cli::try_parse_from(words) {
            panic!("README command does not parse: load-tester {cmd}\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} commands found");
}
