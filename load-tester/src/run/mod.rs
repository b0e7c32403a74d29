//! Running a plan: the engine, the generator threads and their pacing and clock, the reader
//! processes (both sides, and the protocol between them), and the resource sampler.

pub mod chaos;
pub mod clock;
pub mod consumer;
pub mod engine;
pub mod feed_reader;
pub mod generator;
pub mod measure;
pub mod pacing;
pub mod placement;
pub mod reader_wire;
pub mod readers;
pub mod sampler;

use std::sync::atomic::{AtomicBool, Ordering};

/// How the caller ends a run early: the first request stops the load and keeps what was
/// measured; the second ends the run at once, without waiting for readers or results.
///
/// Invariant: `abort` is set only after `graceful` is (so generator threads, which watch
/// `graceful`, always stop when a run is aborted).
#[derive(Debug, Default)]
pub struct Stop {
    /// Stop the load now and report what was measured.
    graceful: AtomicBool,
    /// End the run at once: readers are killed, nothing more is measured or reported.
    abort: AtomicBool,
}

/// What a stop request did, for the one that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// The first: the run stops gracefully.
    Graceful,
    /// The second: the run ends at once.
    Abort,
    /// A third or later: the run did not end after the abort; the caller may exit.
    Again,
}

impl Stop {
    /// Asks the run to stop: gracefully the first time, at once the second. Only atomic
    /// operations, so it may be called from a signal handler.
    pub fn request(&self) -> StopRequest {
        if !self.graceful.swap(true, Ordering::SeqCst) {
            StopRequest::Graceful
        } else if !self.abort.swap(true, Ordering::SeqCst) {
            StopRequest::Abort
        } else {
            StopRequest::Again
        }
    }

    /// Stops the load gracefully, as a first request does (a request after it ends the run at
    /// once), and does nothing if a stop was requested already. Only atomic operations.
    pub fn stop_gracefully(&self) {
        self.graceful.store(true, Ordering::SeqCst);
    }

    /// Ends the run at once, as a second request does, whatever came before. Only atomic
    /// operations.
    pub fn abort_now(&self) {
        self.graceful.store(true, Ordering::SeqCst);
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Whether the load must stop (any request).
    pub fn stopping(&self) -> bool {
        self.graceful.load(Ordering::Relaxed)
    }

    /// Whether the run must end at once (a second request).
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The flag generator threads watch.
    pub fn flag(&self) -> &AtomicBool {
        &self.graceful
    }
}
