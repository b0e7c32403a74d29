//! The datagram feed as a transport: UDP (unicast to each reader's loopback port, or a
//! multicast group) or Unix datagram sockets (abstract names), framed as docs/feed-format.md
//! says, with the impairment of the plan applied before the network sees a datagram.
//!
//! The sending side numbers each source's messages (the record's `sequence` is its message's),
//! packs records due back to back into one datagram up to the plan's batch, and sends it to
//! every reader. Impairment decisions are drawn from one seeded generator per exchange, in send
//! order, so that the same seed and load impair the same datagrams; the counts of what it did
//! go into the interval reports next to the writes.

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;

use alphapulse_bus::{BookUpdate, Trade};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::feed::{header, HEADER_LEN, MAX_DATAGRAM, SESSION_LEN};
use super::{NetCounters, SendError, Transport};
use crate::plan::transport::Impairment;
use crate::plan::Stream;

/// A socket of either family, and where its datagrams go.
#[derive(Debug)]
pub enum Socket {
    /// UDP, to these addresses.
    Udp(UdpSocket, Vec<SocketAddr>),
    /// Unix datagram, to these abstract names.
    Uds(UnixDatagram, Vec<std::os::unix::net::SocketAddr>),
}

/// What became of one datagram sent to every destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Every destination took it, or it left this process and the kernel dropped it on the
    /// way (a firewall's `EPERM`, `ENOBUFS`): the readers count those as lost, and the sender
    /// counts them `refused`.
    Out {
        /// Destinations whose copy the kernel refused.
        refused: u64,
    },
    /// A destination's queue was full (`EAGAIN`): not sent; to be sent again whole.
    Full,
    /// Any other error: not sent.
    Failed,
}

impl Socket {
    /// Sends `bytes` to every destination.
    fn send(&self, bytes: &[u8]) -> Sent {
        self.send_rest(bytes, &mut 0)
    }

    /// Sends `bytes` to every destination whose bit (bit `i`: the `i`-th) is clear in `taken`,
    /// and sets the bit of each one that it left for (taken, or dropped on the way). `Full`
    /// and `Failed` leave the bits of the destinations that did not take it clear, so that a
    /// datagram sent again reaches those only: a reader never gets a copy the feed did not
    /// send twice.
    fn send_rest(&self, bytes: &[u8], taken: &mut u64) -> Sent {
        use std::io::ErrorKind;
        let mut refused = 0;
        let (mut full, mut failed) = (false, false);
        let destinations = match self {
            Socket::Udp(_, to) => to.len(),
            Socket::Uds(_, to) => to.len(),
        };
        // Only the destinations still to go: a bit is set below only for the one being sent.
        let open = *taken;
        for i in (0..destinations).filter(|i| open & (1 << i) == 0) {
            let result = match self {
                Socket::Udp(s, to) => s.send_to(bytes, to[i]),
                Socket::Uds(s, to) => s.send_to_addr(bytes, &to[i]),
            };
            match result {
                Ok(_) => *taken |= 1 << i,
                Err(e) if e.kind() == ErrorKind::WouldBlock => full = true,
                // A reader that has gone: UDP reports it on a later send; what it misses it
                // counts.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => *taken |= 1 << i,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOBUFS)) => {
                    refused += 1;
                    *taken |= 1 << i;
                }
                Err(_) => failed = true,
            }
        }
        if failed {
            Sent::Failed
        } else if full {
            Sent::Full
        } else {
            Sent::Out { refused }
        }
    }
}

