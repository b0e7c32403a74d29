//! A run's results are rebuilt from the interval reports it streamed, alone: the reports as an
//! observer received them, through their text form, split into one report per source and merged
//! back in another order, give exactly the results the run produced. This is what a coordinator
//! does with its workers' reports.

use alphapulse_load_tester::config::cli::Cli;
use alphapulse_load_tester::report::end::RunEnd;
use alphapulse_load_tester::report::observe::{Observer, Tee};
use alphapulse_load_tester::report::wire::{from_line, to_line};
use alphapulse_load_tester::report::IntervalReport;
use alphapulse_load_tester::results::accumulate::RunAccumulator;
use alphapulse_load_tester::{config, run};
use clap::Parser;

mod common;

/// Keeps every interval the run streamed, in its text form.
#[derive(Default)]
struct Recorder(Vec<String>);

impl Observer for Recorder {
    fn interval(&mut self, report: &IntervalReport) {
        self.0.push(to_line(report));
    }
}

/// One report per source (and one for the rest), as separate producers would have sent them.
fn split(r: &IntervalReport) -> Vec<IntervalReport> {
    let mut parts: Vec<IntervalReport> = r
        .sources
        .iter()
        .map(|(id, s)| {
            let mut p = IntervalReport::empty(r.index, r.length_ns);
            p.sources.insert(*id, s.clone());
            p
        })
        .collect();
    let mut rest = IntervalReport::empty(r.index, r.length_ns);
    rest.covered_ns = r.covered_ns;
    rest.generator = r.generator;
    rest.processes = r.processes.clone();
    parts.push(rest);
    parts
}

#[test]
fn results_are_rebuilt_from_the_streamed_intervals_alone() {
    std::env::set_var("ALPHAPULSE_READER_EXE", env!("CARGO_BIN_EXE_load-tester"));
    let (_root, base) = common::shm_base("apbus-intervals-");
    let cli = Cli::parse_from([
        "load-tester",
        "-e",
        "2",
        "-t",
        "3000",
        "-o",
        "1000",
        "-d",
        "2",
        "--warmup-secs",
        "1",
        "--consumers",
        "1",
    ]);
    let (plan, settings) = config::build(&cli.run).expect("a valid configuration");
    let stop = alphapulse_load_tester::run::Stop::default();
    let mut live = RunAccumulator::new(&plan);
    let mut recorder = Recorder::default();
    let end = run::engine::run(
        &plan,
        &base,
        false,
        &stop,
        &mut Tee(vec![&mut live, &mut recorder]),
    )
    .expect("the run starts");
    let results = live.finish(&end, None, settings.allow_loss);
    assert_eq!(
        recorder.0.len() as u64,
        plan.intervals(),
        "one report per interval"
    );
    assert!(results.throughput.total.sent > 0);
    assert!(results.delivery.as_ref().unwrap().e2e.all.count > 0);

    // The end of the run through its text form too.
    let end: RunEnd = serde_json::from_str(&serde_json::to_string(&end).unwrap()).unwrap();
    let mut rebuilt = RunAccumulator::new(&plan);
    for line in &recorder.0 {
        let report = from_line(line).expect("a streamed report parses");
        let mut parts = split(&report);
        parts.reverse();
        let mut merged = IntervalReport::empty(report.index, report.length_ns);
        for p in &parts {
            merged.merge(p).expect("parts of one interval merge");
        }
        assert_eq!(merged, report, "interval {}", report.index);
        rebuilt.add(&merged);
    }
    let rebuilt = rebuilt.finish(&end, None, settings.allow_loss);
    assert_eq!(rebuilt, results);
    common::assert_empty(&base);
}

#[test]
fn every_received_record_gives_one_end_to_end_value() {
    // A slow reader still drains after the writers' last interval; what it copies then belongs
    // to the last interval and reaches the results.
    std::env::set_var("ALPHAPULSE_READER_EXE", env!("CARGO_BIN_EXE_load-tester"));
    let (_root, base) = common::shm_base("apbus-intervals-slow-");
    let cli = Cli::parse_from([
        "load-tester",
        "-e",
        "1",
        "-t",
        "5000",
        "-o",
        "1000",
        "-d",
        "3",
        "--warmup-secs",
        "0",
        "--reader-delay-ns",
        "200000",
        // Room for every record of the run: the slow reader falls behind but is never lapped.
        "--ring-capacity",
        "32768",
    ]);
    let (plan, _) = config::build(&cli.run).unwrap();
    let stop = alphapulse_load_tester::run::Stop::default();
    let mut acc = RunAccumulator::new(&plan);
    let end = run::engine::run(&plan, &base, false, &stop, &mut Tee(vec![&mut acc])).unwrap();
    let results = acc.finish(&end, None, true);
    let d = results.delivery.expect("a run with a reader");
    let received: u64 = d.streams.values().map(|i| i.received).sum();
    assert_eq!(received, results.throughput.total.sent, "{:?}", d.streams);
    assert_eq!(
        d.e2e.all.count, received,
        "every received record contributes exactly one end-to-end value"
    );
    let hist = d.e2e.all.decode().unwrap();
    assert_eq!(hist.len(), received);
    assert!(
        hist.max() > 1_000_000,
        "the slowest values (ms behind, copied after the end) are in"
    );
    common::assert_empty(&base);
}
