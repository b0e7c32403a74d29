//! AlphaPulse Load Tester: drives the shared-memory market-data bus (`alphapulse-bus`) with
//! simulated exchanges at exact open-loop rates and measures every write.
//!
//! Data flows one way, one module per stage:
//! configuration ([`cli`], [`config`], [`targets`]) -> plan ([`plan`]) -> run ([`market`],
//! [`pacing`], [`transport`], [`generator`], [`measure`], [`sampler`], [`engine`]) -> results
//! ([`results`], [`verdict`]) -> outputs ([`output`], and [`compare`], which also reads results
//! files back). Nothing downstream reaches back up.
#![warn(missing_docs)]

pub mod market;

pub mod app;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod config;
pub mod consumer;
pub mod engine;
pub mod generator;
pub mod measure;
pub mod output;
pub mod pacing;
pub mod patterns;
pub mod plan;
pub mod readers;
pub mod results;
pub mod sampler;
pub mod scenario;
pub mod targets;
pub mod transport;
pub mod verdict;
