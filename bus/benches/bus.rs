//! Benchmarks of the bus: what a write costs, and how long a record takes to reach a reader in
//! another process, side by side with a Unix datagram socket and a crossbeam channel.
//!
//! ```text
//! cargo bench -p alphapulse-bus --bench bus                # full run, about 90 s
//! cargo bench -p alphapulse-bus --bench bus -- --quick     # about 20 s
//! cargo bench -p alphapulse-bus --bench bus -- oneway      # only sections whose name contains it
//! ```
//!
//! Sections:
//!
//! * `write/*`, `clock/*` (criterion): the cost of one `Writer::write` into a ring with no reader,
//!   overwrite mode, on the writer's core. `trade64` and `book256` write a record that was sealed
//!   beforehand, so the checksum is excluded; `+seal` recomputes the checksum for every write and
//!   `+now+seal` also takes the send timestamp, which is what a real publisher does.
//! * `oneway/*`: a writer paced open-loop at 100k records/s sends 64-byte records to a reader that
//!   busy-polls on another core; the reader subtracts the record's `send_ts_ns` from its own
//!   `now_ns()` taken right after the record was copied out. The bus and the Unix datagram socket
//!   pair cross processes (the reader is this very binary, re-executed with `APBUS_BENCH_ROLE`
//!   set, that returns its histogram on stdout); the crossbeam channel crosses threads of one
//!   process. `-spin` readers poll without blocking, `-block` readers sleep in `recv`.
//! * `keepup/bus-1M`: the same over the bus at 1M records/s; the reader must lose nothing.
//!
//! The send timestamp is taken after the writer's pacing spin and before the checksum and the
//! write, so a latency includes sealing the record, the write (or `send`) call, the transfer and
//! the reader's copy. The first fifth of each run (at most one second) is warm-up: its records are
//! counted as received or lost but not put in the histograms.
//!
//! Environment:
//!
//! * `APBUS_BENCH_SECS`: measured seconds of every latency run (default 10 for the 1M/s run and 5
//!   for the others; 1 with `--quick`).
//! * `APBUS_BENCH_CPUS=W,R`: the writer's and the reader's CPU (default: the first two CPUs this
//!   process may run on). With fewer than two CPUs nothing is pinned.
//! * `APBUS_BENCH_CSV=path`: also append the summary rows to this CSV file.
//! * `ALPHAPULSE_SHM_DIR`: where the rings are created (default `/dev/shm/alphapulse`).
//!
//! Without `--bench` (as in `cargo test --benches`) criterion runs each benchmark once and the
//! latency sections do a smoke run of a few milliseconds, unpinned.

