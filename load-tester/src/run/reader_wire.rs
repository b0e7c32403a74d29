//! The line protocol between the tester and the reader processes it starts
//! (`load-tester read --protocol`): both sides of it, in one place.
//!
//! Tester to reader, on the reader's stdin, one line each:
//!
//! ```text
//! start <start_ns> <interval_ns> <intervals>
//! ```
//!
//! `start_ns` is the start of interval 0 on `CLOCK_MONOTONIC`; the reader attributes what it
//! copies to intervals of `interval_ns` from there, and what it copies after the last of the
//! `intervals` intervals to the last one. Later lines are orders ([`Order`]: `slow <extra_ns>
//! <until_ns>`, a chaos run's slow-reader fault). Closing the reader's stdin asks it to stop.
//!
//! Reader to tester, on the reader's stdout, one JSON object per line ([`ToTester`]):
//! `{"type":"ready",...}` once attached, `{"type":"interval","report":{...}}` per interval, and
//! `{"type":"final","report":{...},"end":{...}}` at the end; a chaos run's reader
//! (`--timeline`) sends `{"type":"progress",...}` before each of those. The reports are
//! [`crate::report::wire`] objects. docs/interval-report.md §14 describes it all.

use serde::{Deserialize, Serialize};

use crate::report::end::ReaderEnd;
use crate::report::timeline::Timeline;
use crate::report::IntervalReport;

/// Longest line the tester reads from a reader, bytes; a longer one is garbage.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A message from a reader process to the tester.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToTester {
    /// Attached to every ring; waiting for `start`.
    Ready {
        /// Reader pid.
        pid: u32,
        /// Rings attached (or sessions followed).
        rings: usize,
        /// A datagram feed's reader: where it receives (`127.0.0.1:PORT`, or a Unix socket's
        /// abstract name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    },
    /// One interval's end-to-end latencies and counts, per source.
    Interval {
        /// The report.
        report: IntervalReport,
    },
    /// A chaos run's reader, just before each interval's report (and before the final one):
    /// its slices of the interval and where it is in every ring, so that a reader started in
    /// its place resumes where it last reported.
    Progress {
        /// What it saw per 10 ms slice since the last progress message.
        timeline: Timeline,
        /// Per ring, the sequence it wants next, as of the report that follows.
        positions: Vec<Position>,
    },
    /// The end: the last interval's report (with the counts that are only known at the end)
    /// and everything the reader counted.
    Final {
        /// The last report.
        report: IntervalReport,
        /// Its whole-life counts.
        end: Box<ReaderEnd>,
    },
}

impl ToTester {
    /// The message as one line, newline included.
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("reader messages always serialize");
        s.push('\n');
        s
    }

    /// Parses one line from a reader.
    pub fn parse(line: &str) -> Result<Self, String> {
        if line.len() > MAX_LINE_BYTES {
            return Err(format!("a line of {} bytes", line.len()));
        }
        serde_json::from_str(line).map_err(|e| e.to_string())
    }
}

/// Where a reader is in one ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The ring's file name, as the manifest lists it.
    pub file: String,
    /// The ring's epoch (a restarted writer's ring has another).
    pub epoch: u64,
    /// The sequence the reader wants next: every earlier one was received, counted lost, or
    /// (a resumed reader) reported by the reader it replaced.
    pub next: u64,
}

/// A tester's order to a running reader, one line on its stdin after `start`:
/// `slow <extra_ns> <until_ns>` makes it busy-wait `extra_ns` more per record until
/// `until_ns` (`CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Busy-wait this much more per record until then.
    Slow {
        /// Extra delay per record, ns.
        extra_ns: u64,
        /// Until when, ns of `CLOCK_MONOTONIC`.
        until_ns: u64,
    },
}

impl Order {
    /// Its line, newline included.
    pub fn line(&self) -> String {
        match self {
            Order::Slow { extra_ns, until_ns } => format!("slow {extra_ns} {until_ns}\n"),
        }
    }

    /// Parses a line; `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        match words.next()? {
            "slow" => {
                let extra_ns = words.next()?.parse().ok()?;
                let until_ns = words.next()?.parse().ok()?;
                words
                    .next()
                    .is_none()
                    .then_some(Order::Slow { extra_ns, until_ns })
            }
            _ => None,
        }
    }
}

/// When a reader starts and how it cuts time into intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Start of interval 0, `CLOCK_MONOTONIC` ns.
    pub start_ns: u64,
    /// Interval length, ns.
    pub interval_ns: u64,
    /// Intervals of the run; later records belong to the last.
    pub intervals: u64,
}

impl Start {
    /// The `start` line, newline included.
    pub fn line(&self) -> String {
        format!(
            "start {} {} {}\n",
            self.start_ns, self.interval_ns, self.intervals
        )
    }

    /// Parses a `start` line.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        if words.next() != Some("start") {
            return None;
        }
        let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
        let start = Start {
            start_ns: num()?,
            interval_ns: num()?,
            intervals: num()?,
        };
        (start.interval_ns > 0 && start.intervals > 0).then_some(start)
    }

    /// The interval `t_ns` falls in.
    pub fn index_of(&self, t_ns: u64) -> u64 {
        (t_ns.saturating_sub(self.start_ns) / self.interval_ns).min(self.intervals - 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::run::reader_wire::{Start, ToTester};

    #[test]
    fn start_lines_round_trip_and_bad_ones_are_refused() {
        let s = Start {
            start_ns: 5,
            interval_ns: 10,
            intervals: 3,
        };
        assert_eq!(Start::parse(&s.line()), Some(s));
        assert_eq!(s.index_of(0), 0);
        assert_eq!(s.index_of(24), 1);
        assert_eq!(s.index_of(1_000), 2);
        for bad in [
            "",
            "start",
            "start 1 2",
            "start 1 0 3",
            "go 1 2 3",
            "start a b c",
        ] {
            assert_eq!(Start::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn messages_round_trip() {
        let m = ToTester::Ready {
            pid: 7,
            rings: 2,
            listen: None,
        };
        assert_eq!(ToTester::parse(m.line().trim_end()).unwrap(), m);
        assert!(ToTester::parse("{\"type\":\"bogus\"}").is_err());
        let o = super::Order::Slow {
            extra_ns: 5,
            until_ns: 9,
        };
        assert_eq!(super::Order::parse(&o.line()), Some(o));
        assert_eq!(super::Order::parse("slow 5"), None);
        assert_eq!(super::Order::parse("slow 5 9 1"), None);
    }
}
