//! The market simulator: one [`ExchangeSim`] per simulated exchange produces the [`Trade`] and
//! [`BookUpdate`] records that the generator publishes, and [`BookReplica`] rebuilds the books on
//! the reading side to check that nothing was lost or reordered.
//!
//! # Model
//!
//! Each symbol of an exchange has a fair value that follows a random walk, and an order book of
//! 1 to 16 price levels a side around it (about 10 in steady state), in whole ticks, with sizes in
//! whole lots. Book updates carry 1 to 8 level changes, mostly size updates near the touch, some
//! inserts and deletes, and re-centre the book when the fair value moves through the touch.
//! Trades take liquidity from the best opposite level (the aggressor side leans towards the fair
//! value), partially or fully, and change the book.
//!
//! # Two books per symbol
//!
//! The simulator holds the *internal* book, which trades execute against, and the *published*
//! one: what a reader holds after applying every book update so far (see
//! [`ExchangeSim::published_digest`]). A book update publishes its changes as it makes them. A
//! trade changes only the internal book; the next book update(s) of that symbol first publish the
//! difference, as plain level changes in an order that keeps the published book consistent at
//! every step (never crossed, never an empty side), and only then add fresh changes. Changes that
//! cancel out between two updates (a level traded down twice, a level inserted behind and then
//! taken) are published once, as their net effect. Versions count book updates only:
//! `version = prev_version + 1` per update of a symbol, and a trade's `book_version` is the last
//! published version of its symbol. A symbol starts unpublished (version 0), so its first updates
//! insert its whole book into an empty one.
//!
//! Once warmed up it allocates nothing: books and buffers keep the capacity they reached.

pub mod book;
mod picker;
pub mod symbols;

pub use book::{Book, BookError, BookReplica, ReplicaError};
pub use symbols::{exchange_names, symbol_names};

use alphapulse_bus::{Action, BookUpdate, Level, Side, Trade, MAX_LEVELS};
use book::PriceLevel;
use picker::SymbolPicker;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A symbol of the simulated market: its id (the `symbol_id` of its records, an index into the
/// manifest's symbols) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Symbol id.
    pub id: u32,
    /// Name, "BASE/QUOTE".
    pub name: String,
}

/// The first `count` symbols, ids `0..count`, named by [`symbol_names`].
pub fn symbol_specs(count: u32) -> Vec<SymbolSpec> {
    symbol_names(count as usize)
        .into_iter()
        .zip(0..)
        .map(|(name, id)| SymbolSpec { id, name })
        .collect()
}

/// Most price levels on each side of a simulated book.
pub const MAX_DEPTH: usize = 16;
/// Number of levels a side the simulator aims for.
const TARGET_DEPTH: usize = 10;
/// Farthest a touch stays from the fair value, in ticks, before liquidity comes back near it.
const MAX_GAP_TICKS: i64 = 2;
/// Farthest a level stays from the fair value, in ticks, before book updates cancel it.
const FAR_TICKS: i64 = 48;
/// Largest size of a new level, in lots.
const MAX_LEVEL_LOTS: u64 = 400;
/// Largest partial fill, in lots.
const MAX_TRADE_LOTS: u64 = 64;
/// Room in the published book for a side transiently deeper than [`MAX_DEPTH`] while a
/// difference is published (the internal book never is).
const PUBLISHED_CAPACITY: usize = MAX_DEPTH + 4;

type Rng = Xoshiro256PlusPlus;

/// `bits` mapped to `1..=n` (n > 0) by multiply-shift on 32 bits.
#[inline]
fn one_to(bits: u64, n: u64) -> u64 {
    1 + (((bits & 0xFFFF_FFFF) * n) >> 32)
}

/// `bits` mapped to a geometric `0..=15`: 0 with probability 1/2, 1 with 1/4, ...
#[inline]
fn geometric(bits: u64) -> usize {
    ((bits as u32) | 1 << 15).trailing_zeros() as usize
}

#[inline]
fn level(side: Side, action: Action, price: i64, size: i64) -> Level {
    Level {
        price,
        size,
        side: side as u8,
        action: action as u8,
        reserved: [0; 6],
    }
}

