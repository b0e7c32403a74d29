//! The fine timeline of a chaos run: what one producer (a reader process, or the generator
//! threads together) saw in each 10 ms slice of the run.
//!
//! Interval reports are one second long; a fault that stops a reader for 200 ms, and the time
//! the stream takes to be healthy again, need a finer clock. A producer of a run with faults
//! keeps one [`Slice`] per [`SLICE_NS`] of each interval and ships them with the interval's
//! report ([`Timeline`]); the engine keeps them, by producer, for the fault analysis. Slices
//! merge like reports do: counts add, maxima take the larger, so the merge is associative,
//! commutative and lossless.

use serde::{Deserialize, Serialize};

/// Length of one slice, ns (10 ms).
pub const SLICE_NS: u64 = 10_000_000;

/// What one producer saw in one slice. Every field is 0 unless something was seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Slice {
    /// Records received (a reader), copied out in the slice.
    #[serde(skip_serializing_if = "is_zero")]
    pub received: u64,
    /// Records counted lost in the slice (laps, gaps, a resumed reader's missed records).
    #[serde(skip_serializing_if = "is_zero")]
    pub lost: u64,
    /// Records that failed their integrity checks in the slice (corrupted, out of order,
    /// chain gaps, book errors).
    #[serde(skip_serializing_if = "is_zero")]
    pub violations: u64,
    /// Largest end-to-end latency of a record copied out in the slice, ns.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_e2e_ns: u64,
    /// Times the reader followed a ring to a new epoch (a restarted writer) in the slice.
    #[serde(skip_serializing_if = "is_zero")]
    pub epochs: u64,
    /// Writes attempted (the generator), started in the slice.
    #[serde(skip_serializing_if = "is_zero")]
    pub attempts: u64,
    /// Of those, refused or failed.
    #[serde(skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// Largest generator lag (start of the write minus its intended time) in the slice, ns.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_lag_ns: u64,
    /// The reader did not run through the slice (stopped, or descheduled): what it saw then
    /// it only saw when it ran again, in a later slice. Producers merged: how many.
    #[serde(skip_serializing_if = "is_zero")]
    pub paused: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Slice {
    /// Adds `o` into `self`: counts add, maxima take the larger.
    pub fn merge(&mut self, o: &Slice) {
        self.received += o.received;
        self.lost += o.lost;
        self.violations += o.violations;
        self.max_e2e_ns = self.max_e2e_ns.max(o.max_e2e_ns);
        self.epochs += o.epochs;
        self.attempts += o.attempts;
        self.failed += o.failed;
        self.max_lag_ns = self.max_lag_ns.max(o.max_lag_ns);
        self.paused += o.paused;
    }
}

/// The slices of one producer over one stretch of the run.
///
/// Invariant: `slices[i]` covers `[(first + i) * SLICE_NS, (first + i + 1) * SLICE_NS)` from
/// the start of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// Index of the first slice, counted from the start of the run.
    pub first: u64,
    /// One per slice, in order.
    pub slices: Vec<Slice>,
}

/// Most slices one shipped timeline may hold (a reader ships one interval's worth; more is
/// refused as garbage).
pub const MAX_SLICES: usize = 1_000;

impl Timeline {
    /// The slice at `t_ns` after the start of the run, created (and every one before it) if
    /// needed; a time before `first` goes to the first slice.
    #[inline]
    pub fn at(&mut self, t_ns: u64) -> &mut Slice {
        let i = (t_ns / SLICE_NS).saturating_sub(self.first) as usize;
        if i >= self.slices.len() {
            self.slices.resize(i + 1, Slice::default());
        }
        &mut self.slices[i]
    }

    /// Empties it to start at slice `first`, keeping the allocation.
    pub fn reset(&mut self, first: u64) {
        self.first = first;
        self.slices.clear();
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.slices.iter().all(|s| *s == Slice::default())
    }
}

