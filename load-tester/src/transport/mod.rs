//! The narrow interface the generator writes through, and its implementations: the
//! shared-memory bus, and a datagram feed over UDP or Unix sockets, compared under the same
//! load.

use alphapulse_bus::{BookUpdate, Trade};

use crate::plan::Stream;

pub mod bus;
pub mod datagram;
pub mod feed;
#[cfg(feature = "iceoryx2")]
pub mod iceoryx2;
mod sigbus;

/// What an impaired path did to one stream's messages since it was last asked: each count is
/// of messages (records), as the readers count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Dropped on purpose: the readers must count exactly these as lost.
    pub dropped: u64,
    /// Sent twice.
    pub duplicated: u64,
    /// Held back behind the stream's next datagram.
    pub reordered: u64,
    /// Sent but refused on the way (a reader's queue full under impairment, or the kernel's
    /// `EPERM`/`ENOBUFS`, per reader): the readers count these lost too.
    pub refused: u64,
}

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
    /// Sends one trade, sealed by the generator. Its `sequence` may be assigned by the
    /// transport; its checksum is sent as it came (it covers neither the sequence nor the send
    /// time), so that a record the generator corrupted on purpose stays corrupt on every way.
    fn send_trade(&mut self, trade: &Trade) -> Result<(), SendError>;
    /// Sends one book update, as [`Transport::send_trade`].
    fn send_book(&mut self, update: &BookUpdate) -> Result<(), SendError>;
    /// Called while the generator is idle, at least every 50 ms: a chance to show liveness.
    fn idle(&mut self) {}
    /// Called before the generator waits for the next send time: sends what is batched.
    fn flush(&mut self) {}
    /// Where the readers listen (a feed's unicast destinations), set once before the load
    /// starts; transports without destinations ignore it.
    fn set_receivers(&mut self, _receivers: &[String]) -> Result<(), String> {
        Ok(())
    }
    /// When the transport next needs [`Transport::poll`] (a delayed datagram's time), ns;
    /// `u64::MAX`: never. The generator wakes for it as for a send.
    fn next_deadline(&self) -> u64 {
        u64::MAX
    }
    /// Sends what is due by `now` (delayed datagrams).
    fn poll(&mut self, _now: u64) {}
    /// Sends everything still batched, held or delayed, waiting for it if need be: called once
    /// at the end, before the last interval report, so that what it costs is in it.
    fn drain(&mut self) {
        self.flush();
    }
    /// Whether this transport ever needs [`Transport::poll`]: asked once, so that a transport
    /// that does not costs the generator nothing per send.
    fn delays(&self) -> bool {
        false
    }
    /// What an impairment did to `stream` since the last call (nothing, for most transports).
    fn take_net(&mut self, _stream: Stream) -> NetCounters {
        NetCounters::default()
    }
    /// Chaos: closes the exchange's outputs and opens new ones under the same names, as a
    /// restarted publisher would (a new epoch of each ring). On an error nothing changed and
    /// the old outputs are still written to; `Err` says why.
    fn restart(&mut self) -> Result<(), String> {
        Err("this transport has no writer to restart".into())
    }
    /// Chaos: drops every datagram until `drop_until_ns`, and delays every datagram by
    /// `extra_ns` more until `delay_until_ns` (both `CLOCK_MONOTONIC`). `false`: this
    /// transport is not a datagram feed and did nothing.
    fn net_fault(&mut self, _drop_until_ns: u64, _extra_ns: u64, _delay_until_ns: u64) -> bool {
        false
    }
}