/// One symbol's state on one exchange.
#[derive(Debug, Clone)]
struct SymbolState {
    /// The book trades execute against.
    book: Book,
    /// The book as published on the book stream, while it differs from `book` (`dirty`);
    /// stale otherwise.
    published: Book,
    /// Last published version.
    version: u64,
    /// Last trade id (0 before the first trade).
    trade_id: u64,
    /// Price increment, fixed-point.
    tick: i64,
    /// Size increment, fixed-point.
    lot: i64,
    /// Fair value, a multiple of `tick`, in `min_fair..=max_fair`.
    fair: i64,
    /// Lowest fair value: half the reference price or 256 ticks, whichever is more, rounded
    /// down to a multiple of `tick`; fixed.
    min_fair: i64,
    /// Highest fair value: twice the reference price or `4 * min_fair`, whichever is more,
    /// rounded down to a multiple of `tick`; fixed.
    max_fair: i64,
    /// `book` differs from the published book, which is then `published`.
    dirty: bool,
    /// While `dirty`: how many levels at the far end of each side (bids, asks) are the same in
    /// `book` and `published`, so that only the rest needs comparing.
    same: [usize; 2],
}

/// Tick size for a price: a power of ten in fixed-point units such that the price is 10^5 to
/// 10^6 ticks (BTC at 60 000 trades in 0.1), at least one unit.
fn tick_for(price: i64) -> i64 {
    let mut tick = 1i64;
    while price / tick >= 1_000_000 {
        tick *= 10;
    }
    tick
}

/// Lot size for a base asset worth `base_usd`: a power of ten of base units worth 1 to 10 USD,
/// in fixed-point units (clamped to 1..=10^14).
fn lot_for(base_usd: f64) -> i64 {
    let (mut v, mut exp) = (base_usd, 8i32);
    while v >= 10.0 && exp > 0 {
        v /= 10.0;
        exp -= 1;
    }
    while v < 1.0 && exp < 14 {
        v *= 10.0;
        exp += 1;
    }
    10i64.pow(exp as u32)
}

impl SymbolState {
    fn new(info: &symbols::PairInfo, rng: &mut Rng) -> Self {
        let tick = tick_for(info.price);
        let lot = lot_for(info.base_usd);
        let round = |p: i64| (p / tick).max(1) * tick;
        let min_fair = round((info.price / 2).max(256 * tick));
        let max_fair = round((info.price * 2).max(4 * min_fair));
        // This exchange's price differs from the reference by up to 0.2%.
        let r = rng.next_u64();
        let jitter = (r % 41) as i64 - 20;
        let fair = round(info.price + info.price / 10_000 * jitter).clamp(min_fair, max_fair);
        let mut book = Book::with_capacity(MAX_DEPTH);
        let mut bits = rng.next_u64();
        let mut offset = [0i64; 2];
        for _ in 0..TARGET_DEPTH {
            for (s, side) in [Side::Buy, Side::Sell].into_iter().enumerate() {
                // Levels 1 or 2 ticks apart, the touch 1 or 2 ticks from the fair value.
                offset[s] += 1 + (bits & 1) as i64;
                bits = bits.rotate_right(1);
                let size = lot * one_to(rng.next_u64(), MAX_LEVEL_LOTS) as i64;
                let price = match side {
                    Side::Buy => fair - offset[s] * tick,
                    Side::Sell => fair + offset[s] * tick,
                };
                let ok = book.apply(&level(side, Action::Insert, price, size));
                debug_assert!(ok.is_ok(), "{ok:?}");
            }
        }
        Self {
            book,
            // Nothing published yet: the published book is empty and differs.
            published: Book::with_capacity(PUBLISHED_CAPACITY),
            version: 0,
            trade_id: 0,
            tick,
            lot,
            fair,
            min_fair,
            max_fair,
            dirty: true,
            same: [0, 0],
        }
    }

    /// The book as published so far.
    #[inline]
    fn published(&self) -> &Book {
        if self.dirty {
            &self.published
        } else {
            &self.book
        }
    }

    /// Best bid and best ask prices of the internal book, which always has both.
    #[inline]
    fn touches(&self) -> (i64, i64) {
        match (self.book.bids.last(), self.book.asks.last()) {
            (Some(b), Some(a)) => (b.price, a.price),
            _ => unreachable!("a simulated book side is never empty"),
        }
    }

    /// A new level size from random bits.
    #[inline]
    fn new_size(&self, bits: u64) -> i64 {
        self.lot * one_to(bits, MAX_LEVEL_LOTS) as i64
    }