use std::fmt::Write as _;
use std::hint::{black_box, spin_loop};
use std::io::{BufRead, BufReader, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use alphapulse_bus::{
    checksum_of, default_base_dir, now_ns, BookUpdate, Level, Poll, Reader, Record, RunDir, Side,
    StartAt, Trade, WriterMode, WriterStatus, MAX_LEVELS, PRICE_SCALE, SIZE_SCALE,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use hdrhistogram::Histogram;

/// Selects the reader role of a re-executed child: `bus`, `uds-spin` or `uds-block`.
const ROLE_ENV: &str = "APBUS_BENCH_ROLE";
/// The ring a `bus` child reads.
const RING_ENV: &str = "APBUS_BENCH_RING";
/// The socket descriptor a `uds-*` child reads.
const FD_ENV: &str = "APBUS_BENCH_FD";
/// The CPU a child pins itself to.
const READER_CPU_ENV: &str = "APBUS_BENCH_READER_CPU";
const SECS_ENV: &str = "APBUS_BENCH_SECS";
const CPUS_ENV: &str = "APBUS_BENCH_CPUS";
const CSV_ENV: &str = "APBUS_BENCH_CSV";

/// `symbol_id` of warm-up records, of measured records, and of the record that ends a run.
const WARMUP: u32 = 0;
const MEASURED: u32 = 1;
const STOP: u32 = u32::MAX;

/// Capacity of the rings (and of the crossbeam channel) of the latency runs: 4 MiB of trades,
/// 65 ms of slack at 1M records/s.
const LATENCY_CAPACITY: u64 = 1 << 16;
/// Capacity of the hot ring of the write-cost benchmarks: 64 KiB of trades, 256 KiB of book
/// updates, both in the writer core's L2.
const HOT_CAPACITY: u64 = 1 << 10;
/// Criterion samples per write-cost benchmark.
const SAMPLES: usize = 100;
/// Latencies above this count as hypervisor-pause tails in the summary.
const TAIL_NS: u64 = 10_000;
/// A child reader gives up after this long without a record.
const IDLE_GIVE_UP_NS: u64 = 60_000_000_000;

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        std::process::exit(child_main(&role));
    }
    let opts = Opts::from_args();
    let load_start = loadavg();
    let cpus = choose_cpus(opts.measuring);
    if let (Some(w), _) = cpus {
        pin_to(w).unwrap_or_else(|e| panic!("pinning the writer to CPU {w}: {e}"));
    }

    let base = default_base_dir();
    let run_id = format!("bench-{}-{}", std::process::id(), now_ns());
    let mut run = RunDir::create(&base, &run_id)
        .unwrap_or_else(|e| panic!("creating a run directory under {}: {e}", base.display()));

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let writes = write_costs(&mut criterion, &mut run, &opts);
    if opts.list {
        criterion.final_summary();
        return;
    }

    let mut results = Vec::new();
    let mut failed = false;
    for section in SECTIONS {
        if !opts.selects(section.name) {
            continue;
        }
        let secs = opts.secs(section.default_secs);
        let plan = Plan {
            name: section.name,
            rate: section.rate,
            warm_ns: ((secs / 5.0).min(1.0) * 1e9) as u64,
            run_ns: (secs * 1e9) as u64,
            reader_cpu: cpus.1,
        };
        eprintln!(
            "{}: {} records/s for {secs} s (+{:.1} s warm-up), {} ...",
            section.name,
            section.rate,
            plan.warm_ns as f64 / 1e9,
            section.place
        );
        match (section.run)(&plan, &mut run) {
            Ok((tally, pace)) => {
                let r = Outcome {
                    section,
                    plan,
                    tally,
                    pace,
                };
                eprintln!("{}", r.detail());
                failed |= !r.consistent();
                results.push(r);
            }
            Err(e) => {
                eprintln!("{}: FAILED: {e}", section.name);
                failed = true;
            }
        }
    }
    drop(run);

    let load_end = loadavg();
    let table = summary(&writes, &results, &opts, cpus, &load_start, &load_end);
    println!("{table}");
    if let Ok(path) = std::env::var(CSV_ENV) {
        if let Err(e) = append_csv(Path::new(&path), &writes, &results) {
            eprintln!("writing {path}: {e}");
        }
    }
    criterion.final_summary();
    if failed {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

/// What this invocation asks for. Criterion parses the same arguments itself; this only picks
/// out what the latency sections need.
struct Opts {
    /// `--bench` without `--test`: a real measurement (else criterion's test mode and smoke runs).
    measuring: bool,
    quick: bool,
    list: bool,
    filter: Option<String>,
    secs: Option<f64>,
}

impl Opts {
    fn from_args() -> Self {
        // Criterion options that take a value, so that the value is not taken for the filter.
        const WITH_VALUE: &[&str] = &[
            "-c",
            "--color",
            "--colour",
            "-s",
            "--save-baseline",
            "-b",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--profile-time",
            "--plotting-backend",
            "--output-format",
            "--format",
        ];
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let mut filter = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if WITH_VALUE.contains(&arg.as_str()) {
                it.next();
            } else if !arg.starts_with('-') && filter.is_none() {
                filter = Some(arg.clone());
            }
        }
        let secs = std::env::var(SECS_ENV).ok().map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && v.is_finite())
                .unwrap_or_else(|| panic!("{SECS_ENV}={s:?} is not a positive number of seconds"))
        });
        Self {
            measuring: has("--bench") && !has("--test"),
            quick: has("--quick"),
            list: has("--list"),
            filter,
            secs,
        }
    }

    fn selects(&self, name: &str) -> bool {
        match &self.filter {
            Some(f) => name.contains(f.as_str()),
            None => true,
        }
    }

    /// Measured seconds of a latency run.
    fn secs(&self, default: f64) -> f64 {
        match (self.measuring, self.secs) {
            (false, _) => 0.02,
            (true, Some(s)) => s,
            (true, None) if self.quick => 1.0,
            (true, None) => default,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Write cost (criterion)

struct WriteCost {
    label: &'static str,
    median_ns: Option<f64>,
    target_ns: Option<f64>,
}

fn write_costs(c: &mut Criterion, run: &mut RunDir, opts: &Opts) -> Vec<WriteCost> {
    let ring = |run: &mut RunDir, name: &str, capacity| {
        run.create_ring::<Trade>(name, capacity, WriterMode::Overwrite)
            .unwrap_or_else(|e| panic!("creating ring {name}: {e}"))
    };
    let mut hot = ring(run, "write-hot.trades", HOT_CAPACITY);
    let mut big = ring(run, "write-big.trades", LATENCY_CAPACITY);
    let book_ring = |run: &mut RunDir, name: &str, capacity| {
        run.create_ring::<BookUpdate>(name, capacity, WriterMode::Overwrite)
            .unwrap_or_else(|e| panic!("creating ring {name}: {e}"))
    };
    let mut hot_book = book_ring(run, "write-hot.book", HOT_CAPACITY);
    let mut big_book = book_ring(run, "write-big.book", LATENCY_CAPACITY);

    let mut out = Vec::new();
    let mut add = |label, median_ns, target_ns| {
        out.push(WriteCost {
            label,
            median_ns,
            target_ns,
        })
    };

    let mut g = c.benchmark_group("write");
    g.sample_size(SAMPLES);

    let sealed = sample_trade();
    let m = measure(&mut g, "trade64", opts, |_| {
        black_box(hot.write(black_box(&sealed)).ok());
    });
    add("Trade 64 B write, checksum excluded", m, Some(15.0));

    let mut t = sample_trade();
    let m = measure(&mut g, "trade64+seal", opts, |i| {
        t.trade_id = i;
        t.seal();
        black_box(hot.write(black_box(&t)).ok());
    });
    add("Trade 64 B seal + write", m, None);

    let m = measure(&mut g, "trade64+now+seal", opts, |i| {
        t.trade_id = i;
        t.send_ts_ns = now_ns();
        t.seal();
        black_box(hot.write(black_box(&t)).ok());
    });
    add("Trade 64 B now_ns + seal + write", m, None);

    let m = measure(&mut g, "trade64@64k", opts, |_| {
        black_box(big.write(black_box(&sealed)).ok());
    });
    add("Trade 64 B write, 64Ki-slot ring (4 MiB)", m, None);

    let sealed_book = sample_book();
    let m = measure(&mut g, "book256", opts, |_| {
        black_box(hot_book.write(black_box(&sealed_book)).ok());
    });
    add("BookUpdate 256 B write, checksum excluded", m, Some(50.0));

    let mut b = sample_book();
    let m = measure(&mut g, "book256+seal", opts, |i| {
        b.version = i;
        b.seal();
        black_box(hot_book.write(black_box(&b)).ok());
    });
    add("BookUpdate 256 B seal + write", m, None);

    let m = measure(&mut g, "book256@64k", opts, |_| {
        black_box(big_book.write(black_box(&sealed_book)).ok());
    });
    add("BookUpdate 256 B write, 64Ki-slot ring (16 MiB)", m, None);
    g.finish();

    let mut g = c.benchmark_group("clock");
    g.sample_size(SAMPLES);
    let m = measure(&mut g, "now_ns", opts, |_| {
        black_box(now_ns());
    });
    add("now_ns() (CLOCK_MONOTONIC via vDSO)", m, None);
    g.finish();
    out
}

/// Runs `op(i)` under criterion and returns the median time per call over criterion's samples,
/// the figure criterion reports as "median" (its headline is the mean or slope).
fn measure(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    opts: &Opts,
    mut op: impl FnMut(u64),
) -> Option<f64> {
    let mut per_call = Vec::new();
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                op(i);
            }
            let elapsed = start.elapsed();
            per_call.push(elapsed.as_nanos() as f64 / iters as f64);
            elapsed
        })
    });
    // Criterion calls the routine for its warm-up first and then once per sample; quick mode
    // keeps only its last two calls as samples.
    let samples = if opts.quick { 2 } else { SAMPLES };
    if !opts.measuring || per_call.len() < samples {
        return None;
    }
    let mut last = per_call.split_off(per_call.len() - samples);
    last.sort_by(f64::total_cmp);
    Some(if samples % 2 == 1 {
        last[samples / 2]
    } else {
        (last[samples / 2 - 1] + last[samples / 2]) / 2.0
    })
}