/// Every slice a producer shipped, merged, indexed from the start of the run.
///
/// Invariant: `covered.len() == slices.len()`; `covered[i]` says whether a shipped timeline
/// spanned slice `i` (an empty slice of a covered span is silence; one never shipped, as after
/// a reader died before its report, is unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Slice `i` of the run; grows as timelines arrive.
    pub slices: Vec<Slice>,
    /// Whether slice `i` was shipped.
    pub covered: Vec<bool>,
}

impl History {
    /// Merges `t` in. Refuses (changing nothing) a timeline longer than [`MAX_SLICES`] or one
    /// that reaches past `limit` slices.
    pub fn add(&mut self, t: &Timeline, limit: u64) -> Result<(), String> {
        if t.slices.len() > MAX_SLICES {
            return Err(format!("a timeline of {} slices", t.slices.len()));
        }
        let end = t.first.saturating_add(t.slices.len() as u64);
        if end > limit {
            return Err(format!(
                "a timeline reaching slice {end} of a run of {limit}"
            ));
        }
        if self.slices.len() < end as usize {
            self.slices.resize(end as usize, Slice::default());
            self.covered.resize(end as usize, false);
        }
        for (i, s) in t.slices.iter().enumerate() {
            self.slices[t.first as usize + i].merge(s);
            self.covered[t.first as usize + i] = true;
        }
        Ok(())
    }

    /// Slice `i`, empty if nothing was shipped for it.
    pub fn get(&self, i: u64) -> Slice {
        self.slices.get(i as usize).copied().unwrap_or_default()
    }

    /// Slice `i`, if a shipped timeline spanned it.
    pub fn known(&self, i: u64) -> Option<Slice> {
        self.covered
            .get(i as usize)
            .copied()
            .unwrap_or(false)
            .then(|| self.slices[i as usize])
    }
}

/// Cuts a reader's running counts into slices: called often (every poll), it closes the slice
/// in progress once its time is over, with what the counts grew by since the last one.
///
/// Invariant: `last` is the sum of the counts as of the last closed slice; every slice before
/// `next_ns` is closed.
#[derive(Debug, Clone)]
pub struct Ticker {
    /// The run's start, ns (`CLOCK_MONOTONIC`, the reader's clock).
    start_ns: u64,
    /// End of the slice in progress, ns (absolute).
    next_ns: u64,
    /// The counts as of the last closed slice.
    last: crate::report::Integrity,
    /// Epoch changes as of the last closed slice.
    last_epochs: u64,
    /// The slice the last close counted into (`u64::MAX` before the first): the reader ran
    /// in it, whichever shipped timeline holds it.
    counted: u64,
    /// The slices closed since the last [`Ticker::take`].
    timeline: Timeline,
}

impl Ticker {
    /// A ticker for a run that starts at `start_ns`, whose first slice is the one of `now`.
    pub fn new(start_ns: u64, now: u64) -> Self {
        let first = now.saturating_sub(start_ns) / SLICE_NS;
        let mut timeline = Timeline::default();
        timeline.reset(first);
        Self {
            start_ns,
            next_ns: start_ns + (first + 1) * SLICE_NS,
            last: Default::default(),
            last_epochs: 0,
            counted: u64::MAX,
            timeline,
        }
    }

