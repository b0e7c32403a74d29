//! The interval report: everything measured in one interval, per source, as one serializable
//! value that merges without loss.
//!
//! Generator threads, reader processes and the engine's own resource sampler each produce an
//! [`IntervalReport`] per interval (one second); the engine merges them ([`collect`]) into one
//! report per interval, which the live outputs observe ([`observe`]) and from which the results
//! are built. Distributed workers send the same reports to a coordinator, which merges them the
//! same way: a coordinator builds exactly what a standalone run builds.
//!
//! Merging ([`IntervalReport::merge`]) is associative, commutative and lossless: histograms add
//! (bucket by bucket, so every percentile of the merge is the percentile of the union of the
//! recordings), counters add, and the covered part of the interval is the longest any producer
//! covered. It refuses reports of different intervals and histograms of another configuration
//! ([`MergeError`]).
//!
//! Where values are attributed:
//! - a write's latencies and counters belong to the interval its *intended* send time fell in
//!   (so every interval's achievement is what was sent of what was due in it, at most 100%);
//! - a record's end-to-end latency and the readers' counters belong to the interval in which the
//!   reader copied it out (the reader's clock);
//! - resource figures belong to the interval they were sampled over.
//!
//! The text form (JSON with base64 histograms) is [`wire`], documented in docs/interval-report.md.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::plan::Stream;

pub mod chaos;
pub mod collect;
pub mod end;
pub mod histogram;
pub mod observe;
pub mod timeline;
pub mod wire;

use histogram::{new_histogram, HistogramConfig};

/// Identifies a source: one stream of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceId {
    /// Exchange id.
    pub exchange: u16,
    /// Stream.
    pub stream: Stream,
}

/// The latencies a report holds, one histogram each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// From just before the write call to just after it returned ("write latency").
    Service,
    /// From the intended send time to just after the write returned; includes every delay
    /// that made the write late (no coordinated omission).
    Response,
    /// From the intended send time to the start of the write: how late the generator was.
    Lag,
    /// From the record's send timestamp to the moment a reader had copied it out.
    E2e,
}

impl Kind {
    /// The three latencies of every write.
    pub const WRITE: [Kind; 3] = [Kind::Service, Kind::Response, Kind::Lag];
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Service, Kind::Response, Kind::Lag, Kind::E2e];

    /// JSON key and hlog tag part: `service`, `response`, `lag`, `e2e`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Response => "response",
            Kind::Lag => "lag",
            Kind::E2e => "e2e",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One histogram per [`Kind`], each absent until something is recorded or added.
///
/// Invariant: every present histogram has [`HistogramConfig::STANDARD`]. An absent histogram and
/// an empty one are the same thing (equality treats them so), which lets a report of writes
/// carry no end-to-end histogram and a reader's report no write latencies.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// Indexed by `Kind as usize`; `None` until `get_mut`, `add` or `set` makes one (and after
    /// `take`); every `Some` has [`HistogramConfig::STANDARD`].
    hists: [Option<Histogram<u64>>; 4],
}

impl PartialEq for Latencies {
    fn eq(&self, other: &Self) -> bool {
        Kind::ALL
            .iter()
            .all(|&k| match (self.get(k), other.get(k)) {
                (Some(a), Some(b)) => a == b,
                (None, None) => true,
                (Some(h), None) | (None, Some(h)) => h.is_empty(),
            })
    }
}

impl Latencies {
    /// The histogram of `kind`, if one is present.
    pub fn get(&self, kind: Kind) -> Option<&Histogram<u64>> {
        self.hists[kind.index()].as_ref()
    }

    /// The histogram of `kind`, created empty if absent.
    pub fn get_mut(&mut self, kind: Kind) -> &mut Histogram<u64> {
        self.hists[kind.index()].get_or_insert_with(new_histogram)
    }

