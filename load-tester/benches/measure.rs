//! What measuring costs: one clock read, recording one write's three latencies, and the whole
//! hot path of a generator thread (schedule, simulate, write into a bus ring, record).
//!
//! `cargo bench -p alphapulse-load-tester --bench measure`; the figures go into
//! docs/measurement.md ("measurement overhead per recorded sample").

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use alphapulse_load_tester::config;
use alphapulse_load_tester::config::cli::Cli;
use alphapulse_load_tester::run::clock::{tsc_usable, Clock, ClockSource};
use alphapulse_load_tester::run::generator::{self, ExchangeWork, GeneratorConfig, Message};
use alphapulse_load_tester::run::measure::LatencySet;
use alphapulse_load_tester::run::pacing::{ConstantRate, Schedule};
use alphapulse_load_tester::source::market::ExchangeSim;
use alphapulse_load_tester::source::Market;
use alphapulse_load_tester::transport::bus::BusRun;
use alphapulse_load_tester::transport::Transport;
use clap::Parser;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let mut set = LatencySet::default();
    let mut i = 0u64;
    c.bench_function("LatencySet::record (3 histograms)", |b| {
        b.iter(|| {
            // Spread values over a realistic range (30 ns .. ~30 us) so they hit many buckets.
            i = i.wrapping_add(0x9E37_79B9);
            let start = 1_000_000 + (i & 0x3FF);
            set.record(
                black_box(1_000_000),
                black_box(start),
                black_box(start + 30 + (i >> 20 & 0x7FFF)),
            );
        })
    });
    let mut mono = Clock::new(ClockSource::Monotonic);
    c.bench_function("Clock::now (CLOCK_MONOTONIC, vDSO)", |b| {
        b.iter(|| black_box(mono.now()))
    });
    if tsc_usable() {
        let mut tsc = Clock::new(ClockSource::Tsc);
        c.bench_function("Clock::now (TSC)", |b| b.iter(|| black_box(tsc.now())));
        c.bench_function("Clock::now_after (TSC, fenced)", |b| {
            b.iter(|| black_box(tsc.now_after()))
        });
    }
    hot_path(c);
}

/// One generator thread, two sources of one exchange on the bus, scheduled far faster than it
/// can send: it writes back to back, so the time per message is the cost of the whole loop.
/// Each sample lets the thread write for 50 ms (after its clock has calibrated) and divides that
/// time by the messages it wrote.
fn hot_path(c: &mut Criterion) {
    /// How long each sample writes: one interval, ns.
    const WINDOW_NS: u64 = 50_000_000;
    let base = std::env::temp_dir().join(format!("apbus-bench-{}", std::process::id()));
    let cli = Cli::parse_from(["bench", "-e", "1", "--consumers", "0", "--clock", "auto"]);
    let (plan, _) = config::build(&cli.run).expect("a valid configuration");
    c.bench_function("generator hot path (write + record), per message", |b| {
        b.iter_custom(|iters| {
            let (_bus, transports) = BusRun::create(&plan, &base).expect("a bus in /tmp");
            let start_ns = alphapulse_bus::now_ns() + 30_000_000;
            let works = vec![ExchangeWork {
                id: 0,
                market: Market::Sim(ExchangeSim::new(0, 10, 42)),
                transport: Box::new(transports.into_iter().next().unwrap()) as Box<dyn Transport>,
                trades: Some(Schedule::Constant(ConstantRate::new(start_ns, 40_000_000))),
                book: Some(Schedule::Constant(ConstantRate::new(start_ns, 10_000_000))),
            }];
            let config = GeneratorConfig {
                index: 0,
                start_ns,
                intervals: 1,
                interval_ns: WINDOW_NS,
                pacing: plan.pacing,
                pin_core: None,
                clock: plan.clock,
                faults: Default::default(),
                timeline: false,
            };
            let (_spare_tx, spare_rx) = std::sync::mpsc::channel();
            let mut sent = 0u64;
            generator::run(
                config,
                works,
                &AtomicBool::new(false),
                |m| {
                    if let Message::Interval { report, .. } = m {
                        sent += report.sources.values().map(|s| s.writer.sent).sum::<u64>();
                    }
                },
                spare_rx,
            );
            let per_message = WINDOW_NS as f64 / 1e9 / sent.max(1) as f64;
            Duration::from_secs_f64(per_message * iters as f64)
        })
    });
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, bench);
criterion_main!(benches);
