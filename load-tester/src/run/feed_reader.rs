//! The reading side of a datagram feed (UDP or Unix datagram sockets, docs/feed-format.md): a
//! reader process receives every datagram of the run's sessions on a socket of its own,
//! puts each session's messages back in sequence order, and checks and measures every record
//! as a bus reader does (the same checks: sequence, checksum, fields, trade ids, book chains,
//! final digests).
//!
//! # Sequence accounting
//!
//! Per session, `next` is the sequence the reader delivers next. A datagram that starts at
//! `next` is delivered at once; one that starts later waits (the network may have reordered
//! it) until the gap fills, or for the feed's `gap_wait_ns`, after which the missing sequences
//! are lost and what waited is delivered (a path that does not reorder has no wait: a gap is
//! a loss at once). A datagram that arrives after a later one of its session and
//! fills a gap counts as `reordered`; one whose sequences were delivered (or are waiting)
//! already counts as `duplicates`; neither is a violation. Losses are exact: every sequence up
//! to the session's end (its end-of-session datagram says where that is) is delivered once or
//! counted lost once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alphapulse_bus::{BookUpdate, Manifest, Trade};
use hdrhistogram::Histogram;

use crate::plan::Stream;
use crate::report::end::{ReaderEnd, RingOutcome};
use crate::report::histogram::new_histogram;
use crate::report::timeline::Ticker;
use crate::report::{Integrity, IntervalReport, Kind, SourceId};
use crate::run::clock::{tsc_usable, Clock, ClockSource};
use crate::run::consumer::{
    check_book, check_digests, check_trade, load_digests, record_e2e, ReadError, ReadOptions,
};
use crate::run::reader_wire::{Start, ToTester};
use crate::source::market::BookReplica;
use crate::transport::feed::{self, Datagram, FeedInfo, MAX_DATAGRAM, SESSION_LEN};

/// Receive buffer asked for, bytes: a second of the stress rate's datagrams.
const RCVBUF: usize = 32 << 20;

/// What a reader receives on.
enum Receiver {
    Udp(std::net::UdpSocket),
    Uds(std::os::unix::net::UnixDatagram),
    #[cfg(feature = "iceoryx2")]
    Iceoryx2(crate::transport::iceoryx2::Iceoryx2Receiver),
}

impl Receiver {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Receiver::Udp(s) => s.recv(buf),
            Receiver::Uds(s) => s.recv(buf),
            #[cfg(feature = "iceoryx2")]
            Receiver::Iceoryx2(r) => match r.recv(buf) {
                Ok(Some(n)) => Ok(n),
                Ok(None) => Err(std::io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(std::io::Error::other(e)),
            },
        }
    }
}

/// How a session's records are checked.
enum Checker {
    Trades(Vec<u64>),
    Book(BookReplica, Vec<bool>),
}

/// One session as this reader follows it.
///
/// Invariants: every sequence below `next` was delivered or counted lost exactly once;
/// `waiting` holds datagrams that start above `next`, keyed by their first sequence, with when
/// the first of them arrived; `highest` is one past the highest sequence seen.
struct Session {
    /// The exchange and stream it carries; fixed.
    id: SourceId,
    /// The record checks (checksum, sequence, trade ids, book chains) of what is delivered.
    checker: Checker,
    /// Everything counted since the reader started; only grows.
    counts: Integrity,
    /// `counts` as of the last interval report: the next report carries the difference.
    shipped: Integrity,
    /// End-to-end latencies of what was delivered since the last interval report.
    e2e: Histogram<u64>,
    /// Largest end-to-end latency since the timeline's last slice closed, ns.
    max_e2e_ns: u64,
    /// The next sequence to deliver.
    next: u64,
    /// One past the highest sequence seen; at least `next`.
    highest: u64,
    /// Datagrams that start above `next`, by first sequence: when each arrived, and its
    /// messages.
    waiting: BTreeMap<u64, (std::time::Instant, Vec<Vec<u8>>)>,
    /// The session's end (one past its last sequence), once its end-of-session arrived, and
    /// when it did.
    end: Option<(u64, std::time::Instant)>,
    /// When a datagram (or heartbeat) of this session last arrived.
    last_heard: std::time::Instant,
    /// How long a gap may stay open before its sequences count as lost.
    gap_wait: Duration,
}

