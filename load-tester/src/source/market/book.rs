//! Order books rebuilt from wire [`Level`] changes, and the per-exchange replica that checks a
//! [`BookUpdate`] stream.
//!
//! Both are used on data read from shared memory written by another process, so nothing here
//! trusts its input: every byte is validated, a rejected change leaves the book as it was, and no
//! input can make them panic.

use alphapulse_bus::{Action, BookUpdate, Level, Side, MAX_LEVELS};

/// One price level: fixed-point price and size, both > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PriceLevel {
    /// Price, fixed-point, > 0; unique within its side of a book.
    pub price: i64,
    /// Size resting at `price`, fixed-point, > 0.
    pub size: i64,
}

/// Why a [`Level`] change could not be applied to a [`Book`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BookError {
    /// The side byte is neither 1 (buy/bid) nor 2 (sell/ask).
    #[error("invalid side byte {0}")]
    InvalidSide(u8),
    /// The action byte is not 1 (insert), 2 (update) or 3 (delete).
    #[error("invalid action byte {0}")]
    InvalidAction(u8),
    /// Prices must be positive.
    #[error("{side:?} {action:?} at price {price}: price must be positive")]
    NonPositivePrice {
        /// Side of the change.
        side: Side,
        /// Action of the change.
        action: Action,
        /// The offending price.
        price: i64,
    },
    /// An insert or update must leave a positive size.
    #[error("{side:?} {action:?} at {price}: size {size} must be positive")]
    NonPositiveSize {
        /// Side of the change.
        side: Side,
        /// Action of the change.
        action: Action,
        /// Price of the change.
        price: i64,
        /// The offending size.
        size: i64,
    },
    /// A delete must carry size 0.
    #[error("{side:?} delete at {price} carries size {size}, expected 0")]
    DeleteWithSize {
        /// Side of the change.
        side: Side,
        /// Price of the change.
        price: i64,
        /// The size it carried.
        size: i64,
    },
    /// An insert of a price level that already exists.
    #[error("{side:?} insert at {price}: the level already exists")]
    DuplicateLevel {
        /// Side of the change.
        side: Side,
        /// Price of the change.
        price: i64,
    },
    /// An update or delete of a price level that does not exist.
    #[error("{side:?} {action:?} at {price}: no such level")]
    MissingLevel {
        /// Side of the change.
        side: Side,
        /// Action of the change.
        action: Action,
        /// Price of the change.
        price: i64,
    },
    /// An insert that would cross the book: a bid at or above the best ask, or an ask at or
    /// below the best bid.
    #[error("{side:?} insert at {price} crosses the book (best opposite price {opposite})")]
    Crossed {
        /// Side of the change.
        side: Side,
        /// Price of the change.
        price: i64,
        /// Best price of the opposite side.
        opposite: i64,
    },
}

/// One symbol's order book: bid and ask price levels (fixed-point price -> size).
///
/// [`Book::apply`] keeps it consistent: prices and sizes positive, one level per price, and the
/// best bid strictly below the best ask whenever both sides have levels. A side may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    /// Ascending by price: the best (highest) bid is last.
    pub(crate) bids: Vec<PriceLevel>,
    /// Descending by price: the best (lowest) ask is last.
    pub(crate) asks: Vec<PriceLevel>,
}

/// Where `price` is, or would go, in a side ordered worst to best.
#[inline]
fn locate(levels: &[PriceLevel], ask: bool, price: i64) -> Result<usize, usize> {
    // Most changes are near the touch, at the end: scan from there while the side is short.
    if levels.len() <= 24 {
        let mut i = levels.len();
        while i > 0 {
            let p = levels[i - 1].price;
            if p == price {
                return Ok(i - 1);
            }
            let better = if ask { p < price } else { p > price };
            if !better {
                break;
            }
            i -= 1;
        }
        Err(i)
    } else {
        let i = levels.partition_point(|l| {
            if ask {
                l.price > price
            } else {
                l.price < price
            }
        });
        match levels.get(i) {
            Some(l) if l.price == price => Ok(i),
            _ => Err(i),
        }
    }
}

