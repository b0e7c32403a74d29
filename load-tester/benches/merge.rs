//! What merging costs the coordinator of a distributed run, per worker per interval, and how it
//! grows with the number of workers (1 to 64 simulated ones).
//!
//! One interval of each worker is a realistic report: 3 exchanges x 2 streams, each with
//! service, response, lag and end-to-end histograms of 20,000 values spread over 30 ns .. 3 ms,
//! encoded as the wire carries it. Measured: decoding every worker's report from the wire,
//! merging them in the coordinator's collector (each worker one producer) and handing the merged
//! interval to the results accumulator: the coordinator's whole per-interval path but the
//! network and the per-worker accumulators.
//!
//! `cargo bench -p alphapulse-load-tester --bench merge`; figures in docs/distributed.md.

use std::time::{Duration, Instant};

use alphapulse_load_tester::config;
use alphapulse_load_tester::config::cli::Cli;
use alphapulse_load_tester::distributed::coordinator::rename_processes;
use alphapulse_load_tester::distributed::protocol::{pb, report_from_pb, report_to_pb};
use alphapulse_load_tester::report::collect::Collector;
use alphapulse_load_tester::report::{IntervalReport, Kind, ProcessUsage, SourceId, Stream};
use alphapulse_load_tester::results::accumulate::RunAccumulator;
use clap::Parser;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const INTERVAL_NS: u64 = 1_000_000_000;

/// One worker's report of interval 0, as the wire carries it.
fn worker_report(seed: u64) -> pb::IntervalReport {
    let mut r = IntervalReport::empty(0, INTERVAL_NS);
    r.covered_ns = INTERVAL_NS;
    let mut x = seed | 1;
    for exchange in 0..3u16 {
        for stream in Stream::ALL {
            let s = r.sources.entry(SourceId { exchange, stream }).or_default();
            for kind in Kind::ALL {
                let h = s.latency.get_mut(kind);
                for _ in 0..20_000 {
                    // xorshift: values over five decades, as latencies are.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let v = 30 + (x % 1000) * (1 + (x >> 40) % 3000);
                    h.record(v.min(3_000_000)).unwrap();
                }
            }
            s.writer.sent = 20_000;
            s.reader.received = 20_000;
        }
    }
    r.processes.insert(
        "tester".into(),
        ProcessUsage {
            samples: 1,
            wall_ns: INTERVAL_NS,
            cpu_ns: 300_000_000,
            ..Default::default()
        },
    );
    report_to_pb(&r)
}

fn bench(c: &mut Criterion) {
    let cli = Cli::parse_from(["load-tester", "-e", "3", "-d", "1", "--warmup-secs", "0"]);
    let (plan, _) = config::build(&cli.run).expect("a plan");
    let wire: Vec<pb::IntervalReport> = (0..64).map(|i| worker_report(0x9E37 + i)).collect();
    let mut group = c.benchmark_group("coordinator merge of one interval");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for workers in [1usize, 2, 8, 16, 32, 64] {
        group.throughput(Throughput::Elements(workers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(workers),
            &workers,
            |b, &workers| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut acc = RunAccumulator::new(&plan);
                        let mut collector = Collector::new(1, INTERVAL_NS);
                        let ids: Vec<_> = (0..workers)
                            .map(|i| collector.producer(format!("worker {i}")))
                            .collect();
                        let start = Instant::now();
                        for (i, id) in ids.iter().enumerate() {
                            let r = report_from_pb(&wire[i]).expect("a valid report");
                            let r = rename_processes(r, i);
                            collector.add(*id, &r).expect("merges");
                            collector.done(*id);
                        }
                        collector.drain(&mut |r| acc.add(r));
                        total += start.elapsed();
                        criterion::black_box(&acc);
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