impl Session {
    fn deliver(&mut self, sequence: u64, messages: &[&[u8]], clock: &mut Clock) {
        for (k, m) in messages.iter().enumerate() {
            let mut expected = sequence + k as u64;
            let now = clock.now_after();
            match &mut self.checker {
                Checker::Trades(ids) => {
                    if m.len() != std::mem::size_of::<Trade>() {
                        self.counts.received += 1;
                        self.counts.corrupted += 1;
                        continue;
                    }
                    let t: Trade = bytemuck::pod_read_unaligned(m);
                    record_e2e(&mut self.e2e, &mut self.max_e2e_ns, now, t.send_ts_ns);
                    check_trade(&t, self.id.exchange, &mut expected, ids, &mut self.counts);
                }
                Checker::Book(replica, resync) => {
                    if m.len() != std::mem::size_of::<BookUpdate>() {
                        self.counts.received += 1;
                        self.counts.corrupted += 1;
                        continue;
                    }
                    let u: BookUpdate = bytemuck::pod_read_unaligned(m);
                    record_e2e(&mut self.e2e, &mut self.max_e2e_ns, now, u.send_ts_ns);
                    check_book(
                        &u,
                        self.id.exchange,
                        &mut expected,
                        replica,
                        resync,
                        &mut self.counts,
                    );
                }
            }
        }
        self.next = sequence + messages.len() as u64;
    }

    /// Counts `n` sequences from `next` lost and moves past them.
    fn lose(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.counts.lost += n;
        self.next += n;
        match &mut self.checker {
            // Trade ids of any symbol may jump now; any symbol's next update may follow a lost
            // one.
            Checker::Trades(ids) => ids.iter_mut().for_each(|i| *i = 0),
            Checker::Book(_, resync) => resync.iter_mut().for_each(|r| *r = true),
        }
    }

    /// Delivers what waits in order, as far as it is contiguous; what waits but was overtaken
    /// (it overlaps what was delivered) delivers only its new part.
    fn drain(&mut self, clock: &mut Clock) {
        while let Some(entry) = self.waiting.first_entry() {
            let first = *entry.key();
            if first > self.next {
                break;
            }
            let (_, (_, messages)) = entry.remove_entry();
            let skip = ((self.next - first) as usize).min(messages.len());
            self.counts.duplicates += skip as u64;
            let refs: Vec<&[u8]> = messages[skip..].iter().map(Vec::as_slice).collect();
            if !refs.is_empty() {
                self.deliver(self.next, &refs, clock);
            }
        }
    }

    fn on_messages(&mut self, sequence: u64, messages: &[&[u8]], clock: &mut Clock) {
        let n = messages.len() as u64;
        let end = sequence + n;
        if end <= self.next || self.waiting.contains_key(&sequence) {
            self.counts.duplicates += n;
            return;
        }
        if sequence < self.highest {
            self.counts.reordered += n;
        }
        self.highest = self.highest.max(end);
        if sequence > self.next {
            if self.gap_wait.is_zero() {
                // A path that does not reorder: a gap is a loss at once.
                self.lose(sequence - self.next);
                self.deliver(sequence, messages, clock);
                return;
            }
            self.waiting.insert(
                sequence,
                (
                    std::time::Instant::now(),
                    messages.iter().map(|m| m.to_vec()).collect(),
                ),
            );
            return;
        }
        // Starts at or before `next`: the part not delivered yet goes on.
        let skip = (self.next - sequence) as usize;
        self.counts.duplicates += skip as u64;
        self.deliver(self.next, &messages[skip..], clock);
        self.drain(clock);
    }