    /// Sets the histogram of `kind`, returning the one it replaces. `h` must have the standard
    /// configuration; anything else is refused and handed back.
    pub fn set(
        &mut self,
        kind: Kind,
        h: Histogram<u64>,
    ) -> Result<Option<Histogram<u64>>, Histogram<u64>> {
        if HistogramConfig::of(&h) != HistogramConfig::STANDARD {
            return Err(h);
        }
        Ok(self.hists[kind.index()].replace(h))
    }

    /// Takes the histogram of `kind` out, leaving it absent.
    pub fn take(&mut self, kind: Kind) -> Option<Histogram<u64>> {
        self.hists[kind.index()].take()
    }

    /// Values recorded under `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        self.get(kind).map_or(0, Histogram::len)
    }

    /// Adds every count of `other` to `self`; refuses (changing nothing) a histogram of another
    /// configuration.
    pub fn add(&mut self, other: &Latencies) -> Result<(), MergeError> {
        for kind in Kind::ALL {
            if let Some(h) = other.get(kind) {
                let config = HistogramConfig::of(h);
                if config != HistogramConfig::STANDARD {
                    return Err(MergeError::HistogramConfig {
                        kind,
                        found: config,
                    });
                }
            }
        }
        for kind in Kind::ALL {
            if let Some(h) = other.get(kind).filter(|h| !h.is_empty()) {
                self.get_mut(kind)
                    .add(h)
                    .map_err(|e| MergeError::Histogram(format!("{}: {e:?}", kind.name())))?;
            }
        }
        Ok(())
    }

    /// Empties every histogram, keeping the allocations.
    pub fn reset(&mut self) {
        for h in self.hists.iter_mut().flatten() {
            h.reset();
        }
    }
}

/// What the writing side counted for one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriterCounters {
    /// Records written.
    pub sent: u64,
    /// Writes refused because a reader had not read what they would overwrite.
    pub buffer_overflows: u64,
    /// Writes that failed for any other reason.
    pub write_failures: u64,
    /// Messages due in the interval that were never attempted (the generator fell behind and
    /// the run ended, or it was stopped).
    pub backlog: u64,
    /// Writes whose response time exceeded the histograms' range (their latencies were
    /// recorded as [`histogram::HIGHEST_NS`]).
    pub saturated: u64,
    /// Impaired datagram feeds: records the impairment dropped on purpose (every reader
    /// counts them lost).
    pub net_dropped: u64,
    /// Impaired datagram feeds: records the impairment sent twice.
    pub net_duplicated: u64,
    /// Impaired datagram feeds: records the impairment held back behind a later datagram.
    pub net_reordered: u64,
    /// Datagram feeds: record copies refused on the way to a reader (its queue full under
    /// impairment, or the kernel's `EPERM`/`ENOBUFS`): each is a loss a reader counts that the
    /// impairment did not decide.
    pub net_refused: u64,
}

impl WriterCounters {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &WriterCounters) {
        self.sent += o.sent;
        self.buffer_overflows += o.buffer_overflows;
        self.write_failures += o.write_failures;
        self.backlog += o.backlog;
        self.saturated += o.saturated;
        self.net_dropped += o.net_dropped;
        self.net_duplicated += o.net_duplicated;
        self.net_reordered += o.net_reordered;
        self.net_refused += o.net_refused;
    }

    /// Writes attempted: sent, refused, or failed.
    pub fn attempts(&self) -> u64 {
        self.sent + self.buffer_overflows + self.write_failures
    }

    /// Failed attempts of either kind.
    pub fn errors(&self) -> u64 {
        self.buffer_overflows + self.write_failures
    }

    /// Messages the schedule had due: every due message was attempted or is in the backlog.
    pub fn due(&self) -> u64 {
        self.attempts() + self.backlog
    }
}

