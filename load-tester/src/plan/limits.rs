//! The ranges every value of a plan must lie in: one place, read by the command line, the
//! scenario files and the patterns, so that they can never disagree.

/// Most exchanges a run may simulate.
pub const MAX_EXCHANGES: u64 = 256;
/// Most messages per second one stream of one exchange may target.
pub const MAX_RATE_PER_STREAM: u64 = 50_000_000;
/// Most messages per second a run may target in total.
pub const MAX_TOTAL_RATE: u64 = 50_000_000;
/// Longest measured duration: 30 days, seconds.
pub const MAX_DURATION_SECS: u64 = 30 * 86_400;
/// Longest warm-up, seconds.
pub const MAX_WARMUP_SECS: u64 = 3600;
/// Most symbols per exchange.
pub const MAX_SYMBOLS: u64 = 10_000;
/// Most reader processes.
pub const MAX_CONSUMERS: u64 = 16;
/// Most generator threads.
pub const MAX_THREADS: u64 = 256;
/// Longest hybrid-pacing spin window, microseconds.
pub const MAX_SPIN_US: u64 = 10_000;
/// Longest lag budget, microseconds (one minute).
pub const MAX_LAG_BUDGET_US: u64 = 60_000_000;
/// Longest busy delay a reader may be asked to add per record, nanoseconds (one second).
pub const MAX_READER_DELAY_NS: u64 = 1_000_000_000;
/// Smallest and largest ring capacity, records.
pub const RING_CAPACITY: (u64, u64) = (2, 1 << 30);
/// Most workers of a distributed run.
pub const MAX_WORKERS: u64 = 256;
/// Highest core number that pinning accepts.
pub const MAX_CORE: u64 = 4095;

impl super::Plan {
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