    /// Loses the gaps whose waiting stayed too long (all of them, `force`): each gap waits from
    /// when the datagram after it arrived, so a newer gap is not closed with an older one. The
    /// end of a session is a gap too, from when its end-of-session arrived.
    fn expire(&mut self, force: bool, clock: &mut Clock) {
        let wait = self.gap_wait;
        let over = move |t: std::time::Instant| force || t.elapsed() >= wait;
        while let Some((&first, &(arrived, _))) = self.waiting.first_key_value() {
            if !over(arrived) {
                return;
            }
            self.lose(first.saturating_sub(self.next));
            self.drain(clock);
        }
        if let Some((end, arrived)) = self.end {
            if self.next < end && over(arrived) {
                self.lose(end - self.next);
            }
        }
    }

    fn finished(&self) -> bool {
        self.end.is_some_and(|(e, _)| self.next >= e) && self.waiting.is_empty()
    }

    fn ship_into(&mut self, report: &mut IntervalReport) {
        let out = report.sources.entry(self.id).or_default();
        out.reader.add(&self.counts.since(&self.shipped));
        self.shipped = self.counts;
        if !self.e2e.is_empty() {
            let _ = out.latency.get_mut(Kind::E2e).add(&self.e2e);
            self.e2e.reset();
        }
    }
}

/// Binds `socket` to multicast `group`'s `port`, shared with the run's other readers, and joins
/// the group on loopback.
fn join_group(socket: &socket2::Socket, group: &str, port: u16) -> Result<(), String> {
    let ip: std::net::Ipv4Addr = group
        .parse()
        .map_err(|e| format!("multicast group {group:?}: {e}"))?;
    // Every reader of the run binds the group's port.
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_reuse_port(true))
        .map_err(|e| format!("cannot share the group's port: {e}"))?;
    let addr: std::net::SocketAddr = (ip, port).into();
    socket.bind(&addr.into()).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            ": another program holds the port; choose another"
        } else {
            ""
        };
        format!("cannot bind {addr}: {e}{hint}")
    })?;
    socket
        .join_multicast_v4(&ip, &std::net::Ipv4Addr::LOCALHOST)
        .map_err(|e| format!("cannot join {ip} on loopback: {e}"))
}

/// Whether readers will be able to receive multicast `group` on `port` here: binds and joins as
/// they will, then lets go, so that a port another program holds or a group this host cannot
/// join is refused before the run starts.
pub fn check_group(group: &str, port: u16) -> Result<(), String> {
    join_group(&udp_socket()?, group, port)
}

fn udp_socket() -> Result<socket2::Socket, String> {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| format!("cannot open a UDP socket: {e}"))
}

