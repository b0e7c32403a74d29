//! Merging the reports of many producers into one report per interval.
//!
//! A producer (a generator thread, a reader process, the resource sampler, a distributed worker)
//! reports intervals in any order and any number of pieces, and says how far it has got: once
//! every producer has moved past an interval, nothing more can arrive for it, and the
//! [`Collector`] emits its merged report. The last interval of a run stays open until every
//! producer is done, because readers drain what was written at the very end into it.

use std::collections::BTreeMap;

use super::{IntervalReport, MergeError};

/// One producer, as [`Collector::producer`] registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerId(usize);

#[derive(Debug)]
struct Producer {
    /// The name given at registration, for errors and [`Collector::waiting_for`].
    name: String,
    /// The first interval this producer may still report: it will never report an earlier one.
    /// At most the last interval until `done`; `u64::MAX` once done.
    next: u64,
}

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    /// The report does not merge (see [`MergeError`]).
    #[error("{producer}: {error}")]
    Merge {
        /// Who sent it.
        producer: String,
        /// Why it does not merge.
        error: MergeError,
    },
    /// The interval was already emitted: the producer had said it was past it.
    #[error("{producer}: a report of interval {index}, which was already complete")]
    Late {
        /// Who sent it.
        producer: String,
        /// Its interval.
        index: u64,
    },
    /// The interval lies beyond the run, or has another length.
    #[error("{producer}: interval {index} of {length_ns} ns is not one of this run's {intervals} intervals of {expected_ns} ns")]
    Foreign {
        /// Who sent it.
        producer: String,
        /// Its interval.
        index: u64,
        /// Its interval length.
        length_ns: u64,
        /// Intervals of the run.
        intervals: u64,
        /// The run's interval length.
        expected_ns: u64,
    },
}

/// Merges interval reports of several producers and emits each interval once it is complete.
///
/// Invariants: every key of `pending` is at least `next` and below `intervals`; until
/// [`Collector::finish`] (which stops waiting), every producer's `next` is at least the
/// collector's `next` unless the producer is done; reports are emitted in index order
/// `0, 1, 2, ...` without gaps, up to the last interval reported (an interval nobody reported
/// after it is not emitted). Producers are registered before the first report arrives.
#[derive(Debug)]
pub struct Collector {
    /// Intervals the run has.
    intervals: u64,
    /// Length of every interval, ns.
    length_ns: u64,
    /// Every registered producer, indexed by [`ProducerId`]; only ever grows.
    producers: Vec<Producer>,
    /// Merged reports of the intervals not emitted yet, by index.
    pending: BTreeMap<u64, IntervalReport>,
    /// The next interval to emit.
    next: u64,
    /// Emptied reports kept for reuse, so that steady state allocates no histograms.
    spare: Vec<IntervalReport>,
}

impl Collector {
    /// A collector for a run of `intervals` intervals of `length_ns` each.
    pub fn new(intervals: u64, length_ns: u64) -> Self {
        Self {
            intervals,
            length_ns,
            producers: Vec::new(),
            pending: BTreeMap::new(),
            next: 0,
            spare: Vec::new(),
        }
    }

    /// Registers a producer; no interval completes until it has moved past it.
    pub fn producer(&mut self, name: impl Into<String>) -> ProducerId {
        self.producers.push(Producer {
            name: name.into(),
            next: 0,
        });
        ProducerId(self.producers.len() - 1)
    }

    fn last(&self) -> u64 {
        self.intervals.saturating_sub(1)
    }

    /// Merges `report` from `producer` and records that the producer has moved past the
    /// intervals before `report.index` (it may still send more of `report.index` itself).
    pub fn add(
        &mut self,
        producer: ProducerId,
        report: &IntervalReport,
    ) -> Result<(), CollectError> {
        let name = || self.producers[producer.0].name.clone();
        if report.index >= self.intervals || report.length_ns != self.length_ns {
            return Err(CollectError::Foreign {
                producer: name(),
                index: report.index,
                length_ns: report.length_ns,
                intervals: self.intervals,
                expected_ns: self.length_ns,
            });
        }
        if report.index < self.next {
            return Err(CollectError::Late {
                producer: name(),
                index: report.index,
            });
        }
        let length_ns = self.length_ns;
        let spare = &mut self.spare;
        let slot = self.pending.entry(report.index).or_insert_with(|| {
            let mut r = spare
                .pop()
                .unwrap_or_else(|| IntervalReport::empty(report.index, length_ns));
            r.reset(report.index);
            r
        });
        slot.merge(report).map_err(|error| CollectError::Merge {
            producer: self.producers[producer.0].name.clone(),
            error,
        })?;
        self.reached(producer, report.index);
        Ok(())
    }

    /// Records that `producer` will report nothing before interval `next` (the last interval
    /// stays open until [`Self::done`]).
    pub fn reached(&mut self, producer: ProducerId, next: u64) {
        let last = self.last();
        let p = &mut self.producers[producer.0];
        if p.next != u64::MAX {
            p.next = p.next.max(next.min(last));
        }
    }

    /// Records that `producer` will report nothing more.
    pub fn done(&mut self, producer: ProducerId) {
        self.producers[producer.0].next = u64::MAX;
    }

    /// Whether `producer` said it is done.
    pub fn is_done(&self, producer: ProducerId) -> bool {
        self.producers[producer.0].next == u64::MAX
    }

