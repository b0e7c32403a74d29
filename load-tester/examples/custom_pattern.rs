//! A load pattern of your own, run on the bus by the tester's engine.
//!
//! `cargo run --release --example custom_pattern` runs 5 seconds of a square wave: every
//! exchange's trades alternate between 20,000/s and 2,000/s each half second, book updates
//! stay at their constant rate, and the report is the tester's own.

use std::time::Duration;

use alphapulse_load_tester::config;
use alphapulse_load_tester::config::cli::Cli;
use alphapulse_load_tester::output::console;
use alphapulse_load_tester::plan::patterns::LoadPattern;
use alphapulse_load_tester::plan::{ExchangePlan, Stream};
use alphapulse_load_tester::report::observe::Tee;
use alphapulse_load_tester::results::accumulate::RunAccumulator;
use alphapulse_load_tester::results::judge;
use alphapulse_load_tester::run::engine;
use clap::Parser;

/// `high` msgs/s for the first half of every second, `low` for the second half.
#[derive(Debug)]
struct SquareWave {
    high: f64,
    low: f64,
    /// Time of the last message, seconds since the start.
    t: f64,
    started: bool,
}

impl LoadPattern for SquareWave {
    fn next_delay(&mut self) -> Option<Duration> {
        if !self.started {
            self.started = true;
            return Some(Duration::ZERO);
        }
        let gap = 1.0 / self.rate_at(self.t);
        self.t += gap;
        Some(Duration::from_secs_f64(gap))
    }

    fn rate_at(&self, t: f64) -> f64 {
        if t.fract() < 0.5 {
            self.high
        } else {
            self.low
        }
    }
}

fn main() {
    // The usual command line, so every flag works here too.
    let cli = Cli::parse_from(["custom_pattern", "-d", "5", "--warmup-secs", "0", "-e", "2"]);
    let (plan, settings) = config::build(&cli.run).expect("a valid configuration");
    let square = |_: &ExchangePlan, stream: Stream| -> Option<Box<dyn LoadPattern>> {
        (stream == Stream::Trades).then(|| {
            Box::new(SquareWave {
                high: 20_000.0,
                low: 2_000.0,
                t: 0.0,
                started: false,
            }) as Box<dyn LoadPattern>
        })
    };
    let stop = alphapulse_load_tester::run::Stop::default();
    // The results are built from the interval reports as the run streams them.
    let mut results = RunAccumulator::new(&plan);
    let end = engine::run_with_patterns(
        &plan,
        &settings.shm_dir,
        false,
        &stop,
        &mut Tee(vec![&mut results]),
        Some(&square),
    )
    .expect("the bus starts");
    let mut r = results.finish(&end, None, settings.allow_loss);
    r.verdict = judge::judge(&r, &settings.targets);
    print!("{}", console::render(&r, false));
    for p in r.series.iter().take(5) {
        println!(
            "t={:>3.0}s trades {:>7.0}/s (target {:>7.0}/s)",
            p.start_secs, p.trades.rate, p.trades.target_rate
        );
    }
}