/// Binds this reader's socket for `feed` and says where it listens.
fn bind(feed: &FeedInfo, run_id: &str) -> Result<(Receiver, String), String> {
    match feed.kind.as_str() {
        "udp" => {
            let socket = udp_socket()?;
            grow_receive_buffer(&socket2::SockRef::from(&socket));
            match &feed.group {
                Some(group) => join_group(&socket, group, feed.port)?,
                None => {
                    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
                    socket
                        .bind(&addr.into())
                        .map_err(|e| format!("cannot bind a UDP socket on loopback: {e}"))?;
                }
            }
            socket
                .set_nonblocking(true)
                .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
            let udp: std::net::UdpSocket = socket.into();
            let local = udp
                .local_addr()
                .map_err(|e| format!("cannot read the socket's address: {e}"))?;
            Ok((Receiver::Udp(udp), local.to_string()))
        }
        "uds" => {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("alphapulse-{run_id}-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|e| format!("cannot name a Unix socket {name:?}: {e}"))?;
            let uds = std::os::unix::net::UnixDatagram::bind_addr(&addr)
                .map_err(|e| format!("cannot bind the Unix socket {name:?}: {e}"))?;
            grow_receive_buffer(&socket2::SockRef::from(&uds));
            uds.set_nonblocking(true)
                .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
            Ok((Receiver::Uds(uds), name))
        }
        #[cfg(feature = "iceoryx2")]
        "iceoryx2" => {
            let sources: Vec<(String, [u8; SESSION_LEN])> = feed
                .sources
                .iter()
                .map(|s| {
                    let mut session = [b' '; SESSION_LEN];
                    let b = s.session.as_bytes();
                    session[..b.len().min(SESSION_LEN)]
                        .copy_from_slice(&b[..b.len().min(SESSION_LEN)]);
                    (
                        crate::transport::iceoryx2::service_name(run_id, s.exchange, s.stream),
                        session,
                    )
                })
                .collect();
            let r = crate::transport::iceoryx2::Iceoryx2Receiver::new(&sources)?;
            Ok((Receiver::Iceoryx2(r), "iceoryx2".into()))
        }
        other => Err(format!("unknown feed kind {other:?} (a build without it?)")),
    }
}

/// Asks for [`RCVBUF`] bytes of receive buffer: as root past `rmem_max` (SO_RCVBUFFORCE),
/// else up to it. A small buffer only makes a burst overflow sooner, which the reader counts.
fn grow_receive_buffer(socket: &socket2::SockRef<'_>) {
    use std::os::fd::AsRawFd;
    let size = RCVBUF as libc::c_int;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid c_int that outlives
    // the call, on a socket descriptor this process owns.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = socket.set_recv_buffer_size(RCVBUF);
    }
}