/// [`locate`] for a [`Side`].
#[inline]
pub(crate) fn locate_side(levels: &[PriceLevel], side: Side, price: i64) -> Result<usize, usize> {
    locate(levels, side == Side::Sell, price)
}

const DIGEST_SEED: u64 = 0x0B00_C0DE_D16E_5700;
const DIGEST_K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(DIGEST_K).rotate_left(29)
}

impl Book {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty book with room for `depth` levels on each side.
    pub(crate) fn with_capacity(depth: usize) -> Self {
        Self {
            bids: Vec::with_capacity(depth),
            asks: Vec::with_capacity(depth),
        }
    }

    /// The levels of one side, ordered worst to best (the touch is last).
    #[cfg(test)]
    pub(crate) fn side(&self, side: Side) -> &[PriceLevel] {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Applies one wire level change.
    ///
    /// Validates everything, since the bytes may come from another process: side and action
    /// bytes, a positive price, a positive size for an insert or update and a zero size for a
    /// delete, that an insert's price is new and does not cross the book, and that an update's or
    /// delete's price exists. On error the book is unchanged.
    pub fn apply(&mut self, level: &Level) -> Result<(), BookError> {
        let side = Side::from_raw(level.side).ok_or(BookError::InvalidSide(level.side))?;
        let action =
            Action::from_raw(level.action).ok_or(BookError::InvalidAction(level.action))?;
        let (price, size) = (level.price, level.size);
        if price <= 0 {
            return Err(BookError::NonPositivePrice {
                side,
                action,
                price,
            });
        }
        let ask = side == Side::Sell;
        let (levels, opposite) = if ask {
            (&mut self.asks, &self.bids)
        } else {
            (&mut self.bids, &self.asks)
        };
        match action {
            Action::Insert | Action::Update if size <= 0 => Err(BookError::NonPositiveSize {
                side,
                action,
                price,
                size,
            }),
            Action::Insert => match locate(levels, ask, price) {
                Ok(_) => Err(BookError::DuplicateLevel { side, price }),
                Err(at) => {
                    if let Some(best) = opposite.last() {
                        let crosses = if ask {
                            price <= best.price
                        } else {
                            price >= best.price
                        };
                        if crosses {
                            return Err(BookError::Crossed {
                                side,
                                price,
                                opposite: best.price,
                            });
                        }
                    }
                    levels.insert(at, PriceLevel { price, size });
                    Ok(())
                }
            },
            Action::Update => match locate(levels, ask, price) {
                Ok(at) => {
                    levels[at].size = size;
                    Ok(())
                }
                Err(_) => Err(BookError::MissingLevel {
                    side,
                    action,
                    price,
                }),
            },
            Action::Delete if size != 0 => Err(BookError::DeleteWithSize { side, price, size }),
            Action::Delete => match locate(levels, ask, price) {
                Ok(at) => {
                    levels.remove(at);
                    Ok(())
                }
                Err(_) => Err(BookError::MissingLevel {
                    side,
                    action,
                    price,
                }),
            },
        }
    }

    /// The best (highest) bid, `(price, size)`.
    #[inline]
    pub fn best_bid(&self) -> Option<(i64, i64)> {
        self.bids.last().map(|l| (l.price, l.size))
    }

    /// The best (lowest) ask, `(price, size)`.
    #[inline]
    pub fn best_ask(&self) -> Option<(i64, i64)> {
        self.asks.last().map(|l| (l.price, l.size))
    }

    /// The size resting at `price` on `side`, if a level is there.
    #[inline]
    pub fn size_at(&self, side: Side, price: i64) -> Option<i64> {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        locate_side(levels, side, price)
            .ok()
            .map(|i| levels[i].size)
    }

    /// Prices of the opposite side that an insert at `price` on `side` would cross (asks at or
    /// below a bid's price, bids at or above an ask's), best first.
    pub fn crossed_by(&self, side: Side, price: i64) -> impl Iterator<Item = i64> + '_ {
        let (opposite, ask) = match side {
            Side::Buy => (&self.asks, true),
            Side::Sell => (&self.bids, false),
        };
        opposite
            .iter()
            .rev()
            .map(|l| l.price)
            .take_while(move |&p| if ask { p <= price } else { p >= price })
    }

