//! What records are generated from: the market simulator.

pub mod market;