/// Reads the run's datagram feed until every session ended (or its writer went silent for
/// `stale_after`, or `stop` is set), reporting through `emit` as [`crate::run::consumer::read_run`]
/// does.
pub fn read_feed(
    options: &ReadOptions,
    feed: &FeedInfo,
    manifest: &Manifest,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&ToTester),
    start: &mut dyn FnMut() -> Option<Start>,
) -> Result<ReaderEnd, ReadError> {
    if let Some(core) = options.pin_core {
        crate::run::consumer::pin(core);
    }
    let (mut socket, listen) = bind(feed, &manifest.run_id).map_err(ReadError::Feed)?;
    let symbols = manifest.symbols.len();
    let now = std::time::Instant::now();
    let mut sessions: Vec<Session> = Vec::new();
    let mut by_name: HashMap<[u8; SESSION_LEN], usize> = HashMap::new();
    for s in &feed.sources {
        let name: [u8; SESSION_LEN] = s
            .session
            .as_bytes()
            .try_into()
            .map_err(|_| ReadError::Feed(format!("session {:?} is not 10 bytes", s.session)))?;
        by_name.insert(name, sessions.len());
        sessions.push(Session {
            id: SourceId {
                exchange: s.exchange,
                stream: s.stream,
            },
            checker: match s.stream {
                Stream::Trades => Checker::Trades(vec![0; symbols]),
                Stream::Book => Checker::Book(BookReplica::new(symbols), vec![false; symbols]),
            },
            counts: Integrity::default(),
            shipped: Integrity::default(),
            e2e: new_histogram(),
            max_e2e_ns: 0,
            next: 1,
            highest: 1,
            waiting: BTreeMap::new(),
            end: None,
            last_heard: now,
            gap_wait: Duration::from_nanos(feed.gap_wait_ns),
        });
    }
    if sessions.is_empty() {
        return Err(ReadError::Empty(options.run_dir.display().to_string()));
    }
    let pid = std::process::id();
    emit(&ToTester::Ready {
        pid,
        rings: sessions.len(),
        listen: (feed.kind != "iceoryx2").then_some(listen),
    });
    let mut clock = Clock::new(if tsc_usable() {
        ClockSource::Tsc
    } else {
        ClockSource::Monotonic
    });
    let start = start().unwrap_or_else(|| Start {
        start_ns: clock.now(),
        interval_ns: 1_000_000_000,
        intervals: u64::MAX,
    });
    // Silence counts from the start of the load, not from the wait for it.
    let started = std::time::Instant::now();
    for s in &mut sessions {
        s.last_heard = started;
    }
    let mut totals: BTreeMap<Stream, Histogram<u64>> = [Stream::Trades, Stream::Book]
        .iter()
        .map(|&s| (s, new_histogram()))
        .collect();
    let boundary_of = |index: u64| {
        if index + 1 >= start.intervals {
            u64::MAX
        } else {
            start
                .start_ns
                .saturating_add((index + 1).saturating_mul(start.interval_ns))
        }
    };
    let mut index = start.index_of(clock.now());
    let mut boundary = boundary_of(index);
    let mut report = IntervalReport::empty(index, start.interval_ns);
    let mut ticker = options
        .timeline
        .then(|| Ticker::new(start.start_ns, clock.now()));
    let close = |t: &mut Ticker, sessions: &mut [Session], now: u64| {
        // A feed has no epochs: a new session is a new source.
        t.close_sources(
            now,
            sessions
                .iter_mut()
                .map(|s| (s.counts, std::mem::take(&mut s.max_e2e_ns), 0)),
        );
    };
    let deadline = options.max_duration.map(|d| started + d);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut foreign = 0u64;
    let mut last_check = std::time::Instant::now();
    let ship = |sessions: &mut [Session],
                report: &mut IntervalReport,
                totals: &mut BTreeMap<Stream, Histogram<u64>>| {
        for s in sessions.iter_mut() {
            if !s.e2e.is_empty() {
                let _ = totals
                    .get_mut(&s.id.stream)
                    .expect("both streams present")
                    .add(&s.e2e);
            }
            s.ship_into(report);
        }
    };
    let ended;
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => match feed::parse(&buf[..n]) {
                Err(_) => foreign += 1,
                Ok(d) => {
                    let session = match &d {
                        Datagram::Messages { session, .. }
                        | Datagram::Heartbeat { session, .. }
                        | Datagram::End { session, .. } => *session,
                    };
                    let Some(&i) = <&[u8; SESSION_LEN]>::try_from(session)
                        .ok()
                        .and_then(|k| by_name.get(k))
                    else {
                        foreign += 1;
                        continue;
                    };
                    let s = &mut sessions[i];
                    s.last_heard = std::time::Instant::now();
                    match d {
                        Datagram::Messages {
                            sequence, messages, ..
                        } => s.on_messages(sequence, &messages, &mut clock),
                        Datagram::Heartbeat { .. } => {}
                        Datagram::End { sequence, .. } => {
                            if s.end.is_none() {
                                s.end = Some((sequence, std::time::Instant::now()));
                            }
                            s.highest = s.highest.max(sequence);
                        }
                    }
                }
            },
            // Polled without sleeping, as a bus reader polls its rings: the transports are
            // compared at the same readiness.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(ReadError::Feed(format!("cannot receive: {e}"))),
        }
        let now_ns = clock.now();
        if let Some(t) = ticker.as_mut().filter(|t| t.due(now_ns)) {
            close(t, &mut sessions, now_ns);
        }
        if now_ns >= boundary {
            ship(&mut sessions, &mut report, &mut totals);
            if let Some(t) = ticker.as_mut() {
                emit(&ToTester::Progress {
                    timeline: t.take(),
                    positions: Vec::new(),
                });
            }
            let message = ToTester::Interval { report };
            emit(&message);
            let ToTester::Interval { report: done } = message else {
                unreachable!("built above")
            };
            report = done;
            index = start.index_of(now_ns);
            boundary = boundary_of(index);
            report.reset(index);
        }
        if last_check.elapsed() >= Duration::from_millis(1) {
            last_check = std::time::Instant::now();
            for s in &mut sessions {
                s.expire(false, &mut clock);
            }
            if sessions.iter().all(Session::finished) {
                ended = "writers closed";
                break;
            }
            // Silence alone is not death (a stream may have nothing to send): the writer is
            // dead when its process is, as a bus writer is when its lock is free.
            if !writer_alive(manifest.writer_pid)
                && sessions
                    .iter()
                    .any(|s| !s.finished() && s.last_heard.elapsed() >= options.stale_after)
            {
                ended = "writer died";
                break;
            }
            if stop.load(Ordering::Relaxed) {
                ended = "stopped";
                break;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                ended = "time limit";
                break;
            }
        }
    }
    let drained = ended == "writers closed";
    for s in &mut sessions {
        s.expire(drained, &mut clock);
        if let Some((end, _)) = s.end {
            s.counts.published = end.saturating_sub(1);
        }
        s.counts.accounted = s.next - 1;
        if drained {
            s.counts.unaccounted = s.counts.published.abs_diff(s.counts.accounted);
        }
    }
    let digests_compared = drained
        && match load_digests(&options.run_dir) {
            Some(d) => {
                for s in &mut sessions {
                    if let Checker::Book(replica, _) = &s.checker {
                        check_digests(&d, s.id.exchange, replica, &mut s.counts);
                    }
                }
                true
            }
            None => false,
        };
    ship(&mut sessions, &mut report, &mut totals);
    if let Some(t) = ticker.as_mut() {
        close(t, &mut sessions, clock.now());
        emit(&ToTester::Progress {
            timeline: t.take(),
            positions: Vec::new(),
        });
    }
    let mut per_stream: BTreeMap<Stream, Integrity> = BTreeMap::new();
    for s in &sessions {
        per_stream.entry(s.id.stream).or_default().add(&s.counts);
    }
    let end = ReaderEnd {
        pid,
        streams: crate::run::consumer::deliveries(&totals, &per_stream),
        rings: sessions
            .iter()
            .map(|s| RingOutcome {
                file: format!(
                    "{} session {}",
                    feed.kind,
                    feed.sources
                        .iter()
                        .find(|f| f.exchange == s.id.exchange && f.stream == s.id.stream)
                        .map_or("", |f| f.session.as_str())
                ),
                stream: s.id.stream,
                integrity: s.counts,
                writer: if s.end.is_some() { "closed" } else { "dead" }.into(),
                started_at: 1,
            })
            .collect(),
        ended: ended.into(),
        digests_compared,
        foreign_datagrams: foreign,
        capture: None,
    };
    emit(&ToTester::Final {
        report,
        end: Box::new(end.clone()),
    });
    Ok(end)
}

