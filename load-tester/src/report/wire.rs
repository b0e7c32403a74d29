//! The text form of an [`IntervalReport`]: one JSON object, histograms in HdrHistogram's V2
//! compressed encoding, base64. Reader processes send it to the tester one object per line;
//! docs/interval-report.md documents every field, so that a producer in another language can
//! write it.
//!
//! ```json
//! {"index": 3, "length_ns": 1000000000, "covered_ns": 1000000000,
//!  "sources": [{"exchange": 0, "stream": "trades",
//!               "histograms": {"service": "HISTFAAAA...", "response": "...", "lag": "..."},
//!               "writer": {"sent": 10000}, "reader": {}}],
//!  "generator": {"thread_ns": 1000000000, "wait_ns": 990000000, "spin_ns": 20000000, "write_ns": 400000},
//!  "processes": {"tester": {"samples": 1, "wall_ns": 1000000000, "cpu_ns": 120000000, ...}}}
//! ```
//!
//! Decoding trusts nothing: unknown fields, a source listed twice, a histogram that does not
//! decode or has another configuration, a covered part longer than the interval are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::histogram::{decode, encode};
use super::{
    GeneratorTime, Integrity, IntervalReport, Kind, ProcessUsage, SourceId, SourceReport, Stream,
    WriterCounters,
};

/// An [`IntervalReport`] as JSON sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReport {
    /// Interval index from the start of the run.
    pub index: u64,
    /// Nominal interval length, ns.
    pub length_ns: u64,
    /// Part of the interval the run covered, ns (0: not a generator's report).
    #[serde(default)]
    pub covered_ns: u64,
    /// Per source, in (exchange, stream) order.
    #[serde(default)]
    pub sources: Vec<WireSource>,
    /// Generator thread time.
    #[serde(default)]
    pub generator: GeneratorTime,
    /// Resource use per process name.
    #[serde(default)]
    pub processes: BTreeMap<String, ProcessUsage>,
}

/// One source of a [`WireReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSource {
    /// Exchange id.
    pub exchange: u16,
    /// `trades` or `book`.
    pub stream: Stream,
    /// Non-empty histograms by kind (`service`, `response`, `lag`, `e2e`): V2 compressed,
    /// base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<Kind, String>,
    /// Writing side's counts.
    #[serde(default)]
    pub writer: WriterCounters,
    /// Reading side's counts.
    #[serde(default)]
    pub reader: Integrity,
}

impl From<&IntervalReport> for WireReport {
    fn from(r: &IntervalReport) -> Self {
        WireReport {
            index: r.index,
            length_ns: r.length_ns,
            covered_ns: r.covered_ns,
            sources: r
                .sources
                .iter()
                .map(|(id, s)| WireSource {
                    exchange: id.exchange,
                    stream: id.stream,
                    histograms: Kind::ALL
                        .iter()
                        .filter_map(|&k| {
                            s.latency
                                .get(k)
                                .filter(|h| !h.is_empty())
                                .map(|h| (k, encode(h)))
                        })
                        .collect(),
                    writer: s.writer,
                    reader: s.reader,
                })
                .collect(),
            generator: r.generator,
            processes: r.processes.clone(),
        }
    }
}

impl TryFrom<WireReport> for IntervalReport {
    type Error = String;

    fn try_from(w: WireReport) -> Result<Self, String> {
        let mut sources = BTreeMap::new();
        for s in w.sources {
            let id = SourceId {
                exchange: s.exchange,
                stream: s.stream,
            };
            let mut report = SourceReport {
                writer: s.writer,
                reader: s.reader,
                ..Default::default()
            };
            for (kind, text) in s.histograms {
                let h = decode(&text).map_err(|e| {
                    format!(
                        "exchange {} {} {}: {e}",
                        id.exchange,
                        id.stream.name(),
                        kind.name()
                    )
                })?;
                // `decode` checked the configuration.
                let _ = report.latency.set(kind, h);
            }
            if sources.insert(id, report).is_some() {
                return Err(format!(
                    "exchange {} {} is listed twice",
                    id.exchange,
                    id.stream.name()
                ));
            }
        }
        let report = IntervalReport {
            index: w.index,
            length_ns: w.length_ns,
            covered_ns: w.covered_ns,
            sources,
            generator: w.generator,
            processes: w.processes,
        };
        report.validate().map_err(|e| e.to_string())?;
        Ok(report)
    }
}

impl Serialize for IntervalReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireReport::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for IntervalReport {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireReport::deserialize(deserializer)?;
        IntervalReport::try_from(wire).map_err(serde::de::Error::custom)
    }
}

/// One report as one line of JSON (no newline).
pub fn to_line(report: &IntervalReport) -> String {
    serde_json::to_string(report).expect("an interval report always serializes")
}

/// A report from one line of JSON, or what is wrong with it.
pub fn from_line(line: &str) -> Result<IntervalReport, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}
