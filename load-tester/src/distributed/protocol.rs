//! The distributed run's wire: the gRPC service and messages generated from
//! `proto/alphapulse/distributed/v1/distributed.proto` (by protox and tonic at build time), the
//! conversions between the generated interval report and [`IntervalReport`], and the pieces
//! both sides share (the protocol version, the clock-offset arithmetic).
//!
//! Nothing from the network is trusted: a report that does not convert (an unknown stream, a
//! histogram that does not decode or has another configuration, a source listed twice) is
//! refused with the reason.

use std::collections::BTreeMap;

use crate::report::histogram::{decode_plain_bytes, encode_plain_bytes, HistogramConfig};
use crate::report::{
    GeneratorTime, Integrity, IntervalReport, Kind, ProcessUsage, SourceId, SourceReport, Stream,
    WriterCounters,
};

/// The code generated from the `.proto` file.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("alphapulse.distributed.v1");
}

/// The version of the protocol this build speaks; a peer of another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message either side accepts, bytes: an interval report of the largest plan (256
/// exchanges, four histograms per source) is far below it; anything above is refused by the
/// transport before it is decoded.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The histogram configuration as the protocol carries it.
pub fn histograms_pb(c: HistogramConfig) -> pb::HistogramConfig {
    pb::HistogramConfig {
        lowest: c.lowest,
        highest: c.highest,
        significant_figures: u32::from(c.sigfig),
    }
}

/// The histogram configuration a peer announced, or `None` when it is not one this build can
/// record in.
pub fn histograms_of(c: &pb::HistogramConfig) -> Option<HistogramConfig> {
    Some(HistogramConfig {
        lowest: c.lowest,
        highest: c.highest,
        sigfig: u8::try_from(c.significant_figures).ok()?,
    })
}

fn stream_pb(s: Stream) -> pb::Stream {
    match s {
        Stream::Trades => pb::Stream::Trades,
        Stream::Book => pb::Stream::Book,
    }
}

/// An interval report as the protocol carries it.
pub fn report_to_pb(r: &IntervalReport) -> pb::IntervalReport {
    pb::IntervalReport {
        index: r.index,
        length_ns: r.length_ns,
        covered_ns: r.covered_ns,
        sources: r
            .sources
            .iter()
            .map(|(id, s)| pb::Source {
                exchange: u32::from(id.exchange),
                stream: stream_pb(id.stream) as i32,
                histograms: Kind::ALL
                    .iter()
                    .filter_map(|&k| {
                        s.latency
                            .get(k)
                            .filter(|h| !h.is_empty())
                            .map(|h| (k.name().to_string(), encode_plain_bytes(h)))
                    })
                    .collect(),
                writer: Some(pb::WriterCounters {
                    sent: s.writer.sent,
                    buffer_overflows: s.writer.buffer_overflows,
                    write_failures: s.writer.write_failures,
                    backlog: s.writer.backlog,
                    saturated: s.writer.saturated,
                    net_dropped: s.writer.net_dropped,
                    net_duplicated: s.writer.net_duplicated,
                    net_reordered: s.writer.net_reordered,
                    net_refused: s.writer.net_refused,
                }),
                reader: Some(integrity_pb(&s.reader)),
            })
            .collect(),
        generator: Some(pb::GeneratorTime {
            thread_ns: r.generator.thread_ns,
            wait_ns: r.generator.wait_ns,
            spin_ns: r.generator.spin_ns,
            write_ns: r.generator.write_ns,
        }),
        processes: r
            .processes
            .iter()
            .map(|(name, u)| (name.clone(), usage_pb(u)))
            .collect(),
    }
}

fn integrity_pb(i: &Integrity) -> pb::Integrity {
    pb::Integrity {
        received: i.received,
        lost: i.lost,
        torn: i.torn,
        corrupted: i.corrupted,
        out_of_order: i.out_of_order,
        gaps: i.gaps,
        book_errors: i.book_errors,
        digests_checked: i.digests_checked,
        digest_mismatches: i.digest_mismatches,
        published: i.published,
        accounted: i.accounted,
        unaccounted: i.unaccounted,
        duplicates: i.duplicates,
        reordered: i.reordered,
    }
}