fn sample_trade() -> Trade {
    let mut t = Trade {
        send_ts_ns: now_ns(),
        exchange_id: 1,
        side: Side::Buy as u8,
        symbol_id: MEASURED,
        trade_id: 1,
        price: 42_000 * PRICE_SCALE,
        size: SIZE_SCALE / 10,
        book_version: 7,
        ..Trade::default()
    };
    t.seal();
    t
}

fn sample_book() -> BookUpdate {
    let mut levels = [Level::default(); MAX_LEVELS];
    for (i, level) in levels.iter_mut().enumerate() {
        *level = Level {
            price: (42_000 + i as i64) * PRICE_SCALE,
            size: SIZE_SCALE,
            side: Side::Sell as u8,
            action: 2,
            reserved: [0; 6],
        };
    }
    let mut b = BookUpdate {
        send_ts_ns: now_ns(),
        exchange_id: 1,
        level_count: MAX_LEVELS as u8,
        symbol_id: 1,
        version: 2,
        prev_version: 1,
        levels,
        ..BookUpdate::default()
    };
    b.seal();
    b
}

// ---------------------------------------------------------------------------------------------
// Latency runs: the writer side

/// One latency section of the benchmark.
struct Section {
    name: &'static str,
    label: &'static str,
    place: &'static str,
    rate: u64,
    default_secs: f64,
    run: fn(&Plan, &mut RunDir) -> RunResult,
}

