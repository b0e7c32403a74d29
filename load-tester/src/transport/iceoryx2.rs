//! iceoryx2 publish-subscribe as a transport (cargo feature `iceoryx2`): one service per
//! exchange and stream, named `alphapulse/<run id>/<exchange>/<stream>`, whose samples are the
//! records as the bus stores them (byte slices), numbered per stream as the feed's messages
//! are. The readers' side turns each sample into a one-message datagram of the feed format
//! (docs/feed-format.md), so that the same sequence accounting and checks apply. A sample of 8
//! bytes (the next sequence) ends a stream.
//!
//! Subscribers keep [`BUFFER`] samples; a slow one loses the oldest (iceoryx2's safe overflow),
//! which its sequence accounting counts exactly.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use alphapulse_bus::{BookUpdate, Trade};

use super::{SendError, Transport};
use crate::plan::Stream;

/// Samples a subscriber holds before the oldest are overwritten.
pub const BUFFER: usize = 16_384;
/// Largest sample: a book update.
const MAX_SAMPLE: usize = 256;

/// The name of the service of `exchange`'s `stream` in run `run_id`.
pub fn service_name(run_id: &str, exchange: u16, stream: Stream) -> String {
    format!("alphapulse/{run_id}/{exchange}/{}", stream.name())
}

/// A node of this process, its signal handling left to the tester and its logging quiet.
pub fn node() -> Result<Node<ipc_threadsafe::Service>, String> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc_threadsafe::Service>()
        .map_err(|e| format!("iceoryx2: cannot create a node: {e:?}"))
}

fn open(
    node: &Node<ipc_threadsafe::Service>,
    name: &str,
) -> Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<
        ipc_threadsafe::Service,
        [u8],
        (),
    >,
    String,
> {
    let service_name: ServiceName = name
        .try_into()
        .map_err(|e| format!("iceoryx2: {name:?} is not a service name: {e:?}"))?;
    node.service_builder(&service_name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(64)
        .subscriber_max_buffer_size(BUFFER)
        .history_size(0)
        .enable_safe_overflow(true)
        .open_or_create()
        .map_err(|e| format!("iceoryx2: cannot open service {name:?}: {e:?}"))
}

/// One exchange's publishers.
///
/// Invariant: `next[s]` is the sequence the next record of stream `s` gets (from 1).
pub struct Iceoryx2Exchange {
    publishers: [Publisher<ipc_threadsafe::Service, [u8], ()>; 2],
    next: [u64; 2],
    /// Keeps the node alive as long as its ports.
    _node: Node<ipc_threadsafe::Service>,
}

impl Iceoryx2Exchange {
    /// Creates the services and publishers of `exchange` in run `run_id`.
    pub fn new(run_id: &str, exchange: u16) -> Result<Self, String> {
        let node = node()?;
        let mut publishers = Vec::new();
        for stream in Stream::ALL {
            let factory = open(&node, &service_name(run_id, exchange, stream))?;
            publishers.push(
                factory
                    .publisher_builder()
                    .initial_max_slice_len(MAX_SAMPLE)
                    .create()
                    .map_err(|e| format!("iceoryx2: cannot create a publisher: {e:?}"))?,
            );
        }
        let publishers: [Publisher<ipc_threadsafe::Service, [u8], ()>; 2] =
            publishers
                .try_into()
                .map_err(|_| "iceoryx2: two publishers expected".to_string())?;
        Ok(Self {
            publishers,
            next: [1, 1],
            _node: node,
        })
    }

    fn publish(&mut self, s: usize, bytes: &[u8]) -> Result<(), SendError> {
        let sample = self.publishers[s]
            .loan_slice_uninit(bytes.len())
            .map_err(|_| SendError::Failed)?;
        sample
            .write_from_slice(bytes)
            .send()
            .map_err(|_| SendError::Failed)?;
        self.next[s] += 1;
        Ok(())
    }
}

impl Transport for Iceoryx2Exchange {
    #[inline]
    fn send_trade(&mut self, trade: &Trade) -> Result<(), SendError> {
        let mut t = *trade;
        t.sequence = self.next[0];
        self.publish(0, bytemuck::bytes_of(&t))
    }

    #[inline]
    fn send_book(&mut self, update: &BookUpdate) -> Result<(), SendError> {
        let mut u = *update;
        u.sequence = self.next[1];
        self.publish(1, bytemuck::bytes_of(&u))
    }
}

impl Drop for Iceoryx2Exchange {
    fn drop(&mut self) {
        for s in 0..2 {
            let end = self.next[s].to_le_bytes();
            if let Ok(sample) = self.publishers[s].loan_slice_uninit(end.len()) {
                let _ = sample.write_from_slice(&end).send();
            }
        }
    }
}

/// A subscriber of record samples.
type RecordSubscriber = Subscriber<ipc_threadsafe::Service, [u8], ()>;

/// A reader's subscribers, polled in turn; each sample comes out as a feed datagram.
pub struct Iceoryx2Receiver {
    /// Each service's subscriber, and the feed session its samples are given.
    subscribers: Vec<(RecordSubscriber, [u8; super::feed::SESSION_LEN])>,
    turn: usize,
    _node: Node<ipc_threadsafe::Service>,
}

impl Iceoryx2Receiver {
    /// Subscribes to every service of `sources` (service name, session).
    pub fn new(sources: &[(String, [u8; super::feed::SESSION_LEN])]) -> Result<Self, String> {
        let node = node()?;
        let mut subscribers = Vec::new();
        for (name, session) in sources {
            let factory = open(&node, name)?;
            let sub = factory
                .subscriber_builder()
                .buffer_size(BUFFER)
                .create()
                .map_err(|e| format!("iceoryx2: cannot subscribe to {name:?}: {e:?}"))?;
            subscribers.push((sub, *session));
        }
        Ok(Self {
            subscribers,
            turn: 0,
            _node: node,
        })
    }

    /// The next sample of any subscriber as a datagram in `buf`: its length, or `None` when
    /// none has one.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, String> {
        use super::feed::{header, END_OF_SESSION, HEADER_LEN};
        for _ in 0..self.subscribers.len() {
            let i = self.turn;
            self.turn = (self.turn + 1) % self.subscribers.len();
            let (sub, session) = &self.subscribers[i];
            let Some(sample) = sub
                .receive()
                .map_err(|e| format!("iceoryx2: cannot receive: {e:?}"))?
            else {
                continue;
            };
            let bytes = sample.payload();
            if bytes.len() == 8 {
                let next = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
                header(buf, session, next, END_OF_SESSION);
                return Ok(Some(HEADER_LEN));
            }
            if bytes.len() < 8
                || bytes.len() > MAX_SAMPLE
                || buf.len() < HEADER_LEN + 2 + bytes.len()
            {
                // Not a record of ours: let the feed's parser count it as foreign.
                buf[..3].copy_from_slice(b"bad");
                return Ok(Some(3));
            }
            let sequence = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            header(buf, session, sequence, 1);
            buf[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
            buf[HEADER_LEN + 2..HEADER_LEN + 2 + bytes.len()].copy_from_slice(bytes);
            return Ok(Some(HEADER_LEN + 2 + bytes.len()));
        }
        Ok(None)
    }
}