    /// Moves the fair value by -1, 0, 0 or +1 tick (two random bits), inside its bounds.
    #[inline]
    fn drift(&mut self, bits: u64) {
        let step = match bits & 3 {
            0 => -self.tick,
            3 => self.tick,
            _ => 0,
        };
        let fair = self.fair + step;
        if (self.min_fair..=self.max_fair).contains(&fair) {
            self.fair = fair;
        }
    }

    /// Executes a trade against the internal book and fills `out`'s trade fields.
    #[inline]
    fn trade(&mut self, rng: &mut Rng, out: &mut Trade) {
        if !self.dirty {
            // The change will not be published until the next book update: remember what is.
            self.published.bids.clone_from(&self.book.bids);
            self.published.asks.clone_from(&self.book.asks);
            self.dirty = true;
            self.same = [self.book.bids.len(), self.book.asks.len()];
        }
        let r = rng.next_u64();
        self.drift(r >> 62);
        let (tick, lot, fair) = (self.tick, self.lot, self.fair);
        let (bb, ba) = self.touches();
        // Lean towards the fair value: more buyers when the book is below it.
        let buy_odds = match (bb + ba).cmp(&(2 * fair)) {
            core::cmp::Ordering::Less => 160,
            core::cmp::Ordering::Equal => 128,
            core::cmp::Ordering::Greater => 96,
        };
        let mut buy = (r & 0xFF) < buy_odds;
        if !buy && self.book.bids.len() == 1 && bb <= 4 * tick {
            buy = true; // never walk the bids down to zero
        }
        let (taken, same) = if buy {
            (&mut self.book.asks, &mut self.same[1])
        } else {
            (&mut self.book.bids, &mut self.same[0])
        };
        // Only the touch changes (or the whole side, if a level is inserted behind).
        *same = (*same).min(taken.len() - 1);
        let Some(touch) = taken.last_mut() else {
            unreachable!("a simulated book side is never empty")
        };
        let price = touch.price;
        let level_lots = (touch.size / lot).max(1) as u64;
        let lots = if (r >> 8) & 7 == 0 {
            level_lots // one trade in eight sweeps the level
        } else {
            one_to(r >> 16, level_lots.min(MAX_TRADE_LOTS))
        };
        let size = if lots < level_lots {
            lots as i64 * lot
        } else {
            touch.size
        };
        if size < touch.size {
            touch.size -= size;
        } else {
            let extra = rng.next_u64();
            if taken.len() == 1 {
                *same = 0;
                // Keep the side alive: a new level appears 1 or 2 ticks behind.
                let away = (1 + (extra & 1) as i64) * tick;
                let behind = if buy { price + away } else { price - away };
                let size = lot * one_to(extra >> 8, MAX_LEVEL_LOTS) as i64;
                taken.insert(
                    0,
                    PriceLevel {
                        price: behind,
                        size,
                    },
                );
            }
            taken.pop();
        }
        // Liquidity comes back 1 or 2 ticks from the fair value on a side whose touch has moved
        // too far from it (taken away, or left behind by the fair value), never crossing.
        let (bb, ba) = self.touches();
        let near = (1 + ((r >> 48) & 1) as i64) * tick;
        if fair - bb > MAX_GAP_TICKS * tick && fair - near < ba {
            let size = lot * one_to(rng.next_u64(), MAX_LEVEL_LOTS) as i64;
            push_touch(&mut self.book.bids, &mut self.same[0], fair - near, size);
        }
        if ba - fair > MAX_GAP_TICKS * tick && fair + near > bb {
            let size = lot * one_to(rng.next_u64(), MAX_LEVEL_LOTS) as i64;
            push_touch(&mut self.book.asks, &mut self.same[1], fair + near, size);
        }
        self.trade_id += 1;
        out.side = if buy { Side::Buy } else { Side::Sell } as u8;
        out.reserved0 = 0;
        out.trade_id = self.trade_id;
        out.price = price;
        out.size = size;
        out.book_version = self.version;
    }

