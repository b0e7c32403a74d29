//! The command line, exactly as the user types it. Checks that need more than one flag, or the
//! file system, live in [`crate::config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::limits::*;
use crate::plan::{ClockSource, PacingMode, WriterMode};

/// Load tester and latency profiler for the AlphaPulse shared-memory market-data bus.
///
/// Simulates exchanges that publish trades and order-book updates into lock-free rings in
/// /dev/shm at exact open-loop rates, measures every write in nanoseconds, and judges the run
/// against performance targets. Exit status: 0 passed, 1 targets missed, 2 usage or configuration
/// error, 3 run invalid (the tester itself could not keep up), 130/143 interrupted.
#[derive(Debug, Parser)]
#[command(name = "load-tester", version, allow_negative_numbers = true)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A maintenance command instead of a load test.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The load test (the default command).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Commands other than the load test.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare two results files metric by metric (latencies from their stored histograms).
    /// Exit status: 0 no regression, 1 a regression, 2 unusable input.
    Compare(CompareArgs),
    /// Read a run's rings as a consumer: end-to-end latency, losses and integrity of every
    /// record, from any writer built on alphapulse-bus.
    Read(ReadArgs),
    /// Record every record of a run's rings into a capture file, from any writer built on
    /// alphapulse-bus (a reader like `read`, that also writes what it reads).
    Record(RecordArgs),
    /// Convert Tardis.dev CSV files (trades, incremental_book_L2; .csv or .csv.gz) into a
    /// capture file that `--replay` plays.
    ImportTardis(ImportTardisArgs),
    /// Remove the shared-memory run directories of runs whose process died.
    Clean {
        /// Base directory of run directories [default: $ALPHAPULSE_SHM_DIR or /dev/shm/alphapulse].
        #[arg(long, value_name = "DIR")]
        shm_dir: Option<PathBuf>,
    },
}

/// Options of `load-tester read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The run directory to read (it holds manifest.json)
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,

    /// Pin the reader to this core
    #[arg(long, value_name = "CORE", value_parser = |s: &str| whole(s, 0, MAX_CORE))]
    pub pin_core: Option<u64>,

    /// Busy delay after each record, nanoseconds (a deliberately slow reader)
    #[arg(long, value_name = "NS", default_value_t = 0,
          value_parser = |s: &str| whole(s, 0, 1_000_000_000))]
    pub delay_ns: u64,

    /// Stop after this many seconds even if the writers are still open
    #[arg(short = 'd', long, value_name = "SECS", value_parser = |s: &str| whole(s, 1, MAX_DURATION_SECS))]
    pub duration_secs: Option<u64>,

    /// A writer silent for this long counts as stopped, milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = |s: &str| whole(s, 1, 3_600_000))]
    pub stale_after_ms: u64,

    /// Save the reader's results to a JSON file
    #[arg(long, value_name = "FILE")]
    pub json_output: Option<PathBuf>,

    /// Speak the load tester's line protocol on stdin/stdout (used when it starts readers)
    #[arg(long, hide = true)]
    pub protocol: bool,

    /// With --protocol: ship a 10 ms timeline and ring positions with every report (chaos)
    #[arg(long, hide = true, requires = "protocol")]
    pub timeline: bool,

    /// With --protocol: resume where a replaced reader stopped, FILE:EPOCH:SEQUENCE per ring
    #[arg(long, hide = true, requires = "protocol", value_parser = position)]
    pub resume: Vec<crate::run::reader_wire::Position>,

    /// Also write every record read into this capture file (it must not exist)
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// Options of `load-tester record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The run directory to record (it holds manifest.json)
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,

    /// The capture file to write (it must not exist)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,

    /// Stop after this many seconds even if the writers are still open
    #[arg(short = 'd', long, value_name = "SECS", value_parser = |s: &str| whole(s, 1, MAX_DURATION_SECS))]
    pub duration_secs: Option<u64>,

    /// A writer silent for this long counts as stopped, milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = |s: &str| whole(s, 1, 3_600_000))]
    pub stale_after_ms: u64,
}

