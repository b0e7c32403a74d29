//! Scenario files: a whole test (load, patterns, readers, targets) in TOML. Flags given on the
//! command line override the file; the file overrides the defaults.
//!
//! ```toml
//! exchanges = 3
//! trades_per_second = 5000
//! duration_secs = 60
//!
//! [trades]              # the trades' arrival pattern (default: constant)
//! kind = "burst"
//! burst_rate = 100000
//! burst_secs = 2
//! period_secs = 10
//!
//! [targets]             # overrides of the default targets
//! write_p99_ns = 1000
//! ```
//!
//! Built in: `baseline`, `stress`, `endurance`, `burst` (load-tester/scenarios/).

use std::path::Path;

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use toml::Spanned;

use crate::config::cli::{PacingArg, RunArgs, WriterModeArg};
use crate::plan::limits::*;
use crate::plan::patterns::PatternSpec;
use crate::results::targets::Targets;

/// The scenarios built into the binary, by name.
pub const BUILT_IN: [(&str, &str); 5] = [
    ("baseline", include_str!("../../scenarios/baseline.toml")),
    ("stress", include_str!("../../scenarios/stress.toml")),
    ("endurance", include_str!("../../scenarios/endurance.toml")),
    ("burst", include_str!("../../scenarios/burst.toml")),
    ("chaos", include_str!("../../scenarios/chaos.toml")),
];

/// A scenario file. Every key is optional; unknown keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario is for.
    pub description: Option<String>,
    /// `--exchanges`.
    pub exchanges: Option<Spanned<i64>>,
    /// `--trades-per-second`.
    pub trades_per_second: Option<Spanned<i64>>,
    /// `--orderbook-updates-per-second`.
    pub orderbook_updates_per_second: Option<Spanned<i64>>,
    /// `--duration-secs`.
    pub duration_secs: Option<Spanned<i64>>,
    /// `--warmup-secs`.
    pub warmup_secs: Option<Spanned<i64>>,
    /// `--symbol-count`.
    pub symbol_count: Option<Spanned<i64>>,
    /// `--seed`.
    pub seed: Option<Spanned<i64>>,
    /// `--consumers`.
    pub consumers: Option<Spanned<i64>>,
    /// `--threads`.
    pub threads: Option<Spanned<i64>>,
    /// `--spin-us`.
    pub spin_us: Option<Spanned<i64>>,
    /// `--ring-capacity`.
    pub ring_capacity: Option<Spanned<i64>>,
    /// `--lag-budget-us`.
    pub lag_budget_us: Option<Spanned<i64>>,
    /// `--pacing`: `hybrid` or `spin`.
    pub pacing: Option<Spanned<PacingArg>>,
    /// `--writer-mode`: `overwrite` or `backpressure`.
    pub writer_mode: Option<Spanned<WriterModeArg>>,
    /// The key of `--writer-mode` before `--mode` named the distributed mode: refused with a
    /// line that says what to use instead.
    pub mode: Option<Spanned<toml::Value>>,
    /// `--allow-loss`.
    pub allow_loss: Option<bool>,
    /// The trades' arrival pattern.
    pub trades: Option<Spanned<PatternSpec>>,
    /// The book updates' arrival pattern.
    pub book: Option<Spanned<PatternSpec>>,
    /// Target overrides.
    pub targets: Option<Spanned<Targets>>,
    /// `--restart-readers`.
    pub restart_readers: Option<bool>,
    /// `--chaos-seed`.
    pub chaos_seed: Option<Spanned<i64>>,
    /// Faults to inject, one `[[chaos]]` table each (added to those of `--chaos`).
    pub chaos: Option<Vec<Spanned<ChaosTable>>>,
}

/// One `[[chaos]]` table: a fault, its time and arguments (see docs/chaos.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosTable {
    /// The kind: `kill-reader`, `stop-reader`, ...
    pub fault: String,
    /// When: `10s`, `random`, `~20s`.
    pub at: String,
    /// How long (stop-reader, slow-reader, stall-generator, fill-shm, net faults).
    pub duration: Option<String>,
    /// slow-reader: per record; net-delay-spike: the extra delay.
    pub delay: Option<String>,
    /// fill-shm: how much (`64MiB`, `all`).
    pub bytes: Option<String>,
    /// The reader it acts on.
    pub reader: Option<u64>,
    /// The exchange it acts on.
    pub exchange: Option<u64>,
    /// Its recovery budget.
    pub budget: Option<String>,
}

impl ChaosTable {
    /// The `--chaos` spec it stands for.
    fn spec(&self) -> String {
        let mut s = format!("{}@{}", self.fault, self.at);
        for v in [&self.delay, &self.bytes, &self.duration]
            .into_iter()
            .flatten()
        {
            s += &format!(":{v}");
        }
        if let Some(r) = self.reader {
            s += &format!(":reader={r}");
        }
        if let Some(e) = self.exchange {
            s += &format!(":exchange={e}");
        }
        if let Some(b) = &self.budget {
            s += &format!(":budget={b}");
        }
        s
    }
}

