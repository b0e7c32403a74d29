//! Cost of the market simulator (generator side) and of the book replica (reader side).
//!
//! `cargo bench -p alphapulse-load-tester --bench market`; criterion's medians are in
//! `target/criterion/<group>/<bench>/new/estimates.json`.

use alphapulse_bus::{BookUpdate, Trade};
use alphapulse_load_tester::source::market::{BookReplica, ExchangeSim};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use std::time::{Duration, Instant};

/// A simulator past its start-up (every symbol published, buffers grown).
fn warm_sim(symbols: u32) -> ExchangeSim {
    let mut sim = ExchangeSim::new(0, symbols, 42);
    let (mut t, mut u) = (Trade::default(), BookUpdate::default());
    for _ in 0..(200_000u32).max(symbols * 20) {
        sim.next_trade(&mut t);
        sim.next_trade(&mut t);
        sim.next_book_update(&mut u);
    }
    sim
}

fn simulator(c: &mut Criterion) {
    for symbols in [20u32, 100_000] {
        let mut group = c.benchmark_group(format!("market/{symbols}-symbols"));
        let mut sim = warm_sim(symbols);
        let mut trade = Trade::default();
        let mut update = BookUpdate::default();
        group.bench_function("next_trade", |b| {
            b.iter(|| {
                sim.next_trade(&mut trade);
                black_box(&trade);
            })
        });
        let mut sim = warm_sim(symbols);
        group.bench_function("next_book_update", |b| {
            b.iter(|| {
                sim.next_book_update(&mut update);
                black_box(&update);
            })
        });
        // The default scenario's mix: two trades per book update, so most updates first
        // publish what trades changed.
        let mut sim = warm_sim(symbols);
        group.bench_function("2x_next_trade+next_book_update", |b| {
            b.iter(|| {
                sim.next_trade(&mut trade);
                black_box(&trade);
                sim.next_trade(&mut trade);
                black_box(&trade);
                sim.next_book_update(&mut update);
                black_box(&update);
            })
        });
        group.finish();
    }
}

fn replica(c: &mut Criterion) {
    let symbols = 20;
    let mut sim = warm_sim(symbols);
    let (mut t, mut u) = (Trade::default(), BookUpdate::default());
    // The updates of a fresh simulator, from the first one, so a fresh replica applies them all.
    let mut fresh = ExchangeSim::new(0, symbols, 7);
    let updates: Vec<BookUpdate> = (0..100_000)
        .map(|_| {
            fresh.next_trade(&mut t);
            fresh.next_trade(&mut t);
            fresh.next_book_update(&mut u);
            u
        })
        .collect();
    sim.next_book_update(&mut u);
    c.bench_function("replica/apply", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let mut replica = BookReplica::new(symbols as usize);
                let n = (iters - done).min(updates.len() as u64) as usize;
                let start = Instant::now();
                for u in &updates[..n] {
                    black_box(replica.apply(black_box(u))).ok();
                }
                total += start.elapsed();
                done += n as u64;
            }
            total
        })
    });
    c.bench_function("replica/new_and_digest_20", |b| {
        b.iter_batched(
            || BookReplica::new(symbols as usize),
            |r| (0..symbols).map(|s| r.digest(s)).sum::<u64>(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, simulator, replica);
criterion_main!(benches);
