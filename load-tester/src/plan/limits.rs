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
