//! The plan of a run: which sources (exchange x stream) send at what rate, from which thread,
//! into rings of which capacity. A plan is a plain serializable value, so that it can be stored
//! with the results and, later, shipped to workers.

pub mod chaos;
pub mod limits;
pub mod patterns;
pub mod segments;
pub mod text;
pub mod transport;

use serde::{Deserialize, Serialize};

pub use alphapulse_bus::WriterMode;

use crate::plan::limits::{
    MAX_CONSUMERS, MAX_CORE, MAX_DURATION_SECS, MAX_EXCHANGES, MAX_LAG_BUDGET_US,
    MAX_RATE_PER_STREAM, MAX_READER_DELAY_NS, MAX_SPIN_US, MAX_SYMBOLS, MAX_THREADS,
    MAX_TOTAL_RATE, MAX_WARMUP_SECS, RING_CAPACITY,
};
use crate::plan::patterns::PatternSpec;

/// The two streams every exchange publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Trades, 64-byte records.
    Trades,
    /// Order-book updates, 256-byte records.
    Book,
}

impl Stream {
    /// Both streams, trades first.
    pub const ALL: [Stream; 2] = [Stream::Trades, Stream::Book];

    /// `trades` or `book`: the ring file suffix and the JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Trades => "trades",
            Stream::Book => "book",
        }
    }
}

/// One simulated exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangePlan {
    /// Exchange id, as carried by its records; its index in [`Plan::exchanges`].
    pub id: u16,
    /// Name, also the ring file prefix.
    pub name: String,
    /// Trades per second.
    pub trades_per_sec: u64,
    /// Book updates per second.
    pub book_per_sec: u64,
    /// Capacity of the trades ring, records.
    pub trades_capacity: u64,
    /// Capacity of the book ring, records.
    pub book_capacity: u64,
    /// Index of the generator thread that drives it.
    pub thread: usize,
    /// Arrival pattern of its trades (rates resolved).
    pub trades_pattern: PatternSpec,
    /// Arrival pattern of its book updates (rates resolved).
    pub book_pattern: PatternSpec,
}

impl ExchangePlan {
    /// The arrival pattern of `stream`.
    pub fn pattern(&self, stream: Stream) -> &PatternSpec {
        match stream {
            Stream::Trades => &self.trades_pattern,
            Stream::Book => &self.book_pattern,
        }
    }

    /// Whether `stream` sends anything: not a constant pattern of rate 0.
    pub fn sends(&self, stream: Stream) -> bool {
        self.pattern(stream).constant_rate() != Some(0.0)
    }

    /// Nominal rate of `stream` (`--trades-per-second` or `--orderbook-updates-per-second`),
    /// messages per second; a pattern may vary around it.
    pub fn rate(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Trades => self.trades_per_sec,
            Stream::Book => self.book_per_sec,
        }
    }
}

/// How a generator thread waits for the next intended send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacingMode {
    /// Sleep until shortly before the send time, then spin.
    Hybrid,
    /// Spin on the clock the whole time.
    Spin,
    /// Sleep until the send time, never spin: the least CPU, and every send late by the
    /// machine's wake-up latency.
    Sleep,
}

impl PacingMode {
    /// The name the command line and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            PacingMode::Hybrid => "hybrid",
            PacingMode::Spin => "spin",
            PacingMode::Sleep => "sleep",
        }
    }
}

impl Pacing {
    /// The pacing as the reports name it: `hybrid (spin window calibrated)`,
    /// `hybrid (spin 10 us)`, `spin`, `sleep`.
    pub fn describe(&self) -> String {
        match (self.mode, self.spin_ns) {
            (PacingMode::Hybrid, None) => "hybrid (spin window calibrated)".into(),
            (PacingMode::Hybrid, Some(ns)) => format!("hybrid (spin {} us)", ns / 1_000),
            (mode, _) => mode.name().into(),
        }
    }
}

/// Which source the generator's clock reads; both give `CLOCK_MONOTONIC` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// The TSC, mapped onto `CLOCK_MONOTONIC`.
    Tsc,
    /// `clock_gettime(CLOCK_MONOTONIC)` through the vDSO.
    Monotonic,
}

impl ClockSource {
    /// The name the command line and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            ClockSource::Tsc => "tsc",
            ClockSource::Monotonic => "monotonic",
        }
    }
}

/// How the generator threads wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacing {
    /// Hybrid, spin or sleep.
    pub mode: PacingMode,
    /// Hybrid: how long before a send time to stop sleeping and spin, ns; `None` to calibrate
    /// it on the machine (see [`crate::run::pacing::Pacer`]).
    pub spin_ns: Option<u64>,
}