/// A delayed datagram, waiting for its time.
struct Delayed {
    /// When to send it, ns (`CLOCK_MONOTONIC`).
    at: u64,
    /// Arrival order, to keep equal times in order.
    order: u64,
    /// The stream it is of.
    stream: usize,
    /// The pair it belongs to, if it is one of the two copies of a duplicated datagram.
    pair: Option<u64>,
    /// The datagram.
    bytes: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // The earliest first out of a max-heap.
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

/// One stream of an exchange: its session, numbering and the datagram being filled.
///
/// Invariants: `buf` holds a header's room and then `count` messages; `next` is the sequence
/// the next message gets (from 1); `first` that of the first message in `buf`.
struct StreamOut {
    /// The session name every datagram of the stream carries; fixed.
    session: [u8; SESSION_LEN],
    /// The sequence the next message gets; only grows (from 1).
    next: u64,
    /// The sequence of the first message in `buf` (meaningful while `count > 0`).
    first: u64,
    /// Messages in `buf`; at most the exchange's batch.
    count: u16,
    /// The datagram being filled: a header's room, then `count` length-prefixed messages,
    /// never more than `MAX_DATAGRAM` bytes.
    buf: Vec<u8>,
    /// The destinations (bit `i`: the `i`-th) that took the datagram in `buf` already; 0 while
    /// none has. Non-zero, `buf` is out: nothing is added to it or taken from it until the
    /// others take it too.
    taken: u64,
    /// What the impairment did to this stream's datagrams since the last report.
    net: NetCounters,
}

impl StreamOut {
    fn new(session: [u8; SESSION_LEN]) -> Self {
        let mut buf = Vec::with_capacity(MAX_DATAGRAM);
        buf.resize(HEADER_LEN, 0);
        Self {
            session,
            next: 1,
            first: 1,
            count: 0,
            buf,
            taken: 0,
            net: NetCounters::default(),
        }
    }
}

/// The impairment of one exchange's datagrams.
struct Impair {
    /// What to do to the datagrams (delay, jitter, loss, reorder, duplicate); fixed.
    spec: Impairment,
    /// Every random choice, seeded from the run's seed and the exchange, so a run repeats.
    rng: Xoshiro256PlusPlus,
    /// Gilbert-Elliott: in the bad state (dropping).
    bad: bool,
    /// Per stream, a datagram held back to be sent after that stream's next one (reordering).
    held: [Option<Vec<u8>>; 2],
    /// Delayed datagrams, earliest first; the generator sends them at their times
    /// ([`Transport::next_deadline`], [`Transport::poll`]), as precisely as it paces its sends.
    delayed: BinaryHeap<Delayed>,
    /// Buffers of sent delayed datagrams, reused.
    spare: Vec<Vec<u8>>,
    /// Duplicated datagrams made so far (their pair ids).
    pairs_made: u64,
    /// Duplicated datagrams one of whose copies was refused (at most a few at a time).
    pairs: std::collections::HashSet<u64>,
    /// Delayed datagrams made so far: the tie-break that keeps datagrams due at the same time
    /// in the order they were sent.
    order: u64,
    /// Chaos: every datagram is dropped until then, ns.
    drop_until_ns: u64,
    /// Chaos: every datagram is delayed `.0` ns more until `.1` ns.
    spike: (u64, u64),
    /// Chaos may delay datagrams: the generator must poll for them.
    may_delay: bool,
}

impl Impair {
    /// Whether the next datagram is dropped.
    fn drop_next(&mut self) -> bool {
        let p = self.spec.loss_pct / 100.0;
        if p <= 0.0 {
            return false;
        }
        if self.spec.loss_burst <= 1.0 {
            return self.rng.gen_bool(p.min(1.0));
        }
        // Bad state: drop; leave it with 1/burst. Good: enter it so that the long-run share
        // of bad datagrams is p.
        let leave = 1.0 / self.spec.loss_burst;
        let enter = (p * leave / (1.0 - p).max(f64::MIN_POSITIVE)).min(1.0);
        self.bad = if self.bad {
            !self.rng.gen_bool(leave)
        } else {
            self.rng.gen_bool(enter)
        };
        self.bad
    }

    fn chance(&mut self, pct: f64) -> bool {
        pct > 0.0 && self.rng.gen_bool((pct / 100.0).min(1.0))
    }

    fn delay(&mut self) -> u64 {
        let extra = if self.spike.0 > 0 && alphapulse_bus::now_ns() < self.spike.1 {
            self.spike.0
        } else {
            0
        };
        extra + self.spec_delay()
    }