/// What the reading side counted for one source (summed over readers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Integrity {
    /// Records returned by the rings.
    pub received: u64,
    /// Records lost to laps (exact).
    pub lost: u64,
    /// Copies discarded because the writer overwrote the slot mid-copy (included in `lost`).
    pub torn: u64,
    /// Records whose checksum or fields were wrong.
    pub corrupted: u64,
    /// Records whose sequence was not the one expected.
    pub out_of_order: u64,
    /// Breaks in a symbol's book version chain or trade-id sequence not explained by a loss.
    pub gaps: u64,
    /// Book level changes inconsistent with the rebuilt book.
    pub book_errors: u64,
    /// Books compared with the writer's final digests.
    pub digests_checked: u64,
    /// Of those, books that differed.
    pub digest_mismatches: u64,
    /// Records the writers published from the reader's first sequence on (counted at the end).
    pub published: u64,
    /// Sequences the reader accounted for: received + lost (counted at the end).
    pub accounted: u64,
    /// Published sequences neither received nor counted lost, judged only once a ring was
    /// drained after its writer closed (0 otherwise).
    pub unaccounted: u64,
    /// Datagram feeds: records that arrived again after they had been received (not counted in
    /// `received`; not a violation: a network may duplicate).
    pub duplicates: u64,
    /// Datagram feeds: records that arrived after a later one of their stream and were put
    /// back in order before being checked (not a violation: a network may reorder).
    pub reordered: u64,
}

impl Integrity {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Integrity) {
        self.received += o.received;
        self.lost += o.lost;
        self.torn += o.torn;
        self.corrupted += o.corrupted;
        self.out_of_order += o.out_of_order;
        self.gaps += o.gaps;
        self.book_errors += o.book_errors;
        self.digests_checked += o.digests_checked;
        self.digest_mismatches += o.digest_mismatches;
        self.published += o.published;
        self.accounted += o.accounted;
        self.unaccounted += o.unaccounted;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
    }

    /// What `self` counted beyond `earlier`, field by field (0 where `earlier` is larger): the
    /// part of a running total not reported yet.
    pub fn since(&self, earlier: &Integrity) -> Integrity {
        Integrity {
            received: self.received.saturating_sub(earlier.received),
            lost: self.lost.saturating_sub(earlier.lost),
            torn: self.torn.saturating_sub(earlier.torn),
            corrupted: self.corrupted.saturating_sub(earlier.corrupted),
            out_of_order: self.out_of_order.saturating_sub(earlier.out_of_order),
            gaps: self.gaps.saturating_sub(earlier.gaps),
            book_errors: self.book_errors.saturating_sub(earlier.book_errors),
            digests_checked: self.digests_checked.saturating_sub(earlier.digests_checked),
            digest_mismatches: self
                .digest_mismatches
                .saturating_sub(earlier.digest_mismatches),
            published: self.published.saturating_sub(earlier.published),
            accounted: self.accounted.saturating_sub(earlier.accounted),
            unaccounted: self.unaccounted.saturating_sub(earlier.unaccounted),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            reordered: self.reordered.saturating_sub(earlier.reordered),
        }
    }

    /// Violations of integrity (loss excluded): corrupted, out of order, gaps, book errors,
    /// digest mismatches, and sequences neither received nor counted lost.
    pub fn violations(&self) -> u64 {
        self.corrupted
            + self.out_of_order
            + self.gaps
            + self.book_errors
            + self.digest_mismatches
            + self.unaccounted
    }
}

/// Everything measured for one source in one interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceReport {
    /// Latency histograms: the write latencies from the generator, end-to-end from readers.
    pub latency: Latencies,
    /// The writing side's counts.
    pub writer: WriterCounters,
    /// The reading side's counts, all readers summed.
    pub reader: Integrity,
}

impl SourceReport {
    /// Adds `other` to `self` (see [`Latencies::add`]).
    pub fn add(&mut self, other: &SourceReport) -> Result<(), MergeError> {
        self.latency.add(&other.latency)?;
        self.writer.add(&other.writer);
        self.reader.add(&other.reader);
        Ok(())
    }

    /// Empties it, keeping the allocations.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.writer = WriterCounters::default();
        self.reader = Integrity::default();
    }
}

/// How generator threads spent an interval, summed over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorTime {
    /// Thread time the interval covered, ns (threads x covered time).
    pub thread_ns: u64,
    /// Of that, time waiting for send times (asleep or spinning), ns.
    pub wait_ns: u64,
    /// Of the waiting, time spent spinning on the clock (which burns CPU), ns.
    pub spin_ns: u64,
    /// Time inside write calls, ns.
    pub write_ns: u64,
}