    /// Writes into `out` changes that bring the published book towards the internal one, at
    /// most `MAX_LEVELS`, in an order that keeps the published book consistent after each; clears
    /// `dirty` once they are equal. Returns how many were written.
    fn publish_difference(
        &mut self,
        scratch: &mut Vec<Level>,
        out: &mut [Level; MAX_LEVELS],
    ) -> usize {
        scratch.clear();
        // Levels in the far ends that trades did not touch are equal; the changes published
        // below are all at better prices, so they stay equal.
        let [b, a] = self.same;
        debug_assert!(self.published.bids.get(..b) == self.book.bids.get(..b));
        debug_assert!(self.published.asks.get(..a) == self.book.asks.get(..a));
        diff_side(
            &self.published.bids[b..],
            &self.book.bids[b..],
            Side::Buy,
            scratch,
        );
        diff_side(
            &self.published.asks[a..],
            &self.book.asks[a..],
            Side::Sell,
            scratch,
        );
        let mut k = 0;
        while k < MAX_LEVELS && !scratch.is_empty() {
            let i = next_applicable(scratch, &self.published);
            let change = scratch.remove(i);
            let ok = self.published.apply(&change);
            debug_assert!(ok.is_ok(), "{change:?}: {ok:?}");
            out[k] = change;
            k += 1;
        }
        self.dirty = !scratch.is_empty();
        k
    }

    /// Makes a random change to the internal book of a clean symbol (so it is published as it
    /// is made) and returns it.
    fn random_change(&mut self, rng: &mut Rng) -> Level {
        debug_assert!(!self.dirty);
        let r = rng.next_u64();
        let (tick, fair) = (self.tick, self.fair);
        let size = self.new_size(r >> 32);
        let (bb, ba) = self.touches();
        let book = &mut self.book;
        // Re-centre when the fair value has moved through a touch.
        if ba <= fair {
            return if book.asks.len() > 1 {
                book.asks.pop();
                level(Side::Sell, Action::Delete, ba, 0)
            } else {
                let price = fair + tick;
                book.asks.insert(0, PriceLevel { price, size });
                level(Side::Sell, Action::Insert, price, size)
            };
        }
        if bb >= fair {
            return if book.bids.len() > 1 {
                book.bids.pop();
                level(Side::Buy, Action::Delete, bb, 0)
            } else {
                let price = fair - tick;
                book.bids.insert(0, PriceLevel { price, size });
                level(Side::Buy, Action::Insert, price, size)
            };
        }
        let side = if r & 1 == 0 { Side::Buy } else { Side::Sell };
        // `away`: one tick away from the other side (down for bids, up for asks).
        let (levels, away, gap) = match side {
            Side::Buy => (&mut book.bids, -tick, fair - bb),
            Side::Sell => (&mut book.asks, tick, ba - fair),
        };
        let len = levels.len();
        // Orders left far behind by the fair value are cancelled first.
        if len > 1 && (levels[0].price - fair).abs() > FAR_TICKS * tick {
            let far = levels.remove(0);
            return level(side, Action::Delete, far.price, 0);
        }
        let roll = (r >> 1) & 127;
        let at = len - 1 - geometric(r >> 8).min(len - 1);
        // Liquidity comes back near the fair value when the touch is too far from it.
        let tighten = gap > MAX_GAP_TICKS * tick && roll < 96;
        let insert = tighten || (76..76 + if len < TARGET_DEPTH { 34 } else { 14 }).contains(&roll);
        if insert && len >= MAX_DEPTH {
            let far = levels.remove(0);
            return level(side, Action::Delete, far.price, 0);
        }
        if tighten {
            let price = fair + away * (1 + ((r >> 20) & 1) as i64);
            levels.push(PriceLevel { price, size });
            return level(side, Action::Insert, price, size);
        }
        if insert {
            // Fill a gap near the touch, or else add a level behind the last one.
            let touch = levels[len - 1].price;
            let price = touch + away * (1 + geometric(r >> 24) as i64);
            let (price, at) = match book::locate_side(levels, side, price) {
                Err(at) if price > 0 => (price, at),
                _ => (levels[0].price + away * (1 + ((r >> 21) & 1) as i64), 0),
            };
            if price > 0 {
                levels.insert(at, PriceLevel { price, size });
                return level(side, Action::Insert, price, size);
            }
        } else if roll >= 76 && len > 1 {
            let gone = levels.remove(at);
            return level(side, Action::Delete, gone.price, 0);
        }
        levels[at].size = size;
        level(side, Action::Update, levels[at].price, size)
    }
}