/// Options of `load-tester import-tardis`.
#[derive(Debug, Args)]
pub struct ImportTardisArgs {
    /// A Tardis `trades` CSV file (exchange,symbol,timestamp,local_timestamp,id,side,price,amount)
    #[arg(long, value_name = "FILE", required_unless_present = "book")]
    pub trades: Vec<PathBuf>,

    /// A Tardis `incremental_book_L2` CSV file
    /// (exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount)
    #[arg(long, value_name = "FILE")]
    pub book: Vec<PathBuf>,

    /// The capture file to write (it must not exist)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,

    /// Which Tardis time is the record's time: when the exchange stamped it, or when Tardis
    /// received it (`local`, the order rows were recorded in)
    #[arg(long, value_enum, default_value_t = TardisTime::Local)]
    pub time: TardisTime,
}

/// Which timestamp of a Tardis row a capture keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TardisTime {
    /// `local_timestamp`: when Tardis received the message.
    Local,
    /// `timestamp`: the exchange's own time.
    Exchange,
}

/// Options of `load-tester compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Results of the reference run (the --json-output of an earlier run)
    #[arg(value_name = "BASELINE.json")]
    pub baseline: PathBuf,

    /// Results of the run to judge
    #[arg(value_name = "CURRENT.json")]
    pub current: PathBuf,

    /// TOML file of regression thresholds: `"PATTERN" = PCT` or `"off"` per line
    #[arg(long, value_name = "FILE")]
    pub thresholds: Option<PathBuf>,

    /// A regression threshold, e.g. `latency.*.*.p99=10` (repeatable; `*` matches one segment)
    #[arg(long, value_name = "PATTERN=PCT")]
    pub threshold: Vec<String>,

    /// The least change that counts, e.g. `latency.response.*.p99=200us` (repeatable)
    #[arg(long, value_name = "PATTERN=VALUE")]
    pub noise_floor: Vec<String>,

    /// Compare runs of different loads (exchanges, rates, symbols, mode) instead of refusing
    #[arg(long)]
    pub allow_config_change: bool,
}

/// How the generator waits for the next intended send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacingArg {
    /// Sleep until shortly before the send time (as long before as this machine's sleeps end
    /// late, calibrated), then spin: a lag of a few microseconds; the spinning shows in the
    /// process CPU, and the CPU target judges the time spent working.
    Hybrid,
    /// Spin on the clock: one core at 100%, the lowest lag.
    Spin,
    /// Sleep until each send time, never spin: the least CPU, and every send late by the
    /// machine's wake-up latency (tens of microseconds on a VM).
    Sleep,
}

/// Which clock the generator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockArg {
    /// The TSC mapped onto CLOCK_MONOTONIC where the TSC is invariant and the kernel's own
    /// clocksource, CLOCK_MONOTONIC otherwise.
    Auto,
    /// The TSC mapped onto CLOCK_MONOTONIC (refused where it is not reliable).
    Tsc,
    /// clock_gettime(CLOCK_MONOTONIC) for every timestamp.
    Monotonic,
}

/// Where threads and readers run when no core is named for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    /// One core each, generator threads on the highest cores, when there are enough.
    Auto,
    /// Wherever the scheduler puts them.
    None,
}

/// How this process takes part in a run (the original design's distributed mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Generate, measure and judge the whole load on this machine.
    Standalone,
    /// Split the load among workers, merge their reports and judge the whole.
    Coordinator,
    /// Run the share of the load a coordinator hands out.
    Worker,
}

/// What a writer does when a reader falls a whole ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriterModeArg {
    /// Never block; lapped readers count their losses (market-data semantics).
    Overwrite,
    /// Refuse the write (counted as a buffer overflow) rather than overwrite unread records.
    Backpressure,
}

