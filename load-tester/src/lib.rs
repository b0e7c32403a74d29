//! AlphaPulse Load Tester: drives the shared-memory market-data bus (`alphapulse-bus`) with
//! simulated exchanges at exact open-loop rates and measures every write.
//!
//! Data flows one way, one folder per stage: configuration ([`config`]) -> plan ([`plan`]) ->
//! run ([`source`], [`transport`], [`run`]) -> results ([`results`]) -> outputs ([`output`]);
//! [`app`] wires them together and [`exit`] turns the outcome into the exit status.
#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod distributed;
pub mod exit;
pub mod output;
pub mod plan;
pub mod report;
pub mod results;
pub mod run;
pub mod source;
pub mod transport;
