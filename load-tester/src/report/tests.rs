use proptest::collection::vec;
use proptest::prelude::*;

use super::histogram::new_histogram;
use super::wire::{from_line, to_line};
use super::*;

const LENGTH: u64 = 1_000_000_000;

/// One thing a producer can record into a report of one interval.
#[derive(Debug, Clone)]
enum Event {
    Latency(SourceId, Kind, u64),
    Sent(SourceId, u64),
    Lost(SourceId, u64),
    Corrupted(SourceId, u64),
    Covered(u64),
    Wait(u64),
    Cpu(String, u64, u64),
}

fn source() -> impl Strategy<Value = SourceId> {
    (
        0u16..3,
        prop_oneof![Just(Stream::Trades), Just(Stream::Book)],
    )
        .prop_map(|(exchange, stream)| SourceId { exchange, stream })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Service),
        Just(Kind::Response),
        Just(Kind::Lag),
        Just(Kind::E2e)
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let n = 0u64..1 << 40;
    prop_oneof![
        4 => (source(), kind(), 1u64..200_000_000_000).prop_map(|(s, k, v)| Event::Latency(s, k, v)),
        1 => (source(), n.clone()).prop_map(|(s, v)| Event::Sent(s, v)),
        1 => (source(), n.clone()).prop_map(|(s, v)| Event::Lost(s, v)),
        1 => (source(), n.clone()).prop_map(|(s, v)| Event::Corrupted(s, v)),
        1 => (0..=LENGTH).prop_map(Event::Covered),
        1 => n.clone().prop_map(Event::Wait),
        1 => (prop_oneof![Just("tester".to_string()), Just("reader.0".to_string())], n.clone(), n)
            .prop_map(|(p, c, r)| Event::Cpu(p, c, r)),
    ]
}

/// What a producer builds from its events.
fn record(events: &[Event]) -> IntervalReport {
    let mut r = IntervalReport::empty(7, LENGTH);
    for e in events {
        match e {
            Event::Latency(s, k, v) => {
                r.sources
                    .entry(*s)
                    .or_default()
                    .latency
                    .get_mut(*k)
                    .saturating_record(*v);
            }
            Event::Sent(s, v) => r.sources.entry(*s).or_default().writer.sent += v,
            Event::Lost(s, v) => r.sources.entry(*s).or_default().reader.lost += v,
            Event::Corrupted(s, v) => r.sources.entry(*s).or_default().reader.corrupted += v,
            Event::Covered(c) => r.covered_ns = r.covered_ns.max(*c),
            Event::Wait(w) => r.generator.wait_ns += w,
            Event::Cpu(p, c, rss) => {
                let u = r.processes.entry(p.clone()).or_default();
                u.samples += 1;
                u.cpu_ns += c;
                u.rss_bytes += rss;
            }
        }
    }
    r
}

fn merged(parts: &[&IntervalReport]) -> IntervalReport {
    let mut out = IntervalReport::empty(7, LENGTH);
    for p in parts {
        out.merge(p).unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_is_commutative(a in vec(event(), 0..40), b in vec(event(), 0..40)) {
        let (a, b) = (record(&a), record(&b));
        prop_assert_eq!(merged(&[&a, &b]), merged(&[&b, &a]));
    }

    #[test]
    fn merge_is_associative(
        a in vec(event(), 0..30), b in vec(event(), 0..30), c in vec(event(), 0..30)
    ) {
        let (a, b, c) = (record(&a), record(&b), record(&c));
        let mut left = a.clone();
        left.merge(&b).unwrap();
        left.merge(&c).unwrap();
        let mut bc = b.clone();
        bc.merge(&c).unwrap();
        let mut right = a.clone();
        right.merge(&bc).unwrap();
        prop_assert_eq!(left, right);
    }

    #[test]
    fn parts_merged_give_the_whole(
        events in vec(event(), 0..120),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let whole = record(&events);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(events.len() + 1)).collect();
        at.push(0);
        at.push(events.len());
        at.sort_unstable();
        let parts: Vec<IntervalReport> = at.windows(2).map(|w| record(&events[w[0]..w[1]])).collect();
        let refs: Vec<&IntervalReport> = parts.iter().collect();
        let back = merged(&refs);
        prop_assert_eq!(&back, &whole);
        // Every percentile of the merge is that of the union of the recordings.
        for (id, s) in &whole.sources {
            for kind in Kind::ALL {
                let (w, m) = (s.latency.get(kind), back.sources[id].latency.get(kind));
                if let (Some(w), Some(m)) = (w, m) {
                    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                        prop_assert_eq!(w.value_at_quantile(q), m.value_at_quantile(q));
                    }
                }
            }
        }
    }

    #[test]
    fn text_form_round_trips(events in vec(event(), 0..60)) {
        let r = record(&events);
        let line = to_line(&r);
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(from_line(&line).unwrap(), r);
    }
}