impl From<PacingArg> for PacingMode {
    fn from(p: PacingArg) -> Self {
        match p {
            PacingArg::Hybrid => PacingMode::Hybrid,
            PacingArg::Spin => PacingMode::Spin,
            PacingArg::Sleep => PacingMode::Sleep,
        }
    }
}

impl From<WriterModeArg> for WriterMode {
    fn from(m: WriterModeArg) -> Self {
        match m {
            WriterModeArg::Overwrite => WriterMode::Overwrite,
            WriterModeArg::Backpressure => WriterMode::Backpressure,
        }
    }
}

impl ClockArg {
    /// The clock this choice names, where it names one (`auto` decides on the machine).
    pub fn fixed(self) -> Option<ClockSource> {
        match self {
            ClockArg::Auto => None,
            ClockArg::Tsc => Some(ClockSource::Tsc),
            ClockArg::Monotonic => Some(ClockSource::Monotonic),
        }
    }
}

/// Options of the load test.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Number of simulated exchanges
    #[arg(short = 'e', long, value_name = "NUM", default_value_t = 3,
          value_parser = |s: &str| whole(s, 1, MAX_EXCHANGES))]
    pub exchanges: u64,

    /// Target trades per second per exchange
    #[arg(short = 't', long, value_name = "TPS", default_value_t = 10_000,
          value_parser = |s: &str| whole(s, 0, MAX_RATE_PER_STREAM))]
    pub trades_per_second: u64,

    /// Target orderbook updates per second per exchange
    #[arg(short = 'o', long, value_name = "OPS", default_value_t = 5_000,
          value_parser = |s: &str| whole(s, 0, MAX_RATE_PER_STREAM))]
    pub orderbook_updates_per_second: u64,

    /// Test duration in seconds, after the warm-up
    #[arg(short = 'd', long, value_name = "SECS", default_value_t = 60,
          value_parser = |s: &str| whole(s, 1, MAX_DURATION_SECS))]
    pub duration_secs: u64,

    /// Number of symbols to simulate per exchange
    #[arg(short = 's', long, value_name = "COUNT", default_value_t = 10,
          value_parser = |s: &str| whole(s, 1, MAX_SYMBOLS))]
    pub symbol_count: u64,

    /// Enable verbose output: per-exchange tables, clock cost, logs on stderr
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Save results to JSON file
    #[arg(long, value_name = "FILE")]
    pub json_output: Option<PathBuf>,

    /// Standalone, or a distributed run's coordinator or worker
    #[arg(long, value_enum, default_value_t = RunMode::Standalone)]
    pub mode: RunMode,

    /// Seconds of load before measurement starts; measured and reported, kept out of the verdict
    #[arg(long, value_name = "SECS", default_value_t = 1,
          value_parser = |s: &str| whole(s, 0, MAX_WARMUP_SECS))]
    pub warmup_secs: u64,

    /// Seed of the market simulation; the same seed gives the same records
    #[arg(long, value_name = "N", default_value_t = 42,
          value_parser = |s: &str| whole(s, 0, u64::MAX))]
    pub seed: u64,

    /// How the generator waits for each send time
    #[arg(long, value_enum, default_value_t = PacingArg::Hybrid)]
    pub pacing: PacingArg,

    /// Hybrid pacing: spin (instead of sleeping) this many microseconds before each send time
    /// [default: calibrated from this machine's wake-up latency, and kept up to date]
    #[arg(long, value_name = "US", value_parser = |s: &str| whole(s, 0, MAX_SPIN_US))]
    pub spin_us: Option<u64>,

    /// Clock of the generator's timestamps
    #[arg(long, value_enum, default_value_t = ClockArg::Auto)]
    pub clock: ClockArg,

    /// Generator threads; exchanges are spread over them
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = |s: &str| whole(s, 1, MAX_THREADS))]
    pub threads: u64,

    /// Pin generator thread i to the i-th core of this comma-separated list
    #[arg(long, value_name = "CORES", value_delimiter = ',',
          value_parser = |s: &str| whole(s, 0, MAX_CORE))]
    pub pin_cores: Vec<u64>,

    /// Without --pin-cores and --reader-pin-cores: give each generator thread and reader a core
    /// of its own when there are enough (auto), or leave them to the scheduler (none)
    #[arg(long, value_enum, default_value_t = PlacementArg::Auto)]
    pub placement: PlacementArg,

    /// What writers do when a reader falls a whole ring behind
    #[arg(long, value_enum, default_value_t = WriterModeArg::Overwrite)]
    pub writer_mode: WriterModeArg,

    /// Records per ring, a power of two [default: half a second of the stream's rate, 4096 at least]
    #[arg(long, value_name = "N", value_parser = |s: &str| whole(s, RING_CAPACITY.0, RING_CAPACITY.1))]
    pub ring_capacity: Option<u64>,

    /// Reader processes that consume every ring and measure end-to-end latency and integrity
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = |s: &str| whole(s, 0, MAX_CONSUMERS))]
    pub consumers: u64,

    /// Pin reader i to the i-th core of this comma-separated list
    #[arg(long, value_name = "CORES", value_delimiter = ',',
          value_parser = |s: &str| whole(s, 0, MAX_CORE))]
    pub reader_pin_cores: Vec<u64>,

    /// Make every reader busy-wait this long after each record, nanoseconds (a slow consumer)
    #[arg(long, value_name = "NS", default_value_t = 0,
          value_parser = |s: &str| whole(s, 0, MAX_READER_DELAY_NS))]
    pub reader_delay_ns: u64,

    /// Do not fail the verdict when readers lose records (lapped in overwrite mode)
    #[arg(long)]
    pub allow_loss: bool,

    /// Write an HdrHistogram interval log: one histogram per second, stream and latency kind
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,

    /// Write percentile distributions (.hgrm, microseconds) per stream and latency kind into DIR
    #[arg(long, value_name = "DIR")]
    pub hgrm_dir: Option<PathBuf>,

    /// Write a self-contained HTML report (charts, verdict, configuration)
    #[arg(long, value_name = "FILE")]
    pub html_report: Option<PathBuf>,

    /// Write JUnit XML: one test case per performance target
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Compare with the results of an earlier run; a regression makes the exit status 1
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// With --baseline: TOML file of regression thresholds
    #[arg(long, value_name = "FILE", requires = "baseline")]
    pub thresholds: Option<PathBuf>,

    /// With --baseline: a regression threshold, e.g. `latency.*.*.p99=10` (repeatable)
    #[arg(long, value_name = "PATTERN=PCT", requires = "baseline")]
    pub threshold: Vec<String>,

    /// With --baseline: the least change that counts, e.g. `latency.response.*.p99=200us`
    #[arg(long, value_name = "PATTERN=VALUE", requires = "baseline")]
    pub noise_floor: Vec<String>,

    /// With --baseline: compare although the baseline ran a different load
    #[arg(long, requires = "baseline")]
    pub allow_config_change: bool,

    /// TOML file of performance targets that replace the defaults (see docs/measurement.md)
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,

    /// The run is INVALID when the generator fell behind (lag P99 above this, in microseconds, or
    /// over 1% of due messages unsent) while spending under half its time in writes
    #[arg(long, value_name = "US", default_value_t = 1000,
          value_parser = |s: &str| whole(s, 1, MAX_LAG_BUDGET_US))]
    pub lag_budget_us: u64,

    /// Serve live Prometheus metrics at http://ADDR:PORT/metrics (`:PORT` or `PORT`: loopback)
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<String>,

    /// With --metrics-addr: keep serving this many seconds after the run, for a last scrape
    #[arg(long, value_name = "SECS", default_value_t = 0, requires = "metrics_addr",
          value_parser = |s: &str| whole(s, 0, 3600))]
    pub metrics_linger: u64,

    /// Base directory of the run's shared memory [default: /dev/shm/alphapulse]
    #[arg(long, value_name = "DIR", env = "ALPHAPULSE_SHM_DIR")]
    pub shm_dir: Option<PathBuf>,

    /// Keep the run's shared-memory directory after the run (remove it with `load-tester clean`)
    #[arg(long)]
    pub keep_shm: bool,

    /// A scenario: a TOML file, or a built-in one (baseline, stress, endurance, burst, chaos); flags
    /// given here override it
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,

    /// Trades' arrival pattern, from a scenario.
    #[arg(skip)]
    pub trades_pattern: Option<crate::plan::patterns::PatternSpec>,

    /// Book updates' arrival pattern, from a scenario.
    #[arg(skip)]
    pub book_pattern: Option<crate::plan::patterns::PatternSpec>,

    /// Target overrides from a scenario.
    #[arg(skip)]
    pub scenario_targets: Option<crate::results::targets::Targets>,

    /// What the scenario is, when one was given.
    #[arg(skip)]
    pub scenario_description: Option<String>,

    /// With --replay: -d was not given, so the run lasts as long as the capture does.
    #[arg(skip)]
    pub duration_from_replay: bool,

    /// Options of record and replay.
    #[command(flatten, next_help_heading = "Record and replay")]
    pub replay: ReplayArgs,

    /// Options of the transport and its network path.
    #[command(flatten, next_help_heading = "Transport and network")]
    pub net: NetArgs,

    /// Options of a distributed run (--mode coordinator or worker).
    #[command(
        flatten,
        next_help_heading = "Distributed run (--mode coordinator / worker)"
    )]
    pub distributed: DistributedArgs,

    /// Options of fault injection.
    #[command(flatten, next_help_heading = "Chaos (fault injection)")]
    pub chaos: ChaosArgs,
}