/// Adds a new best level to a side, dropping the farthest level if the side is full; `same` is
/// the side's count of far levels still equal to the published ones.
#[inline]
fn push_touch(levels: &mut Vec<PriceLevel>, same: &mut usize, price: i64, size: i64) {
    if levels.len() >= MAX_DEPTH {
        levels.remove(0);
        *same = 0;
    }
    levels.push(PriceLevel { price, size });
}

/// Appends the changes that turn side `p` into side `i` (both ordered worst to best).
fn diff_side(p: &[PriceLevel], i: &[PriceLevel], side: Side, out: &mut Vec<Level>) {
    // Trades change the touch: the far ends are usually equal.
    let common = p.iter().zip(i).take_while(|(x, y)| x == y).count();
    let (p, i) = (&p[common..], &i[common..]);
    let ask = side == Side::Sell;
    let (mut a, mut b) = (0, 0);
    while a < p.len() && b < i.len() {
        let (x, y) = (p[a], i[b]);
        if x.price == y.price {
            if x.size != y.size {
                out.push(level(side, Action::Update, y.price, y.size));
            }
            a += 1;
            b += 1;
        } else if (x.price > y.price) == ask {
            // x comes first in worst-to-best order: only the published side has it.
            out.push(level(side, Action::Delete, x.price, 0));
            a += 1;
        } else {
            out.push(level(side, Action::Insert, y.price, y.size));
            b += 1;
        }
    }
    out.extend(
        p[a..]
            .iter()
            .map(|x| level(side, Action::Delete, x.price, 0)),
    );
    out.extend(
        i[b..]
            .iter()
            .map(|y| level(side, Action::Insert, y.price, y.size)),
    );
}

/// Index of a change in `pending` that applies cleanly to `book` now: an update if there is one,
/// else an insert that does not cross, else a delete that does not empty its side. One always
/// exists when `pending` is the difference between `book` and a valid book with both sides
/// non-empty: if every insert crossed and every delete emptied a side, the crossed opposite touch
/// would be the only level of its side and yet not in the target book, whose levels on that side
/// would then all be inserts that cannot cross.
fn next_applicable(pending: &[Level], book: &Book) -> usize {
    let best_bid = book.best_bid().map(|b| b.0);
    let best_ask = book.best_ask().map(|a| a.0);
    let (bids, asks) = book.depth();
    let (mut insert, mut delete) = (None, None);
    for (i, c) in pending.iter().enumerate() {
        let bid = c.side == Side::Buy as u8;
        if c.action == Action::Update as u8 {
            return i;
        } else if c.action == Action::Insert as u8 {
            let crosses = if bid {
                best_ask.is_some_and(|a| c.price >= a)
            } else {
                best_bid.is_some_and(|b| c.price <= b)
            };
            if insert.is_none() && !crosses {
                insert = Some(i);
            }
        } else if delete.is_none() && (if bid { bids } else { asks }) > 1 {
            delete = Some(i);
        }
    }
    debug_assert!(insert.or(delete).is_some(), "no applicable change");
    insert.or(delete).unwrap_or(0)
}

/// One simulated exchange: an evolving order book per symbol and the trades and book updates it
/// publishes. Deterministic: the same `(exchange_id, symbol_count, seed)` and the same sequence of
/// calls produce the same records.
///
/// Symbols are picked with Zipf-like popularity (symbol `i` is `i + 1` times less active than
/// symbol 0), the same for trades and book updates. See the [module docs](self) for the model and
/// the versioning rules. Memory: about 1.4 KB per symbol.
#[derive(Debug, Clone)]
pub struct ExchangeSim {
    /// The `exchange_id` of every record; fixed.
    exchange_id: u16,
    /// The one random source of every symbol, seeded from `(seed, exchange_id)`: what makes the
    /// records a function of the seed and the sequence of calls.
    rng: Rng,
    /// Draws symbol ids in `0..symbols.len()` with Zipf-like weights.
    picker: SymbolPicker,
    /// Per symbol id, its state; at least one, and the count never changes.
    symbols: Vec<SymbolState>,
    /// Reused buffer of pending changes.
    scratch: Vec<Level>,
}