    /// The producers that are not done yet, by name.
    pub fn waiting_for(&self) -> Vec<&str> {
        self.producers
            .iter()
            .filter(|p| p.next != u64::MAX)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// Emits, in order, every interval that every producer has moved past. Once every
    /// producer is done, the run ends at the last interval any of them reported: the intervals
    /// after it (a run stopped early, or whose workers were lost) never happened and are not
    /// emitted.
    pub fn drain(&mut self, emit: &mut dyn FnMut(&IntervalReport)) {
        let moved = self
            .producers
            .iter()
            .map(|p| p.next)
            .min()
            .unwrap_or(u64::MAX);
        let complete = if moved == u64::MAX {
            self.pending
                .keys()
                .next_back()
                .map_or(self.next, |&last| last + 1)
        } else {
            moved.min(self.intervals)
        };
        while self.next < complete {
            self.emit_next(emit);
        }
    }

    /// Emits everything still pending, as far as the last interval anything was reported for,
    /// whether or not every producer is done (the end of a run that cannot wait any longer).
    pub fn finish(&mut self, emit: &mut dyn FnMut(&IntervalReport)) {
        if let Some(&last) = self.pending.keys().next_back() {
            while self.next <= last {
                self.emit_next(emit);
            }
        }
    }

    /// The next interval to emit.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    fn emit_next(&mut self, emit: &mut dyn FnMut(&IntervalReport)) {
        let index = self.next;
        let report = self
            .pending
            .remove(&index)
            .unwrap_or_else(|| IntervalReport::empty(index, self.length_ns));
        emit(&report);
        self.spare.push(report);
        self.next = index + 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::report::collect::{CollectError, Collector};
    use crate::report::{IntervalReport, SourceId, Stream};

    fn report(index: u64, sent: u64) -> IntervalReport {
        let mut r = IntervalReport::empty(index, 10);
        r.sources
            .entry(SourceId {
                exchange: 0,
                stream: Stream::Trades,
            })
            .or_default()
            .writer
            .sent = sent;
        r
    }

    fn sent(r: &IntervalReport) -> u64 {
        r.sources.values().map(|s| s.writer.sent).sum()
    }

    #[test]
    fn intervals_complete_when_every_producer_moved_past_them() {
        let mut c = Collector::new(3, 10);
        let (a, b) = (c.producer("a"), c.producer("b"));
        let mut out = Vec::new();
        c.add(a, &report(0, 1)).unwrap();
        c.add(a, &report(1, 2)).unwrap();
        c.drain(&mut |r| out.push((r.index, sent(r))));
        assert!(out.is_empty(), "b has not reported interval 0");
        c.add(b, &report(0, 10)).unwrap();
        c.reached(b, 2);
        c.drain(&mut |r| out.push((r.index, sent(r))));
        assert_eq!(out, vec![(0, 11)]);
        // The last interval stays open until both are done, whatever they say.
        c.add(a, &report(2, 5)).unwrap();
        c.reached(a, 99);
        c.add(b, &report(2, 7)).unwrap();
        c.drain(&mut |r| out.push((r.index, sent(r))));
        assert_eq!(out, vec![(0, 11), (1, 2)]);
        c.done(a);
        c.add(b, &report(2, 1)).unwrap();
        c.done(b);
        c.drain(&mut |r| out.push((r.index, sent(r))));
        assert_eq!(out, vec![(0, 11), (1, 2), (2, 13)]);
    }

    #[test]
    fn a_run_that_ended_early_ends_at_its_last_reported_interval() {
        let mut c = Collector::new(60, 10);
        let (a, b) = (c.producer("a"), c.producer("b"));
        let mut out = Vec::new();
        for i in 0..5 {
            c.add(a, &report(i, 1)).unwrap();
        }
        c.add(b, &report(2, 1)).unwrap();
        c.done(a);
        c.done(b);
        c.drain(&mut |r| out.push(r.index));
        // Intervals 5 to 59 never happened: nothing is emitted for them.
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
        c.drain(&mut |r| out.push(r.index));
        c.finish(&mut |r| out.push(r.index));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn late_and_foreign_reports_are_refused() {
        let mut c = Collector::new(2, 10);
        let a = c.producer("a");
        c.add(a, &report(1, 1)).unwrap();
        c.drain(&mut |_| {});
        assert!(matches!(
            c.add(a, &report(0, 1)),
            Err(CollectError::Late { index: 0, .. })
        ));
        assert!(matches!(
            c.add(a, &report(2, 1)),
            Err(CollectError::Foreign { index: 2, .. })
        ));
        let mut other = report(1, 1);
        other.length_ns = 20;
        assert!(matches!(
            c.add(a, &other),
            Err(CollectError::Foreign { .. })
        ));
    }

    #[test]
    fn gaps_are_emitted_empty_and_finish_flushes() {
        let mut c = Collector::new(10, 10);
        let a = c.producer("a");
        c.add(a, &report(3, 4)).unwrap();
        let mut out = Vec::new();
        c.drain(&mut |r| out.push((r.index, sent(r))));
        assert_eq!(out, vec![(0, 0), (1, 0), (2, 0)]);
        c.finish(&mut |r| out.push((r.index, sent(r))));
        assert_eq!(out.last(), Some(&(3, 4)));
        assert_eq!(c.next_index(), 4);
    }
}