const SECTIONS: &[Section] = &[
    Section {
        name: "oneway/bus",
        label: "bus (shm seqlock ring), spin",
        place: "other process",
        rate: 100_000,
        default_secs: 5.0,
        run: run_bus,
    },
    Section {
        name: "oneway/uds-spin",
        label: "UnixDatagram pair, nonblocking spin",
        place: "other process",
        rate: 100_000,
        default_secs: 5.0,
        run: run_uds_spin,
    },
    Section {
        name: "oneway/uds-block",
        label: "UnixDatagram pair, blocking recv",
        place: "other process",
        rate: 100_000,
        default_secs: 5.0,
        run: run_uds_block,
    },
    Section {
        name: "oneway/crossbeam-spin",
        label: "crossbeam bounded, try_recv spin",
        place: "other thread",
        rate: 100_000,
        default_secs: 5.0,
        run: run_crossbeam_spin,
    },
    Section {
        name: "oneway/crossbeam-block",
        label: "crossbeam bounded, blocking recv",
        place: "other thread",
        rate: 100_000,
        default_secs: 5.0,
        run: run_crossbeam_block,
    },
    Section {
        name: "keepup/bus-1M",
        label: "bus (shm seqlock ring), spin",
        place: "other process",
        rate: 1_000_000,
        default_secs: 10.0,
        run: run_bus,
    },
];

/// What a latency run returns: the reader's tally and the writer's pacing.
type RunResult = Result<(Tally, Pace), String>;

struct Plan {
    name: &'static str,
    rate: u64,
    warm_ns: u64,
    run_ns: u64,
    reader_cpu: Option<usize>,
}

/// What the writer did.
struct Pace {
    /// Records sent, warm-up included, the stop record excluded.
    sent: u64,
    /// How late each measured send started against its schedule, ns.
    late: Histogram<u64>,
    /// Times the writer thread was preempted (involuntary context switches) during the run.
    preempted: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Sends `plan.rate` records per second, open loop, through `send`: record `i` is due at
/// `start + i / rate`; the writer spins until then, stamps the record with the time it actually
/// sends it, seals it and sends it, late or not. A stop record follows the last one.
fn pace(plan: &Plan, mut send: impl FnMut(&Trade)) -> Pace {
    let period_ns = 1_000_000_000 / plan.rate;
    let warm = plan.warm_ns / period_ns;
    let total = warm + plan.run_ns / period_ns;
    let mut late = histogram();
    let switches = involuntary_switches();
    let mut t = sample_trade();
    let start = now_ns() + 1_000_000;
    for i in 0..total {
        let due = start + i * period_ns;
        let mut now = now_ns();
        while now < due {
            spin_loop();
            now = now_ns();
        }
        if i >= warm {
            late.saturating_record(now - due);
        }
        t.sequence = i + 1;
        t.trade_id = i + 1;
        t.symbol_id = if i < warm { WARMUP } else { MEASURED };
        t.send_ts_ns = now;
        t.seal();
        send(&t);
    }
    t.sequence = total + 1;
    t.symbol_id = STOP;
    t.send_ts_ns = now_ns();
    t.seal();
    send(&t);
    Pace {
        sent: total,
        late,
        preempted: involuntary_switches() - switches,
    }
}

fn run_bus(plan: &Plan, run: &mut RunDir) -> RunResult {
    let file = format!("{}.trades", plan.name.replace('/', "-"));
    let mut writer = run
        .create_ring::<Trade>(&file, LATENCY_CAPACITY, WriterMode::Overwrite)
        .map_err(|e| e.to_string())?;
    let path = run.path().join(&file);
    let mut child = ChildReader::spawn(
        "bus",
        plan.reader_cpu,
        &[(RING_ENV, path.display().to_string())],
        None,
    )?;
    let pace = pace(plan, |t| {
        writer
            .write(t)
            .expect("an overwrite-mode write never fails");
    });
    let tally = child.finish()?;
    drop(writer);
    Ok((tally, pace))
}

fn run_uds(plan: &Plan, role: &str) -> RunResult {
    let (tx, rx) = UnixDatagram::pair().map_err(|e| format!("socketpair: {e}"))?;
    let fd = rx.as_raw_fd();
    let mut child =
        ChildReader::spawn(role, plan.reader_cpu, &[(FD_ENV, fd.to_string())], Some(fd))?;
    drop(rx);
    let pace = pace(plan, |t| {
        let n = tx
            .send(bytemuck::bytes_of(t))
            .expect("sending to the reader process");
        assert_eq!(n, size_of::<Trade>(), "short datagram send");
    });
    let tally = child.finish()?;
    Ok((tally, pace))
}

fn run_uds_spin(plan: &Plan, _: &mut RunDir) -> RunResult {
    run_uds(plan, "uds-spin")
}

fn run_uds_block(plan: &Plan, _: &mut RunDir) -> RunResult {
    run_uds(plan, "uds-block")
}

fn run_crossbeam(plan: &Plan, spin: bool) -> RunResult {
    let (tx, rx) = crossbeam_channel::bounded::<Trade>(LATENCY_CAPACITY as usize);
    let ready = Arc::new(Barrier::new(2));
    let reader_ready = Arc::clone(&ready);
    let cpu = plan.reader_cpu;
    let reader = std::thread::Builder::new()
        .name("crossbeam-reader".into())
        .spawn(move || {
            if let Some(cpu) = cpu {
                pin_to(cpu).unwrap_or_else(|e| panic!("pinning the reader to CPU {cpu}: {e}"));
            }
            reader_ready.wait();
            let mut tally = Tally::new();
            loop {
                let t = if spin {
                    match rx.try_recv() {
                        Ok(t) => t,
                        Err(crossbeam_channel::TryRecvError::Empty) => {
                            spin_loop();
                            continue;
                        }
                        Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                    }
                } else {
                    match rx.recv() {
                        Ok(t) => t,
                        Err(_) => break,
                    }
                };
                if tally.record(&t, now_ns()) {
                    break;
                }
            }
            tally.done();
            tally
        })
        .map_err(|e| format!("spawning the reader thread: {e}"))?;
    ready.wait();
    let pace = pace(plan, |t| tx.send(*t).expect("the reader thread hung up"));
    drop(tx);
    let tally = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_owned())?;
    Ok((tally, pace))
}