fn usage_pb(u: &ProcessUsage) -> pb::ProcessUsage {
    pb::ProcessUsage {
        samples: u.samples,
        wall_ns: u.wall_ns,
        cpu_ns: u.cpu_ns,
        rss_bytes: u.rss_bytes,
        rss_anon_bytes: u.rss_anon_bytes,
        rss_shmem_bytes: u.rss_shmem_bytes,
        minor_faults: u.minor_faults,
        major_faults: u.major_faults,
        voluntary_switches: u.voluntary_switches,
        involuntary_switches: u.involuntary_switches,
        machine_busy_ticks: u.machine_busy_ticks,
        machine_total_ticks: u.machine_total_ticks,
    }
}

/// An interval report from the protocol, checked as [`IntervalReport::validate`] checks one, or
/// what is wrong with it.
pub fn report_from_pb(r: &pb::IntervalReport) -> Result<IntervalReport, String> {
    let mut sources = BTreeMap::new();
    for s in &r.sources {
        let exchange = u16::try_from(s.exchange)
            .map_err(|_| format!("exchange {} is not an exchange id", s.exchange))?;
        let stream = match pb::Stream::try_from(s.stream) {
            Ok(pb::Stream::Trades) => Stream::Trades,
            Ok(pb::Stream::Book) => Stream::Book,
            _ => return Err(format!("exchange {exchange}: unknown stream {}", s.stream)),
        };
        let id = SourceId { exchange, stream };
        let mut report = SourceReport::default();
        for (name, bytes) in &s.histograms {
            let kind = Kind::ALL
                .iter()
                .copied()
                .find(|k| k.name() == name)
                .ok_or_else(|| format!("exchange {exchange}: unknown latency kind {name:?}"))?;
            let h = decode_plain_bytes(bytes)
                .map_err(|e| format!("exchange {exchange} {} {name}: {e}", stream.name()))?;
            // `decode_bytes` checked the configuration.
            let _ = report.latency.set(kind, h);
        }
        if let Some(w) = &s.writer {
            report.writer = WriterCounters {
                sent: w.sent,
                buffer_overflows: w.buffer_overflows,
                write_failures: w.write_failures,
                backlog: w.backlog,
                saturated: w.saturated,
                net_dropped: w.net_dropped,
                net_duplicated: w.net_duplicated,
                net_reordered: w.net_reordered,
                net_refused: w.net_refused,
            };
        }
        if let Some(i) = &s.reader {
            report.reader = Integrity {
                received: i.received,
                lost: i.lost,
                torn: i.torn,
                corrupted: i.corrupted,
                out_of_order: i.out_of_order,
                gaps: i.gaps,
                book_errors: i.book_errors,
                digests_checked: i.digests_checked,
                digest_mismatches: i.digest_mismatches,
                published: i.published,
                accounted: i.accounted,
                unaccounted: i.unaccounted,
                duplicates: i.duplicates,
                reordered: i.reordered,
            };
        }
        if sources.insert(id, report).is_some() {
            return Err(format!(
                "exchange {exchange} {} is listed twice",
                stream.name()
            ));
        }
    }
    let g = r.generator.unwrap_or_default();
    let report = IntervalReport {
        index: r.index,
        length_ns: r.length_ns,
        covered_ns: r.covered_ns,
        sources,
        generator: GeneratorTime {
            thread_ns: g.thread_ns,
            wait_ns: g.wait_ns,
            spin_ns: g.spin_ns,
            write_ns: g.write_ns,
        },
        processes: r
            .processes
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    ProcessUsage {
                        samples: u.samples,
                        wall_ns: u.wall_ns,
                        cpu_ns: u.cpu_ns,
                        rss_bytes: u.rss_bytes,
                        rss_anon_bytes: u.rss_anon_bytes,
                        rss_shmem_bytes: u.rss_shmem_bytes,
                        minor_faults: u.minor_faults,
                        major_faults: u.major_faults,
                        voluntary_switches: u.voluntary_switches,
                        involuntary_switches: u.involuntary_switches,
                        machine_busy_ticks: u.machine_busy_ticks,
                        machine_total_ticks: u.machine_total_ticks,
                    },
                )
            })
            .collect(),
    };
    report.validate().map_err(|e| e.to_string())?;
    Ok(report)
}

