use super::*;
use alphapulse_bus::PRICE_SCALE;

/// Asserts a book's structural invariants; `full` also requires both sides non-empty and bounded.
fn check_book(b: &Book, full: bool, what: &str) {
    let sorted_bids = b.bids.windows(2).all(|w| w[0].price < w[1].price);
    let sorted_asks = b.asks.windows(2).all(|w| w[0].price > w[1].price);
    assert!(sorted_bids && sorted_asks, "{what}: unsorted {b:?}");
    assert!(
        b.bids
            .iter()
            .chain(&b.asks)
            .all(|l| l.price > 0 && l.size > 0),
        "{what}: non-positive level {b:?}"
    );
    if let (Some(bid), Some(ask)) = (b.best_bid(), b.best_ask()) {
        assert!(bid.0 < ask.0, "{what}: crossed {b:?}");
    }
    if full {
        let (nb, na) = b.depth();
        assert!((1..=MAX_DEPTH).contains(&nb), "{what}: {nb} bids");
        assert!((1..=MAX_DEPTH).contains(&na), "{what}: {na} asks");
    }
}

/// Drives a simulator with `trades` trades per `books` book updates (interleaved), checking every
/// record, and feeds every book update to a replica.
struct Harness {
    /// The simulator under test (exchange 3).
    sim: ExchangeSim,
    /// Fed every book update; must accept them all.
    replica: BookReplica,
    /// Per symbol, trades seen so far: the id its last trade must have carried.
    trade_ids: Vec<u64>,
    /// The last trade, poisoned before each `next_trade`.
    trade: Trade,
    /// The last book update, poisoned before each `next_book_update`.
    update: BookUpdate,
}

impl Harness {
    fn new(symbols: u32, seed: u64) -> Self {
        Self {
            sim: ExchangeSim::new(3, symbols, seed),
            replica: BookReplica::new(symbols as usize),
            trade_ids: vec![0; symbols as usize],
            trade: Trade::default(),
            update: BookUpdate::default(),
        }
    }

    fn trade(&mut self) {
        // Poison the fields the simulator must set.
        self.trade = Trade {
            sequence: 7,
            send_ts_ns: 8,
            checksum: 9,
            reserved0: 0xEE,
            ..Trade::default()
        };
        self.sim.next_trade(&mut self.trade);
        let t = self.trade;
        assert_eq!((t.sequence, t.send_ts_ns, t.checksum), (7, 8, 9));
        assert_eq!((t.exchange_id, t.reserved0), (3, 0));
        let s = t.symbol_id as usize;
        assert!(s < self.trade_ids.len());
        self.trade_ids[s] += 1;
        assert_eq!(t.trade_id, self.trade_ids[s]);
        assert!(t.size > 0 && t.price > 0, "{t:?}");
        assert!(t.side == Side::Buy as u8 || t.side == Side::Sell as u8);
        assert_eq!(t.book_version, self.sim.published_version(t.symbol_id));
        check_book(&self.sim.symbols[s].book, true, "internal after trade");
    }

    fn book_update(&mut self) -> BookUpdate {
        self.update = BookUpdate {
            sequence: 7,
            send_ts_ns: 8,
            checksum: 9,
            reserved0: 0xEE,
            reserved1: [1, 2],
            levels: [level(Side::Buy, Action::Update, 1, 1); MAX_LEVELS],
            ..BookUpdate::default()
        };
        self.sim.next_book_update(&mut self.update);
        let u = self.update;
        assert_eq!((u.sequence, u.send_ts_ns, u.checksum), (7, 8, 9));
        assert_eq!((u.exchange_id, u.reserved0, u.reserved1), (3, 0, [0, 0]));
        assert!(
            (1..=MAX_LEVELS).contains(&usize::from(u.level_count)),
            "{u:?}"
        );
        assert!(u.levels[u.changes().len()..]
            .iter()
            .all(|l| *l == Level::default()));
        assert_eq!(u.version, u.prev_version + 1);
        assert_eq!(u.version, self.sim.published_version(u.symbol_id));
        let st = &self.sim.symbols[u.symbol_id as usize];
        check_book(&st.book, true, "internal after update");
        check_book(st.published(), false, "published");
        u
    }

