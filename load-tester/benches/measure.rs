//! What measuring costs: one clock read, and recording one write's three latencies.
//!
//! `cargo bench -p alphapulse-load-tester --bench measure`; the figures go into
//! docs/measurement.md ("measurement overhead per recorded sample").

use alphapulse_load_tester::run::clock::{tsc_usable, Clock, ClockSource};
use alphapulse_load_tester::run::measure::LatencySet;
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
