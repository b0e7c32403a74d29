//! `--mode coordinator`: the whole plan, split among the workers; their merged reports judged
//! and written exactly as a standalone run's are.

use super::error;
use super::load_test::{deliver, logs_on_stderr};
use crate::distributed::coordinator::{coordinate, CoordinatorError, Notice};
use crate::output;
use crate::report::end::RunEnd;
use crate::report::observe::{Observer, Tee};
use crate::results::accumulate::RunAccumulator;
use crate::results::verdict::Outcome;

fn ms(ns: i64) -> String {
    format!("{:+.3} ms", ns as f64 / 1e6)
}

/// Runs the coordinator `args` describe; returns the exit status.
pub(super) fn run(args: &crate::config::cli::RunArgs) -> i32 {
    let (plan, settings) = match crate::config::build(args) {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    let (config, notes) = match crate::config::distributed::coordinator(args) {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    let (split, segments) = match crate::plan::segments::split(&plan, config.workers) {
        Ok(v) => v,
        Err(e) => return error(format!("--workers {}: {e}", config.workers)),
    };
    let mut reports = match output::reports::Reports::prepare(&settings.outputs, &plan) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    if settings.verbose {
        logs_on_stderr();
    }
    let mut metrics = match super::load_test::bind_metrics(&settings) {
        Ok(m) => m,
        Err(e) => return error(e),
    };
    let signals = super::signals::Signals::install();
    let stop = &signals.stop;

    eprintln!(
        "🚀 Starting AlphaPulse Load Tester: coordinator of {} workers ({} msgs/s split by {})",
        config.workers,
        output::format::thousands(plan.total_target_rate()),
        match split {
            crate::plan::segments::Split::Exchanges => "exchanges",
            crate::plan::segments::Split::Rates => "rates",
        }
    );
    for note in settings.notes.iter().chain(&notes) {
        eprintln!("note: {note}");
    }
    let mut progress = output::progress::Progress::new();
    let mut accumulator = RunAccumulator::new(&plan);
    let mut own: Vec<RunAccumulator> = segments.iter().map(RunAccumulator::new).collect();
    let mut observers: Vec<&mut dyn Observer> = vec![&mut accumulator, &mut progress];
    if let Some(hlog) = reports.hlog.as_mut() {
        observers.push(hlog);
    }
    if let Some(m) = metrics.as_mut() {
        observers.push(m);
    }
    let mut notices = |n: Notice| match n {
        Notice::Listening(addr) => eprintln!(
            "Listening on {addr} for {} workers (--join-timeout-secs {})",
            config.workers,
            config.join_timeout.as_secs()
        ),
        Notice::Joined {
            index,
            identity,
            peer,
        } => eprintln!("worker {index} joined: {identity} from {peer}"),
        Notice::Ready {
            index,
            offset_ns,
            round_trip_ns,
        } => eprintln!(
            "worker {index} ready: clock offset {} (round trip {:.3} ms)",
            ms(offset_ns),
            round_trip_ns as f64 / 1e6
        ),
        Notice::Refused { peer, reason } => eprintln!("refused {peer}: {reason}"),
        Notice::Left { identity, reason } => {
            eprintln!("worker {identity} left before the start ({reason}); its place is free")
        }
        Notice::Starting(_) => eprintln!("every worker is ready: the load starts in 1 s"),
        Notice::Lost {
            index,
            identity,
            loss,
        } => eprintln!(
            "{} worker {index} ({identity}) lost {:.1} s into the run: {}; stopping the others",
            console::style("error:").red().bold(),
            loss.at_secs,
            loss.reason
        ),
    };
    let split_plan = crate::distributed::coordinator::SplitPlan {
        whole: &plan,
        split,
        segments: &segments,
    };
    let run = coordinate(
        split_plan,
        &config,
        stop,
        &mut Tee(observers),
        &mut |i, r| {
            if let Some(a) = own.get_mut(i) {
                a.add(r);
            }
        },
        &mut notices,
    );
    progress.finish();
    let (end, finisher) = match run {
        Ok(v) => v,
        Err(CoordinatorError::Aborted) => {
            let (name, code) = signals.first().unwrap_or(("SIGINT", crate::exit::SIGINT));
            eprintln!(
                "Stopped at once by {name}: the workers were told to stop; no results were written"
            );
            return code;
        }
        Err(CoordinatorError::StoppedBeforeStart) => {
            let (name, code) = signals.first().unwrap_or(("SIGINT", crate::exit::SIGINT));
            eprintln!("Stopped by {name} before the load started; no results were written");
            return code;
        }
        Err(e) => return error(e),
    };
    let signal = signals.first();
    let mut results =
        accumulator.finish(&end, signal.map(|s| s.0.to_string()), settings.allow_loss);
    let workers = end.distributed.as_ref().map_or(&[][..], |d| &d.workers[..]);
    let mut own_results = Vec::new();
    for (i, acc) in own.into_iter().enumerate() {
        let Some(w) = workers.iter().find(|w| w.index == i) else {
            own_results.push(None);
            continue;
        };
        // A worker lost before it finished has no end of its own: its reports still count.
        let fallback = RunEnd {
            distributed: None,
            chaos: None,
            readers: Vec::new(),
            warnings: Vec::new(),
            ..end.clone()
        };
        let mut r = acc.finish(
            w.end.as_ref().unwrap_or(&fallback),
            None,
            settings.allow_loss,
        );
        r.verdict = crate::results::judge::judge(&r, &settings.targets);
        own_results.push(Some(r));
    }
    results = crate::results::workers::combine(results, &end, own_results);
    results.verdict = crate::results::judge::judge(&results, &settings.targets);
    let code = deliver(&results, &settings, reports, signal.map(|s| s.1));
    let outcome = match results.verdict.outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Invalid => "invalid",
    };
    finisher.finish(code, outcome);
    super::load_test::linger(metrics, &results, &settings, stop);
    code
}