    /// Number of price levels, `(bids, asks)`.
    #[inline]
    pub fn depth(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }

    /// A 64-bit digest of the whole book: every level of both sides, bids then asks, each side
    /// in ascending price order. Equal books have equal digests; different books almost surely
    /// differ.
    pub fn digest(&self) -> u64 {
        let mut h = fold(DIGEST_SEED, self.bids.len() as u64);
        for l in &self.bids {
            h = fold(fold(h, l.price as u64), l.size as u64);
        }
        h = fold(h, self.asks.len() as u64);
        for l in self.asks.iter().rev() {
            h = fold(fold(h, l.price as u64), l.size as u64);
        }
        h ^ (h >> 32)
    }
}

/// What was wrong with a [`BookUpdate`] given to [`BookReplica::apply`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// The symbol id is not below the replica's symbol count; nothing was applied.
    #[error("symbol id {symbol_id} out of range (symbol count {symbol_count})")]
    UnknownSymbol {
        /// The offending symbol id.
        symbol_id: u32,
        /// How many symbols the replica knows.
        symbol_count: usize,
    },
    /// `level_count` is above [`MAX_LEVELS`]; nothing was applied.
    #[error("symbol {symbol_id}: level count {level_count} exceeds {MAX_LEVELS}")]
    TooManyLevels {
        /// Symbol of the update.
        symbol_id: u32,
        /// The offending count.
        level_count: u8,
    },
    /// `version` is not `prev_version + 1`; nothing was applied.
    #[error("symbol {symbol_id}: version {version} does not follow prev_version {prev_version}")]
    BadVersion {
        /// Symbol of the update.
        symbol_id: u32,
        /// The update's `prev_version`.
        prev_version: u64,
        /// The update's `version`.
        version: u64,
    },
    /// `prev_version` is not the last version the replica holds for the symbol: updates were
    /// missed (or replayed). The replica resyncs: it applies what it can of the update and
    /// continues the chain from its `version`, but the symbol's book is no longer trusted.
    #[error(
        "symbol {symbol_id}: version gap, expected prev_version {expected}, got {prev_version}"
    )]
    VersionGap {
        /// Symbol of the update.
        symbol_id: u32,
        /// The version the replica held.
        expected: u64,
        /// The update's `prev_version`.
        prev_version: u64,
    },
    /// A level change was inconsistent with the book. The update's other changes were still
    /// applied and its version accepted, but the symbol's book is no longer trusted.
    #[error("symbol {symbol_id} version {version}, change {index}: {error}")]
    Level {
        /// Symbol of the update.
        symbol_id: u32,
        /// The update's version.
        version: u64,
        /// Index of the first rejected change in `levels`.
        index: usize,
        /// Why it was rejected.
        #[source]
        error: BookError,
    },
}

/// Rebuilds every symbol's book of one exchange from its [`BookUpdate`] stream and checks the
/// version chains.
///
/// A reader that applies every update of the stream, in order, holds exactly the books the
/// simulator published (compare [`BookReplica::digest`] with
/// [`ExchangeSim::published_digest`](super::ExchangeSim::published_digest)). After a version gap
/// or a rejected change the symbol is *out of sync* ([`BookReplica::is_synced`]): its version chain
/// is still checked, but further level errors on it are consequences of the first one and are not
/// reported again.
#[derive(Debug, Clone)]
pub struct BookReplica {
    /// Per symbol id, its rebuilt book; `books`, `versions` and `synced` have the same,
    /// fixed length (the symbol count).
    books: Vec<Book>,
    /// Per symbol id, the `version` of its last accepted update, gaps included (0 before the
    /// first).
    versions: Vec<u64>,
    /// Per symbol id, false from its first version gap or rejected change on; never set back.
    synced: Vec<bool>,
}

