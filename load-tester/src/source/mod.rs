//! What records are generated from: the market simulator, or a capture replayed.

pub mod capture;
pub mod market;
pub mod replay;
pub mod tardis;

use alphapulse_bus::{BookUpdate, Trade};

use crate::source::market::ExchangeSim;
use crate::source::replay::ReplayMarket;

/// Where an exchange's records come from.
#[derive(Debug, Clone)]
pub enum Market {
    /// The simulator makes them.
    Sim(ExchangeSim),
    /// A capture's records, re-sequenced for this run.
    Replay(ReplayMarket),
}

impl Market {
    /// The next trade: the simulator's, or `recorded` re-sequenced (see [`ReplayMarket::trade`]).
    #[inline]
    pub fn trade(&mut self, recorded: &[u8], out: &mut Trade) {
        match self {
            Market::Sim(s) => s.next_trade(out),
            Market::Replay(m) => m.trade(recorded, out),
        }
    }

    /// The next book update: the simulator's, or `recorded` re-sequenced.
    #[inline]
    pub fn book_update(&mut self, recorded: &[u8], out: &mut BookUpdate) {
        match self {
            Market::Sim(s) => s.next_book_update(out),
            Market::Replay(m) => m.book_update(recorded, out),
        }
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> u32 {
        match self {
            Market::Sim(s) => s.symbol_count(),
            Market::Replay(m) => m.symbol_count(),
        }
    }

    /// The last published book version of `symbol_id`.
    pub fn published_version(&self, symbol_id: u32) -> u64 {
        match self {
            Market::Sim(s) => s.published_version(symbol_id),
            Market::Replay(m) => m.published_version(symbol_id),
        }
    }

    /// The digest of `symbol_id`'s book as published.
    pub fn published_digest(&self, symbol_id: u32) -> u64 {
        match self {
            Market::Sim(s) => s.published_digest(symbol_id),
            Market::Replay(m) => m.published_digest(symbol_id),
        }
    }
}