/// Everything a run needs to know to generate load; derived from the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The exchanges, indexed by id.
    pub exchanges: Vec<ExchangePlan>,
    /// Symbol names, indexed by symbol id; every exchange lists every symbol.
    pub symbols: Vec<String>,
    /// Number of generator threads.
    pub threads: usize,
    /// Cores to pin generator threads to (thread i to `pin_cores[i]`), if any.
    pub pin_cores: Vec<usize>,
    /// Pacing of the generator threads.
    pub pacing: Pacing,
    /// The clock the generator threads read.
    pub clock: ClockSource,
    /// What every ring's writer does when a reader falls a whole ring behind.
    pub writer_mode: WriterMode,
    /// Reader processes to start.
    pub consumers: usize,
    /// Cores to pin reader i to (`reader_pin_cores[i]`), if any.
    pub reader_pin_cores: Vec<usize>,
    /// Busy delay per record in every reader, ns (a deliberately slow reader).
    pub reader_delay_ns: u64,
    /// Seed of the market simulation.
    pub seed: u64,
    /// Warm-up, seconds: measured, reported apart, kept out of the verdict.
    pub warmup_secs: u64,
    /// Measured duration after the warm-up, seconds.
    pub duration_secs: u64,
    /// Length of one measurement interval, ns (one second).
    pub interval_ns: u64,
    /// Seconds per time-series point: 1, or more for runs so long that the series would
    /// exceed [`MAX_POINTS`] points.
    pub point_secs: u64,
    /// The run is invalid when the generator lag p99 exceeds this, ns.
    pub lag_budget_ns: u64,
    /// The scenario the plan came from, if any.
    pub scenario: Option<String>,
    /// Reader 0 records every record it reads into this capture file (`--record`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The records come from this capture instead of the simulator (`--replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayPlan>,
    /// What the records travel through (`--transport`); the bus when absent.
    #[serde(default)]
    pub transport: transport::TransportPlan,
    /// The faults the run injects (`--chaos`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<chaos::ChaosPlan>,
}

/// A replay: which records of which capture, at what speed.
///
/// Record `r` of the window is due at `start + (ts(r) - from_ns + k * period_ns) / speed`, where
/// `ts` is its recorded send time, `k` the loop iteration (0 without `looped`) and the
/// timestamps those of the capture's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayPlan {
    /// The capture file.
    pub file: String,
    /// Time divisor: 2 replays twice as fast; > 0.
    pub speed: f64,
    /// Start again from the window's first record after its last, until the run ends.
    pub looped: bool,
    /// First recorded time replayed, ns of the capture's clock (inclusive).
    pub from_ns: u64,
    /// Last recorded time replayed, ns of the capture's clock (exclusive).
    pub to_ns: u64,
    /// Recorded time between the starts of two loop iterations, ns: the window's span plus
    /// its mean gap between records, so that the last record and the next first do not
    /// coincide.
    pub period_ns: u64,
}

impl ReplayPlan {
    /// When a record recorded at `ts` (in the window) is due in iteration `k`, relative to the
    /// run's start, ns. Exact integers at speed 1; otherwise rounded to the nearest ns.
    pub fn offset_ns(&self, ts: u64, k: u64) -> u64 {
        let recorded = ts.saturating_sub(self.from_ns) + k.saturating_mul(self.period_ns);
        if self.speed == 1.0 {
            recorded
        } else {
            (recorded as f64 / self.speed).round() as u64
        }
    }
}

/// Most points a time series holds.
pub const MAX_POINTS: u64 = 3600;

impl Plan {
    /// A seed for the random pattern of `exchange`'s `stream`.
    pub fn pattern_seed(&self, exchange: u16, stream: Stream) -> u64 {
        self.seed ^ 0x5EED_0000_0000 ^ (u64::from(exchange) << 8) ^ stream as u64
    }

    /// Nominal total rate of `stream` over all exchanges, messages per second.
    pub fn target_rate(&self, stream: Stream) -> u64 {
        self.exchanges.iter().map(|e| e.rate(stream)).sum()
    }

    /// Whether every stream of every exchange runs at a constant rate (no arrival pattern), so
    /// that the load can be cut or scaled exactly.
    pub fn rates_are_constant(&self) -> bool {
        self.exchanges.iter().all(|e| {
            e.trades_pattern.constant_rate().is_some() && e.book_pattern.constant_rate().is_some()
        })
    }

    /// Total target rate, messages per second.
    pub fn total_target_rate(&self) -> u64 {
        Stream::ALL.iter().map(|&s| self.target_rate(s)).sum()
    }

    /// Warm-up plus measured duration, seconds.
    pub fn total_secs(&self) -> u64 {
        self.warmup_secs + self.duration_secs
    }