impl BookReplica {
    /// A replica of `symbol_count` empty books at version 0.
    pub fn new(symbol_count: usize) -> Self {
        Self {
            books: vec![Book::new(); symbol_count],
            versions: vec![0; symbol_count],
            synced: vec![true; symbol_count],
        }
    }

    /// Applies one update.
    ///
    /// Checks, in order: `symbol_id < symbol_count`, `level_count <= MAX_LEVELS`,
    /// `version == prev_version + 1` (each of these rejects the whole update), and
    /// `prev_version ==` the last version held for the symbol (0 before its first update): on a
    /// mismatch the replica reports [`ReplicaError::VersionGap`], applies what it can and accepts
    /// the new version. Then it applies each change in order; the first rejected one is reported
    /// as [`ReplicaError::Level`] (the others are still applied).
    pub fn apply(&mut self, update: &BookUpdate) -> Result<(), ReplicaError> {
        let symbol_id = update.symbol_id;
        let s = symbol_id as usize;
        if s >= self.books.len() {
            return Err(ReplicaError::UnknownSymbol {
                symbol_id,
                symbol_count: self.books.len(),
            });
        }
        if usize::from(update.level_count) > MAX_LEVELS {
            return Err(ReplicaError::TooManyLevels {
                symbol_id,
                level_count: update.level_count,
            });
        }
        if update.prev_version.checked_add(1) != Some(update.version) {
            return Err(ReplicaError::BadVersion {
                symbol_id,
                prev_version: update.prev_version,
                version: update.version,
            });
        }
        let expected = self.versions[s];
        self.versions[s] = update.version;
        let mut result = Ok(());
        if update.prev_version != expected {
            self.synced[s] = false;
            result = Err(ReplicaError::VersionGap {
                symbol_id,
                expected,
                prev_version: update.prev_version,
            });
        }
        let book = &mut self.books[s];
        for (index, level) in update.changes().iter().enumerate() {
            if let Err(error) = book.apply(level) {
                if self.synced[s] {
                    self.synced[s] = false;
                    result = Err(ReplicaError::Level {
                        symbol_id,
                        version: update.version,
                        index,
                        error,
                    });
                }
            }
        }
        result
    }

    /// How many symbols the replica holds.
    pub fn symbol_count(&self) -> usize {
        self.books.len()
    }

    /// The last version applied for `symbol_id` (0 before its first update or if out of range).
    pub fn version(&self, symbol_id: u32) -> u64 {
        self.versions.get(symbol_id as usize).copied().unwrap_or(0)
    }

    /// [`Book::digest`] of the symbol's rebuilt book (an empty book's if out of range).
    pub fn digest(&self, symbol_id: u32) -> u64 {
        self.books
            .get(symbol_id as usize)
            .map_or_else(|| Book::new().digest(), Book::digest)
    }

    /// The symbol's rebuilt book, if `symbol_id` is in range.
    pub fn book(&self, symbol_id: u32) -> Option<&Book> {
        self.books.get(symbol_id as usize)
    }