    /// Whether the slice in progress is over at `now`.
    #[inline]
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_ns
    }

    /// Closes the slice in progress with the counts `now_counts` (the reader's totals), the
    /// largest end-to-end latency since the last close, and `epochs` (total epoch changes).
    pub fn close(
        &mut self,
        now: u64,
        now_counts: &crate::report::Integrity,
        max_e2e_ns: u64,
        epochs: u64,
    ) {
        let grew = now_counts.since(&self.last);
        let in_progress = (self.next_ns - self.start_ns) / SLICE_NS - 1;
        let slice = now.saturating_sub(self.start_ns) / SLICE_NS;
        // Closed a whole slice late: the reader did not run in between. What it counts now it
        // saw now; the slices it missed, from the one it stopped in, say so.
        let t = if slice > in_progress + 1 {
            // The slice it stopped in, unless it counted in it before; every one after.
            let from = if in_progress == self.counted {
                in_progress + 1
            } else {
                in_progress
            };
            for i in from..slice {
                self.timeline.at(i * SLICE_NS).paused = 1;
            }
            now.saturating_sub(self.start_ns)
        } else {
            self.next_ns.saturating_sub(1).saturating_sub(self.start_ns)
        };
        self.counted = t / SLICE_NS;
        let s = self.timeline.at(t);
        s.received += grew.received;
        s.lost += grew.lost;
        s.violations += grew.corrupted + grew.out_of_order + grew.gaps + grew.book_errors;
        s.max_e2e_ns = s.max_e2e_ns.max(max_e2e_ns);
        s.epochs += epochs.saturating_sub(self.last_epochs);
        self.last = *now_counts;
        self.last_epochs = epochs;
        self.next_ns = self.start_ns + (slice + 1) * SLICE_NS;
    }

    /// Closes the slice in progress from a reader's sources: each one's running counts, the
    /// largest end-to-end latency it saw since the last close, and its epoch changes.
    pub fn close_sources(
        &mut self,
        now: u64,
        sources: impl IntoIterator<Item = (crate::report::Integrity, u64, u64)>,
    ) {
        let mut counts = crate::report::Integrity::default();
        let (mut max_e2e, mut epochs) = (0, 0);
        for (c, e2e, e) in sources {
            counts.add(&c);
            max_e2e = max_e2e.max(e2e);
            epochs += e;
        }
        self.close(now, &counts, max_e2e, epochs);
    }

    /// The slices closed since the last call; the next ones start after them.
    pub fn take(&mut self) -> Timeline {
        let first = (self.next_ns - self.start_ns) / SLICE_NS - 1;
        let mut out = Timeline::default();
        out.reset(first);
        std::mem::swap(&mut out, &mut self.timeline);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_merge_and_histories_refuse_what_does_not_fit() {
        let mut t = Timeline::default();
        t.reset(100);
        t.at(100 * SLICE_NS + 5).received += 2;
        t.at(102 * SLICE_NS).max_e2e_ns = 7;
        t.at(0).lost += 1;
        assert_eq!(t.slices.len(), 3);
        assert_eq!(t.slices[0].received, 2);
        assert_eq!(t.slices[0].lost, 1);
        let mut h = History::default();
        h.add(&t, 200).unwrap();
        h.add(&t, 200).unwrap();
        assert_eq!(h.get(100).received, 4);
        assert_eq!(h.get(102).max_e2e_ns, 7);
        assert_eq!(h.get(150), Slice::default());
        assert_eq!(h.known(101), Some(Slice::default()));
        assert_eq!(h.known(99), None);
        assert_eq!(h.known(150), None);
        assert!(h.add(&t, 101).is_err());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timeline>(&json).unwrap(), t);
    }

    #[test]
    fn a_reader_that_did_not_run_marks_the_slices_it_missed() {
        let counts = |received| crate::report::Integrity {
            received,
            ..Default::default()
        };
        let mut t = Ticker::new(1_000, 1_000);
        t.close(1_000 + SLICE_NS, &counts(5), 7, 0);
        // Stopped from slice 1 until slice 4: what it counts then belongs to slice 4.
        t.close(1_000 + 4 * SLICE_NS + 3, &counts(9), 900, 0);
        t.close(1_000 + 5 * SLICE_NS, &counts(10), 8, 0);
        // A long poll: the slices it spent in are missed, the one it counts in is live (and a
        // later close does not take that one back).
        t.close(1_000 + 7 * SLICE_NS, &counts(12), 9, 0);
        let tl = t.take();
        assert_eq!(tl.first, 0);
        let got: Vec<(u64, u64, u64)> = tl
            .slices
            .iter()
            .map(|s| (s.received, s.paused, s.max_e2e_ns))
            .collect();
        assert_eq!(
            got,
            [
                (5, 0, 7),
                (0, 1, 0),
                (0, 1, 0),
                (0, 1, 0),
                (5, 0, 900),
                (0, 1, 0),
                (0, 1, 0),
                (2, 0, 9)
            ]
        );
        assert_eq!(t.take().first, 7);
    }
}