impl ExchangeSim {
    /// An exchange with `symbol_count` symbols (ids `0..symbol_count`, named by
    /// [`symbol_names`], priced near their reference prices), none of them published yet.
    ///
    /// # Panics
    /// If `symbol_count` is 0.
    pub fn new(exchange_id: u16, symbol_count: u32, seed: u64) -> Self {
        assert!(symbol_count > 0, "an exchange needs at least one symbol");
        let mut rng = Rng::seed_from_u64(symbols::mix64(seed ^ (u64::from(exchange_id) << 48)));
        let symbols = symbols::pair_infos(symbol_count as usize)
            .iter()
            .map(|info| SymbolState::new(info, &mut rng))
            .collect();
        Self {
            exchange_id,
            rng,
            picker: SymbolPicker::zipf(symbol_count),
            symbols,
            scratch: Vec::with_capacity(4 * PUBLISHED_CAPACITY),
        }
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> u32 {
        self.symbols.len() as u32
    }

    /// The exchange id written into every record.
    pub fn exchange_id(&self) -> u16 {
        self.exchange_id
    }

    /// Generates the next trade: fills every field of `out` except `sequence`, `send_ts_ns` and
    /// `checksum` (the caller sets the timestamp and calls `seal()`).
    ///
    /// The trade executes against the symbol's internal book (see the module docs); its
    /// `book_version` is the symbol's last published version and its `trade_id` counts that
    /// symbol's trades from 1.
    #[inline]
    pub fn next_trade(&mut self, out: &mut Trade) {
        let symbol_id = self.picker.sample(self.rng.next_u64());
        self.symbols[symbol_id as usize].trade(&mut self.rng, out);
        out.exchange_id = self.exchange_id;
        out.symbol_id = symbol_id;
    }

    /// Generates the next book update: fills every field of `out` except `sequence`,
    /// `send_ts_ns` and `checksum`.
    ///
    /// 1 to [`MAX_LEVELS`] changes for one symbol, `version = prev_version + 1` for that
    /// symbol. Changes made by trades since the symbol's last update come first.
    #[inline]
    pub fn next_book_update(&mut self, out: &mut BookUpdate) {
        let symbol_id = self.picker.sample(self.rng.next_u64());
        let st = &mut self.symbols[symbol_id as usize];
        let mut k = 0;
        if st.dirty {
            k = st.publish_difference(&mut self.scratch, &mut out.levels);
        }
        if !st.dirty {
            let r = self.rng.next_u64();
            st.drift(r);
            let wanted = 1 + ((r >> 32) as u32 | 0x80).trailing_zeros() as usize;
            let end = (k + wanted).min(MAX_LEVELS);
            while k < end {
                out.levels[k] = st.random_change(&mut self.rng);
                k += 1;
            }
        }
        out.levels[k..].fill(Level::default());
        out.exchange_id = self.exchange_id;
        out.level_count = k as u8;
        out.reserved0 = 0;
        out.symbol_id = symbol_id;
        out.prev_version = st.version;
        st.version += 1;
        out.version = st.version;
        out.reserved1 = [0; 2];
    }

    /// [`Book::digest`] of symbol `symbol_id`'s book as published on the book stream so far:
    /// what a reader that applied every update holds (an empty book's digest if out of range).
    pub fn published_digest(&self, symbol_id: u32) -> u64 {
        self.published_book(symbol_id)
            .map_or_else(|| Book::new().digest(), Book::digest)
    }

    /// The last published version of symbol `symbol_id` (0 if never published or out of range).
    pub fn published_version(&self, symbol_id: u32) -> u64 {
        self.symbols
            .get(symbol_id as usize)
            .map_or(0, |s| s.version)
    }

    /// Symbol `symbol_id`'s book as published so far, if in range.
    pub fn published_book(&self, symbol_id: u32) -> Option<&Book> {
        self.symbols
            .get(symbol_id as usize)
            .map(SymbolState::published)
    }

    /// Symbol `symbol_id`'s internal book (trades included, maybe not yet published), if in
    /// range.
    pub fn book(&self, symbol_id: u32) -> Option<&Book> {
        self.symbols.get(symbol_id as usize).map(|s| &s.book)
    }

    /// Symbol `symbol_id`'s `(tick, lot)`: its price and size increments, fixed-point.
    pub fn increments(&self, symbol_id: u32) -> Option<(i64, i64)> {
        self.symbols
            .get(symbol_id as usize)
            .map(|s| (s.tick, s.lot))
    }
}

#[cfg(test)]
mod tests;