    /// Runs `rounds` rounds of `trades` trades and `books` book updates, all applied to the
    /// replica, which must never complain.
    fn run(&mut self, rounds: usize, trades: usize, books: usize) {
        for _ in 0..rounds {
            for _ in 0..trades {
                self.trade();
            }
            for _ in 0..books {
                let u = self.book_update();
                if let Err(e) = self.replica.apply(&u) {
                    panic!("replica rejected {u:?}: {e}");
                }
            }
        }
    }

    fn assert_replica_matches(&self) {
        for id in 0..self.sim.symbol_count() {
            assert_eq!(self.replica.version(id), self.sim.published_version(id));
            assert_eq!(
                self.replica.digest(id),
                self.sim.published_digest(id),
                "symbol {id}"
            );
            assert_eq!(self.replica.book(id), self.sim.published_book(id));
            assert!(self.replica.is_synced(id));
        }
    }
}

#[test]
fn a_million_mixed_events_keep_every_book_consistent() {
    let mut h = Harness::new(20, 42);
    // 2 trades per book update, as in the default scenario (10k trades/s, 5k updates/s).
    h.run(333_334, 2, 1);
    h.assert_replica_matches();
    for (id, st) in h.sim.symbols.iter().enumerate() {
        check_book(&st.book, true, "internal at the end");
        check_book(st.published(), true, "published at the end");
        assert!(st.version > 0, "symbol {id} never published");
    }
}

#[test]
fn trades_take_liquidity_at_the_touch() {
    let mut sim = ExchangeSim::new(0, 5, 8);
    let (mut t, mut u) = (Trade::default(), BookUpdate::default());
    let mut full = 0;
    for i in 0..50_000 {
        let before: Vec<Book> = sim.symbols.iter().map(|s| s.book.clone()).collect();
        sim.next_trade(&mut t);
        let book = &before[t.symbol_id as usize];
        let (price, size) = if t.side == Side::Buy as u8 {
            book.best_ask().unwrap()
        } else {
            book.best_bid().unwrap()
        };
        assert_eq!(t.price, price, "{t:?} {book:?}");
        assert!(t.size > 0 && t.size <= size, "{t:?} {book:?}");
        full += usize::from(t.size == size);
        if i % 3 == 0 {
            sim.next_book_update(&mut u);
        }
    }
    // Some trades sweep the whole level, most do not.
    assert!((2_000..25_000).contains(&full), "{full} full fills");
}

#[test]
fn replica_matches_whatever_the_mix() {
    for (seed, symbols, trades, books) in [
        (1, 1, 1, 1),
        (2, 5, 10, 1), // trade-heavy: differences pile up between updates
        (3, 20, 1, 5), // book-heavy
        (4, 1000, 3, 2),
    ] {
        let mut h = Harness::new(symbols, seed);
        h.run(20_000, trades, books);
        h.assert_replica_matches();
    }
}

#[test]
fn trades_only_then_books_catch_up() {
    let mut h = Harness::new(3, 9);
    h.run(1, 200_000, 0);
    for st in &h.sim.symbols {
        assert_eq!(st.version, 0);
        // Trades alone keep the price near the fair value, within its bounds.
        let (bid, _) = st.book.best_bid().unwrap();
        let (ask, _) = st.book.best_ask().unwrap();
        assert!(bid >= st.min_fair - 64 * st.tick, "{bid} vs {st:?}");
        assert!(ask <= st.max_fair + 64 * st.tick, "{ask} vs {st:?}");
    }
    h.run(1, 0, 200);
    h.run(1000, 5, 1);
    h.assert_replica_matches();
}