/// Why a scenario cannot be used: one line naming the file, the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

/// Reads scenario `name_or_path`: a built-in name, or a file.
pub fn load(name_or_path: &str) -> Result<(String, String), ScenarioError> {
    let path = Path::new(name_or_path);
    if !path.exists() {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Ok((
                format!("built-in scenario {name_or_path}"),
                (*text).to_string(),
            ));
        }
        let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        return Err(ScenarioError(format!(
            "--scenario {name_or_path}: no such file, and not a built-in scenario ({})",
            names.join(", ")
        )));
    }
    let text = crate::results::file::read_text(path)
        .map_err(|e| ScenarioError(format!("--scenario {name_or_path}: {e}")))?;
    Ok((name_or_path.to_string(), text))
}

/// The line of `text` that holds byte `offset`, trimmed: it names the key at fault.
fn line_text(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    text[start..end].trim()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses a scenario and applies it to `args`, except where `matches` shows the user gave a
/// flag on the command line. Checks every value and pattern before anything runs.
pub fn apply(
    origin: &str,
    text: &str,
    args: &mut RunArgs,
    matches: &ArgMatches,
) -> Result<(), ScenarioError> {
    let fail = |span: Option<std::ops::Range<usize>>, key: &str, msg: String| {
        let line = span
            .map(|s| format!(", line {}", line_of(text, s.start)))
            .unwrap_or_default();
        ScenarioError(format!("scenario {origin}{line}: {key}: {msg}"))
    };
    let sc: Scenario = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    ", line {} ({})",
                    line_of(text, s.start),
                    line_text(text, s.start)
                )
            })
            .unwrap_or_default();
        ScenarioError(crate::plan::text::shorten_numbers(&format!(
            "scenario {origin}{line}: {}",
            e.message().trim().replace('\n', " ")
        )))
    })?;
    let from_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    // The scenario's keys that flags on the command line override, as those flags.
    let mut overridden: Vec<String> = Vec::new();
    let flag = |field: &str| format!("--{}", field.replace('_', "-"));

    macro_rules! number {
        ($field:ident, $min:expr, $max:expr) => {
            if let Some(v) = &sc.$field {
                let value = *v.get_ref();
                if value < $min as i64 || value as u64 > $max as u64 || value < 0 {
                    return Err(fail(
                        Some(v.span()),
                        stringify!($field),
                        format!("{value}: must be a whole number from {} to {}", $min, $max),
                    ));
                }
                if !from_cli(stringify!($field)) {
                    args.$field = value as u64;
                } else if args.$field != value as u64 {
                    overridden.push(format!("{} {}", flag(stringify!($field)), args.$field));
                }
            }
        };
    }
    number!(exchanges, 1, MAX_EXCHANGES);
    number!(trades_per_second, 0, MAX_RATE_PER_STREAM);
    number!(orderbook_updates_per_second, 0, MAX_RATE_PER_STREAM);
    number!(duration_secs, 1, MAX_DURATION_SECS);
    number!(warmup_secs, 0, MAX_WARMUP_SECS);
    number!(symbol_count, 1, MAX_SYMBOLS);
    number!(seed, 0, i64::MAX);
    number!(consumers, 0, MAX_CONSUMERS);
    number!(threads, 1, MAX_THREADS);
    if let Some(v) = &sc.spin_us {
        let value = *v.get_ref();
        if !(0..=MAX_SPIN_US as i64).contains(&value) {
            return Err(fail(
                Some(v.span()),
                "spin_us",
                format!("{value}: must be a whole number from 0 to {MAX_SPIN_US}"),
            ));
        }
        if !from_cli("spin_us") {
            args.spin_us = Some(value as u64);
        } else if args.spin_us != Some(value as u64) {
            overridden.push(format!("--spin-us {}", args.spin_us.unwrap_or(0)));
        }
    }
    number!(lag_budget_us, 1, MAX_LAG_BUDGET_US);
    if let Some(v) = &sc.ring_capacity {
        let value = *v.get_ref();
        if !(RING_CAPACITY.0 as i64..=RING_CAPACITY.1 as i64).contains(&value)
            || !(value as u64).is_power_of_two()
        {
            return Err(fail(
                Some(v.span()),
                "ring_capacity",
                format!("{value}: must be a power of two from 2 to 2^30"),
            ));
        }
        if !from_cli("ring_capacity") {
            args.ring_capacity = Some(value as u64);
        } else if args.ring_capacity != Some(value as u64) {
            overridden.push(format!(
                "--ring-capacity {}",
                args.ring_capacity.unwrap_or(0)
            ));
        }
    }
    if let Some(v) = &sc.pacing {
        if !from_cli("pacing") {
            args.pacing = *v.get_ref();
        } else if args.pacing != *v.get_ref() {
            overridden.push(format!("--pacing {:?}", args.pacing).to_lowercase());
        }
    }
    if let Some(v) = &sc.mode {
        return Err(fail(
            Some(v.span()),
            "mode",
            format!(
                "{}: the writer mode's key is now writer_mode (mode names the distributed mode, \
                 set on the command line); write writer_mode = {} instead",
                v.get_ref(),
                v.get_ref()
            ),
        ));
    }
    if let Some(v) = &sc.writer_mode {
        if !from_cli("writer_mode") {
            args.writer_mode = *v.get_ref();
        } else if args.writer_mode != *v.get_ref() {
            overridden.push(format!("--writer-mode {:?}", args.writer_mode).to_lowercase());
        }
    }
    if let Some(v) = sc.allow_loss {
        if !from_cli("allow_loss") {
            args.allow_loss = v;
        }
    }
    if let Some(v) = sc.restart_readers {
        if !from_cli("restart_readers") {
            args.chaos.restart_readers = v;
        }
    }
    if let Some(v) = &sc.chaos_seed {
        let value = *v.get_ref();
        if value < 0 {
            return Err(fail(
                Some(v.span()),
                "chaos_seed",
                format!("{value}: must be a whole number from 0"),
            ));
        }
        if !from_cli("chaos_seed") {
            args.chaos.chaos_seed = value as u64;
        }
    }
    for t in sc.chaos.iter().flatten() {
        let spec = crate::plan::chaos::FaultSpec::parse(&t.get_ref().spec())
            .map_err(|e| fail(Some(t.span()), "chaos", e))?;
        args.chaos.chaos.push(spec);
    }
    let total = args.warmup_secs + args.duration_secs;
    for (key, spec, rate) in [
        ("trades", &sc.trades, args.trades_per_second),
        ("book", &sc.book, args.orderbook_updates_per_second),
    ] {
        if let Some(spec) = spec {
            let resolved = spec.get_ref().resolved(rate as f64);
            resolved
                .validate(total)
                .map_err(|e| fail(Some(spec.span()), key, e.0))?;
            match key {
                "trades" => args.trades_pattern = Some(resolved),
                _ => args.book_pattern = Some(resolved),
            }
        }
    }
    if let Some(t) = &sc.targets {
        t.get_ref()
            .validate()
            .map_err(|m| fail(Some(t.span()), "targets", m))?;
        args.scenario_targets = Some(t.get_ref().clone());
    }
    let description = sc.description.unwrap_or_else(|| origin.to_string());
    args.scenario_description = Some(if overridden.is_empty() {
        description
    } else {
        format!(
            "{description} [overridden on the command line: {}]",
            overridden.join(" ")
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::cli::Cli;
    use crate::config::scenario::*;
    use clap::{CommandFactory, FromArgMatches};

    fn run(cli_args: &[&str], text: &str) -> Result<RunArgs, String> {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("load-tester").chain(cli_args.iter().copied()))
            .unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        apply("test.toml", text, &mut cli.run, &matches).map_err(|e| e.0)?;
        Ok(cli.run)
    }

    #[test]
    fn every_built_in_scenario_parses_and_validates() {
        for (name, text) in BUILT_IN {
            let args = run(&[], text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(args.scenario_description.is_some(), "{name}");
        }
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let args = run(
            &["-e", "7"],
            "description = \"two\"\nexchanges = 2\ntrades_per_second = 123\n",
        )
        .unwrap();
        assert_eq!(args.exchanges, 7);
        assert_eq!(args.trades_per_second, 123);
        // The description no longer tells the whole truth: it says what was overridden.
        assert_eq!(
            args.scenario_description.as_deref(),
            Some("two [overridden on the command line: --exchanges 7]")
        );
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = run(&[], "exchanges = 2\nbogus = 1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("bogus"), "{e}");
        let e = run(&[], "duration_secs = 0\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("duration_secs"), "{e}");
        let e = run(&[], "exchanges = \"three\"\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = run(&[], "trades_per_second = -5\n").unwrap_err();
        assert!(e.contains("trades_per_second"), "{e}");
        let e = run(&[], "duration_secs = 10\nwarmup_secs = 0\n[trades]\nkind = \"stages\"\nstages = [{ secs = 5, target = 10.0 }]\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("add up"), "{e}");
        let e = run(
            &[],
            "[book]\nkind = \"sine\"\nrate = 10.0\namplitude = 20.0\nperiod_secs = 5.0\n",
        )
        .unwrap_err();
        assert!(e.contains("amplitude"), "{e}");
        let e = run(&[], "[trades]\nkind = \"teleport\"\n").unwrap_err();
        assert!(e.contains("teleport"), "{e}");
        let e = run(&[], "[targets]\nmax_cpu_pct = -3.0\n").unwrap_err();
        assert!(e.contains("max_cpu_pct"), "{e}");
        let e = run(&[], "exchanges = 2\nmode = \"backpressure\"\n").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("writer_mode = \"backpressure\""),
            "{e}"
        );
        let args = run(&[], "writer_mode = \"backpressure\"\n").unwrap();
        assert_eq!(args.writer_mode, WriterModeArg::Backpressure);
    }
}
