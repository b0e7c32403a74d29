//! What records are generated from: the market simulator, or a capture replayed.

pub mod capture;
pub mod market;