#[test]
fn first_updates_build_the_book_from_empty() {
    let mut sim = ExchangeSim::new(0, 1, 5);
    let mut t = Trade::default();
    sim.next_trade(&mut t); // executes against the unpublished book
    assert_eq!((t.trade_id, t.book_version), (1, 0));
    let mut u = BookUpdate::default();
    sim.next_book_update(&mut u);
    assert_eq!((u.prev_version, u.version, u.level_count), (0, 1, 8));
    assert!(u.changes().iter().all(|l| l.action == Action::Insert as u8));
    let mut replica = BookReplica::new(1);
    replica.apply(&u).unwrap();
    while sim.symbols[0].dirty {
        sim.next_book_update(&mut u);
        replica.apply(&u).unwrap();
    }
    assert_eq!(replica.digest(0), sim.published_digest(0));
    assert_eq!(sim.published_book(0), sim.book(0));
}

#[test]
fn a_skipped_update_is_a_version_gap() {
    let mut sim = ExchangeSim::new(1, 4, 77);
    let mut replica = BookReplica::new(4);
    let mut u = BookUpdate::default();
    let mut skipped = None;
    for i in 0..10_000 {
        sim.next_book_update(&mut u);
        if i == 5_000 {
            skipped = Some(u);
            continue;
        }
        match replica.apply(&u) {
            Ok(()) => {}
            Err(ReplicaError::VersionGap {
                symbol_id,
                expected,
                prev_version,
            }) => {
                let s = skipped.expect("a gap before anything was skipped");
                assert_eq!(symbol_id, s.symbol_id);
                assert_eq!((expected, prev_version), (s.prev_version, s.version));
                assert!(!replica.is_synced(symbol_id));
                assert_eq!(replica.version(symbol_id), u.version);
                skipped = None;
            }
            Err(e) => panic!("only the gap should be reported, got {e}"),
        }
    }
    assert!(skipped.is_none(), "the gap was not detected");
}

#[test]
fn deterministic_for_a_seed() {
    fn records(exchange: u16, seed: u64) -> (Vec<Trade>, Vec<BookUpdate>) {
        let mut sim = ExchangeSim::new(exchange, 50, seed);
        let (mut trades, mut updates) = (Vec::new(), Vec::new());
        for i in 0..30_000 {
            if i % 3 == 2 {
                let mut u = BookUpdate::default();
                sim.next_book_update(&mut u);
                updates.push(u);
            } else {
                let mut t = Trade::default();
                sim.next_trade(&mut t);
                trades.push(t);
            }
        }
        (trades, updates)
    }
    let a = records(2, 1234);
    assert_eq!(a, records(2, 1234));
    let other_seed = records(2, 1235);
    assert_ne!(a.0, other_seed.0);
    assert_ne!(a.1, other_seed.1);
    assert_ne!(a.0[0].price, records(3, 1234).0[0].price);
}

#[test]
fn prices_ticks_and_lots_are_plausible() {
    let mut sim = ExchangeSim::new(0, 300, 11);
    let names = symbol_names(300);
    let infos = symbols::pair_infos(300);
    assert_eq!(sim.increments(0), Some((PRICE_SCALE / 10, 10_000))); // BTC: 0.1 and 0.0001
    let mut t = Trade::default();
    let mut u = BookUpdate::default();
    for _ in 0..300_000 {
        sim.next_trade(&mut t);
        sim.next_book_update(&mut u);
    }
    for (id, st) in sim.symbols.iter().enumerate() {
        let (bid, _) = st.book.best_bid().unwrap();
        let (ask, _) = st.book.best_ask().unwrap();
        let reference = infos[id].price;
        assert!(
            bid > reference / 3 && ask < reference * 3,
            "{}: {bid}..{ask} vs {reference}",
            names[id]
        );
        assert!(bid % st.tick == 0 && ask % st.tick == 0);
        assert!(st
            .book
            .bids
            .iter()
            .chain(&st.book.asks)
            .all(|l| l.size % st.lot == 0));
        // The price is 10^5 to 10^6 ticks, or as fine as fixed-point allows.
        assert!(reference / st.tick < 1_000_000, "{}", names[id]);
        assert!(
            st.tick == 1 || reference / st.tick >= 100_000,
            "{}",
            names[id]
        );
    }
    // BTC stays near 60 000.
    let (bid, _) = sim.symbols[0].book.best_bid().unwrap();
    assert!((30_000 * PRICE_SCALE..120_000 * PRICE_SCALE).contains(&bid));
}