/// Options of fault injection.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Inject a fault, KIND@WHEN[:ARG...][:reader=N|exchange=N][:budget=TIME] (repeatable):
    /// kill-reader@10s, stop-reader@20s:500ms, slow-reader@15s:200us:1s,
    /// restart-writer@30s, stall-generator@25s:200ms, fill-shm@40s:all:2s, corrupt-record@35s,
    /// net-loss-burst@12s:50ms, net-delay-spike@18s:5ms:1s; WHEN is a time, random, or ~GAP
    /// (seeded, on average every GAP). See docs/chaos.md
    #[arg(long, value_name = "SPEC", value_parser = crate::plan::chaos::FaultSpec::parse)]
    pub chaos: Vec<crate::plan::chaos::FaultSpec>,

    /// Seed of the random times and targets of --chaos
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub chaos_seed: u64,

    /// Start a killed reader again; it resumes where the killed one last reported
    #[arg(long)]
    pub restart_readers: bool,

    /// How long after its end a fault of KIND may take to recover, KIND=TIME (repeatable;
    /// defaults: kill-reader 2s, others 1s)
    #[arg(long, value_name = "KIND=TIME", value_parser = crate::plan::chaos::parse_budget)]
    pub chaos_budget: Vec<(crate::plan::chaos::FaultKind, u64)>,
}