#[test]
fn other_intervals_are_refused() {
    let mut a = IntervalReport::empty(1, LENGTH);
    let b = IntervalReport::empty(2, LENGTH);
    assert!(matches!(
        a.merge(&b),
        Err(MergeError::Interval {
            into: 1,
            found: 2,
            ..
        })
    ));
    let c = IntervalReport::empty(1, LENGTH / 2);
    assert!(matches!(a.merge(&c), Err(MergeError::Interval { .. })));
}

#[test]
fn other_histogram_configurations_are_refused_and_change_nothing() {
    let id = SourceId {
        exchange: 0,
        stream: Stream::Book,
    };
    let mut a = IntervalReport::empty(1, LENGTH);
    a.sources.entry(id).or_default().writer.sent = 5;
    let before = a.clone();
    let mut b = IntervalReport::empty(1, LENGTH);
    let mut odd = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000, 2).unwrap();
    odd.record(3).unwrap();
    // `set` refuses it, so build the report around it by hand, as a foreign producer would.
    assert!(b
        .sources
        .entry(id)
        .or_default()
        .latency
        .set(Kind::Service, odd.clone())
        .is_err());
    b.sources.get_mut(&id).unwrap().latency.hists[Kind::Service.index()] = Some(odd);
    b.sources.get_mut(&id).unwrap().writer.sent = 1;
    let e = a.merge(&b).unwrap_err();
    assert!(
        matches!(
            e,
            MergeError::HistogramConfig {
                kind: Kind::Service,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(a, before);
}

#[test]
fn a_foreign_line_is_refused_with_a_reason() {
    for (line, why) in [
        ("{}", "missing field"),
        ("{\"index\":1,\"length_ns\":10,\"covered_ns\":11}", "covers 11 ns"),
        (
            "{\"index\":1,\"length_ns\":10,\"sources\":[{\"exchange\":0,\"stream\":\"trades\"},{\"exchange\":0,\"stream\":\"trades\"}]}",
            "listed twice",
        ),
        (
            "{\"index\":1,\"length_ns\":10,\"sources\":[{\"exchange\":0,\"stream\":\"trades\",\"histograms\":{\"service\":\"AAAA\"}}]}",
            "does not decode",
        ),
        ("{\"index\":1,\"length_ns\":10,\"bogus\":1}", "unknown field"),
    ] {
        let e = from_line(line).unwrap_err();
        assert!(e.contains(why), "{line}: {e}");
    }
}

#[test]
fn empty_and_absent_histograms_are_the_same() {
    let mut a = Latencies::default();
    let b = Latencies::default();
    a.get_mut(Kind::E2e);
    assert_eq!(a, b);
    a.get_mut(Kind::E2e).record(5).unwrap();
    assert_ne!(a, b);
    let mut h = new_histogram();
    h.record(5).unwrap();
    let mut c = Latencies::default();
    c.set(Kind::E2e, h).unwrap();
    assert_eq!(a, c);
}

#[test]
fn the_documented_examples_decode_as_the_document_says() {
    let doc = include_str!("../../../docs/interval-report.md");
    let example = &doc[doc.find("## 13. Example").expect("section 13")..];
    let example = &example[..example.find("## 14.").expect("section 14")];
    let reports: Vec<IntervalReport> = example
        .split("```json")
        .skip(1)
        .map(|block| {
            let json = &block[..block.find("```").expect("closed block")];
            from_line(json).unwrap_or_else(|e| panic!("{e}\n{json}"))
        })
        .collect();
    assert!(reports.len() >= 2, "the examples are found");
    let trades = SourceId {
        exchange: 0,
        stream: Stream::Trades,
    };
    let service = reports[0].sources[&trades]
        .latency
        .get(Kind::Service)
        .expect("a service histogram");
    let values: Vec<u64> = service
        .iter_recorded()
        .map(|v| v.value_iterated_to())
        .collect();
    // The table beside the example: service 41, 45, 52, 980 ns (980 in its 0.1% bucket).
    assert_eq!(values.len(), 4);
    assert_eq!(&values[..3], &[41, 45, 52]);
    assert!(service.equivalent(values[3], 980));
    let mut merged = IntervalReport::empty(2, LENGTH);
    for r in &reports {
        merged.merge(r).expect("the examples are of one interval");
    }
}