    fn spec_delay(&mut self) -> u64 {
        let (d, j) = (
            self.spec.delay_ns,
            self.spec.jitter_ns.min(self.spec.delay_ns),
        );
        if j == 0 {
            d
        } else {
            d - j + self.rng.gen_range(0..=2 * j)
        }
    }
}

/// One exchange's feed: both streams, one socket.
pub struct DatagramExchange {
    /// Where every datagram goes out, and to whom; the destinations are set once.
    socket: Socket,
    /// Trades, then book updates.
    streams: [StreamOut; 2],
    /// Most messages per datagram.
    batch: u16,
    /// `None` when nothing impairs the feed (no flag, no network fault): datagrams go out as
    /// they are.
    impair: Option<Impair>,
    /// Heartbeats are due again at this time, ns.
    next_heartbeat: u64,
    /// Sends since the heartbeat clock was last looked at.
    sends: u32,
}

impl DatagramExchange {
    /// An exchange sending through `socket` (destinations set later with
    /// [`Transport::set_receivers`] when unicast), sessions `sessions` (trades, book).
    pub fn new(
        socket: Socket,
        sessions: [[u8; SESSION_LEN]; 2],
        batch: u16,
        impairment: &Impairment,
        exchange: u16,
        chaos: bool,
    ) -> Self {
        let impair = (impairment.any() || chaos).then(|| Impair {
            spec: impairment.clone(),
            rng: Xoshiro256PlusPlus::seed_from_u64(
                impairment.seed ^ (u64::from(exchange) << 40) ^ 0x1A9E_D00D,
            ),
            bad: false,
            held: [None, None],
            delayed: BinaryHeap::new(),
            spare: Vec::new(),
            pairs_made: 0,
            pairs: std::collections::HashSet::new(),
            order: 0,
            drop_until_ns: 0,
            spike: (0, 0),
            may_delay: chaos || impairment.delay_ns > 0,
        });
        Self {
            socket,
            streams: [StreamOut::new(sessions[0]), StreamOut::new(sessions[1])],
            batch: batch.max(1),
            impair,
            next_heartbeat: 0,
            sends: 0,
        }
    }