/// Options of the transport and its network path.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// What the records travel through: shm (the bus), udp (a MoldUDP64-style feed on
    /// loopback), uds (the feed over Unix datagram sockets) or iceoryx2 (a build with the
    /// iceoryx2 feature); a comma-separated list runs the same load on each in turn and compares
    /// them
    #[arg(long, value_enum, value_delimiter = ',', default_value = "shm")]
    pub transport: Vec<TransportArg>,

    /// Which transport of the --transport list this run is (set for each run of a comparison).
    #[arg(skip)]
    pub transport_run: usize,

    /// With a list of --transport: after each transport's run, search for the highest rate it
    /// sustains, with runs of this many seconds of the same load scaled up (or down) by 4 and
    /// then bisected; 0 searches nothing
    #[arg(long, value_name = "SECS", default_value_t = 0,
          value_parser = |s: &str| whole(s, 0, 600))]
    pub max_rate_secs: u64,

    /// udp, uds: most records per datagram; records due back to back share one
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = |s: &str| whole(s, 1, 64).map(|v| v as u16))]
    pub batch: u16,

    /// udp: send to this IPv4 multicast group (loopback) instead of each reader's own port
    #[arg(long, value_name = "GROUP:PORT")]
    pub multicast: Option<String>,

    /// udp, uds: delay every datagram by this much in the sending process (e.g. 100us, 2ms)
    #[arg(long, value_name = "TIME", value_parser = duration_ns)]
    pub net_delay: Option<u64>,

    /// With --net-delay: vary each delay uniformly by up to this much either way
    #[arg(long, value_name = "TIME", value_parser = duration_ns, requires = "net_delay")]
    pub net_jitter: Option<u64>,

    /// udp, uds: drop this percentage of datagrams (seeded by --seed)
    #[arg(long, value_name = "PCT", value_parser = |s: &str| percent(s))]
    pub net_loss: Option<f64>,

    /// With --net-loss: drop in bursts of this mean length (a Gilbert-Elliott chain)
    #[arg(long, value_name = "N", requires = "net_loss",
          value_parser = |s: &str| real(s, 1.0, 10_000.0))]
    pub net_loss_burst: Option<f64>,

    /// udp, uds: hold back this percentage of datagrams behind their stream's next one
    #[arg(long, value_name = "PCT", value_parser = |s: &str| percent(s))]
    pub net_reorder: Option<f64>,

    /// udp, uds: send this percentage of datagrams twice
    #[arg(long, value_name = "PCT", value_parser = |s: &str| percent(s))]
    pub net_duplicate: Option<f64>,

    /// udp, uds: how long a reader holds records behind a gap for the missing ones to arrive
    /// before it counts them lost [default: 0 on a path that does not reorder; with
    /// --net-reorder or --net-jitter, 10ms or four times the jitter]
    #[arg(long, value_name = "TIME", value_parser = duration_ns)]
    pub gap_wait: Option<u64>,

    /// udp: also impair loopback in the kernel with `tc qdisc add dev lo root netem ARGS`
    /// (e.g. "delay 100us loss 1%"), removed after the run; skipped, with one line, where the
    /// kernel has no netem or a root qdisc is there already
    #[arg(long, value_name = "ARGS")]
    pub netem: Option<String>,
}