    /// Measurement intervals of the whole run, warm-up included.
    pub fn intervals(&self) -> u64 {
        (self.total_secs() * 1_000_000_000).div_ceil(self.interval_ns.max(1))
    }

    /// Intervals of the warm-up: interval `i` is warm-up when `i < warmup_intervals()`.
    pub fn warmup_intervals(&self) -> u64 {
        (self.warmup_secs * 1_000_000_000).div_ceil(self.interval_ns.max(1))
    }
}

impl Plan {
    /// Checks that every value of the plan lies in its range and that its parts agree (thread
    /// indices, unique exchange ids, ring capacities, patterns): what a plan that came from
    /// outside the process (a coordinator's segment, a results file) must pass before it runs.
    pub fn check(&self) -> Result<(), String> {
        let within = |what: &str, v: u64, min: u64, max: u64| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} is {v}, outside {min}..={max}"))
            }
        };
        within(
            "the number of exchanges",
            self.exchanges.len() as u64,
            1,
            MAX_EXCHANGES,
        )?;
        within(
            "the number of symbols",
            self.symbols.len() as u64,
            1,
            MAX_SYMBOLS,
        )?;
        within("the number of threads", self.threads as u64, 1, MAX_THREADS)?;
        if self.threads > self.exchanges.len() {
            return Err(format!(
                "{} threads for {} exchanges",
                self.threads,
                self.exchanges.len()
            ));
        }
        within(
            "the number of readers",
            self.consumers as u64,
            0,
            MAX_CONSUMERS,
        )?;
        within(
            "the reader delay (ns)",
            self.reader_delay_ns,
            0,
            MAX_READER_DELAY_NS,
        )?;
        within("the duration (s)", self.duration_secs, 1, MAX_DURATION_SECS)?;
        within("the warm-up (s)", self.warmup_secs, 0, MAX_WARMUP_SECS)?;
        within(
            "the lag budget (ns)",
            self.lag_budget_ns,
            1,
            MAX_LAG_BUDGET_US * 1000,
        )?;
        within(
            "the spin window (ns)",
            self.pacing.spin_ns.unwrap_or(0),
            0,
            MAX_SPIN_US * 1000,
        )?;
        if self.interval_ns != 1_000_000_000 {
            return Err(format!(
                "an interval of {} ns (only 1 s is supported)",
                self.interval_ns
            ));
        }
        within(
            "the seconds per point",
            self.point_secs,
            1,
            MAX_DURATION_SECS,
        )?;
        let mut total = 0u64;
        let mut ids = std::collections::BTreeSet::new();
        for e in &self.exchanges {
            if !ids.insert(e.id) || u64::from(e.id) >= MAX_EXCHANGES {
                return Err(format!("exchange id {} is repeated or out of range", e.id));
            }
            if e.thread >= self.threads {
                return Err(format!(
                    "exchange {} runs on thread {} of {}",
                    e.id, e.thread, self.threads
                ));
            }
            for (what, rate) in [
                ("trades", e.trades_per_sec),
                ("book updates", e.book_per_sec),
            ] {
                within(
                    &format!("exchange {} {what} per second", e.id),
                    rate,
                    0,
                    MAX_RATE_PER_STREAM,
                )?;
                total = total.saturating_add(rate);
            }
            for c in [e.trades_capacity, e.book_capacity] {
                within(
                    &format!("exchange {} ring capacity", e.id),
                    c,
                    RING_CAPACITY.0,
                    RING_CAPACITY.1,
                )?;
                if !c.is_power_of_two() {
                    return Err(format!(
                        "exchange {} ring capacity {c} is not a power of two",
                        e.id
                    ));
                }
            }
            for p in [&e.trades_pattern, &e.book_pattern] {
                p.validate(self.total_secs())
                    .map_err(|err| format!("exchange {}: {err}", e.id))?;
            }
        }
        within("the total rate (msgs/s)", total, 0, MAX_TOTAL_RATE)?;
        for &c in self.pin_cores.iter().chain(&self.reader_pin_cores) {
            within("a pinned core", c as u64, 0, MAX_CORE)?;
        }
        Ok(())
    }
}

/// The default ring capacity for a stream of `rate` messages per second: half a second of it,
/// rounded up to a power of two, between 4096 and 2^22 records.
pub fn default_capacity(rate: u64) -> u64 {
    (rate / 2).clamp(4096, 1 << 22).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use crate::plan::*;

    #[test]
    fn capacity_is_a_bounded_power_of_two() {
        assert_eq!(default_capacity(0), 4096);
        assert_eq!(default_capacity(10_000), 8192);
        assert_eq!(default_capacity(100_000), 65_536);
        assert_eq!(default_capacity(u64::MAX / 2), 1 << 22);
    }
}
