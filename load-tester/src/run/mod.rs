//! Running a plan: the engine, the generator threads and their pacing and clock, the reader
//! processes (both sides, and the protocol between them), and the resource sampler.

pub mod clock;
pub mod consumer;
pub mod engine;
pub mod generator;
pub mod measure;
pub mod pacing;
pub mod reader_wire;
pub mod readers;
pub mod sampler;