    /// Adds one message; a datagram not sent takes the message back out, so that its sequence
    /// number goes to the next record sent (the generator sends a refused one again, a failed
    /// one never): the stream the readers see has no gap a write failure made.
    fn push(&mut self, s: usize, record: &[u8]) -> Result<(), SendError> {
        // A generator that never waits never idles: a silent stream still says it is alive.
        self.sends += 1;
        if self.sends >= 1024 {
            self.sends = 0;
            self.heartbeat();
        }
        // A datagram that some readers took already goes to the others before anything is
        // added to it: what they get must be what the first ones got.
        if self.streams[s].taken != 0 {
            self.flush_stream(s)?;
        }
        let out = &mut self.streams[s];
        if out.buf.len() + 2 + record.len() > MAX_DATAGRAM {
            self.flush_stream(s)?;
        }
        let out = &mut self.streams[s];
        let before = out.buf.len();
        if out.count == 0 {
            out.first = out.next;
        }
        out.buf
            .extend_from_slice(&(record.len() as u16).to_be_bytes());
        out.buf.extend_from_slice(record);
        out.count += 1;
        out.next += 1;
        if out.count >= self.batch {
            if let Err(e) = self.flush_stream(s) {
                let out = &mut self.streams[s];
                if out.taken != 0 {
                    // Some readers have the record: it is sent, and the others get it with
                    // the datagram's next flush.
                    return Ok(());
                }
                out.buf.truncate(before);
                out.count -= 1;
                out.next -= 1;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends stream `s`'s datagram, through the impairment.
    fn flush_stream(&mut self, s: usize) -> Result<(), SendError> {
        let out = &mut self.streams[s];
        if out.count == 0 {
            return Ok(());
        }
        let (session, first, count) = (out.session, out.first, out.count);
        header(&mut out.buf, &session, first, count);
        let result = match &mut self.impair {
            None => match self.socket.send_rest(&out.buf, &mut out.taken) {
                Sent::Out { refused } => {
                    out.net.refused += refused * u64::from(count);
                    Ok(())
                }
                Sent::Full => Err(SendError::BufferFull),
                Sent::Failed => Err(SendError::Failed),
            },
            Some(im) => {
                let messages = u64::from(count);
                let burst = im.drop_until_ns > 0 && alphapulse_bus::now_ns() < im.drop_until_ns;
                let dropped = burst || im.drop_next();
                let twice = !dropped && im.chance(im.spec.duplicate_pct);
                let hold = !dropped && im.held[s].is_none() && im.chance(im.spec.reorder_pct);
                if dropped {
                    out.net.dropped += messages;
                } else if hold {
                    out.net.reordered += messages;
                    im.held[s] = Some(out.buf.clone());
                } else {
                    let copies = if twice {
                        out.net.duplicated += messages;
                        2
                    } else {
                        1
                    };
                    let pair = (copies > 1).then(|| {
                        im.pairs_made += 1;
                        im.pairs_made
                    });
                    for _ in 0..copies {
                        send_impaired(&self.socket, im, &out.buf, s, pair, &mut out.net);
                    }
                    // The one held back goes after this one.
                    if let Some(held) = im.held[s].take() {
                        send_impaired(&self.socket, im, &held, s, None, &mut out.net);
                    }
                }
                Ok(())
            }
        };
        // A datagram not sent stays: it goes with the next flush, and the message that could
        // not be added is taken back out by `push`, so no number is used for nothing.
        result?;
        out.buf.truncate(HEADER_LEN);
        out.count = 0;
        out.taken = 0;
        Ok(())
    }

    fn heartbeat(&mut self) {
        let now = alphapulse_bus::now_ns();
        if now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = now + HEARTBEAT_NS;
        for out in &self.streams {
            let mut hb = [0u8; HEADER_LEN];
            // The next sequence not yet sent (what is batched has not gone).
            let next = if out.count > 0 { out.first } else { out.next };
            header(&mut hb, &out.session, next, 0);
            let _ = self.socket.send(&hb);
        }
    }
}

/// How long the end of a run waits for a reader's full queue to take the last datagrams and
/// the end of each session: far longer than a reader descheduled on a busy machine, far shorter
/// than the tester's wait for its readers to finish.
const END_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The pause between two sends into a full queue at the end of a run.
const FULL_RETRY: std::time::Duration = std::time::Duration::from_micros(50);

/// Repeats `send` while it meets a full queue (returns `true`), pausing [`FULL_RETRY`] between
/// tries, until `deadline`.
fn wait_out_full(deadline: std::time::Instant, mut send: impl FnMut() -> bool) {
    while send() && std::time::Instant::now() < deadline {
        std::thread::sleep(FULL_RETRY);
    }
}

/// The queue of a Unix datagram socket below which a reader's short pause refuses sends: 64
/// datagrams are 640 µs at 100k records/s.
const UDS_QUEUE_WARN: u64 = 64;

/// A warning when this host queues fewer than [`UDS_QUEUE_WARN`] datagrams per Unix datagram
/// socket (`net.unix.max_dgram_qlen`, which the kernel sets to 10 and systemd to 512): a reader
/// descheduled for longer than that many sends makes the tester's sends fail with `EAGAIN`,
/// counted as buffer overflows. `None` when the queue is longer or the value cannot be read.
pub fn uds_queue_warning() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen").ok()?;
    let qlen: u64 = text.trim().parse().ok()?;
    (qlen < UDS_QUEUE_WARN).then(|| {
        format!(
            "net.unix.max_dgram_qlen is {qlen}: a reader paused for more than {qlen} datagrams \
             refuses sends (buffer overflows); raise it with \
             `sysctl -w net.unix.max_dgram_qlen=512`"
        )
    })
}

/// How often an idle feed says it is alive, ns.
pub const HEARTBEAT_NS: u64 = 100_000_000;

/// Sends (or delays) one datagram of stream `stream` through the impairment, counting into
/// `net` what the way refused (a queue full or the kernel's refusal: the impairment cannot
/// wait). `pair` names the two copies of a duplicated datagram: one copy refused means it was
/// not duplicated, both refused that it was lost.
fn send_impaired(
    socket: &Socket,
    im: &mut Impair,
    bytes: &[u8],
    stream: usize,
    pair: Option<u64>,
    net: &mut NetCounters,
) {
    let delay = if im.may_delay { im.delay() } else { 0 };
    if delay > 0 {
        let at = alphapulse_bus::now_ns() + delay;
        im.order += 1;
        let mut buf = im.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        im.delayed.push(Delayed {
            at,
            order: im.order,
            stream,
            pair,
            bytes: buf,
        });
    } else {
        let sent = socket.send(bytes);
        count_refused(sent, bytes, pair, &mut im.pairs, net);
    }
}

/// Counts what `sent` (of datagram `bytes`) did not get to every reader; `pairs` holds the
/// duplicated datagrams one of whose copies was refused already.
fn count_refused(
    sent: Sent,
    bytes: &[u8],
    pair: Option<u64>,
    pairs: &mut std::collections::HashSet<u64>,
    net: &mut NetCounters,
) {
    let records = u64::from(u16::from_be_bytes([bytes[18], bytes[19]]));
    let refused = match sent {
        Sent::Out { refused } => refused * records,
        Sent::Full | Sent::Failed => records,
    };
    if refused == 0 {
        return;
    }
    match pair {
        // The first refused copy: the other carries the records, which were not duplicated.
        Some(p) if pairs.insert(p) => net.duplicated = net.duplicated.saturating_sub(refused),
        // The second: neither got through.
        Some(p) => {
            pairs.remove(&p);
            net.refused += refused;
        }
        None => net.refused += refused,
    }
}

/// Sends every delayed datagram due by `now`, counting refusals into their streams.
fn send_due(socket: &Socket, im: &mut Impair, now: u64, streams: &mut [StreamOut; 2]) {
    while im.delayed.peek().is_some_and(|d| d.at <= now) {
        let d = im.delayed.pop().expect("peeked");
        // A refusal here is a drop the readers count: a delayed datagram cannot wait.
        let sent = socket.send(&d.bytes);
        count_refused(
            sent,
            &d.bytes,
            d.pair,
            &mut im.pairs,
            &mut streams[d.stream].net,
        );
        im.spare.push(d.bytes);
    }
}

impl Transport for DatagramExchange {
    #[inline]
    fn send_trade(&mut self, trade: &Trade) -> Result<(), SendError> {
        let mut t = *trade;
        t.sequence = self.streams[0].next;
        self.push(0, bytemuck::bytes_of(&t))
    }

    #[inline]
    fn send_book(&mut self, update: &BookUpdate) -> Result<(), SendError> {
        let mut u = *update;
        u.sequence = self.streams[1].next;
        self.push(1, bytemuck::bytes_of(&u))
    }

    fn flush(&mut self) {
        for s in 0..2 {
            let _ = self.flush_stream(s);
        }
    }

    fn idle(&mut self) {
        self.flush();
        self.heartbeat();
    }

    fn set_receivers(&mut self, receivers: &[String]) -> Result<(), String> {
        match &mut self.socket {
            Socket::Udp(_, to) => {
                for r in receivers {
                    to.push(
                        r.parse()
                            .map_err(|e| format!("reader address {r:?}: {e}"))?,
                    );
                }
            }
            Socket::Uds(_, to) => {
                use std::os::linux::net::SocketAddrExt;
                for r in receivers {
                    to.push(
                        std::os::unix::net::SocketAddr::from_abstract_name(r.as_bytes())
                            .map_err(|e| format!("reader address {r:?}: {e}"))?,
                    );
                }
            }
        }
        Ok(())
    }

    fn next_deadline(&self) -> u64 {
        self.impair
            .as_ref()
            .and_then(|im| im.delayed.peek())
            .map_or(u64::MAX, |d| d.at)
    }

    fn poll(&mut self, now: u64) {
        if let Some(im) = &mut self.impair {
            send_due(&self.socket, im, now, &mut self.streams);
        }
    }

    fn drain(&mut self) {
        self.drain_all();
    }

    fn delays(&self) -> bool {
        self.impair.as_ref().is_some_and(|im| im.may_delay)
    }

    fn net_fault(&mut self, drop_until_ns: u64, extra_ns: u64, delay_until_ns: u64) -> bool {
        let Some(im) = &mut self.impair else {
            return false;
        };
        if drop_until_ns > 0 {
            im.drop_until_ns = drop_until_ns;
        }
        if extra_ns > 0 {
            im.spike = (extra_ns, delay_until_ns);
        }
        true
    }

    fn take_net(&mut self, stream: Stream) -> NetCounters {
        let s = match stream {
            Stream::Trades => 0,
            Stream::Book => 1,
        };
        std::mem::take(&mut self.streams[s].net)
    }
}

impl DatagramExchange {
    /// Sends what is held back and waits for what is delayed (at most the delay plus the
    /// jitter, 1 s), counting every refusal: the end of the run, before its last report.
    ///
    /// What is still batched was counted written, so a full queue (a Unix socket's reader
    /// descheduled for a few sends) is waited out rather than ignored, for up to
    /// [`END_PATIENCE`]; a reader that takes no datagram for that long counts the rest lost.
    fn drain_all(&mut self) {
        let deadline = std::time::Instant::now() + END_PATIENCE;
        for s in 0..2 {
            wait_out_full(deadline, || {
                matches!(self.flush_stream(s), Err(SendError::BufferFull))
            });
        }
        if let Some(im) = &mut self.impair {
            for stream in 0..2 {
                if let Some(h) = im.held[stream].take() {
                    let net = &mut self.streams[stream].net;
                    send_impaired(&self.socket, im, &h, stream, None, net);
                }
            }
            while let Some(at) = im.delayed.peek().map(|d| d.at) {
                let now = alphapulse_bus::now_ns();
                if at > now {
                    std::thread::sleep(std::time::Duration::from_nanos(at - now));
                }
                send_due(
                    &self.socket,
                    im,
                    alphapulse_bus::now_ns(),
                    &mut self.streams,
                );
            }
        }
    }
}

impl Drop for DatagramExchange {
    fn drop(&mut self) {
        // Normally drained already (Transport::drain); a transport dropped early sends what it
        // holds all the same.
        self.drain_all();
        // The end of each session, sent a few times (the end is not impaired, and a lost
        // one would leave a reader waiting for the writer to be gone). A full queue is waited
        // out: an end refused with `EAGAIN` was never sent at all, and a Unix socket's reader
        // (which the kernel allows 10 datagrams by default) would wait for it until killed.
        let deadline = std::time::Instant::now() + END_PATIENCE;
        for _ in 0..3 {
            for out in &self.streams {
                let mut end = [0u8; HEADER_LEN];
                header(
                    &mut end,
                    &out.session,
                    out.next,
                    super::feed::END_OF_SESSION,
                );
                let mut taken = 0;
                wait_out_full(deadline, || {
                    self.socket.send_rest(&end, &mut taken) == Sent::Full
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::feed::{parse, Datagram};
    use std::os::linux::net::SocketAddrExt;

    /// Binds a reader's socket under an abstract name of this test process.
    fn reader(tag: &str) -> (UnixDatagram, String) {
        let name = format!("alphapulse-test-{tag}-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        (UnixDatagram::bind_addr(&addr).unwrap(), name)
    }

    /// The trade sequences a reader received, in order, and each session's end (session,
    /// next sequence).
    type Received = (Vec<u64>, Vec<(Vec<u8>, u64)>);

    /// Reads `socket` until both sessions end (after `wait`): the trade sequences received, in
    /// order, and each session's end.
    fn read_all(
        socket: UnixDatagram,
        wait: std::time::Duration,
    ) -> std::thread::JoinHandle<Received> {
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let (mut trades, mut ends) = (Vec::new(), Vec::new());
            let mut buf = vec![0u8; MAX_DATAGRAM + 1];
            while ends.len() < 2 {
                let n = socket.recv(&mut buf).expect("the end of both sessions");
                match parse(&buf[..n]).unwrap() {
                    Datagram::Messages {
                        session,
                        sequence,
                        messages,
                    } => {
                        assert_eq!(session, b"TRADES0001");
                        trades.extend(sequence..sequence + messages.len() as u64);
                    }
                    Datagram::Heartbeat { .. } => {}
                    Datagram::End { session, sequence } => {
                        if !ends.iter().any(|(s, _)| s == session) {
                            ends.push((session.to_vec(), sequence));
                        }
                    }
                }
            }
            (trades, ends)
        })
    }

    fn exchange(to: &[String], batch: u16) -> DatagramExchange {
        let sender = UnixDatagram::unbound().unwrap();
        sender.set_nonblocking(true).unwrap();
        let mut exchange = DatagramExchange::new(
            Socket::Uds(sender, Vec::new()),
            [*b"TRADES0001", *b"BOOKUP0001"],
            batch,
            &Impairment::default(),
            0,
            false,
        );
        exchange.set_receivers(to).unwrap();
        exchange
    }

    /// With two readers, one of them full: the other gets every datagram once (a datagram
    /// that the first reader took is not sent to it again), and the full one gets the same
    /// sequence, whole, once it takes datagrams again.
    #[test]
    fn a_full_reader_gets_the_rest_and_the_others_no_second_copy() {
        let (fast, fast_name) = reader("fast");
        let (slow, slow_name) = reader("slow");
        let fast = read_all(fast, std::time::Duration::ZERO);
        let mut exchange = exchange(&[fast_name, slow_name], 3);
        let trade: Trade = bytemuck::Zeroable::zeroed();
        let (mut accepted, mut refused) = (0u64, 0u64);
        while refused < 50 {
            match exchange.send_trade(&trade) {
                Ok(()) => accepted += 1,
                Err(SendError::BufferFull) => refused += 1,
                Err(SendError::Failed) => panic!("a send failed"),
            }
            assert!(accepted < 1_000_000, "a Unix socket's queue never filled");
        }
        let slow = read_all(slow, std::time::Duration::from_millis(50));
        exchange.drain();
        drop(exchange);
        let every: Vec<u64> = (1..=accepted).collect();
        for (who, reading) in [("fast", fast), ("slow", slow)] {
            let (trades, ends) = reading.join().unwrap();
            assert_eq!(trades, every, "{who}");
            assert!(
                ends.contains(&(b"TRADES0001".to_vec(), accepted + 1)),
                "{who} {ends:?}"
            );
        }
    }

    /// A reader whose queue is full when the run ends still gets every record that was
    /// counted written and the end of both sessions, once it takes datagrams again.
    #[test]
    fn the_end_of_a_run_waits_out_a_full_unix_queue() {
        let (socket, name) = reader("full-queue");
        let mut exchange = exchange(&[name], 3);
        let trade: Trade = bytemuck::Zeroable::zeroed();
        let mut accepted = 0u64;
        while exchange.send_trade(&trade).is_ok() {
            accepted += 1;
            assert!(accepted < 1_000_000, "a Unix socket's queue never filled");
        }
        // The refused send took its record back out; the two before it, accepted, wait in the
        // batch that the full queue holds back. The reader comes back after the sender has met
        // the full queue at the end.
        let reading = read_all(socket, std::time::Duration::from_millis(50));
        exchange.drain();
        drop(exchange);
        let (trades, ends) = reading.join().unwrap();
        assert_eq!(trades, (1..=accepted).collect::<Vec<_>>());
        assert!(
            ends.contains(&(b"TRADES0001".to_vec(), accepted + 1)),
            "{ends:?}"
        );
        assert!(ends.contains(&(b"BOOKUP0001".to_vec(), 1)), "{ends:?}");
    }
}