/// A transport of `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum TransportArg {
    /// The shared-memory bus.
    Shm,
    /// A UDP datagram feed.
    Udp,
    /// The datagram feed over Unix sockets.
    Uds,
    /// iceoryx2 publish-subscribe (a build with the `iceoryx2` feature).
    Iceoryx2,
}

/// Parses a time with a unit (`250ns`, `100us`, `2ms`, `1s`) into ns, at most 10 s.
fn duration_ns(s: &str) -> Result<u64, String> {
    let what =
        || "must be a time with a unit, e.g. 100us, 2ms (ns, us, ms or s), at most 10s".to_string();
    let t = s.trim();
    let (num, scale) = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ]
    .iter()
    .find_map(|(u, k)| t.strip_suffix(u).map(|n| (n, *k)))
    .ok_or_else(what)?;
    let v: f64 = num.trim().parse().map_err(|_| what())?;
    let ns = v * scale;
    if !(0.0..=1e10).contains(&ns) || !ns.is_finite() {
        return Err(what());
    }
    Ok(ns.round() as u64)
}

/// Parses `FILE:EPOCH:SEQUENCE` of `read --resume`.
fn position(s: &str) -> Result<crate::run::reader_wire::Position, String> {
    let mut parts = s.rsplitn(3, ':');
    let (next, epoch, file) = (parts.next(), parts.next(), parts.next());
    match (
        file,
        epoch.and_then(|e| e.parse().ok()),
        next.and_then(|n| n.parse().ok()),
    ) {
        (Some(file), Some(epoch), Some(next)) if !file.is_empty() => {
            Ok(crate::run::reader_wire::Position {
                file: file.to_string(),
                epoch,
                next,
            })
        }
        _ => Err("must be FILE:EPOCH:SEQUENCE".into()),
    }
}