    /// Whether every update of the symbol so far chained and applied cleanly (true if out of
    /// range).
    pub fn is_synced(&self, symbol_id: u32) -> bool {
        self.synced.get(symbol_id as usize).copied().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::source::market::book::*;

    pub(crate) fn lv(side: Side, action: Action, price: i64, size: i64) -> Level {
        Level {
            price,
            size,
            side: side as u8,
            action: action as u8,
            reserved: [0; 6],
        }
    }

    fn sample_book() -> Book {
        let mut b = Book::new();
        for (side, price) in [
            (Side::Buy, 99),
            (Side::Buy, 97),
            (Side::Buy, 98),
            (Side::Sell, 101),
            (Side::Sell, 103),
            (Side::Sell, 102),
        ] {
            b.apply(&lv(side, Action::Insert, price, 10)).unwrap();
        }
        b
    }

    #[test]
    fn levels_are_kept_in_order() {
        let b = sample_book();
        assert_eq!(b.best_bid(), Some((99, 10)));
        assert_eq!(b.best_ask(), Some((101, 10)));
        assert_eq!(b.depth(), (3, 3));
        let prices = |s| b.side(s).iter().map(|l| l.price).collect::<Vec<_>>();
        assert_eq!(prices(Side::Buy), [97, 98, 99]);
        assert_eq!(prices(Side::Sell), [103, 102, 101]);
    }

    #[test]
    fn update_and_delete() {
        let mut b = sample_book();
        b.apply(&lv(Side::Buy, Action::Update, 98, 5)).unwrap();
        b.apply(&lv(Side::Sell, Action::Delete, 101, 0)).unwrap();
        assert_eq!(b.best_ask(), Some((102, 10)));
        assert_eq!(b.bids[1], PriceLevel { price: 98, size: 5 });
        b.apply(&lv(Side::Sell, Action::Insert, 100, 1)).unwrap();
        assert_eq!(b.best_ask(), Some((100, 1)));
    }

    #[test]
    fn malformed_levels_are_rejected_and_leave_the_book_unchanged() {
        let mut b = sample_book();
        let before = b.clone();
        let cases = [
            (
                Level {
                    side: 0,
                    ..lv(Side::Buy, Action::Insert, 96, 1)
                },
                BookError::InvalidSide(0),
            ),
            (
                Level {
                    action: 9,
                    ..lv(Side::Buy, Action::Insert, 96, 1)
                },
                BookError::InvalidAction(9),
            ),
            (
                lv(Side::Buy, Action::Insert, 0, 1),
                BookError::NonPositivePrice {
                    side: Side::Buy,
                    action: Action::Insert,
                    price: 0,
                },
            ),
            (
                lv(Side::Buy, Action::Insert, i64::MIN, 1),
                BookError::NonPositivePrice {
                    side: Side::Buy,
                    action: Action::Insert,
                    price: i64::MIN,
                },
            ),
            (
                lv(Side::Buy, Action::Insert, 96, 0),
                BookError::NonPositiveSize {
                    side: Side::Buy,
                    action: Action::Insert,
                    price: 96,
                    size: 0,
                },
            ),
            (
                lv(Side::Sell, Action::Update, 101, -5),
                BookError::NonPositiveSize {
                    side: Side::Sell,
                    action: Action::Update,
                    price: 101,
                    size: -5,
                },
            ),
            (
                lv(Side::Sell, Action::Delete, 101, 3),
                BookError::DeleteWithSize {
                    side: Side::Sell,
                    price: 101,
                    size: 3,
                },
            ),
            (
                lv(Side::Buy, Action::Insert, 98, 1),
                BookError::DuplicateLevel {
                    side: Side::Buy,
                    price: 98,
                },
            ),
            (
                lv(Side::Buy, Action::Update, 100, 1),
                BookError::MissingLevel {
                    side: Side::Buy,
                    action: Action::Update,
                    price: 100,
                },
            ),
            (
                lv(Side::Sell, Action::Delete, 99, 0),
                BookError::MissingLevel {
                    side: Side::Sell,
                    action: Action::Delete,
                    price: 99,
                },
            ),
            (
                lv(Side::Buy, Action::Insert, 101, 1),
                BookError::Crossed {
                    side: Side::Buy,
                    price: 101,
                    opposite: 101,
                },
            ),
            (
                lv(Side::Buy, Action::Insert, 150, 1),
                BookError::Crossed {
                    side: Side::Buy,
                    price: 150,
                    opposite: 101,
                },
            ),
            (
                lv(Side::Sell, Action::Insert, 99, 1),
                BookError::Crossed {
                    side: Side::Sell,
                    price: 99,
                    opposite: 99,
                },
            ),
        ];
        for (level, want) in cases {
            assert_eq!(b.apply(&level), Err(want), "{level:?}");
            assert_eq!(b, before);
        }
        // Errors print something useful.
        let msg = b
            .apply(&lv(Side::Sell, Action::Insert, 99, 1))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("crosses"), "{msg}");
    }