impl GeneratorTime {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &GeneratorTime) {
        self.thread_ns += o.thread_ns;
        self.wait_ns += o.wait_ns;
        self.spin_ns += o.spin_ns;
        self.write_ns += o.write_ns;
    }
}

/// One process's resource use over one interval, from /proc.
///
/// One sample per process per interval; merging two samples of the same process adds them
/// (times add; the memory figures then read as the sum, which is what they mean for several
/// processes under one name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessUsage {
    /// Samples merged into this value.
    pub samples: u64,
    /// Wall time the sample spans, ns.
    pub wall_ns: u64,
    /// CPU time (user + system) over that span, ns.
    pub cpu_ns: u64,
    /// Resident set at the end of the span, bytes.
    pub rss_bytes: u64,
    /// Anonymous part of it, bytes.
    pub rss_anon_bytes: u64,
    /// Shared-memory part of it (ring pages the process touched), bytes.
    pub rss_shmem_bytes: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Voluntary context switches, all threads.
    pub voluntary_switches: u64,
    /// Involuntary context switches, all threads.
    pub involuntary_switches: u64,
    /// Busy jiffies of the whole machine over the span (all cores), when sampled.
    pub machine_busy_ticks: u64,
    /// All jiffies of the whole machine over the span (all cores), when sampled.
    pub machine_total_ticks: u64,
}

impl ProcessUsage {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &ProcessUsage) {
        self.samples += o.samples;
        self.wall_ns += o.wall_ns;
        self.cpu_ns += o.cpu_ns;
        self.rss_bytes += o.rss_bytes;
        self.rss_anon_bytes += o.rss_anon_bytes;
        self.rss_shmem_bytes += o.rss_shmem_bytes;
        self.minor_faults += o.minor_faults;
        self.major_faults += o.major_faults;
        self.voluntary_switches += o.voluntary_switches;
        self.involuntary_switches += o.involuntary_switches;
        self.machine_busy_ticks += o.machine_busy_ticks;
        self.machine_total_ticks += o.machine_total_ticks;
    }

    /// CPU over the span, percent of one core.
    pub fn cpu_pct(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            100.0 * self.cpu_ns as f64 / self.wall_ns as f64
        }
    }

    /// Machine CPU over the span, percent of all cores.
    pub fn machine_cpu_pct(&self) -> f64 {
        if self.machine_total_ticks == 0 {
            0.0
        } else {
            100.0 * self.machine_busy_ticks as f64 / self.machine_total_ticks as f64
        }
    }
}

/// The name under which the tester process's own usage is reported.
pub const TESTER_PROCESS: &str = "tester";

/// The name under which a distributed run's coordinator merges worker `worker`'s process
/// `name`: `w<worker>.<name>` (`w1.tester`, `w1.reader.0`), so that one host's figures are not
/// added to another's.
pub fn worker_process(worker: usize, name: &str) -> String {
    format!("w{worker}.{name}")
}

