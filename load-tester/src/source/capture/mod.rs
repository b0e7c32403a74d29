//! Captures: a run's records, or an imported day of market data, in a compact file that replay
//! publishes again (the format is docs/capture-format.md and [`format`]).

pub mod format;
pub mod reader;
pub mod writer;

#[cfg(test)]
mod tests;