    #[test]
    fn long_sides_use_the_binary_search() {
        let mut b = Book::new();
        for i in 0..100 {
            b.apply(&lv(Side::Buy, Action::Insert, 1000 - 2 * i, 1))
                .unwrap();
            b.apply(&lv(Side::Sell, Action::Insert, 1001 + 2 * i, 1))
                .unwrap();
        }
        assert_eq!(b.depth(), (100, 100));
        b.apply(&lv(Side::Buy, Action::Insert, 901, 7)).unwrap();
        b.apply(&lv(Side::Sell, Action::Update, 1101, 7)).unwrap();
        b.apply(&lv(Side::Sell, Action::Delete, 1003, 0)).unwrap();
        assert!(b.apply(&lv(Side::Sell, Action::Delete, 1004, 0)).is_err());
        assert!(b.bids.windows(2).all(|w| w[0].price < w[1].price));
        assert!(b.asks.windows(2).all(|w| w[0].price > w[1].price));
        assert_eq!(b.depth(), (101, 99));
    }

    #[test]
    fn digest_depends_on_every_level() {
        let a = sample_book();
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.apply(&lv(Side::Sell, Action::Update, 103, 11)).unwrap();
        assert_ne!(a.digest(), b.digest());
        b.apply(&lv(Side::Sell, Action::Update, 103, 10)).unwrap();
        assert_eq!(a.digest(), b.digest());
        // The same levels on the other side are a different book.
        let mut c = Book::new();
        c.apply(&lv(Side::Buy, Action::Insert, 5, 1)).unwrap();
        let mut d = Book::new();
        d.apply(&lv(Side::Sell, Action::Insert, 5, 1)).unwrap();
        assert_ne!(c.digest(), d.digest());
        assert_ne!(c.digest(), Book::new().digest());
    }

    fn update(symbol_id: u32, prev_version: u64, levels: &[Level]) -> BookUpdate {
        let mut u = BookUpdate {
            symbol_id,
            prev_version,
            version: prev_version.wrapping_add(1),
            level_count: levels.len() as u8,
            ..BookUpdate::default()
        };
        u.levels[..levels.len()].copy_from_slice(levels);
        u
    }

    #[test]
    fn replica_checks_symbol_count_and_version_chain() {
        let mut r = BookReplica::new(2);
        let ins = lv(Side::Buy, Action::Insert, 10, 1);
        assert_eq!(
            r.apply(&update(2, 0, &[ins])),
            Err(ReplicaError::UnknownSymbol {
                symbol_id: 2,
                symbol_count: 2
            })
        );
        let mut u = update(0, 0, &[ins]);
        u.level_count = 9;
        assert!(matches!(
            r.apply(&u),
            Err(ReplicaError::TooManyLevels { level_count: 9, .. })
        ));
        let mut u = update(0, 0, &[ins]);
        u.version = 5;
        assert!(matches!(r.apply(&u), Err(ReplicaError::BadVersion { .. })));
        let mut u = update(0, u64::MAX, &[ins]);
        u.version = 0;
        assert!(matches!(r.apply(&u), Err(ReplicaError::BadVersion { .. })));
        assert_eq!(r.version(0), 0);
        assert_eq!(r.digest(0), Book::new().digest());

        r.apply(&update(0, 0, &[ins])).unwrap();
        r.apply(&update(0, 1, &[lv(Side::Sell, Action::Insert, 11, 1)]))
            .unwrap();
        assert_eq!(r.version(0), 2);
        assert!(r.is_synced(0));
        // Version 3 is lost: the update from 3 to 4 is a gap, then the chain continues from 4.
        assert_eq!(
            r.apply(&update(0, 3, &[lv(Side::Buy, Action::Update, 10, 2)])),
            Err(ReplicaError::VersionGap {
                symbol_id: 0,
                expected: 2,
                prev_version: 3
            })
        );
        assert_eq!(r.version(0), 4);
        assert!(!r.is_synced(0));
        r.apply(&update(0, 4, &[lv(Side::Buy, Action::Update, 10, 3)]))
            .unwrap();
        assert_eq!(r.version(0), 5);
        // The other symbol is untouched.
        assert_eq!(r.version(1), 0);
        assert!(r.is_synced(1));
        assert_eq!(r.version(99), 0);
    }