/// Parses a percentage (`1`, `0.5%`) in 0..=100.
fn percent(s: &str) -> Result<f64, String> {
    real(s.trim().trim_end_matches('%'), 0.0, 100.0)
        .map_err(|_| "must be a percentage from 0 to 100".to_string())
}

/// Options of record and replay.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Record every record the first reader reads into this capture file (it must not exist)
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Publish the records of this capture file at their recorded times instead of simulating
    /// (exchanges and symbols come from the capture)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["exchanges", "symbol_count", "trades_per_second", "orderbook_updates_per_second", "scenario"])]
    pub replay: Option<PathBuf>,

    /// With --replay: play this many times faster (0.5: half as fast)
    #[arg(long, value_name = "X", default_value_t = 1.0, requires = "replay",
          value_parser = |s: &str| real(s, 0.001, 1000.0))]
    pub speed: f64,

    /// With --replay: start again from the first record after the last, until the run ends
    #[arg(long = "loop", requires = "replay")]
    pub looped: bool,

    /// With --replay: skip the records of the capture's first SECS seconds
    #[arg(long, value_name = "SECS", requires = "replay",
          value_parser = |s: &str| real(s, 0.0, 1e9))]
    pub replay_from: Option<f64>,

    /// With --replay: replay records up to SECS seconds after the capture's start
    #[arg(long, value_name = "SECS", requires = "replay",
          value_parser = |s: &str| real(s, 0.0, 1e9))]
    pub replay_to: Option<f64>,
}

/// Options of a distributed run: the coordinator's and the workers'.
#[derive(Debug, Args)]
pub struct DistributedArgs {
    /// Coordinator: the port to listen on
    #[arg(long, value_name = "PORT", default_value_t = 8080,
          value_parser = |s: &str| whole(s, 0, 65_535))]
    pub port: u64,

    /// Coordinator: the address to listen on; anything but loopback needs --token
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: String,

    /// Coordinator: workers to split the load among; the run starts when all have joined
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = |s: &str| whole(s, 1, MAX_WORKERS))]
    pub workers: u64,

    /// Coordinator: seconds to wait for every worker; worker: to keep trying to reach the
    /// coordinator
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = |s: &str| whole(s, 1, 86_400))]
    pub join_timeout_secs: u64,

    /// Coordinator: refuse to start when a worker's clock is further off than this, ms
    #[arg(long, value_name = "MS", default_value_t = 10,
          value_parser = |s: &str| whole(s, 0, 60_000))]
    pub clock_offset_budget_ms: u64,

    /// Worker: the coordinator to join, HOST:PORT
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,

    /// The shared secret workers present to the coordinator (compared in constant time)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ALPHAPULSE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Worker: this worker's index, which tells it apart from others on its host
    /// [default: $JOB_COMPLETION_INDEX, else the process id]
    #[arg(long, value_name = "N", env = "JOB_COMPLETION_INDEX", hide_env_values = true,
          value_parser = |s: &str| whole(s, 0, u64::from(u32::MAX)))]
    pub worker_index: Option<u64>,

    /// TLS: coordinator: its certificate (PEM); worker: its client certificate, when the
    /// coordinator requires one
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS: the private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// TLS: worker: the CA that signed the coordinator's certificate (turns TLS on);
    /// coordinator: require worker certificates this CA signed
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// TLS, worker: the name the coordinator's certificate must carry [default: its host]
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
}

/// Parses a whole number in `min..=max`, with an error that says what is accepted.
fn whole(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let what = || format!("must be a whole number from {min} to {max}");
    let value: u64 = s.trim().replace('_', "").parse().map_err(|_| what())?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(what())
    }
}

/// Parses a finite number in `min..=max`, with an error that says what is accepted.
fn real(s: &str, min: f64, max: f64) -> Result<f64, String> {
    let what = || format!("must be a number from {min} to {max}");
    let value: f64 = s.trim().parse().map_err(|_| what())?;
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(what())
    }
}

#[cfg(test)]
mod tests;