fn run_crossbeam_spin(plan: &Plan, _: &mut RunDir) -> RunResult {
    run_crossbeam(plan, true)
}

fn run_crossbeam_block(plan: &Plan, _: &mut RunDir) -> RunResult {
    run_crossbeam(plan, false)
}

/// A reader process: this binary re-executed in a reader role, reporting on its stdout.
struct ChildReader {
    child: Child,
    out: BufReader<ChildStdout>,
    role: String,
}

impl ChildReader {
    /// Starts the reader and waits until it says it is ready to read.
    fn spawn(
        role: &str,
        cpu: Option<usize>,
        env: &[(&str, String)],
        inherit: Option<RawFd>,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.env(ROLE_ENV, role)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match cpu {
            Some(cpu) => cmd.env(READER_CPU_ENV, cpu.to_string()),
            None => cmd.env_remove(READER_CPU_ENV),
        };
        if let Some(fd) = inherit {
            let keep_open = move || {
                // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe and
                // only clears close-on-exec on `fd`, a descriptor the parent holds open.
                if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            // SAFETY: the hook only calls fcntl (see above): it allocates nothing and takes no
            // lock, so it is sound between fork and exec.
            unsafe { cmd.pre_exec(keep_open) };
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the {role} reader: {e}"))?;
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut this = Self {
            child,
            out,
            role: role.to_owned(),
        };
        match this.line()?.as_str() {
            "READY" => Ok(this),
            other => Err(format!("{role} reader: expected READY, got {other:?}")),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.out.read_line(&mut line) {
            Ok(0) => Err(format!(
                "the {} reader exited early ({:?})",
                self.role,
                self.child.wait().ok()
            )),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) => Err(format!("reading from the {} reader: {e}", self.role)),
        }
    }

    /// Reads the reader's result and waits for it to exit.
    fn finish(&mut self) -> Result<Tally, String> {
        let mut tally = Tally::new();
        let head = self.line()?;
        let fields: Vec<u64> = head
            .strip_prefix("RESULT ")
            .ok_or_else(|| format!("{} reader: expected RESULT, got {head:?}", self.role))?
            .split(' ')
            .map(|f| f.parse().map_err(|_| format!("bad RESULT line {head:?}")))
            .collect::<Result<_, _>>()?;
        let [received, measured, lost, bad, torn, preempted] = fields[..] else {
            return Err(format!("bad RESULT line {head:?}"));
        };
        (
            tally.received,
            tally.measured,
            tally.lost,
            tally.bad,
            tally.torn,
            tally.preempted,
        ) = (received, measured, lost, bad, torn, preempted);
        loop {
            let line = self.line()?;
            if line == "END" {
                break;
            }
            let mut it = line.split(' ').skip(1).map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(value)), Some(Ok(count))) => {
                    tally.hist.saturating_record_n(value, count);
                }
                _ => return Err(format!("bad histogram line {line:?}")),
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for the {} reader: {e}", self.role))?;
        if !status.success() {
            return Err(format!("the {} reader failed: {status}", self.role));
        }
        Ok(tally)
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Latency runs: the reader side

/// What a reader counted.
struct Tally {
    /// One-way latency of the measured records, ns.
    hist: Histogram<u64>,
    /// Records received, warm-up included, the stop record excluded.
    received: u64,
    /// Records that went into `hist`.
    measured: u64,
    /// Records lost: reported by the bus, or gaps in the sequence.
    lost: u64,
    /// Records whose checksum did not match, or that came out of order.
    bad: u64,
    /// Torn copies the bus reader discarded (each also counted in `lost`).
    torn: u64,
    /// Times the reader thread was preempted (involuntary context switches) during the run.
    preempted: u64,
    next_seq: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            hist: histogram(),
            received: 0,
            measured: 0,
            lost: 0,
            bad: 0,
            torn: 0,
            preempted: involuntary_switches(),
            next_seq: 1,
        }
    }

    /// Ends the count of preemptions that `new` started.
    fn done(&mut self) {
        self.preempted = involuntary_switches() - self.preempted;
    }

    fn skipped(&mut self, n: u64) {
        self.lost += n;
        self.next_seq += n;
    }

    /// Counts record `t`, copied out at `now`; true if it is the stop record.
    fn record(&mut self, t: &Trade, now: u64) -> bool {
        match t.sequence.checked_sub(self.next_seq) {
            Some(gap) => self.lost += gap,
            None => self.bad += 1,
        }
        self.next_seq = t.sequence + 1;
        if checksum_of(t) != t.checksum {
            self.bad += 1;
        }
        match t.symbol_id {
            STOP => return true,
            MEASURED => {
                self.hist
                    .saturating_record(now.saturating_sub(t.send_ts_ns).max(1));
                self.measured += 1;
            }
            _ => {}
        }
        self.received += 1;
        false
    }

    fn report(&self) -> String {
        let mut s = format!(
            "RESULT {} {} {} {} {} {}\n",
            self.received, self.measured, self.lost, self.bad, self.torn, self.preempted
        );
        for v in self.hist.iter_recorded() {
            let _ = writeln!(s, "H {} {}", v.value_iterated_to(), v.count_at_value());
        }
        s.push_str("END\n");
        s
    }
}

/// Notices, while a reader finds nothing, that its parent is gone or has been silent too long.
struct Watchdog {
    polls: u32,
    last_record_ns: u64,
    parent: u32,
}

impl Watchdog {
    fn new() -> Self {
        Self {
            polls: 0,
            last_record_ns: now_ns(),
            parent: std::os::unix::process::parent_id(),
        }
    }

