//! The narrow interface the generator writes through, and its first implementation: the
//! shared-memory bus. Other transports (iceoryx2, UDP) plug in here to be compared under the
//! same load.

use alphapulse_bus::{BookUpdate, Trade};

pub mod bus;
mod sigbus;

/// Why one send did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The transport refused rather than overwrite data a reader has not consumed.
    BufferFull,
    /// Any other failure.
    Failed,
}

/// One exchange's two outputs. Implementations must not allocate or lock per send.
pub trait Transport: Send {
    /// Sends one trade. Its `sequence` may be assigned by the transport.
    fn send_trade(&mut self, trade: &Trade) -> Result<(), SendError>;
    /// Sends one book update. Its `sequence` may be assigned by the transport.
    fn send_book(&mut self, update: &BookUpdate) -> Result<(), SendError>;
    /// Called while the generator is idle, at least every 50 ms: a chance to show liveness.
    fn idle(&mut self) {}
}