    #[test]
    fn replica_reports_the_first_bad_change_once() {
        let mut r = BookReplica::new(1);
        r.apply(&update(
            0,
            0,
            &[
                lv(Side::Buy, Action::Insert, 10, 1),
                lv(Side::Sell, Action::Insert, 12, 1),
            ],
        ))
        .unwrap();
        let bad = update(
            0,
            1,
            &[
                lv(Side::Buy, Action::Update, 10, 5),
                lv(Side::Buy, Action::Insert, 12, 1),  // crosses
                lv(Side::Sell, Action::Delete, 13, 0), // missing
                lv(Side::Sell, Action::Update, 12, 4),
            ],
        );
        let err = r.apply(&bad).unwrap_err();
        assert_eq!(
            err,
            ReplicaError::Level {
                symbol_id: 0,
                version: 2,
                index: 1,
                error: BookError::Crossed {
                    side: Side::Buy,
                    price: 12,
                    opposite: 12
                }
            }
        );
        assert_eq!(r.version(0), 2);
        assert!(!r.is_synced(0));
        let book = r.book(0).unwrap();
        assert_eq!(book.best_bid(), Some((10, 5)));
        assert_eq!(book.best_ask(), Some((12, 4)));
        // Later inconsistencies of an out-of-sync symbol are not reported again.
        r.apply(&update(0, 2, &[lv(Side::Sell, Action::Delete, 99, 0)]))
            .unwrap();
    }

    /// A plain model of a book: two maps and the rules written out.
    #[derive(Default)]
    struct Model {
        /// Bid price -> size.
        bids: std::collections::BTreeMap<i64, i64>,
        /// Ask price -> size.
        asks: std::collections::BTreeMap<i64, i64>,
    }

    impl Model {
        fn apply(&mut self, l: &Level) -> bool {
            let (Some(side), Some(action)) = (Side::from_raw(l.side), Action::from_raw(l.action))
            else {
                return false;
            };
            let best_bid = self.bids.keys().next_back().copied();
            let best_ask = self.asks.keys().next().copied();
            let (map, crosses) = match side {
                Side::Buy => (&mut self.bids, best_ask.is_some_and(|a| l.price >= a)),
                Side::Sell => (&mut self.asks, best_bid.is_some_and(|b| l.price <= b)),
            };
            let ok = l.price > 0
                && match action {
                    Action::Insert => l.size > 0 && !map.contains_key(&l.price) && !crosses,
                    Action::Update => l.size > 0 && map.contains_key(&l.price),
                    Action::Delete => l.size == 0 && map.contains_key(&l.price),
                };
            if ok {
                match action {
                    Action::Delete => map.remove(&l.price),
                    _ => map.insert(l.price, l.size),
                };
            }
            ok
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any sequence of changes, valid or not: the book accepts exactly what the model
        /// accepts, ends with the same levels, and never panics.
        #[test]
        fn book_matches_a_model(
            changes in proptest::collection::vec(
                (0u8..4, 0u8..5, -2i64..120, -1i64..4),
                0..600,
            )
        ) {
            let mut book = Book::new();
            let mut model = Model::default();
            for (side, action, price, size) in changes {
                let l = Level { price, size, side, action, reserved: [0; 6] };
                let before = book.clone();
                let accepted = book.apply(&l).is_ok();
                proptest::prop_assert_eq!(accepted, model.apply(&l), "{:?}", l);
                if !accepted {
                    proptest::prop_assert_eq!(&book, &before);
                }
                if let (Some(b), Some(a)) = (book.best_bid(), book.best_ask()) {
                    proptest::prop_assert!(b.0 < a.0);
                }
            }
            let bids: Vec<(i64, i64)> = book.bids.iter().map(|l| (l.price, l.size)).collect();
            let asks: Vec<(i64, i64)> = book.asks.iter().rev().map(|l| (l.price, l.size)).collect();
            proptest::prop_assert_eq!(bids, model.bids.into_iter().collect::<Vec<_>>());
            proptest::prop_assert_eq!(asks, model.asks.into_iter().collect::<Vec<_>>());
        }
    }
}