    fn saw_record(&mut self, now: u64) {
        self.last_record_ns = now;
    }

    /// Call on each empty poll: an error once the reader should give up, else whether it has
    /// been silent for over a second (checked every 65536 polls, so it costs nothing meanwhile).
    fn idle(&mut self) -> Result<bool, String> {
        self.polls = self.polls.wrapping_add(1);
        if !self.polls.is_multiple_of(65_536) {
            return Ok(false);
        }
        let silent = now_ns().saturating_sub(self.last_record_ns);
        if silent <= 1_000_000_000 {
            return Ok(false);
        }
        if std::os::unix::process::parent_id() != self.parent {
            return Err("the writer process is gone".into());
        }
        if silent > IDLE_GIVE_UP_NS {
            return Err(format!("no record for {} s", silent / 1_000_000_000));
        }
        Ok(true)
    }
}

fn child_main(role: &str) -> i32 {
    if let Some(cpu) = std::env::var(READER_CPU_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = pin_to(cpu) {
            eprintln!("{role} reader: pinning to CPU {cpu}: {e}");
            return 1;
        }
    }
    let result = match role {
        "bus" => read_bus(),
        "uds-spin" => read_uds(true),
        "uds-block" => read_uds(false),
        other => Err(format!("unknown {ROLE_ENV} {other:?}")),
    };
    match result {
        Ok(tally) => {
            let mut out = std::io::stdout().lock();
            match out
                .write_all(tally.report().as_bytes())
                .and_then(|()| out.flush())
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{role} reader: writing the result: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("{role} reader: {e}");
            1
        }
    }
}

fn ready() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"READY\n")
        .and_then(|()| out.flush())
        .map_err(|e| format!("signalling readiness: {e}"))
}

fn read_bus() -> Result<Tally, String> {
    let path = PathBuf::from(std::env::var_os(RING_ENV).ok_or(format!("{RING_ENV} unset"))?);
    let mut reader = Reader::<Trade>::attach(&path, StartAt::Oldest).map_err(|e| e.to_string())?;
    let mut tally = Tally::new();
    let mut watchdog = Watchdog::new();
    ready()?;
    loop {
        match reader.try_read() {
            Poll::Record(t) => {
                let now = now_ns();
                watchdog.saw_record(now);
                if tally.record(&t, now) {
                    break;
                }
            }
            Poll::Lost(n) => tally.skipped(n),
            Poll::Empty => {
                spin_loop();
                if watchdog.idle()? {
                    if let status @ (WriterStatus::Closed
                    | WriterStatus::Dead
                    | WriterStatus::Replaced) = reader.writer_status(Duration::from_secs(5))
                    {
                        return Err(format!("writer {status:?} before the stop record"));
                    }
                }
            }
        }
    }
    tally.torn = reader.stats().torn;
    tally.done();
    Ok(tally)
}