/// Reads the run in `options.run_dir` whatever its transport: its datagram feed if it has one
/// ([`read_feed`]), else its rings ([`crate::run::consumer::read_run`]).
pub fn read_any(
    options: &ReadOptions,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&ToTester),
    start: &mut dyn FnMut() -> Option<Start>,
) -> Result<ReaderEnd, ReadError> {
    let Some(feed) = feed_of(&options.run_dir)? else {
        return crate::run::consumer::read_run(options, stop, emit, start);
    };
    if options.record.is_some() {
        return Err(ReadError::Feed(
            "--record records the shared-memory bus; this run is a datagram feed".into(),
        ));
    }
    let manifest = Manifest::read(&options.run_dir)?;
    read_feed(options, &feed, &manifest, stop, emit, start)
}

/// Whether process `pid` still exists.
fn writer_alive(pid: u32) -> bool {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// The feed description of the run in `run_dir`, if the run is a datagram feed.
pub fn feed_of(run_dir: &Path) -> Result<Option<FeedInfo>, ReadError> {
    match std::fs::read(run_dir.join(feed::FEED_NAME)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ReadError::Feed(format!("{}: {e}", feed::FEED_NAME))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReadError::Feed(format!("{}: {e}", feed::FEED_NAME))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alphapulse_bus::Record;

    fn session(gap_wait: Duration) -> Session {
        let now = std::time::Instant::now();
        Session {
            id: SourceId {
                exchange: 0,
                stream: Stream::Trades,
            },
            checker: Checker::Trades(vec![0; 1]),
            counts: Integrity::default(),
            shipped: Integrity::default(),
            e2e: new_histogram(),
            max_e2e_ns: 0,
            next: 1,
            highest: 1,
            waiting: BTreeMap::new(),
            end: None,
            last_heard: now,
            gap_wait,
        }
    }

    fn trade(seq: u64) -> Vec<u8> {
        let mut t = Trade {
            sequence: seq,
            send_ts_ns: 1,
            side: 1,
            trade_id: seq,
            price: 1,
            size: 1,
            ..Trade::default()
        };
        t.seal();
        bytemuck::bytes_of(&t).to_vec()
    }

    fn send(s: &mut Session, first: u64, n: u64, clock: &mut Clock) {
        let records: Vec<Vec<u8>> = (first..first + n).map(trade).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        s.on_messages(first, &refs, clock);
    }

    #[test]
    fn a_lost_tail_is_counted_when_the_session_ends() {
        let mut clock = Clock::new(ClockSource::Monotonic);
        for wait in [Duration::ZERO, Duration::from_millis(1)] {
            let mut s = session(wait);
            send(&mut s, 1, 3, &mut clock);
            // Datagram 4..6 is lost; the end says 6 comes next.
            s.end = Some((6, std::time::Instant::now()));
            std::thread::sleep(wait);
            s.expire(false, &mut clock);
            assert!(s.finished(), "{wait:?}");
            assert_eq!((s.counts.received, s.counts.lost), (3, 2));
        }
    }

    #[test]
    fn each_gap_waits_from_its_own_arrival() {
        let mut clock = Clock::new(ClockSource::Monotonic);
        // Waits long enough that a loaded machine oversleeping by 250 ms changes nothing.
        let mut s = session(Duration::from_millis(400));
        send(&mut s, 1, 1, &mut clock);
        send(&mut s, 3, 1, &mut clock); // 2 missing
        std::thread::sleep(Duration::from_millis(300));
        send(&mut s, 5, 1, &mut clock); // 4 missing, a newer gap
        std::thread::sleep(Duration::from_millis(150));
        s.expire(false, &mut clock);
        // The older gap is over its wait: 2 is lost, 3 delivered; 4 still may come.
        assert_eq!((s.counts.lost, s.next), (1, 4));
        send(&mut s, 4, 1, &mut clock);
        assert_eq!((s.counts.lost, s.counts.received, s.next), (1, 4, 6));
        assert_eq!(s.counts.reordered, 1);
        assert_eq!(s.counts.duplicates, 0);
    }

    #[test]
    fn duplicates_and_overlaps_are_delivered_once() {
        let mut clock = Clock::new(ClockSource::Monotonic);
        let mut s = session(Duration::from_millis(50));
        send(&mut s, 1, 2, &mut clock);
        send(&mut s, 1, 2, &mut clock); // the same datagram again
        send(&mut s, 4, 2, &mut clock); // waits for 3
        send(&mut s, 4, 2, &mut clock); // again, while it waits
        send(&mut s, 2, 3, &mut clock); // overlaps 2 (delivered) and 4 (waiting)
        s.expire(true, &mut clock);
        assert_eq!(s.next, 6);
        assert_eq!((s.counts.received, s.counts.lost), (5, 0));
        assert_eq!(s.counts.duplicates, 2 + 2 + 1 + 1);
        assert_eq!(
            s.counts.out_of_order + s.counts.corrupted + s.counts.gaps,
            0
        );
    }
}