#[test]
fn depth_stays_bounded_and_steady_state_does_not_allocate() {
    let mut sim = ExchangeSim::new(0, 10, 3);
    let mut t = Trade::default();
    let mut u = BookUpdate::default();
    let capacities = |sim: &ExchangeSim| {
        let mut c: Vec<usize> = sim
            .symbols
            .iter()
            .flat_map(|s| {
                [
                    s.book.bids.capacity(),
                    s.book.asks.capacity(),
                    s.published.bids.capacity(),
                    s.published.asks.capacity(),
                ]
            })
            .collect();
        c.push(sim.scratch.capacity());
        c
    };
    for _ in 0..100_000 {
        sim.next_trade(&mut t);
        sim.next_trade(&mut t);
        sim.next_book_update(&mut u);
    }
    let warm = capacities(&sim);
    let mut depth_sum = 0;
    let rounds = 300_000;
    for _ in 0..rounds {
        sim.next_trade(&mut t);
        sim.next_trade(&mut t);
        sim.next_book_update(&mut u);
        let (b, a) = sim.symbols[u.symbol_id as usize].book.depth();
        depth_sum += b + a;
    }
    assert_eq!(capacities(&sim), warm);
    let mean = depth_sum as f64 / rounds as f64 / 2.0;
    assert!(
        (4.0..=MAX_DEPTH as f64).contains(&mean),
        "mean depth {mean}"
    );
}

#[test]
fn symbol_specs_match_names() {
    let specs = symbol_specs(30);
    assert_eq!(specs.len(), 30);
    assert_eq!(specs[0].name, "BTC/USD");
    assert!(specs.iter().enumerate().all(|(i, s)| s.id as usize == i));
}

#[test]
fn tick_and_lot_rules() {
    assert_eq!(tick_for(60_000 * PRICE_SCALE), PRICE_SCALE / 10);
    assert_eq!(tick_for(3_000 * PRICE_SCALE), PRICE_SCALE / 100);
    assert_eq!(tick_for(2_000), 1);
    assert_eq!(lot_for(60_000.0), 10_000);
    assert_eq!(lot_for(0.12), 1_000_000_000);
    assert_eq!(lot_for(1.0), 100_000_000);
    assert_eq!(lot_for(1e-12), 100_000_000_000_000);
}

#[test]
fn spreads_stay_tight_around_the_fair_value() {
    // Whatever the mix of streams: book updates only, the default mix, trades only.
    for trades_per_update in [0, 2, usize::MAX] {
        let mut sim = ExchangeSim::new(0, 20, 42);
        let (mut t, mut u) = (Trade::default(), BookUpdate::default());
        let (mut tight, mut events, mut widest) = (0u64, 0u64, 0i64);
        for i in 0..300_000usize {
            let id = if trades_per_update == usize::MAX || i % (trades_per_update + 1) != 0 {
                sim.next_trade(&mut t);
                t.symbol_id
            } else {
                sim.next_book_update(&mut u);
                u.symbol_id
            };
            let st = &sim.symbols[id as usize];
            let (bb, ba) = st.touches();
            let spread = (ba - bb) / st.tick;
            events += 1;
            tight += u64::from(spread <= 8);
            widest = widest.max(spread);
            let off_fair = ((bb + ba) / 2 - st.fair).abs() / st.tick;
            assert!(
                off_fair <= 4 * FAR_TICKS,
                "mid {off_fair} ticks from fair: {st:?}"
            );
        }
        let share = tight as f64 / events as f64;
        assert!(
            share > 0.9,
            "{trades_per_update}: only {share:.3} of spreads within 8 ticks"
        );
        assert!(
            widest <= 4 * FAR_TICKS,
            "{trades_per_update}: spread of {widest} ticks"
        );
    }
}