fn read_uds(spin: bool) -> Result<Tally, String> {
    let fd: RawFd = std::env::var(FD_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(format!("{FD_ENV} unset or not a descriptor"))?;
    // SAFETY: the parent created this descriptor as one end of a datagram socket pair and cleared
    // its close-on-exec flag for this process only; nothing else in this process owns it, so the
    // socket takes sole ownership.
    let sock = unsafe { UnixDatagram::from_raw_fd(fd) };
    if spin {
        sock.set_nonblocking(true)
    } else {
        sock.set_read_timeout(Some(Duration::from_secs(1)))
    }
    .map_err(|e| format!("configuring the socket: {e}"))?;
    let mut tally = Tally::new();
    let mut watchdog = Watchdog::new();
    let mut t = Trade::default();
    ready()?;
    loop {
        match sock.recv(bytemuck::bytes_of_mut(&mut t)) {
            Ok(n) if n == size_of::<Trade>() => {
                let now = now_ns();
                watchdog.saw_record(now);
                if tally.record(&t, now) {
                    break;
                }
            }
            Ok(n) => return Err(format!("a {n}-byte datagram")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if spin {
                    spin_loop();
                } else {
                    // A one-second timeout: check at once rather than every 65536 polls.
                    watchdog.polls = 65_535;
                }
                watchdog.idle()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    tally.done();
    Ok(tally)
}

// ---------------------------------------------------------------------------------------------
// CPUs and load

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu < CPU_SETSIZE`, so CPU_ISSET reads inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

fn pin_to(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: all zeroes is the empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE` (checked above), so CPU_SET writes inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The writer's and the reader's CPU, or none when not measuring or with fewer than two CPUs.
fn choose_cpus(measuring: bool) -> (Option<usize>, Option<usize>) {
    if !measuring {
        return (None, None);
    }
    if let Ok(spec) = std::env::var(CPUS_ENV) {
        let cpus: Vec<usize> = spec
            .split(',')
            .map(|s| {
                s.trim().parse().unwrap_or_else(|_| {
                    panic!("{CPUS_ENV}={spec:?}: expected two CPU numbers, WRITER,READER")
                })
            })
            .collect();
        let [w, r] = cpus[..] else {
            panic!("{CPUS_ENV}={spec:?}: expected two CPU numbers, WRITER,READER");
        };
        return (Some(w), Some(r));
    }
    match allowed_cpus()[..] {
        [w, r, ..] => (Some(w), Some(r)),
        _ => {
            eprintln!("fewer than two CPUs available: writer and reader are not pinned");
            (None, None)
        }
    }
}

/// Involuntary context switches of the calling thread so far: how often the scheduler took its
/// CPU away to run something else.
fn involuntary_switches() -> u64 {
    // SAFETY: `rusage` is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_THREAD asks about this thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc == 0 {
        usage.ru_nivcsw as u64
    } else {
        0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// Reporting

struct Outcome {
    section: &'static Section,
    plan: Plan,
    tally: Tally,
    pace: Pace,
}

impl Outcome {
    fn q(&self, q: f64) -> u64 {
        self.tally.hist.value_at_quantile(q)
    }

    fn tails_per_s(&self) -> f64 {
        let h = &self.tally.hist;
        h.count_between(TAIL_NS + 1, h.max().max(TAIL_NS + 1)) as f64
            / (self.plan.run_ns as f64 / 1e9)
    }

    /// Whether every record sent was received or counted lost, intact.
    fn consistent(&self) -> bool {
        self.tally.received + self.tally.lost == self.pace.sent && self.tally.bad == 0
    }

    fn detail(&self) -> String {
        let t = &self.tally;
        format!(
            "{}: sent {} received {} lost {} torn {} bad {}{}; one-way ns p50 {} p90 {} p99 {} \
             p99.9 {} max {} mean {:.0}; writer late p50 {} p99 {} max {} ns; preempted: writer {} \
             reader {}",
            self.section.name,
            self.pace.sent,
            t.received,
            t.lost,
            t.torn,
            t.bad,
            if self.consistent() {
                ""
            } else {
                " (INCONSISTENT)"
            },
            self.q(0.5),
            self.q(0.9),
            self.q(0.99),
            self.q(0.999),
            t.hist.max(),
            t.hist.mean(),
            self.pace.late.value_at_quantile(0.5),
            self.pace.late.value_at_quantile(0.99),
            self.pace.late.max(),
            self.pace.preempted,
            t.preempted,
        )
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn summary(
    writes: &[WriteCost],
    results: &[Outcome],
    opts: &Opts,
    cpus: (Option<usize>, Option<usize>),
    load_start: &str,
    load_end: &str,
) -> String {
    let mut s = String::new();
    let cpu = |c: Option<usize>| c.map_or_else(|| "unpinned".into(), |c| format!("cpu{c}"));
    let _ = writeln!(
        s,
        "\n== alphapulse-bus benchmark summary{} ==",
        if opts.measuring {
            if opts.quick {
                " (--quick)"
            } else {
                ""
            }
        } else {
            " (test mode: smoke run, figures meaningless)"
        }
    );
    let _ = writeln!(
        s,
        "writer {} -> reader {}; load average 1/5/15 min: {load_start} at start, {load_end} at end",
        cpu(cpus.0),
        cpu(cpus.1)
    );
    let busy = load_start
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l > 1.0);
    if busy && opts.measuring {
        let _ = writeln!(
            s,
            "WARNING: the 1-minute load average was {load_start} before this run started: other \
             processes compete for the pinned CPUs (see the preempt w/r column)"
        );
    }
    if writes.iter().any(|w| w.median_ns.is_some()) {
        let _ = writeln!(
            s,
            "\nwrite cost, median ns per call over {} criterion samples (ring without reader, \
             overwrite mode, {}-slot ring unless stated)",
            if opts.quick { 2 } else { SAMPLES },
            HOT_CAPACITY
        );
        let _ = writeln!(s, "  {:<50} {:>8} {:>8}", "", "median", "target");
        let verdict = |w: &WriteCost| match (w.median_ns, w.target_ns) {
            (Some(m), Some(t)) if m <= t => "  met",
            (Some(_), Some(_)) => "  MISSED",
            _ => "",
        };
        for w in writes.iter().filter(|w| w.median_ns.is_some()) {
            let _ = writeln!(
                s,
                "  {:<50} {:>8} {:>8}{}",
                w.label,
                fmt_opt(w.median_ns, 1),
                w.target_ns
                    .map_or_else(String::new, |t| format!("<= {t:.0}")),
                verdict(w),
            );
        }
    }
    let oneway: Vec<&Outcome> = results
        .iter()
        .filter(|r| r.section.name.starts_with("oneway/"))
        .collect();
    let header = format!(
        "  {:<37} {:<13} {:>6} {:>6} {:>7} {:>7} {:>8} {:>9} {:>9} {:>7} {:>8} {:>11}",
        "transport",
        "reader in",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "received",
        "lost",
        ">10us/s",
        "p50/bus",
        "preempt w/r"
    );
    let bus_p50 = oneway
        .iter()
        .find(|r| r.section.name == "oneway/bus")
        .map(|r| r.q(0.5) as f64);
    let row = |s: &mut String, r: &Outcome| {
        let _ = writeln!(
            s,
            "  {:<37} {:<13} {:>6} {:>6} {:>7} {:>7} {:>8} {:>9} {:>9} {:>7.0} {:>8} {:>11}",
            r.section.label,
            r.section.place,
            r.q(0.5),
            r.q(0.9),
            r.q(0.99),
            r.q(0.999),
            r.tally.hist.max(),
            r.tally.received,
            r.tally.lost,
            r.tails_per_s(),
            bus_p50.map_or_else(|| "-".into(), |b| format!("{:.2}x", r.q(0.5) as f64 / b)),
            format!("{}/{}", r.pace.preempted, r.tally.preempted),
        );
    };
    if let Some(first) = oneway.first() {
        let _ = writeln!(
            s,
            "\none-way latency, ns, send_ts_ns -> reader's now_ns() after the copy; 64-byte \
             records at {}k/s for {} s (+{:.1} s warm-up), {}-deep ring/channel; target p50 <= 600 \
             for the bus",
            first.plan.rate / 1000,
            first.plan.run_ns as f64 / 1e9,
            first.plan.warm_ns as f64 / 1e9,
            LATENCY_CAPACITY,
        );
        let _ = writeln!(s, "{header}");
        for r in &oneway {
            row(&mut s, r);
        }
        if let (Some(p50), true) = (bus_p50, opts.measuring) {
            let _ = writeln!(
                s,
                "  bus p50 {p50:.0} ns against the target <= 600 ns: {}",
                if p50 <= 600.0 { "met" } else { "MISSED" }
            );
        }
    }
    if let Some(r) = results.iter().find(|r| r.section.name == "keepup/bus-1M") {
        let _ = writeln!(
            s,
            "\nkeep-up at {}M records/s for {} s (+{:.1} s warm-up): target zero lost",
            r.plan.rate / 1_000_000,
            r.plan.run_ns as f64 / 1e9,
            r.plan.warm_ns as f64 / 1e9,
        );
        let _ = writeln!(s, "{header}");
        row(&mut s, r);
        let _ = writeln!(
            s,
            "  sent {}, received {}, lost {}, torn {}, bad {}: {}; writer late p99 {} ns, max {} ns",
            r.pace.sent,
            r.tally.received,
            r.tally.lost,
            r.tally.torn,
            r.tally.bad,
            if r.tally.lost == 0 && r.consistent() {
                "met"
            } else {
                "MISSED"
            },
            r.pace.late.value_at_quantile(0.99),
            r.pace.late.max()
        );
    }
    if !results.is_empty() {
        let _ = writeln!(
            s,
            "\n>10us/s: measured records per second slower than 10 us; on this VM these are \
             mostly hypervisor pauses (15-25 us, ~2000/s), which also make up the p99.9 and max.\n\
             preempt w/r: involuntary context switches of the writer and the reader thread during \
             the run; beyond a handful, other processes took their CPUs and the figures measure \
             that contention, not the transport."
        );
    }
    s
}

fn append_csv(path: &Path, writes: &[WriteCost], results: &[Outcome]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let stamp = now_ns();
    for w in writes {
        if let Some(m) = w.median_ns {
            writeln!(f, "{stamp},write,{},{m:.2}", w.label.replace(',', ";"))?;
        }
    }
    for r in results {
        writeln!(
            f,
            "{stamp},latency,{},{},{},{},{},{},{},{},{},{:.0},{},{}",
            r.section.name,
            r.q(0.5),
            r.q(0.9),
            r.q(0.99),
            r.q(0.999),
            r.tally.hist.max(),
            r.pace.sent,
            r.tally.received,
            r.tally.lost,
            r.tails_per_s(),
            r.pace.preempted,
            r.tally.preempted
        )?;
    }
    Ok(())
}