/// One NTP-style round (RFC 5905's on-wire arithmetic): worker send `t1`, coordinator receive
/// `t2` and send `t3`, worker receive `t4`, each ns on its own clock. Returns the coordinator's
/// clock minus the worker's, and the round trip less the coordinator's own time.
pub fn clock_round(t1: u64, t2: u64, t3: u64, t4: u64) -> (i64, u64) {
    let (t1, t2, t3, t4) = (t1 as i128, t2 as i128, t3 as i128, t4 as i128);
    let offset = ((t2 - t1) + (t3 - t4)) / 2;
    let delay = ((t4 - t1) - (t3 - t2)).max(0);
    (offset as i64, delay as u64)
}

/// Now, ns since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use crate::distributed::protocol::{clock_round, pb, report_from_pb, report_to_pb};
    use crate::report::{IntervalReport, Kind, ProcessUsage, SourceId, Stream};

    #[test]
    fn reports_survive_the_wire_exactly() {
        let mut r = IntervalReport::empty(3, 1_000_000_000);
        r.covered_ns = 1_000_000_000;
        for (exchange, stream) in [(0, Stream::Trades), (0, Stream::Book), (7, Stream::Trades)] {
            let s = r.sources.entry(SourceId { exchange, stream }).or_default();
            for v in [41, 57, 900, 123_456] {
                s.latency.get_mut(Kind::Service).record(v).unwrap();
                s.latency.get_mut(Kind::E2e).record(v * 3).unwrap();
            }
            s.writer.sent = 4;
            s.reader.received = 4;
            s.reader.gaps = u64::from(exchange);
        }
        r.generator.wait_ns = 999;
        r.processes.insert(
            "tester".into(),
            ProcessUsage {
                samples: 1,
                cpu_ns: 5,
                ..Default::default()
            },
        );
        let back = report_from_pb(&report_to_pb(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_foreign_report_is_refused_with_its_reason() {
        let mut bad = report_to_pb(&IntervalReport::empty(1, 10));
        bad.sources.push(pb::Source {
            exchange: 70_000,
            ..Default::default()
        });
        assert!(report_from_pb(&bad).unwrap_err().contains("exchange id"));
        bad.sources[0].exchange = 1;
        assert!(report_from_pb(&bad).unwrap_err().contains("unknown stream"));
        bad.sources[0].stream = pb::Stream::Book as i32;
        bad.sources[0]
            .histograms
            .insert("service".into(), vec![1, 2, 3]);
        assert!(report_from_pb(&bad)
            .unwrap_err()
            .contains("uncompressed V2"));
        // A compressed histogram is refused too: its configuration is behind the deflate.
        let deflated =
            crate::report::histogram::encode_bytes(&crate::report::histogram::new_histogram());
        bad.sources[0].histograms.insert("service".into(), deflated);
        assert!(report_from_pb(&bad)
            .unwrap_err()
            .contains("uncompressed V2"));
        bad.sources[0].histograms.clear();
        bad.sources.push(bad.sources[0].clone());
        assert!(report_from_pb(&bad).unwrap_err().contains("twice"));
        let mut long = report_to_pb(&IntervalReport::empty(1, 10));
        long.covered_ns = 11;
        assert!(report_from_pb(&long).is_err());
    }

    #[test]
    fn the_clock_round_finds_the_offset() {
        // The coordinator's clock is 5 ms ahead; 100 us each way; 10 us inside the coordinator.
        let t1 = 1_000_000_000;
        let t2 = t1 + 100_000 + 5_000_000;
        let t3 = t2 + 10_000;
        let t4 = t1 + 210_000;
        assert_eq!(clock_round(t1, t2, t3, t4), (5_000_000, 200_000));
    }
}