/// Whether the process `name` is a tester process: this run's, or a worker's
/// ([`worker_process`]).
pub fn is_tester_process(name: &str) -> bool {
    name == TESTER_PROCESS
        || name
            .strip_suffix(TESTER_PROCESS)
            .and_then(|p| p.strip_suffix('.'))
            .and_then(|p| p.strip_prefix('w'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The name under which reader process `index` is reported: `reader.<index>`.
pub fn reader_process(index: usize) -> String {
    format!("reader.{index}")
}

/// Everything measured in one interval, per source.
///
/// Invariants: every present histogram has [`HistogramConfig::STANDARD`]; `covered_ns <=
/// length_ns`. The interval spans `[index * length_ns, index * length_ns + covered_ns)` from the
/// start of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalReport {
    /// Which interval: 0 is the first after the start (warm-up included).
    pub index: u64,
    /// Nominal length of every interval of the run, ns.
    pub length_ns: u64,
    /// How much of the interval the run covered, ns: `length_ns`, or less in the interval an
    /// early stop cut; 0 when no generator reported (a reader's or the sampler's report).
    pub covered_ns: u64,
    /// Per source.
    pub sources: BTreeMap<SourceId, SourceReport>,
    /// How the generator threads spent the interval.
    pub generator: GeneratorTime,
    /// Resource use per process (see [`TESTER_PROCESS`], [`reader_process`]).
    pub processes: BTreeMap<String, ProcessUsage>,
}

/// Why two reports cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The reports cover different intervals.
    #[error("interval {found} (of {found_length_ns} ns) cannot merge into interval {into} (of {into_length_ns} ns)")]
    Interval {
        /// Index of the report merged into.
        into: u64,
        /// Its interval length.
        into_length_ns: u64,
        /// Index of the report merged.
        found: u64,
        /// Its interval length.
        found_length_ns: u64,
    },
    /// A histogram has another configuration than [`HistogramConfig::STANDARD`].
    #[error("a {} histogram of {found} cannot be added to histograms of {}", .kind.name(), HistogramConfig::STANDARD)]
    HistogramConfig {
        /// Which latency.
        kind: Kind,
        /// Its configuration.
        found: HistogramConfig,
    },
    /// Adding histograms failed (a value outside the bounds).
    #[error("histograms do not add: {0}")]
    Histogram(String),
    /// The covered part is longer than the interval.
    #[error("interval {index} covers {covered_ns} ns of a {length_ns} ns interval")]
    Coverage {
        /// Interval index.
        index: u64,
        /// Covered part, ns.
        covered_ns: u64,
        /// Interval length, ns.
        length_ns: u64,
    },
}

impl IntervalReport {
    /// An empty report of interval `index`.
    pub fn empty(index: u64, length_ns: u64) -> Self {
        Self {
            index,
            length_ns,
            ..Default::default()
        }
    }

    /// Checks the invariants, for reports that came from another process.
    pub fn validate(&self) -> Result<(), MergeError> {
        if self.covered_ns > self.length_ns {
            return Err(MergeError::Coverage {
                index: self.index,
                covered_ns: self.covered_ns,
                length_ns: self.length_ns,
            });
        }
        for source in self.sources.values() {
            for kind in Kind::ALL {
                if let Some(h) = source.latency.get(kind) {
                    let found = HistogramConfig::of(h);
                    if found != HistogramConfig::STANDARD {
                        return Err(MergeError::HistogramConfig { kind, found });
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds everything of `other` into `self`. Both must be reports of the same interval;
    /// nothing is changed when they are not, or when a histogram of `other` has another
    /// configuration.
    pub fn merge(&mut self, other: &IntervalReport) -> Result<(), MergeError> {
        if (self.index, self.length_ns) != (other.index, other.length_ns) {
            return Err(MergeError::Interval {
                into: self.index,
                into_length_ns: self.length_ns,
                found: other.index,
                found_length_ns: other.length_ns,
            });
        }
        other.validate()?;
        for (id, source) in &other.sources {
            self.sources.entry(*id).or_default().add(source)?;
        }
        self.covered_ns = self.covered_ns.max(other.covered_ns);
        self.generator.add(&other.generator);
        for (name, usage) in &other.processes {
            self.processes.entry(name.clone()).or_default().add(usage);
        }
        Ok(())
    }

    /// Empties it for interval `index`, keeping the allocations of its sources.
    pub fn reset(&mut self, index: u64) {
        self.index = index;
        self.covered_ns = 0;
        for s in self.sources.values_mut() {
            s.reset();
        }
        self.generator = GeneratorTime::default();
        self.processes.clear();
    }

    /// Every source of `stream` merged.
    pub fn by_stream(&self, stream: Stream) -> SourceReport {
        let mut out = SourceReport::default();
        for (id, s) in &self.sources {
            if id.stream == stream {
                // Present histograms were validated on the way in.
                let _ = out.add(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
