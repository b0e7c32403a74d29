use alphapulse_bus::{BookUpdate, Trade};

use super::ReplayMarket;
use crate::source::market::{BookReplica, ExchangeSim};

/// A simulated stream: `(is_trade, trade, book)` in the order the simulator made them.
fn simulated(n: usize) -> (Vec<(bool, Trade, BookUpdate)>, ExchangeSim) {
    let mut sim = ExchangeSim::new(2, 5, 7);
    let mut out = Vec::new();
    for i in 0..n {
        let (mut t, mut b) = (Trade::default(), BookUpdate::default());
        let trade = i % 3 == 0;
        if trade {
            sim.next_trade(&mut t);
        } else {
            sim.next_book_update(&mut b);
        }
        out.push((trade, t, b));
    }
    (out, sim)
}

#[test]
fn a_stream_replayed_from_its_start_is_the_same_stream() {
    let (stream, sim) = simulated(30_000);
    let mut m = ReplayMarket::new(2, 5);
    for (trade, t, b) in &stream {
        if *trade {
            let mut out = Trade::default();
            m.trade(bytemuck::bytes_of(t), &mut out);
            assert_eq!(&out, t);
        } else {
            let mut out = BookUpdate::default();
            m.book_update(bytemuck::bytes_of(b), &mut out);
            assert_eq!(&out, b);
        }
    }
    for s in 0..5 {
        assert_eq!(m.published_version(s), sim.published_version(s));
        assert_eq!(m.published_digest(s), sim.published_digest(s));
    }
    assert_eq!(m.dropped_levels(), 0);
}

#[test]
fn a_stream_replayed_from_its_middle_stays_consistent() {
    let (stream, _) = simulated(20_000);
    let mut m = ReplayMarket::new(2, 5);
    let mut replica = BookReplica::new(5);
    for (trade, _, b) in stream.iter().skip(7_777).filter(|(t, ..)| !t) {
        let _ = trade;
        let mut out = BookUpdate::default();
        m.book_update(bytemuck::bytes_of(b), &mut out);
        replica.apply(&out).expect("every replayed update applies");
    }
    for s in 0..5 {
        assert_eq!(replica.digest(s), m.published_digest(s));
        assert_eq!(replica.version(s), m.published_version(s));
    }
}

#[test]
fn a_crossing_insert_deletes_the_levels_it_crosses_first() {
    use alphapulse_bus::{Action, Level, Side};
    let lvl = |side: Side, action: Action, price: i64, size: i64| Level {
        price,
        size,
        side: side as u8,
        action: action as u8,
        reserved: [0; 6],
    };
    let mut m = ReplayMarket::new(0, 1);
    let mut u = BookUpdate {
        level_count: 3,
        ..BookUpdate::default()
    };
    u.levels[0] = lvl(Side::Sell, Action::Insert, 101, 5);
    u.levels[1] = lvl(Side::Sell, Action::Insert, 102, 5);
    u.levels[2] = lvl(Side::Buy, Action::Insert, 99, 5);
    let mut out = BookUpdate::default();
    m.book_update(bytemuck::bytes_of(&u), &mut out);
    assert_eq!(out.level_count, 3);
    // A bid at 101 crosses the ask at 101: that ask goes, then the bid goes in.
    let mut v = BookUpdate {
        level_count: 2,
        ..BookUpdate::default()
    };
    v.levels[0] = lvl(Side::Buy, Action::Insert, 101, 7);
    v.levels[1] = lvl(Side::Buy, Action::Delete, 50, 0);
    m.book_update(bytemuck::bytes_of(&v), &mut out);
    assert_eq!(out.level_count, 2);
    assert_eq!(out.levels[0], lvl(Side::Sell, Action::Delete, 101, 0));
    assert_eq!(out.levels[1], lvl(Side::Buy, Action::Insert, 101, 7));
    assert_eq!((out.prev_version, out.version), (1, 2));
    // The delete of a level this book never had is dropped, and counted.
    assert_eq!(m.dropped_levels(), 1);
    let mut replica = BookReplica::new(1);
    let mut first = BookUpdate::default();
    let mut m2 = ReplayMarket::new(0, 1);
    m2.book_update(bytemuck::bytes_of(&u), &mut first);
    replica.apply(&first).unwrap();
    replica.apply(&out).unwrap();
    assert_eq!(replica.digest(0), m.published_digest(0));
}
